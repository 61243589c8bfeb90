"""Notify hooks: run the operator's script on each VRRP transition, keepalived-style.

keepalived runs ``notify`` scripts as ``SCRIPT TYPE NAME STATE PRIORITY``,
where TYPE is ``INSTANCE`` (or ``GROUP``), NAME the instance's name, STATE one
of ``MASTER``, ``BACKUP``, ``FAULT``, ``STOP``, and PRIORITY its priority.
Operators' existing scripts parse exactly that, so ipvsd passes the same
arguments. Beside it, ``notify_master`` / ``notify_backup`` / ``notify_fault`` /
``notify_stop`` are argv lists run as they are, with no arguments added, for
their state only; keepalived runs the state's own program first, then
``notify`` (`notify_argvs`, pure). A sync group runs its programs once per
group transition (``GROUP NAME STATE 0``: keepalived passes priority 0 for a
group), an instance for each of its own.

A hook must never hold VRRP up or take it down, so (``ipvsd.process``, shared
with exec health checks):

* it runs without blocking the loop (``ipvsd.process.run_bounded``);
* it gets ``/dev/null`` as stdin, and its stdout and stderr go to one pipe,
  of which only the last `OUTPUT_LIMIT` bytes are kept, for the log;
* it runs in a session and process group of its own (``start_new_session``),
  and when it exits or times out ``killpg(SIGKILL)`` takes whatever it left
  in that group, which is then reaped: no orphans left running, one per
  transition, and no zombies;
* every failure is a value: `run_notify` returns a `NotifyResult` whether the
  script exits 0, exits non-zero, hangs, or does not exist.

One instance's (or group's) calls run one after another, in the order of its transitions,
never two at once (`NotifyQueue`: a queue and one worker task per instance),
so a script sees BACKUP, MASTER, STOP in that order even if MASTER's run is
slow; queuing never waits. The instance's last call is STOP (keepalived
``notify_stop``), on shutdown and when a reload removes the instance; the
queue is drained, within `NotifyQueue.close`'s bound, before the daemon goes.

After a script exits, its output is read for at most `DRAIN_S` more seconds: a
background process it started may still hold the pipe, and is then left alone
(its later writes fail with EPIPE). Unlike keepalived, a background process
it leaves in its group is killed when it exits: a script that must start
long-lived work hands it to the service manager (``systemctl start``,
``systemd-run``). A process that leaves the group (``setsid``) escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from ipvsd.process import cannot_run, log_outcome, run_bounded
from ipvsd.vrrp.machine import VrrpState

__all__ = [
    "NOTIFY_STATES",
    "NotifyQueue",
    "NotifyResult",
    "NotifySettings",
    "notify_argvs",
    "notify_state",
    "run_notify",
]

log = structlog.get_logger("ipvsd.vrrp.notify")

#: The STATE argument values keepalived passes.
NOTIFY_STATES = frozenset({"MASTER", "BACKUP", "FAULT", "STOP"})
#: Bytes of combined stdout/stderr kept (the tail).
OUTPUT_LIMIT = 4096
#: Seconds to keep reading output after the script has exited.
DRAIN_S = 1.0

Kind = Literal["INSTANCE", "GROUP"]
"""keepalived's TYPE argument: who transitioned."""


def notify_state(state: VrrpState) -> str:
    """keepalived's STATE argument: leaving for good (INIT: shutdown, removal) is STOP."""
    return "STOP" if state is VrrpState.INIT else state.value


class NotifySettings(Protocol):
    """The notify fields an instance and a sync group share (their config models)."""

    @property
    def notify(self) -> str | None: ...
    @property
    def notify_master(self) -> tuple[str, ...] | None: ...
    @property
    def notify_backup(self) -> tuple[str, ...] | None: ...
    @property
    def notify_fault(self) -> tuple[str, ...] | None: ...
    @property
    def notify_stop(self) -> tuple[str, ...] | None: ...


def notify_argvs(
    settings: NotifySettings, kind: Kind, name: str, state: str, priority: int
) -> list[tuple[str, ...]]:
    """The programs to run for one transition, in keepalived's order: the state's own
    (``notify_master`` ...) as written, then ``notify TYPE NAME STATE PRIORITY``.

    Raises:
        ValueError: ``state`` is not one of `NOTIFY_STATES` (a bug in the caller).
    """
    if state not in NOTIFY_STATES:
        raise ValueError(f"notify state must be one of {sorted(NOTIFY_STATES)}, not {state!r}")
    own = {
        "MASTER": settings.notify_master,
        "BACKUP": settings.notify_backup,
        "FAULT": settings.notify_fault,
        "STOP": settings.notify_stop,
    }[state]
    argvs = [tuple(own)] if own else []
    if settings.notify is not None:
        argvs.append((settings.notify, kind, name, state, str(priority)))
    return argvs


