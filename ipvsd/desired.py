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
(reals removed by ``on_failure: remove``). The sorry server is not part of
this table; whoever decides that every real is down adds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from ipvsd.config_model import Config
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Service,
    ServiceAttrs,
    ServiceKey,
    Table,
    make_service,
)


def desired_table(
    config: Config,
    *,
    weight_overrides: Mapping[tuple[ServiceKey, DestKey], int] | None = None,
    excluded: Set[tuple[ServiceKey, DestKey]] | None = None,
) -> Table:
    """Build the IPVS table the configuration asks for.

    Args:
        config: a configuration accepted by `ipvsd.config.parse_config`.
        weight_overrides: weight to use instead of the configured one, per
            (service, real); health failures and admin drains set 0.
        excluded: (service, real) pairs to leave out of the table.

    Returns:
        One service per configured service, each with its (non-excluded) reals.
    """
    overrides = weight_overrides or {}
    skipped = excluded or frozenset()
    services: list[Service] = []
    for service in config.ipvs.services:
        key = service.key
        attrs = ServiceAttrs(
            scheduler=service.scheduler,
            flags=service.flags,
            timeout=service.persistence_timeout,
            netmask=service.netmask,
            pe_name=service.persistence_engine or "",
        )
        dests: list[Dest] = []
        for real in service.reals:
            dest_key = service.dest_key(real)
            if (key, dest_key) in skipped:
                continue
            dest_attrs = DestAttrs(
                forward=service.forward_of(real),
                weight=overrides.get((key, dest_key), real.weight),
                upper_threshold=real.upper_threshold,
                lower_threshold=real.lower_threshold,
            )
            dests.append(Dest(dest_key, dest_attrs))
        services.append(make_service(key, attrs, dests))
    return Table.of(services)
