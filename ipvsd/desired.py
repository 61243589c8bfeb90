"""The desired IPVS table: what the configuration asks the kernel to hold.

Desired state = config + health overrides + admin drains (design.md,
"Reconcile, don't replay"). This pure function is the one place where config
objects become kernel objects:

- a service's key is `ServiceConfig.key` (fwmark services are keyed by
  (family, mark) with protocol TCP, as the kernel stores them: `fwmark_key`);
- its attributes: the scheduler, ``PERSISTENT`` iff ``persistence_timeout > 0``
  plus the ``scheduler_flags`` bits, the timeout, the persistence netmask as a
  prefix length and the persistence engine name ("" for none);
- each real is a `Dest` keyed by (address, port), port 0 meaning the
  service's port, with the real's forwarding method (else the service's),
  weight and thresholds.

Health checks and ``ipvsd drain`` do not edit the config: they pass
`weight_overrides` (a failed or drained real at weight 0) and `excluded`
(reals removed by ``on_failure: remove``); `sorry` names the services whose
sorry server is to be in use (`ipvsd.health.policy` decides when); an
inhibited sorry server (``inhibit: true``) is in the table at weight 0 when
not in use, with its own ``forward`` if it has one.

An ``mh`` service (docs/consistent-hashing.md) has its dests in the order of
the kernel's list once the planner has added them (`ipvsd.mh.mh_order`),
so that the reconciler's belief after a pass models the kernel's list, and
the weight each dest desired at weight 0 is to be added at first
(`Service.last_weights`: its configured weight; with ``mh-fallback``, the
inhibited sorry server's weight in use, 1).

Services and reals with equal attributes share one (frozen) `ServiceAttrs` /
`DestAttrs` object: a table of 10,000 services x 4 reals has a handful of
distinct ones. `ServiceBuilder` builds one service at a time with those
shared objects, for callers that rebuild only the services that changed
(``ipvsd.health.table``): building the whole table costs ~0.3 s at 10,000 x 4
on a host, and the event loop that does it also times VRRP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from types import MappingProxyType
from typing import Any

from ipvsd.config.model import Config, RealConfig, ServiceConfig
from ipvsd.mh import MH, mh_order
from ipvsd.model import (
    NO_LAST_WEIGHTS,
    Dest,
    DestAttrs,
    DestKey,
    ForwardMethod,
    RealId,
    Service,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Table,
    make_service,
)

#: No per-real override: every real at its configured weight.
NO_WEIGHTS: Mapping[DestKey, int] = MappingProxyType({})

#: No known keys: each real's key is made from the config.
NO_IDS: Mapping[RealId, RealId] = MappingProxyType({})


def desired_table(
    config: Config,
    *,
    weight_overrides: Mapping[RealId, int] | None = None,
    excluded: Set[RealId] | None = None,
    sorry: Set[ServiceKey] | None = None,
) -> Table:
    """Build the IPVS table the configuration asks for.

    Args:
        config: a configuration accepted by `ipvsd.config.parse_config`.
        weight_overrides: weight to use instead of the configured one, per
            (service, real); health failures and admin drains set 0.
        excluded: (service, real) pairs to leave out of the table.
        sorry: services that get their sorry server as a real (weight 1); an
            inhibited sorry server is at weight 0 in the others.

    Returns:
        One service per configured service, each with its (non-excluded) reals.
    """
    weights: dict[ServiceKey, dict[DestKey, int]] = {}
    for (key, dest), weight in (weight_overrides or {}).items():
        weights.setdefault(key, {})[dest] = weight
    skipped: dict[ServiceKey, set[DestKey]] = {}
    for key, dest in excluded or ():
        skipped.setdefault(key, set()).add(dest)
    sorry_keys = sorry or frozenset()
    build = ServiceBuilder()
    services: list[Service] = []
    for service in config.ipvs.services:
        key = service.key
        services.append(
            build(
                service,
                key,
                weights=weights.get(key, NO_WEIGHTS),
                excluded=skipped.get(key, frozenset()),
                sorry=key in sorry_keys,
            )
        )
    return Table.of(services)


def dest_keys(
    service: ServiceConfig, key: ServiceKey, ids: Mapping[RealId, RealId] = NO_IDS
) -> list[DestKey]:
    """The key of each real of `service` (whose key is `key`), in order; a real found in
    `ids` gets that object (see `ServiceBuilder`)."""
    keys = []
    for real in service.reals:
        dest = service.dest_key(real)
        if ids:
            known = ids.get((key, dest))
            if known is not None:
                dest = known[1]
        keys.append(dest)
    return keys


class ServiceBuilder:
    """Turns one configured service into its kernel `Service`, sharing equal attributes.

    Keep one builder for a table: the attribute objects it shares are the
    ones it has built so far.
    """

    def __init__(self) -> None:
        self._service_attrs: dict[tuple[str, ServiceFlag, int, int, str], ServiceAttrs] = {}
        self._dest_attrs: dict[tuple[Any, ...], DestAttrs] = {}

    def __call__(
        self,
        service: ServiceConfig,
        key: ServiceKey,
        *,
        weights: Mapping[DestKey, int] = NO_WEIGHTS,
        excluded: Set[DestKey] = frozenset(),
        sorry: bool = False,
        ids: Mapping[RealId, RealId] = NO_IDS,
        dests: Sequence[DestKey] | None = None,
    ) -> Service:
        """The kernel service for `service`, whose key is `key` (computed once by the caller).

        Args:
            service: one service of the configuration.
            key: ``service.key``.
            weights: weight instead of the configured one, per real of this service.
            excluded: reals of this service to leave out.
            sorry: add the sorry server as a real (weight 1); an inhibited one is
                there at weight 0 otherwise.
            ids: reals whose keys exist already (the health manager's): a real
                found there gets that `DestKey` object, not an equal copy
                (40,000 copies were ~4 MB).
            dests: ``dest_keys(service, key, ids)``, when the caller has them already.
        """
        fields = (
            service.scheduler,
            service.flags,
            service.persistence_timeout,
            service.netmask,
            service.persistence_engine or "",
        )
        attrs = self._service_attrs.get(fields)
        if attrs is None:
            attrs = self._service_attrs[fields] = ServiceAttrs(*fields)
        built: list[Dest] = []
        if dests is None:
            dests = dest_keys(service, key, ids)
        mh = service.scheduler == MH
        last: dict[DestKey, int] = {}
        for real, dest_key in zip(service.reals, dests, strict=True):
            if excluded and dest_key in excluded:
                continue
            weight = weights.get(dest_key, real.weight) if weights else real.weight
            if mh and weight == 0:  # 0 too: the table believed after a pass says it
                last[dest_key] = real.weight
            built.append(Dest(dest_key, self._dest(service, real, weight)))
        server = service.sorry_server
        if server is not None and (sorry or server.inhibit):
            # Inhibited (keepalived's sorry_server_inhibit): kept at weight 0 while not in use.
            sorry_key = DestKey(server.address, server.port or service.port or 0)
            forward = server.forward or service.forward
            values: tuple[Any, ...] = (forward, 1 if sorry else 0)
            if forward is ForwardMethod.TUNNEL and service.tunnel is not None:
                values += (0, 0, service.tunnel.type, service.tunnel.port, service.tunnel.checksum)
            built.append(Dest(sorry_key, DestAttrs(*values)))
            if mh and not sorry:
                # Its weight when in use, so that in use once or never is one table. Its
                # slots then always exist: only with mh-fallback, which moves their
                # connections to the reals (without, the kernel would refuse them).
                last[sorry_key] = 1 if ServiceFlag.SCHED1 in service.flags else 0
        if mh:  # the kernel's list order the planner builds (`ipvsd.mh.mh_order`)
            last_weights = MappingProxyType(last) if last else NO_LAST_WEIGHTS
            return make_service(key, attrs, mh_order(built), last_weights)
        return make_service(key, attrs, built)

    def _dest(self, service: ServiceConfig, real: RealConfig, weight: int) -> DestAttrs:
        tunnel = service.tunnel_of(real)
        forward = service.forward_of(real)
        values: tuple[Any, ...] = (forward, weight, real.upper_threshold, real.lower_threshold)
        if tunnel is not None and forward is ForwardMethod.TUNNEL:
            values += (tunnel.type, tunnel.port, tunnel.checksum)
        attrs = self._dest_attrs.get(values)
        if attrs is None:
            attrs = self._dest_attrs[values] = DestAttrs(*values)
        return attrs
