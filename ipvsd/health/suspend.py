"""``ha_suspend``: which services' checks are paused, from the VRRP states. Pure.

keepalived's ``ha_suspend``: a director that is not MASTER for a service's
address does not check its reals. Here a service with ``ha_suspend`` is
*suspended* while no VRRP instance having its address among its VIPs is
MASTER (config checks make sure one has it). Its reals keep the health they
had (a BACKUP keeps the table it had, ready to take over); their checks
resume at the next slot once an owning instance is MASTER.
"""

from __future__ import annotations

from collections.abc import Set

from ipvsd.config.model import Config
from ipvsd.model import ServiceKey


def suspended_services(config: Config, masters: Set[str]) -> frozenset[ServiceKey]:
    """The ``ha_suspend`` services of `config` that no MASTER instance (`masters`) owns."""
    services = [s for s in config.ipvs.services if s.ha_suspend and s.address is not None]
    if not services:
        return frozenset()
    owned = {
        address
        for instance in config.vrrp.instances
        if instance.name in masters
        for address in instance.owned_addresses
    }
    return frozenset(s.key for s in services if s.address not in owned)
