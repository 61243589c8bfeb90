"""The daemon's side of service quorum: metrics, commands, ``omega``, tracking.

`ipvsd.health.quorum` finds the transitions; this glue turns them into the
``ipvsd_service_quorum`` gauge and the ``quorum_up`` / ``quorum_down`` runs
(`QuorumHooks`) and the feed the VRRP instances' ``track_services`` listen
to (`ServiceQuorumFeed`), and implements keepalived's ``omega``: a service that goes
away while it has quorum, because a reload removed it or because ipvsd
stops, runs its ``quorum_down`` as if it had lost quorum, so that whatever
``quorum_up`` set up (a route, a BGP announcement) is undone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ipvsd.config.model import ServiceConfig
from ipvsd.health.quorum import QuorumBook, QuorumState
from ipvsd.health.quorum_hooks import QuorumHooks
from ipvsd.model import ServiceKey
from ipvsd.vrrp.track_services import ServiceQuorumFeed

if TYPE_CHECKING:
    from ipvsd.metrics.daemon import DaemonMetrics
    from ipvsd.metrics.early import EarlyMetrics


class ServiceQuorum:
    """Quorum transitions → metrics and commands; ``omega`` on removal and stop.

    Args:
        metrics: the daemon's metrics.
        hooks: runs the commands; None: a `QuorumHooks` of its own.
    """

    def __init__(
        self, metrics: DaemonMetrics | EarlyMetrics, hooks: QuorumHooks | None = None
    ) -> None:
        self._metrics = metrics
        self.hooks = hooks or QuorumHooks()
        self.feed = ServiceQuorumFeed()
        """Quorum by service, for the VRRP instances' ``track_services``."""
        self.last: dict[ServiceKey, bool] = {}
        """The last quorum of every service (BGP mode starts from it)."""
        self.listener: Callable[[ServiceKey, bool | None], None] | None = None
        """Told every quorum computed (None: the service is gone): BGP mode's policy."""
        self.follower: Callable[[ServiceKey], bool] = lambda key: False
        """Whether a service is a group member after the first: its quorum runs no
        command (the group's first member's does, once for the group, as keepalived)."""

    def changed(
        self, key: ServiceKey, service: ServiceConfig, state: QuorumState, changed: bool
    ) -> None:
        """`ipvsd.health.quorum.OnQuorum`: a service's quorum was computed or changed."""
        self._metrics.service_quorum(key, state.up)
        self.feed.publish(key, state.up)
        self._tell(key, state.up)
        if not self.follower(key):
            self.hooks.changed(key, service, state, changed)

    def gone(
        self, key: ServiceKey, service: ServiceConfig, state: QuorumState, _changed: bool
    ) -> None:
        """A reload removed the service: drop its series; ``omega``: its quorum_down."""
        self._metrics.service_gone(key)
        self.feed.publish(key, None)
        self._tell(key, None)
        self._omega(key, service, state)

    def _tell(self, key: ServiceKey, up: bool | None) -> None:
        if up is None:
            self.last.pop(key, None)
        else:
            self.last[key] = up
        if self.listener is not None:
            self.listener(key, up)

    async def stop(self, book: QuorumBook | None) -> None:
        """ipvsd stops: ``omega`` services run quorum_down; wait (bounded) for the queue."""
        if book is not None:
            for key, service, state in book.services():
                self._omega(key, service, state)
        await self.hooks.close()

    def _omega(self, key: ServiceKey, service: ServiceConfig, state: QuorumState) -> None:
        # A service without quorum already ran quorum_down when it lost it.
        if (
            not self.follower(key)
            and service.omega
            and state.up
            and service.quorum_down is not None
        ):
            self.hooks.run(key, "down", service.quorum_down)
