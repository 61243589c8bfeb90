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
- Exception, an ``mh`` service (docs/consistent-hashing.md): its Maglev table
  depends on which reals are in the kernel, in which order, with which last
  non-zero weight, so no real leaves it for health. An UNKNOWN real, and a
  DOWN one with ``on_failure: remove``, is drained instead (weight 0; the
  planner adds it at its configured weight first, ``Service.last_weights``),
  and so are the live reals while the sorry server is in use.
- An UP real whose check gave it a weight (an exec check with
  ``dynamic_weight``, keepalived's ``misc_dynamic``) has that weight.
- An administratively drained real (``ipvsd drain``) has weight 0 whatever
  its health or dynamic weight.
- The sorry server is in use while the service has no quorum
  (`ipvsd.health.quorum`; without ``quorum``: while no real is UP). Then the
  live reals are taken out, as keepalived does: drained (weight 0), or
  removed with ``on_failure: remove``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from types import MappingProxyType

from ipvsd.config.model import CheckConfig, Config, RealConfig, ServiceConfig
from ipvsd.config.types import CheckType, OnFailure
from ipvsd.health.quorum import QuorumState, has_quorum
from ipvsd.health.tracker import Health
from ipvsd.mh import MH
from ipvsd.model import DestKey, RealId, ServiceKey


@dataclass(frozen=True, slots=True)
class Overrides:
    """The arguments `desired_table` takes besides the config (read-only all through).

    Attributes:
        weights: reals whose weight is not the configured one (0: drained or down).
        excluded: reals left out of the kernel (unknown yet, or down with ``remove``).
        sorry: services whose sorry server is in use (no quorum).
        quorum: the quorum state of every service.
    """

    weights: Mapping[RealId, int]
    excluded: frozenset[RealId]
    sorry: frozenset[ServiceKey]
    quorum: Mapping[ServiceKey, QuorumState] = field(default_factory=dict)


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
    quorum_was: Mapping[ServiceKey, bool] | None = None,
) -> Overrides:
    """Weights, exclusions and sorry servers for the current health and drains.

    Args:
        config: the running configuration.
        states: health of each checked real (absent = UNKNOWN).
        drained: reals an operator drained.
        held: reals adopted at weight 0 that have not come UP since (weight 0,
            never removed).
        dynamic: the weight checks gave reals (absent: the configured weight).
        quorum_was: whether each service had quorum before (absent: it had).
    """
    weights: dict[RealId, int] = {}
    quorum: dict[ServiceKey, QuorumState] = {}
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
            True if quorum_was is None else quorum_was.get(key, True),
        )
        quorum[key] = rules.quorum
        weights.update({(key, dest): weight for dest, weight in rules.weights.items()})
        excluded.update((key, dest) for dest in rules.excluded)
        if rules.sorry:
            sorry.add(key)
    return Overrides(
        MappingProxyType(weights), frozenset(excluded), frozenset(sorry), MappingProxyType(quorum)
    )


@dataclass(frozen=True, slots=True)
class ServiceOverrides:
    """`Overrides` of one service, its reals named by their `DestKey`.

    Attributes:
        weights: reals whose weight is not the configured one.
        excluded: reals left out of the kernel.
        sorry: whether the sorry server is in use.
        quorum: the service's quorum now.
    """

    weights: Mapping[DestKey, int]
    excluded: frozenset[DestKey]
    sorry: bool
    quorum: QuorumState


def service_overrides(
    service: ServiceConfig,
    key: ServiceKey,
    health_of: Callable[[RealId], Health],
    drained: Set[RealId],
    held: Set[RealId],
    weight_of: Callable[[RealId], int | None] | None = None,
    quorum_was: bool = True,
    dests: Sequence[DestKey] | None = None,
) -> ServiceOverrides:
    """The module's rules applied to one service (`overrides` applies them to all).

    Args:
        service: one configured service.
        key: ``service.key`` (computed once by the caller).
        health_of: the health of a checked real (UNKNOWN when not known).
        drained: reals an operator drained.
        held: reals adopted at weight 0 that have not come UP since.
        weight_of: the weight a checked real's checks gave it (None: the configured one).
        quorum_was: whether the service had quorum before (`ipvsd.health.quorum`).
        dests: the key of each of its reals, in order, when the caller has them
            (``ipvsd.desired.dest_keys``); else made here.
    """
    weights: dict[DestKey, int] = {}
    excluded: set[DestKey] = set()
    live: list[DestKey] = []
    live_weight = 0
    any_up = False
    if dests is None:
        dests = [service.dest_key(real) for real in service.reals]
    removes = service.on_failure is OnFailure.REMOVE and service.scheduler != MH
    keeps = service.scheduler == MH  # an mh real never leaves the kernel for health
    for real, dest in zip(service.reals, dests, strict=True):
        real_id = (key, dest)
        health = health_of(real_id) if has_check(service, real) else Health.UP
        if health is Health.UP:
            any_up = True
            live.append(dest)
            dynamic = None if weight_of is None else weight_of(real_id)
            if dynamic is not None and dynamic != real.weight:
                weights[dest] = dynamic
            if not (drained and real_id in drained):
                live_weight += real.weight if dynamic is None else dynamic
        elif not keeps and real_id not in held and (health is Health.UNKNOWN or removes):
            excluded.add(dest)
        else:
            weights[dest] = 0
        if drained and real_id in drained:
            weights[dest] = 0
    up = has_quorum(service, live_weight, any_up, quorum_was)
    sorry = service.sorry_server is not None and not up
    if sorry:  # the sorry server takes over from the reals left (keepalived)
        for dest in live:
            if removes:
                excluded.add(dest)
                weights.pop(dest, None)
            else:
                weights[dest] = 0
    return ServiceOverrides(weights, frozenset(excluded), sorry, QuorumState(up, live_weight))
