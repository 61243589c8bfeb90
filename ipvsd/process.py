"""Run an operator's command without letting it hold ipvsd up or leave processes behind.

Exec health checks (``ipvsd.health.checks``) and VRRP notify hooks
(``ipvsd.vrrp.notify``) both run commands ipvsd does not control, so
`run_bounded` does it one way for both:

* it runs without blocking the loop (``asyncio.create_subprocess_exec``);
* it gets ``/dev/null`` as stdin, and its stdout and stderr go to one pipe,
  of which only the last ``tail_bytes`` bytes are kept;
* it runs in a session and process group of its own (``start_new_session``),
  so that on timeout, or when the caller is cancelled, ``killpg(SIGKILL)``
  takes its children too, and it is then reaped: no orphans left running, no
  zombies;
* a command that cannot be started is a value (`ProcessOutcome.error`), not
  an exception.

The pipe is our own ``os.pipe()``, not asyncio's ``PIPE``: on Python 3.11
``Process.wait()`` also waits for its pipes to close, which a background child
of the command may hold open forever. After the command exits, its output is
read for at most ``drain_s`` more seconds; such a child is then left alone
(its later writes fail with EPIPE). A process that leaves the group
(``setsid``) escapes the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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


async def run_bounded(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None,
    tail_bytes: int = 4096,
    drain_s: float = 1.0,
    on_phase: Callable[[str], None] | None = None,
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

    Returns:
        The outcome; this never raises for the command's own failures.

    Raises:
        asyncio.CancelledError: the caller was cancelled (the group is killed
            and the command reaped first).
    """
    report = on_phase or (lambda phase: None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            start_new_session=True,
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
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        collector = asyncio.create_task(_collect(reader, tail, tail_bytes))
        report("running")
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            timed_out = True
            report("killed")
            _kill_group(proc.pid)
            await proc.wait()
        else:
            report("reading output")
        await asyncio.wait({collector}, timeout=drain_s)
    except BaseException:  # cancelled (the caller's deadline, a shutdown): leave nothing running
        if proc.returncode is None:  # once reaped, its pid may be another process's
            report("killed")
            _kill_group(proc.pid)
            await proc.wait()
        raise
    finally:
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


async def _collect(reader: asyncio.StreamReader, tail: bytearray, limit: int) -> None:
    """Read to EOF, keeping the last ``limit`` bytes in ``tail``."""
    while chunk := await reader.read(_CHUNK):
        tail += chunk
        del tail[:-limit]


def _kill_group(pgid: int) -> None:
    """SIGKILL the command's process group (its pid: it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
