"""One daemon per host: an exclusive lock taken before any kernel write.

A second ``ipvsd run`` used to program IPVS before it found the control socket
taken, and its failed start then ran ``cleanup_on_exit`` over the running
daemon's services. Now the first thing `Daemon.run` does is take this lock;
a second daemon exits with a one-line error and has touched nothing.

"Host" means network namespace: IPVS tables, addresses and VRRP are all per
namespace, and a test bed or a lab runs one director per namespace on one
machine. The lock file is therefore named after the namespace's inode
(``/proc/self/ns/net``), under the runtime directory (``/run/ipvsd`` by
default, systemd's ``RuntimeDirectory=``). `flock` locks die with their
process, so a crashed daemon never leaves a stale lock; the file is never
removed (removing it would let two daemons lock two different files).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ipvsd.errors import IpvsdError

DEFAULT_RUNTIME_DIR = Path("/run/ipvsd")


class AlreadyRunning(IpvsdError):
    """Another ipvsd holds the lock for this network namespace."""


def lock_path(runtime_dir: Path) -> Path:
    """The lock file for this process's network namespace."""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:  # no /proc: one lock for the whole host
        return runtime_dir / "ipvsd.lock"
    return runtime_dir / f"ipvsd-netns-{netns}.lock"


class HostLock:
    """The exclusive lock; `acquire` (again: a no-op while held), `release` at exit (or
    let the process end)."""

    def __init__(self, runtime_dir: Path = DEFAULT_RUNTIME_DIR) -> None:
        self.path = lock_path(runtime_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record our pid in it.

        Raises:
            AlreadyRunning: another ipvsd holds it (its pid is in the message).
            IpvsdError: the lock file cannot be created.
        """
        if self._fd is not None:
            return  # held already (`ipvsd.daemon.early` took it)
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise IpvsdError(f"cannot create the lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise AlreadyRunning(
                f"another ipvsd is already running in this network namespace{who}; "
                f"it holds {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next daemon start (closing the file drops the lock)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
