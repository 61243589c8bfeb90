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
sorry server is to be in the table (`ipvsd.health.policy` decides when).

Services and reals with equal attributes share one (frozen) `ServiceAttrs` /
`DestAttrs` object: a table of 10,000 services x 4 reals has a handful of
distinct ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from ipvsd.config.model import Config
from ipvsd.model import (
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
        sorry: services that get their sorry server as a real (weight 1).

    Returns:
        One service per configured service, each with its (non-excluded) reals.
    """
    overrides = weight_overrides or {}
    skipped = excluded or frozenset()
    # Most services and reals have the same attributes: share one (frozen) object per value.
    service_attrs: dict[tuple[str, ServiceFlag, int, int, str], ServiceAttrs] = {}
    shared: dict[tuple[ForwardMethod, int, int, int], DestAttrs] = {}
    services: list[Service] = []
    for service in config.ipvs.services:
        key = service.key
        fields = (
            service.scheduler,
            service.flags,
            service.persistence_timeout,
            service.netmask,
            service.persistence_engine or "",
        )
        attrs = service_attrs.get(fields)
        if attrs is None:
            attrs = service_attrs[fields] = ServiceAttrs(*fields)
        dests: list[Dest] = []
        for real in service.reals:
            dest_key = service.dest_key(real)
            if skipped and (key, dest_key) in skipped:
                continue
            weight = overrides.get((key, dest_key), real.weight) if overrides else real.weight
            tunnel = service.tunnel_of(real)
            forward = service.forward_of(real)
            values: tuple[Any, ...] = (
                forward,
                weight,
                real.upper_threshold,
                real.lower_threshold,
            )
            if tunnel is not None and forward is ForwardMethod.TUNNEL:
                values += (tunnel.type, tunnel.port, tunnel.checksum)
            dest_attrs = shared.get(values)
            if dest_attrs is None:
                dest_attrs = shared[values] = DestAttrs(*values)
            dests.append(Dest(dest_key, dest_attrs))
        if sorry and key in sorry and service.sorry_server is not None:
            sorry_key = DestKey(
                service.sorry_server.address, service.sorry_server.port or service.port or 0
            )
            dests.append(Dest(sorry_key, DestAttrs(service.forward, 1)))
        services.append(make_service(key, attrs, dests))
    return Table.of(services)