@dataclass(frozen=True, slots=True)
class NotifyResult:
    """What happened to one notify run.

    Attributes:
        argv: the command as run.
        returncode: the exit status (negative: killed by that signal); None if
            the script timed out or could not be started.
        duration_s: wall time from start to reaping, in seconds.
        output: the last `OUTPUT_LIMIT` bytes of stdout and stderr, decoded
            (invalid UTF-8 replaced).
        timed_out: the script ran past the timeout and its process group was killed.
        error: why the script could not be started (missing, not executable), else None.
    """

    argv: tuple[str, ...]
    returncode: int | None
    duration_s: float
    output: str = ""
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The script ran and exited 0."""
        return self.returncode == 0


async def run_notify(
    argv0: str,
    instance: str,
    state: str,
    priority: int,
    *,
    timeout: float = 10,  # noqa: ASYNC109 - the script's limit, enforced with killpg
) -> NotifyResult:
    """Run ``argv0 INSTANCE <instance> <state> <priority>`` and wait for it, up to ``timeout``.

    Args:
        argv0: the script (a path, or a name looked up in PATH).
        instance: the VRRP instance's name.
        state: ``MASTER``, ``BACKUP``, ``FAULT`` or ``STOP``.
        priority: the instance's priority, passed as a decimal string.
        timeout: seconds before the script's whole process group is killed.

    Returns:
        The outcome; this never raises for the script's own failures.

    Raises:
        ValueError: ``state`` is not one of `NOTIFY_STATES` (a bug in the caller).
    """
    if state not in NOTIFY_STATES:
        raise ValueError(f"notify state must be one of {sorted(NOTIFY_STATES)}, not {state!r}")
    argv = (argv0, "INSTANCE", instance, state, str(priority))
    return await run_argv(argv, "INSTANCE", instance, state, timeout=timeout)


async def run_argv(
    argv: tuple[str, ...],
    kind: Kind,
    name: str,
    state: str,
    *,
    timeout: float = 10,  # noqa: ASYNC109 - the script's limit, enforced with killpg
) -> NotifyResult:
    """Run one notify program (`notify_argvs`) and wait for it, up to ``timeout`` seconds.

    `kind`, `name` and `state` are for the log only. This never raises for the
    program's own failures: see `NotifyResult`.
    """
    outcome = await run_bounded(
        argv, timeout_s=timeout, tail_bytes=OUTPUT_LIMIT, drain_s=DRAIN_S, kill_group_on_exit=True
    )
    who = {kind.lower(): name}
    log_outcome(log, "vrrp.notify", outcome, timeout_s=timeout, **who, state=state, program=argv[0])
    if outcome.error is not None:
        return NotifyResult(
            argv, None, outcome.duration_s, error=cannot_run(argv[0], outcome.error)
        )
    return NotifyResult(
        argv=argv,
        returncode=outcome.returncode,
        duration_s=outcome.duration_s,
        output=outcome.output.decode(errors="replace"),
        timed_out=outcome.timed_out,
    )


Runner = Callable[[tuple[str, ...], Kind, str, str], Awaitable[NotifyResult]]
"""`run_argv`'s signature (argv, kind, name, state); tests pass a stand-in."""


class NotifyQueue:
    """One instance's (or sync group's) notify calls, run in order by one worker task.

    Args:
        name: the instance's or group's name (the NAME argument).
        kind: ``INSTANCE`` or ``GROUP``.
        runner: `run_argv`, or a stand-in in tests.
    """

    def __init__(self, name: str, kind: Kind = "INSTANCE", runner: Runner = run_argv) -> None:
        self.name = name
        self.kind: Kind = kind
        self._run = runner
        self._queue: asyncio.Queue[tuple[tuple[str, ...], str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def put(self, settings: NotifySettings, state: str, priority: int) -> None:
        """Queue the programs `settings` has for `state` (`notify_argvs`); never waits.

        Raises:
            ValueError: ``state`` is not one of `NOTIFY_STATES` (a bug in the caller).
        """
        argvs = notify_argvs(settings, self.kind, self.name, state, priority)
        for argv in argvs:
            self._queue.put_nowait((argv, state))
        if argvs and (self._worker is None or self._worker.done()):
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self, timeout: float = 15) -> None:  # noqa: ASYNC109 - a bound, then cancel
        """Wait up to `timeout` seconds for the queued calls, then stop the worker
        (a running script's process group is killed)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def _work(self) -> None:
        while True:
            argv, state = await self._queue.get()
            try:
                await self._run(argv, self.kind, self.name, state)
            except Exception as exc:  # a bug in the runner must not stop later calls
                log.error(
                    "vrrp.notify_failed",
                    state=state,
                    error=repr(exc),
                    **{self.kind.lower(): self.name},
                )
            finally:
                self._queue.task_done()
