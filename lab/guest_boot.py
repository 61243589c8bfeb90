"""The host side of one guest-kernel run, shared by :mod:`lab.uml` and :mod:`lab.qemu`.

A guest kernel (User-Mode Linux, or a Debian kernel under qemu) is started as a
process in its own process group with its console on our pipe. Its PID 1 (the
script :mod:`lab.uml_guest` writes) prints :data:`~lab.uml_guest.READY_MARK`
just before the command starts and writes the command's exit status to
``RUNDIR/rc`` on the shared host filesystem before it powers off.

:func:`boot` streams the console (minus the guest's harmless boot noise),
enforces the timeout by killing the guest's process group (UML runs helper
processes; qemu is one), and returns the status file's number. No status file
means the guest died (panic, OOM, killed): an error, never a success.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from lab.uml_guest import READY_MARK

EXIT_NOT_INSTALLED = 2
EXIT_TIMEOUT = 124
EXIT_GUEST_FAILED = 125

PANIC_MARK = "Kernel panic - not syncing"
# printk's "[    3.917646] " prefix (qemu's kernel prints it; UML's quiet console does not).
_KERNEL_TIME = re.compile(r"^\[\s*\d+\.\d+\] ")

LineSink = Callable[[str], None]


def print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``--env NAME=VALUE`` arguments as a mapping.

    Raises:
        argparse.ArgumentTypeError: an item is not NAME=VALUE.
    """
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind through the finally blocks that kill the guest."""
    raise SystemExit(128 + signum)


@dataclass(frozen=True, slots=True)
class GuestKind:
    """How a guest kernel names itself in our messages, and what it prints for nothing."""

    prog: str
    """Prefix of our own lines, e.g. ``lab.uml``."""
    name: str
    """The guest in prose, e.g. ``UML`` or ``qemu``."""
    noise: tuple[str, ...] = ()
    """Console line prefixes every boot prints and that mean nothing for us."""


class Console:
    """Turns guest console bytes into clean lines (CRLF, boot noise, markers)."""

    def __init__(self, kind: GuestKind, sink: LineSink, started: float, argv: Sequence[str]):
        self._kind = kind
        self._sink = sink
        self._started = started
        self._argv = argv
        self._buf = b""
        self.ready_at: float | None = None
        self.panicked = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            self._line(raw)

    def flush(self) -> None:
        if self._buf:
            self._line(self._buf)
            self._buf = b""

    def _line(self, raw: bytes) -> None:
        # The console ends lines with CRLF; a bare CR is a progress redraw: keep its end.
        line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
        if self._kind.noise and _KERNEL_TIME.sub("", line).startswith(self._kind.noise):
            return
        if line.startswith(READY_MARK):
            self.ready_at = time.monotonic()
            kver = line[len(READY_MARK) :].strip()
            self._sink(
                f"{self._kind.prog}: {self._kind.name} kernel {kver} up with IPVS in "
                f"{self.ready_at - self._started:.1f} s; running: {shlex.join(self._argv)}"
            )
            return
        if PANIC_MARK in line:
            self.panicked = True
        self._sink(line)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every guest runner takes, and its ``-- CMD [ARGS...]``."""
    parser.add_argument("--timeout", type=float, default=None, help="seconds, boot included")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")


def command_and_env(
    parser: argparse.ArgumentParser, ns: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    """The command and the ``--env`` of parsed `add_run_arguments` (usage errors exit 2);
    from here on SIGTERM ends the runner as an exit (its guest is cleaned up)."""
    command = list(ns.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error(f"missing command: {parser.prog} [options] -- CMD [ARGS...]")
    try:
        env = parse_env(ns.env)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    return command, env


def _exited_unreaped(pid: int) -> bool:
    """True once ``pid`` has exited; it stays a zombie so its pgid cannot be reused."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _wait_group_gone(pgid: int, limit: float = 10.0) -> None:
    """Wait until the killed guest's processes have left (they free its memory on the way out)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def boot(
    kind: GuestKind,
    cmdline: list[str],
    rundir: Path,
    argv: Sequence[str],
    sink: LineSink,
    timeout: float | None,
) -> int:
    """Run the guest ``cmdline`` to its end and return the command's exit status.

    Args:
        kind: names for our messages and the console noise to hide.
        cmdline: the guest process (``linux.uml ...``, ``qemu-system-x86_64 ...``).
        rundir: host directory the guest writes ``rc`` into.
        argv: the command the guest runs (for the "up" line only).
        sink: receives every console line and our own messages.
        timeout: seconds for boot plus command; None waits forever.

    Returns:
        The command's exit status, EXIT_TIMEOUT, or EXIT_GUEST_FAILED.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    console = Console(kind, sink, started, argv)
    proc = subprocess.Popen(
        cmdline,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the guest's helpers die with it
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    timed_out = False
    exited_at: float | None = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            eof = False
            while True:
                now = time.monotonic()
                if console.panicked and (deadline is None or deadline > now + 3):
                    deadline = now + 3  # a panicked guest may hang: give it 3 s to exit
                if deadline is not None and now >= deadline:
                    timed_out = not console.panicked
                    break
                if exited_at is None and _exited_unreaped(proc.pid):
                    exited_at = now
                if exited_at is not None and (eof or now - exited_at > 2):
                    break  # the guest is gone (a helper may still hold the pipe: 2 s grace)
                if eof:
                    time.sleep(0.05)
                elif sel.select(timeout=0.5):
                    chunk = os.read(fd, 65536)
                    if chunk:
                        console.feed(chunk)
                    else:
                        eof = True
                        sel.unregister(fd)
            console.flush()
    finally:
        # The leader is not reaped yet, so its pgid cannot have been reused: these
        # are the guest's own processes (the kernel and its helpers), nothing else.
        _kill_group(proc.pid)
        proc.wait()
        proc.stdout.close()
        _wait_group_gone(proc.pid)
    elapsed = time.monotonic() - started
    if timed_out:
        sink(
            f"{kind.prog}: timeout: still running after {timeout:g} s; "
            f"killed {kind.name} (pgid {proc.pid})"
        )
        return EXIT_TIMEOUT
    return _read_status(kind, rundir, proc.returncode, elapsed, console, sink)


def _read_status(
    kind: GuestKind, rundir: Path, rc: int, elapsed: float, console: Console, sink: LineSink
) -> int:
    try:
        text = (rundir / "rc").read_text().strip()
        status = int(text)
    except (OSError, ValueError):
        why = "kernel panic" if console.panicked else f"{kind.name} exit status {rc}"
        stage = "before the command started" if console.ready_at is None else "during the command"
        sink(
            f"{kind.prog}: {kind.name} died {stage} without reporting the command's "
            f"exit status ({why})"
        )
        return EXIT_GUEST_FAILED
    ran = 0.0 if console.ready_at is None else time.monotonic() - console.ready_at
    sink(
        f"{kind.prog}: command exited {status} after {ran:.1f} s "
        f"({kind.name} total {elapsed:.1f} s)"
    )
    return status
