"""Names of the interfaces a VRRP instance uses, derived from its config (pure).

Here, not on the config model alone, because the start-up reads them before
the model exists (`ipvsd.daemon.early` removes stale VIPs before the config models
are imported) and both must agree on where a VIP lives.
"""

from __future__ import annotations


def advert_interface(interface: str, vrid: int, *, vmac: bool, vmac_interface: str | None) -> str:
    """The interface the adverts, the GARPs and (by default) the VIPs use: the vmac's
    name with ``vmac`` (``vmac_interface``, else ``vrrp.VRID``), else ``interface``."""
    if not vmac:
        return interface
    return vmac_interface or f"vrrp.{vrid}"
