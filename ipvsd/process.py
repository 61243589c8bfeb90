"""Run an operator's command without letting it hold ipvsd up or leave processes behind.

Exec health checks (``ipvsd.health.checks``) and VRRP notify hooks
(``ipvsd.vrrp.notify``) both run commands ipvsd does not control, so
`run_bounded` does it one way for both:

* it runs without blocking the loop (its exit is awaited, see below);
* it gets ``/dev/null`` as stdin, and its stdout and stderr go to one pipe,
  of which only the last ``tail_bytes`` bytes are kept;
* it runs in a session and process group of its own (``start_new_session``);
  on timeout, or when the caller is cancelled, the whole group gets
  ``killpg(SIGKILL)`` and the command is reaped: no orphans left running, no
  zombies;
* with ``kill_group_on_exit`` (exec health checks) the group is killed when
  the command exits by itself too: a child it left running in the background
  (``sleep 100 &``, ``nohup``, a subshell's child) dies with it, so a check
  run every interval cannot pile up processes. Without it (the default, for
  notify hooks, whose scripts may start a daemon) such children are left be;
* with ``user`` it runs as that user: its uid, primary gid and (when ipvsd
  is root) its supplementary groups, set in the child before exec
  (keepalived's ``vrrp_script`` ``user``);
* a command that cannot be started is a value (`ProcessOutcome.error`), not
  an exception.

The group is killed *before* the command is reaped. The group's id is the
command's pid, and while the command is an unreaped zombie that number cannot
be given to a new process, so ``killpg`` can never reach an unrelated group.
That is why the command is not an ``asyncio`` subprocess, whose child watcher
reaps it as soon as it exits: it is a ``subprocess.Popen``, its exit is
awaited through a pidfd (``os.pidfd_open``, readable once the process has
exited, without reaping it; Linux 5.3), and it is reaped after the kill with a
``waitpid`` that returns at once.

The group's orphans are reparented to the nearest subreaper (systemd, init),
which reaps them once killed. A process that leaves the group (``setsid``,
``systemd-run``) escapes every kill.

The pipe is our own ``os.pipe()``: a background child of the command may hold
it open. After the command exits, its output is read for at most ``drain_s``
more seconds. Killed children close their ends at once; children left be keep
theirs, and their later writes fail with EPIPE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ProcessOutcome", "run_bounded"]

_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """What happened to one run of a command.

    Attributes:
        returncode: the exit status (negative: killed by that signal); None if
            the command timed out or could not be started.
        output: the last ``tail_bytes`` bytes of its stdout and stderr.
        duration_s: wall time from the call to the command being reaped and
            its output read, in seconds.
        timed_out: it ran past ``timeout_s`` and its process group was killed.
        error: why it could not be started (missing, not executable), else None.
    """

    returncode: int | None
    output: bytes
    duration_s: float
    timed_out: bool = False
    error: OSError | None = None


def cannot_run(argv0: str, error: OSError) -> str:
    """The one-line reason a command could not be started."""
    return f"cannot run {argv0!r}: {error.strerror or error}"


def log_outcome(
    log: Any, event: str, outcome: ProcessOutcome, *, timeout_s: float | None, **fields: object
) -> None:
    """Log how one `run_bounded` run ended, the same way for every kind of hook:
    ``EVENT`` (info) when it exited 0, ``EVENT_timeout`` when it was killed for
    running too long, ``EVENT_failed`` when it exited non-zero or could not start
    (warnings). Each carries `fields` (who ran it, for what), the duration and the
    tail of its output."""
    fields = {
        **fields,
        "duration_s": round(outcome.duration_s, 3),
        "output": outcome.output.decode(errors="replace"),
    }
    if outcome.error is not None:
        program = str(fields.get("program", "?"))
        log.warning(f"{event}_failed", error=cannot_run(program, outcome.error), **fields)
    elif outcome.timed_out:
        log.warning(f"{event}_timeout", timeout_s=timeout_s, **fields)
    elif outcome.returncode != 0:
        log.warning(f"{event}_failed", returncode=outcome.returncode, **fields)
    else:
        log.info(event, returncode=0, **fields)


async def run_bounded(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None,
    tail_bytes: int = 4096,
    drain_s: float = 1.0,
    on_phase: Callable[[str], None] | None = None,
    kill_group_on_exit: bool = False,
    user: str | None = None,
) -> ProcessOutcome:
    """Run ``argv`` in a new session and wait for it, up to ``timeout_s``.

    Args:
        argv: the command and its arguments (``argv[0]``: a path, or a name
            looked up in PATH).
        env: its whole environment; None inherits ours.
        timeout_s: seconds before its whole process group is killed; None sets
            no limit of its own (the caller's deadline then cancels this call,
            which kills the group just the same).
        tail_bytes: how many bytes of output to keep (the last ones).
        drain_s: seconds to keep reading output after the command has exited.
        on_phase: told ``running`` once the command has started, ``reading
            output`` once it has exited, and ``killed`` when its group is killed
            (on timeout or cancellation); for timeout reasons.
        kill_group_on_exit: also kill the command's process group when it
            exits by itself, so that nothing it started outlives it (a timeout
            or a cancellation always kills the group).
        user: run as this user (name); None: as ipvsd. An unknown user is an
            `ProcessOutcome.error` like a missing command.

    Returns:
        The outcome; this never raises for the command's own failures.

    Raises:
        asyncio.CancelledError: the caller was cancelled (the group is killed
            and the command reaped first).
    """
    report = on_phase or (lambda phase: None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        uid, gid, groups = _identity(user)
    except KeyError:
        error = OSError(f"no such user: {user}")
        return ProcessOutcome(None, b"", loop.time() - started, error=error)
    read_fd, write_fd = os.pipe()
    try:
        # Popen forks and execs synchronously, as create_subprocess_exec does.
        proc = subprocess.Popen(  # noqa: ASYNC220
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    except OSError as exc:
        os.close(read_fd)
        return ProcessOutcome(None, b"", loop.time() - started, error=exc)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)

    tail = bytearray()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport: asyncio.BaseTransport | None = None
    collector: asyncio.Task[None] | None = None
    timed_out = False
    exited = _Exit(loop, proc.pid)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        collector = asyncio.create_task(_collect(reader, tail, tail_bytes))
        report("running")
        try:
            async with asyncio.timeout(timeout_s):
                await exited.wait()
        except TimeoutError:
            timed_out = True
            report("killed")
            _kill_group(proc.pid)
            await exited.wait()
        else:
            report("reading output")
            if kill_group_on_exit:
                _kill_group(proc.pid)  # its leftovers; it is a zombie, not yet reaped
        proc.wait()  # exited: returns at once
        await asyncio.wait({collector}, timeout=drain_s)
    except BaseException:  # cancelled (the caller's deadline, a shutdown): leave nothing running
        if proc.returncode is None:  # once reaped, its pid may be another process's
            report("killed")
            _kill_group(proc.pid)
            await exited.wait()
            proc.wait()
        raise
    finally:
        exited.close()
        if collector is not None:
            collector.cancel()
        if transport is not None:
            transport.close()
        else:
            pipe.close()
    return ProcessOutcome(
        returncode=None if timed_out else proc.returncode,
        output=bytes(tail),
        duration_s=loop.time() - started,
        timed_out=timed_out,
    )


def _identity(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """Popen's ``user``, ``group``, ``extra_groups`` for `user`; KeyError: no such user."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    # setgroups needs CAP_SETGID; without it our own groups stay (and must).
    groups = os.getgrouplist(user, entry.pw_gid) if os.geteuid() == 0 else None
    return entry.pw_uid, entry.pw_gid, groups


