"""The running components of one daemon, as the view and the reload policy see them.

`Daemon` (``root``) builds and replaces these; `DaemonView` (``view``) reads
them to answer the control socket; the reload policy (``reload``) checks a
new config against them. Keeping them in one plain record lets the view and
the policy be tested without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipvsd.config import Config
from ipvsd.daemon.ports import IpvsKernel
from ipvsd.health.manager import HealthManager
from ipvsd.model import Table

if TYPE_CHECKING:  # loaded when used (`ipvsd.daemon.root`)
    from ipvsd.bgp.announcer import BgpAnnouncer
    from ipvsd.ipvs.reconciler import Reconciler
    from ipvsd.ipvs.sync_daemon import SyncDaemonController
    from ipvsd.vrrp.router import VrrpRouter


@dataclass(slots=True)
class Components:
    """What runs now. None: not started (no services, no VRRP instance, no sync)."""

    config: Config
    """The config in force (the last one accepted)."""
    health: HealthManager
    ipvs: IpvsKernel | None = None
    """The reconciler's IPVS connection (status dumps share it)."""
    reconciler: Reconciler | None = None
    vrrp: VrrpRouter | None = None
    sync: SyncDaemonController | None = None
    bgp: BgpAnnouncer | None = None
    """BGP mode's speaker and policy (``bgp:``)."""
    ready: bool = False
    """The first reconcile is done and VRRP is started (READY=1 was sent)."""

    def desired(self) -> Table | None:
        """The reconciler's desired table (swapped whole, never changed); None without IPVS."""
        return None if self.reconciler is None else self.reconciler.desired
