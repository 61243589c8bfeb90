"""Run a service's ``quorum_up`` / ``quorum_down`` commands, never holding the loop up.

A quorum transition is found while the desired table is built, in the event
loop that also times VRRP, so the command cannot run there: `QuorumHooks`
queues it and one worker task runs the queue in order (``ipvsd.process``:
its own process group, killed after `TIMEOUT_S`, output kept for the log).
In order, so that a service's ``quorum_down`` and the ``quorum_up`` that
follows it never overtake each other, whatever their run times.

`close` waits (within a bound) for what is queued: with ``omega`` the daemon
queues each service's ``quorum_down`` as it stops, and these must run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from ipvsd.config.model import ServiceConfig
from ipvsd.health.quorum import QuorumState
from ipvsd.model import ServiceKey
from ipvsd.process import ProcessOutcome, log_outcome, run_bounded

log = structlog.get_logger("ipvsd.health")

TIMEOUT_S = 30.0
"""Seconds a quorum command may run before its process group is killed (keepalived
kills its scripts after a while too; none of them should take long)."""
OUTPUT_LIMIT = 4096
"""Bytes of a command's output kept for the log (the last ones)."""

Runner = Callable[[Sequence[str]], Awaitable[ProcessOutcome]]


async def _run(argv: Sequence[str]) -> ProcessOutcome:
    return await run_bounded(
        argv, timeout_s=TIMEOUT_S, tail_bytes=OUTPUT_LIMIT, kill_group_on_exit=False
    )


class QuorumHooks:
    """Logs quorum transitions and runs their commands, each after the one before.

    Args:
        runner: runs one argv (`run_bounded` with this module's limits; tests pass a fake).
    """

    def __init__(self, runner: Runner = _run) -> None:
        self._run = runner
        self._tail: asyncio.Task[None] | None = None
        """The command queued last: the next one starts after it."""
        self._pending: set[asyncio.Task[None]] = set()

    def changed(
        self, key: ServiceKey, service: ServiceConfig, state: QuorumState, changed: bool
    ) -> None:
        """A service gained or lost quorum (`changed`): log it, queue its command (never
        waits); a first computation that kept quorum is no transition."""
        if not changed:
            return
        event = "up" if state.up else "down"
        log.info(
            "ipvs.quorum",
            service=str(key),
            quorum=event,
            live_weight=state.live_weight,
            needed=service.quorum,
        )
        command = service.quorum_up if state.up else service.quorum_down
        if command is not None:
            self.run(key, event, command)

    def run(self, key: ServiceKey, event: str, argv: tuple[str, ...]) -> None:
        """Queue `argv`, the `event` (up / down) command of service `key`; never waits."""
        task = asyncio.get_running_loop().create_task(
            self._in_turn(self._tail, str(key), event, argv)
        )
        self._tail = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self, timeout: float = 15) -> None:  # noqa: ASYNC109 - a bound, then cancel
        """Wait up to `timeout` seconds for the queued commands, then cancel the rest
        (a running command's process group is killed)."""
        pending = set(self._pending)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _in_turn(
        self, before: asyncio.Task[None] | None, service: str, event: str, argv: tuple[str, ...]
    ) -> None:
        if before is not None:
            await asyncio.wait([before])  # only the order matters, not how it ended
        try:
            outcome = await self._run(argv)
        except Exception as exc:  # a bug in the runner must not stop later commands
            log.error("ipvs.quorum_command_failed", service=service, quorum=event,
                      command=argv[0], error=repr(exc))  # fmt: skip
            return
        log_outcome(
            log,
            "ipvs.quorum_command",
            outcome,
            timeout_s=TIMEOUT_S,
            service=service,
            quorum=event,
            program=argv[0],
        )
