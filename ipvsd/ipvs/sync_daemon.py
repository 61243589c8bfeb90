"""IPVS connection sync that follows one VRRP instance (keepalived's ``lvs_sync_daemon``).

The kernel's sync daemon copies the connection table from the director that
balances (master daemon, multicast sender) to the others (backup daemon,
receiver), so that established connections survive a failover: the new
master already knows which real each connection goes to.

Theory of operation
-------------------
Rules, as keepalived applies them (``ipvs_syncd_master`` / ``ipvs_syncd_backup``
in keepalived/check/ipvswrapper.c, called on each VRRP transition):

1. The followed instance MASTER → a master daemon runs and no backup daemon.
2. Any other state (INIT, BACKUP, FAULT) → a backup daemon runs and no
   master. A director that starts, or loses its link, receives the table so
   it is ready to take over.
3. The daemon that must go is stopped *before* the other starts (keepalived's
   order), so the two roles never overlap on one director. The kernel would
   run both at once (one of each role per network namespace).

ipvsd applies them level-triggered, like the reconciler: each pass reads the
kernel (GET_DAEMON), `plan` compares it with the one wanted daemon, and only
the difference is changed. A daemon of the right role whose interface or sync
id differ is restarted; one that matches is adopted as it is. While
``ipvs.sync_daemon`` is configured ipvsd owns both kernel daemons (one writer
per kernel table); without it, it touches none but those it started.

Failures (an interface that is missing or down, IPVS missing, a real of the
other address family, which the sync protocol cannot carry) are logged and
retried with a doubling delay, never raised: VRRP must go on. A periodic pass
repairs drift (an operator's ``ipvsadm --stop-daemon``). On shutdown the
daemons this controller started or adopted are stopped.

`plan` and `wanted_daemon` are pure; `SyncDaemonController` is the asyncio
edge that runs them against the kernel. The controller is told only whether
the followed instance is MASTER (``master``), by the composition root: the
ipvs domain does not import the vrrp one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, assert_never

import structlog

from ipvsd.config.model import SyncDaemonConfig, VrrpInstanceConfig
from ipvsd.errors import KernelError, NotFound
from ipvsd.model import IPAddress
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState

log = structlog.get_logger("ipvsd.ipvs.sync_daemon")

#: First delay (seconds) before a failed pass is retried; it doubles up to the resync interval.
RETRY_INTERVAL_S = 2.0
#: Seconds between two passes when nothing changes (drift repair).
RESYNC_INTERVAL_S = 30.0


# --- pure part --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncTarget:
    """The resolved ``ipvs.sync_daemon`` config.

    Attributes:
        vrrp_instance: the VRRP instance whose state picks the role.
        interface: multicast interface (the config's, else the instance's).
        sync_id: sync id (the config's, else the instance's vrid).
        group, port, ttl, max_length: multicast settings; None / 0: the kernel's.
    """

    vrrp_instance: str
    interface: str
    sync_id: int
    group: IPAddress | None = None
    port: int = 0
    ttl: int = 0
    max_length: int = 0


def resolve(config: SyncDaemonConfig, instance: VrrpInstanceConfig) -> SyncTarget:
    """Fill the config's defaults from the followed instance (keepalived's rule)."""
    return SyncTarget(
        vrrp_instance=config.vrrp_instance,
        interface=config.interface or instance.interface,
        sync_id=instance.vrid if config.sync_id is None else config.sync_id,
        group=config.group,
        port=config.port,
        ttl=config.ttl,
        max_length=config.max_length,
    )


def role_for(*, master: bool) -> SyncState:
    """Rules 1 and 2: master only while the followed instance is MASTER."""
    return SyncState.MASTER if master else SyncState.BACKUP


def wanted_daemon(target: SyncTarget | None, *, master: bool) -> SyncDaemon | None:
    """The one daemon that should run, or None when sync is not configured.

    Args:
        target: the resolved config; None when sync is not configured.
        master: the followed VRRP instance is MASTER (any other state: False).
    """
    if target is None:
        return None
    return SyncDaemon(
        role_for(master=master),
        target.interface,
        target.sync_id,
        sync_maxlen=target.max_length,
        mcast_group=target.group,
        mcast_port=target.port,
        mcast_ttl=target.ttl,
    )


@dataclass(frozen=True, slots=True)
class StopDaemon:
    daemon: SyncDaemon  # as running, for the log


@dataclass(frozen=True, slots=True)
class StartDaemon:
    daemon: SyncDaemon


DaemonOperation = StopDaemon | StartDaemon


def plan(
    wanted: SyncDaemon | None, running: Sequence[SyncDaemon], owned: frozenset[SyncState]
) -> list[DaemonOperation]:
    """The operations that turn `running` into `wanted`, stops first (rule 3).

    Args:
        wanted: the daemon that should run; None: sync is not configured.
        running: what GET_DAEMON reports (at most one per role).
        owned: the roles this controller started or adopted.

    Returns:
        Nothing when `running` already is `wanted` (adopt, don't restart).
    """
    operations: list[DaemonOperation] = []
    for daemon in running:
        if wanted is not None and daemon.satisfies(wanted):
            continue
        if wanted is None and daemon.state not in owned:
            continue  # not configured: someone else's daemon
        operations.append(StopDaemon(daemon))
    if wanted is not None and not any(daemon.satisfies(wanted) for daemon in running):
        operations.append(StartDaemon(wanted))
    return operations


def _action(operation: DaemonOperation | None) -> str:
    match operation:
        case StartDaemon():
            return "start"
        case StopDaemon():
            return "stop"
        case None:
            return "read"
        case _:
            assert_never(operation)


# --- asyncio edge -----------------------------------------------------------------------


class SyncDaemonBackend(Protocol):
    """What the controller needs of the kernel (`IpvsClient` implements it)."""

    async def sync_daemons(self) -> list[SyncDaemon]: ...

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None: ...

    async def stop_sync_daemon(self, state: SyncState) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncDaemonStatus:
    """What `ipvsd status` shows: the target, the wanted role, and the kernel's daemons.

    Attributes:
        target: the resolved config; None when sync is not configured.
        wanted: the role that should run (None: not configured).
        running: the kernel's daemons now; None when they could not be read.
        error: the last pass's error, or the read's; None when all is well.
    """

    target: SyncTarget | None
    wanted: SyncState | None
    running: tuple[SyncDaemon, ...] | None
    error: str | None


class SyncDaemonController:
    """Keeps the kernel's sync daemons as `plan` wants them. Run `run()` as a task.

    Args:
        open_backend: opens the kernel connection; called again after it failed.
        retry_interval_s: first retry delay after a failed pass (doubles).
        resync_interval_s: delay between passes when nothing changes.
        on_pass: called after every pass with the role kept (``master``,
            ``backup`` or None when sync is not configured) and whether the pass
            succeeded; the daemon feeds its metrics from it.
    """

    def __init__(
        self,
        open_backend: Callable[[], Awaitable[SyncDaemonBackend]],
        *,
        retry_interval_s: float = RETRY_INTERVAL_S,
        resync_interval_s: float = RESYNC_INTERVAL_S,
        on_pass: Callable[[str | None, bool], None] | None = None,
    ) -> None:
        self._open_backend = open_backend
        self._on_pass = on_pass
        self._backend: SyncDaemonBackend | None = None
        self._retry_s = retry_interval_s
        self._resync_s = resync_interval_s
        self._target: SyncTarget | None = None
        #: Whether the followed instance is MASTER; False until told (it starts in INIT).
        self._master = False
        self._owned: dict[SyncState, SyncDaemon] = {}
        self._failures = 0
        self._error: str | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def target(self) -> SyncTarget | None:
        return self._target

    @property
    def wanted(self) -> SyncDaemon | None:
        return wanted_daemon(self._target, master=self._master)

    def configure(self, target: SyncTarget | None, *, master: bool) -> None:
        """Set (or, with None, drop) the target, and whether its instance is MASTER now."""
        self._target = target
        self._master = master
        self._failures = 0
        self._wake.set()

    def vrrp_transitioned(self, instance: str, *, master: bool) -> None:
        """A VRRP instance changed state (``master``: to MASTER); only the followed one matters."""
        if self._target is not None and instance == self._target.vrrp_instance:
            self._master = master
            self._failures = 0
            self._wake.set()

    async def run(self) -> None:
        """Apply at every change, after a failure with backoff, and periodically."""
        while True:
            self._wake.clear()
            ok = await self.apply()
            try:
                async with asyncio.timeout(self._resync_s if ok else self._retry_delay()):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _retry_delay(self) -> float:
        doubled = self._retry_s * 2.0 ** max(self._failures - 1, 0)
        return min(doubled, max(self._resync_s, self._retry_s))

    async def apply(self) -> bool:
        """One pass: read the kernel, change what differs. Returns whether it succeeded."""
        async with self._lock:
            wanted = self.wanted
            operation: DaemonOperation | None = None
            try:
                backend = await self._connect()
                running = await backend.sync_daemons()
                self._adopt(wanted, running)
                for operation in plan(wanted, running, frozenset(self._owned)):
                    await self._execute(backend, operation)
            except KernelError as exc:
                self._failed(exc, operation, wanted)
                self._report(wanted, ok=False)
                return False
            self._failures = 0
            self._error = None
            self._report(wanted, ok=True)
            return True

    def _report(self, wanted: SyncDaemon | None, *, ok: bool) -> None:
        if self._on_pass is not None:
            self._on_pass(wanted.state.name.lower() if wanted else None, ok)

    async def _connect(self) -> SyncDaemonBackend:
        if self._backend is None:
            self._backend = await self._open_backend()
        return self._backend

    def _adopt(self, wanted: SyncDaemon | None, running: Sequence[SyncDaemon]) -> None:
        for daemon in running:
            if wanted is not None and daemon.satisfies(wanted) and daemon.state not in self._owned:
                self._owned[daemon.state] = daemon
                self._log("adopt", daemon)

    async def _execute(self, backend: SyncDaemonBackend, operation: DaemonOperation) -> None:
        match operation:
            case StopDaemon(daemon=daemon):
                with contextlib.suppress(NotFound):  # stopped meanwhile: what we wanted
                    await backend.stop_sync_daemon(daemon.state)
                self._owned.pop(daemon.state, None)
                self._log("stop", daemon)
            case StartDaemon(daemon=daemon):
                await backend.start_sync_daemon(daemon)
                self._owned[daemon.state] = daemon
                self._log("start", daemon)
            case _:
                assert_never(operation)

    def _log(self, action: str, daemon: SyncDaemon) -> None:
        log.info(
            "ipvs.sync_daemon",
            action=action,
            state=daemon.state.name.lower(),
            interface=daemon.interface,
            sync_id=daemon.sync_id,
            vrrp_instance=self._target.vrrp_instance if self._target else None,
            vrrp_master=self._master,
        )

    def _failed(
        self, exc: KernelError, operation: DaemonOperation | None, wanted: SyncDaemon | None
    ) -> None:
        self._failures += 1
        self._error = str(exc)
        daemon = operation.daemon if operation is not None else wanted
        log.error(
            "ipvs.sync_daemon_error",
            action=_action(operation),
            state=daemon.state.name.lower() if daemon else None,
            interface=daemon.interface if daemon else None,
            sync_id=daemon.sync_id if daemon else None,
            error=str(exc),
            retry_in_s=self._retry_delay(),
        )
        if self._backend is not None and operation is None:
            # The read failed: the connection itself may be broken; reopen next time.
            self._backend.close()
            self._backend = None

    async def status(self) -> SyncDaemonStatus:
        """The target, the wanted role and the kernel's daemons read now."""
        async with self._lock:
            wanted = self.wanted
            running: tuple[SyncDaemon, ...] | None = None
            error = self._error
            if self._target is not None or self._owned:
                try:
                    running = tuple(await (await self._connect()).sync_daemons())
                except KernelError as exc:
                    error = str(exc)
            return SyncDaemonStatus(self._target, wanted.state if wanted else None, running, error)

    async def stop(self) -> None:
        """Stop the daemons this controller started or adopted, and close the backend.

        Call after the `run()` task is cancelled.
        """
        async with self._lock:
            for state, daemon in sorted(self._owned.items()):
                try:
                    await (await self._connect()).stop_sync_daemon(state)
                    self._log("stop", daemon)
                except NotFound:
                    pass
                except KernelError as exc:
                    log.error("ipvs.sync_daemon_error", action="stop", error=str(exc))
            self._owned.clear()
            if self._backend is not None:
                self._backend.close()
                self._backend = None
