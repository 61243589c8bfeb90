"""What health and admin drains do to the desired table (pure).

Rules, per service (issue #4, keepalived's checker semantics where it has them):

- A real without a check, or with ``type: none``, is always up.
- A real whose health is UNKNOWN (a fresh start, no successful check yet) is
  left out of the kernel: it enters only after its first successful check.
  A real adopted from the kernel at start begins UP instead (its checks
  decide later, without removing it first); one adopted at weight 0 begins
  DOWN and is *held*: it stays in the kernel at weight 0, even with
  ``on_failure: remove``, until ``rise`` successful checks make it UP.
- A DOWN real is drained (``on_failure: drain``, weight 0: its established
  connections finish, new ones go elsewhere) or removed (``on_failure:
  remove``). Recovery restores the configured weight.
- An UP real whose check gave it a weight (an exec check with
  ``dynamic_weight``, keepalived's ``misc_dynamic``) has that weight.
- An administratively drained real (``ipvsd drain``) has weight 0 whatever
  its health or dynamic weight.
- The sorry server is in the table while no real of the service is UP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from types import MappingProxyType

from ipvsd.config.model import CheckConfig, Config, RealConfig, ServiceConfig
from ipvsd.config.types import CheckType, OnFailure
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey, RealId, ServiceKey


@dataclass(frozen=True, slots=True)
class Overrides:
    """The arguments `desired_table` takes besides the config (read-only all through).

    Attributes:
        weights: reals whose weight is not the configured one (0: drained or down).
        excluded: reals left out of the kernel (unknown yet, or down with ``remove``).
        sorry: services whose sorry server is in the table (no real is up).
    """

    weights: Mapping[RealId, int]
    excluded: frozenset[RealId]
    sorry: frozenset[ServiceKey]


def effective_checks(service: ServiceConfig, real: RealConfig) -> tuple[CheckConfig, ...]:
    """The checks that run for the real (`ServiceConfig.checks_for`); empty: it has none."""
    if service.check is None and not service.checks and real.check is None and not real.checks:
        return ()  # most reals of a big config: no merged check to build
    return service.checks_for(real)


def has_check(service: ServiceConfig, real: RealConfig) -> bool:
    """Whether the real is health-checked (a check whose type is not ``none``).

    Called for every real of a service each time its table part is built, so it
    builds no tuple: `effective_checks` without the allocation.
    """
    first = service.check_for(real)
    if first is not None and first.type is not CheckType.NONE:
        return True
    more = service.checks if real.checks is None else real.checks
    return any(check.type is not CheckType.NONE for check in more)


def overrides(
    config: Config,
    states: Mapping[RealId, Health],
    drained: Set[RealId] = frozenset(),
    held: Set[RealId] = frozenset(),
    dynamic: Mapping[RealId, int] | None = None,
) -> Overrides:
    """Weights, exclusions and sorry servers for the current health and drains.

    Args:
        config: the running configuration.
        states: health of each checked real (absent = UNKNOWN).
        drained: reals an operator drained.
        held: reals adopted at weight 0 that have not come UP since (weight 0,
            never removed).
        dynamic: the weight checks gave reals (absent: the configured weight).
    """
    weights: dict[RealId, int] = {}
    excluded: set[RealId] = set()
    sorry: set[ServiceKey] = set()
    for service in config.ipvs.services:
        key = service.key
        rules = service_overrides(
            service,
            key,
            lambda real_id: states.get(real_id, Health.UNKNOWN),
            drained,
            held,
            None if dynamic is None else dynamic.get,
        )
        weights.update({(key, dest): weight for dest, weight in rules.weights.items()})
        excluded.update((key, dest) for dest in rules.excluded)
        if rules.sorry:
            sorry.add(key)
    return Overrides(MappingProxyType(weights), frozenset(excluded), frozenset(sorry))


@dataclass(frozen=True, slots=True)
class ServiceOverrides:
    """`Overrides` of one service, its reals named by their `DestKey`.

    Attributes:
        weights: reals whose weight is not the configured one.
        excluded: reals left out of the kernel.
        sorry: whether the sorry server is in the table.
    """

    weights: Mapping[DestKey, int]
    excluded: frozenset[DestKey]
    sorry: bool


def service_overrides(
    service: ServiceConfig,
    key: ServiceKey,
    health_of: Callable[[RealId], Health],
    drained: Set[RealId],
    held: Set[RealId],
    weight_of: Callable[[RealId], int | None] | None = None,
) -> ServiceOverrides:
    """The module's rules applied to one service (`overrides` applies them to all).

    Args:
        service: one configured service.
        key: ``service.key`` (computed once by the caller).
        health_of: the health of a checked real (UNKNOWN when not known).
        drained: reals an operator drained.
        held: reals adopted at weight 0 that have not come UP since.
        weight_of: the weight a checked real's checks gave it (None: the configured one).
    """
    weights: dict[DestKey, int] = {}
    excluded: set[DestKey] = set()
    any_up = False
    for real in service.reals:
        dest = service.dest_key(real)
        real_id = (key, dest)
        health = health_of(real_id) if has_check(service, real) else Health.UP
        if health is Health.UP:
            any_up = True
            dynamic = None if weight_of is None else weight_of(real_id)
            if dynamic is not None and dynamic != real.weight:
                weights[dest] = dynamic
        elif real_id not in held and (
            health is Health.UNKNOWN or service.on_failure is OnFailure.REMOVE
        ):
            excluded.add(dest)
        else:
            weights[dest] = 0
        if drained and real_id in drained:
            weights[dest] = 0
    sorry = service.sorry_server is not None and not any_up
    return ServiceOverrides(weights, frozenset(excluded), sorry)
