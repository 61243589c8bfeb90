"""The daemon's listening endpoints: the control socket and /metrics.

Both are bound at start (the control socket before any VIP is touched, so a
misconfigured second daemon fails early) and may be moved by a reload.
A reload binds the new endpoint *before* it lets go of the old one: if the
new address cannot be bound, the reload fails with the old endpoint still
serving, and a later failure of the same reload undoes the move. Only when
the whole reload went through does `commit` hand back what the reload
replaced, to be closed.

The old control server is closed in the background by the caller, not
here: the operator's ``ipvsd reload`` is itself a connection on it, and
closing it before the answer is written would hang up on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ipvsd.config import Config
from ipvsd.control.protocol import ControlView
from ipvsd.control.server import ControlServer
from ipvsd.errors import IpvsdError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ipvsd.metrics.http import MetricsServer
    from ipvsd.metrics.ipvs import IpvsExporter

Undo = list[Callable[[], Awaitable[None]]]


class Endpoints:
    """The control server and the metrics server of one daemon.

    Args:
        view: what the control socket answers from.
        registry: the daemon's own metrics, asked for when /metrics is served.
        exporter: the IPVS table's part of /metrics for a config (None: none).
    """

    def __init__(
        self,
        view: ControlView,
        registry: Callable[[], CollectorRegistry],
        exporter: Callable[[Config], IpvsExporter | None],
    ) -> None:
        self._view = view
        self._registry = registry
        self._exporter = exporter
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._retired_control: ControlServer | None = None
        self._retired_metrics: MetricsServer | None = None

    async def start_control(self, config: Config) -> None:
        """Listen on ``control.socket``.

        Raises:
            ControlSocketError: another daemon listens there, or it cannot be made.
        """
        server = ControlServer(config.control.socket, self._view, group=config.control.group)
        await server.start()
        self.control = server

    def start_metrics(self, config: Config) -> None:
        """Serve /metrics on ``metrics.listen`` (nothing when it is null).

        Raises:
            IpvsdError: the address cannot be bound (``metrics.listen: ...``).
        """
        self.metrics = self._serve(config)

    def _serve(self, config: Config) -> MetricsServer | None:
        if config.metrics.listen is None:
            return None
        try:
            from ipvsd.metrics.http import serve  # http.server: after VRRP has started

            return serve(self._registry(), config.metrics.listen, ipvs=self._exporter(config))
        except OSError as exc:
            raise IpvsdError(f"metrics.listen: {exc}") from exc

    async def rebind(self, old: Config, new: Config, undo: Undo) -> None:
        """Move what a reload changed, new before old; push the inverse moves on `undo`.

        Raises:
            IpvsdError: a new endpoint cannot be bound (nothing of this call is left).
        """
        await self._rebind_control(old, new, undo)
        self._rebind_metrics(old, new, undo)

    async def _rebind_control(self, old: Config, new: Config, undo: Undo) -> None:
        if new.control == old.control or self.control is None:
            return
        previous = self.control
        same_path = new.control.socket == old.control.socket
        if same_path:
            # Only the group (the file's mode and owner) changes: the path must be free.
            await previous.close()
        try:
            await self.start_control(new)
        except IpvsdError:
            if same_path:
                await self.start_control(old)
            else:
                self.control = previous
            raise
        started = self.control
        self._retired_control = None if same_path else previous

        async def restore() -> None:
            if started is not None:
                await started.close()
            self._retired_control = None
            if same_path:
                await self.start_control(old)
            else:
                self.control = previous

        undo.append(restore)

    def _rebind_metrics(self, old: Config, new: Config, undo: Undo) -> None:
        if new.metrics.listen == old.metrics.listen:
            return
        previous = self.metrics
        started = self._serve(new)
        self.metrics = started
        self._retired_metrics = previous

        async def restore() -> None:
            if started is not None:
                started.shutdown()
            self.metrics = previous
            self._retired_metrics = None

        undo.append(restore)

    def commit(self) -> ControlServer | None:
        """The reload went through: stop the old metrics server; the old control server
        is returned for the caller to close once the reload's answer is written."""
        if self._retired_metrics is not None:
            self._retired_metrics.shutdown()
            self._retired_metrics = None
        retired, self._retired_control = self._retired_control, None
        return retired

    async def close(self) -> None:
        """Stop both (shutdown)."""
        if self.metrics is not None:
            # Off the loop: the server's thread notices the stop at its next poll.
            await asyncio.to_thread(self.metrics.shutdown)
            self.metrics = None
        if self.control is not None:
            await self.control.close()
            self.control = None
