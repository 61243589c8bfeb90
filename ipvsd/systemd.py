"""sd_notify(3) for `Type=notify`: READY, STATUS, RELOADING, STOPPING and the watchdog.

The protocol is one datagram per message on the unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace), small
enough to write here instead of depending on libsystemd. Outside systemd
(no ``$NOTIFY_SOCKET``) every call is a no-op.

The watchdog pings come from a task on the daemon's event loop, so a hung
loop stops pinging and systemd restarts the service (``WatchdogSec=``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("ipvsd.systemd")


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval_s: float | None = (
            int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() and mine else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str | int) -> None:
        """Send ``KEY=VALUE`` lines, e.g. ``send(READY=1, STATUS="...")``."""
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc), fields=list(fields))

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self) -> None:
        self.send(STOPPING=1, STATUS="stopping")

    async def watchdog(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping the watchdog at half its interval while `healthy()`; runs forever."""
        if self.watchdog_interval_s is None:
            return
        while True:
            if healthy():
                self.send(WATCHDOG=1)
            await asyncio.sleep(self.watchdog_interval_s / 2)