class _Exit:
    """The command's exit, awaitable without reaping it (a pidfd, else polling).

    Polling (``waitid(WNOWAIT)``, every 50 ms) is for kernels older than 5.3
    and sandboxes whose seccomp filter refuses ``pidfd_open``.
    """

    _POLL_S = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        self._loop = loop
        self._pid = pid
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # a kernel older than 5.3
            self._pidfd = None

    async def wait(self) -> None:
        """Return once the process has exited (it is left a zombie)."""
        if self._pidfd is None:
            while not self._exited():  # noqa: ASYNC110 (nothing to wake on: no pidfd)
                await asyncio.sleep(self._POLL_S)
            return
        exited = self._loop.create_future()
        self._loop.add_reader(self._pidfd, _set_result, exited)
        try:
            await exited
        finally:
            self._loop.remove_reader(self._pidfd)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _exited(self) -> bool:
        # WNOWAIT: look, but leave it a zombie until the group is killed.
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self._pid, flags) is not None


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _collect(reader: asyncio.StreamReader, tail: bytearray, limit: int) -> None:
    """Read to EOF, keeping the last ``limit`` bytes in ``tail``."""
    while chunk := await reader.read(_CHUNK):
        tail += chunk
        del tail[:-limit]


def _kill_group(pgid: int) -> None:
    """SIGKILL the command's process group (its pid: it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


#: Added to the nice value of a thread doing bulk work (a 10,000-service scrape):
#: it yields the CPU to the advert sender and the event loop, and needs no
#: privilege (raising one's own nice value never does; the unit forbids realtime).
BACKGROUND_NICE = 10


def lower_this_thread_priority(by: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value by `by` (Linux: nice is per thread)."""
    tid = threading.get_native_id()
    # Refused (a seccomp filter): the thread runs at normal priority, as before.
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + by))
