"""Run one command on a Linux kernel that has IPVS.

Usage::

    python -m lab.uml [--mem 768M] [--timeout SECONDS] [--uml] [--keep] \\
        [--env NAME=VALUE ...] -- CMD [ARGS...]

Theory of operation
-------------------
If the running kernel already has IPVS (``/proc/net/ip_vs`` exists, or
``modprobe ip_vs`` makes it appear) the command simply runs here. Otherwise a
User-Mode Linux kernel (Debian's ``user-mode-linux`` package, ``linux.uml``) is
booted *once* with the host filesystem as its root (hostfs), so the project's
venv and code run unchanged inside it. PID 1 is a generated ``/bin/sh`` script
that:

1. mounts proc, sysfs, a tmpfs on ``/run`` (``ip netns`` keeps its bind mounts
   there), devpts and a tmpfs on ``/dev/shm`` (``/dev`` is already devtmpfs);
   host ``/tmp`` is left visible on purpose;
2. points ``/proc/sys/kernel/modprobe`` at a wrapper adding ``-d DIR`` (where
   ``DIR/lib/modules`` links to ``/usr/lib/uml/modules``), so the kernel's own
   ``request_module()`` finds the UML modules, and preloads ``ip_vs``, every
   scheduler module, ``veth``, ``bridge`` and ``dummy`` in one modprobe call
   (process creation is slow inside UML);
3. brings ``lo`` up, sets the environment (the caller's ``PATH``, ``HOME``,
   ``PYTHON*``, ``PYTEST*``, ``IPVSD_*``, ``CI``, ... and ``IPVSD_UML=1``), cd's
   to the caller's cwd and runs the command with the console as stdout/stderr;
4. writes the command's exit status to a file on hostfs, syncs and powers off.

The host side streams the console (minus harmless boot noise), enforces the
timeout by killing the process group of the UML it started (UML runs helper
processes), reads the status file and returns it. No status file means UML
died (panic, OOM, killed): that is an error, never a success.

Exit codes of the CLI beyond the command's own: 2 (user-mode-linux missing or
bad usage), 124 (timeout), 125 (UML died without reporting a status).

The script itself is built by :mod:`lab.uml_guest`. The same is available as
:func:`run_with_ipvs` for the demo and benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from lab.uml_guest import READY_MARK, SYSTEM_PATH, UML_MODULES, guest_environment, prepare_rundir

EXIT_NOT_INSTALLED = 2
EXIT_TIMEOUT = 124
EXIT_UML_FAILED = 125

UML_BINARY = "linux.uml"
NOT_INSTALLED_MSG = "user-mode-linux is not installed: apt-get install user-mode-linux"
DEFAULT_MEM = "768M"

# Console lines that every boot prints and that mean nothing for us.
NOISE_PREFIXES = (
    "mmapper_init - find_iomem failed",
    "Failed to initialize ubd device 0",
    "SELinux: CONFIG_SECURITY_SELINUX_CHECKREQPROT_VALUE is non-zero",
    "SELinux: https://github.com/SELinuxProject/selinux-kernel/wiki/DEPRECATE-checkreqprot",
    "Powering off.",
    "reboot: System halted",
)
PANIC_MARK = "Kernel panic - not syncing"

LineSink = Callable[[str], None]


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def find_uml() -> str | None:
    """Return the path of ``linux.uml``, or None when user-mode-linux is not installed."""
    return shutil.which(UML_BINARY) or (
        "/usr/bin/linux.uml" if os.access("/usr/bin/linux.uml", os.X_OK) else None
    )


def host_has_ipvs() -> bool:
    """Tell whether the running kernel has IPVS, loading ``ip_vs`` if we are allowed to.

    Returns:
        True when ``/proc/net/ip_vs`` exists (possibly after a successful ``modprobe``).
    """
    proc = Path("/proc/net/ip_vs")
    if proc.exists():
        return True
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path=SYSTEM_PATH)
    if os.geteuid() != 0 or modprobe is None:
        return False
    try:
        done = subprocess.run(
            [modprobe, "-q", "ip_vs"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and proc.exists()


class _Console:
    """Turns UML console bytes into clean lines (CRLF, boot noise, markers)."""

    def __init__(self, sink: LineSink, started: float, argv: Sequence[str]) -> None:
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
        if line.startswith(NOISE_PREFIXES):
            return
        if line.startswith(READY_MARK):
            self.ready_at = time.monotonic()
            kver = line[len(READY_MARK) :].strip()
            self._sink(
                f"lab.uml: UML kernel {kver} up with IPVS in "
                f"{self.ready_at - self._started:.1f} s; running: {shlex.join(self._argv)}"
            )
            return
        if PANIC_MARK in line:
            self.panicked = True
        self._sink(line)


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
    """Wait until the killed UML helpers have left (UML frees its memory on the way out)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def run_in_uml(
    argv: Sequence[str],
    *,
    mem: str = DEFAULT_MEM,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    on_line: LineSink | None = None,
    keep_rundir: bool = False,
) -> int:
    """Boot User-Mode Linux once, run ``argv`` inside it, and return its exit status.

    Args:
        argv: command and arguments (resolved through the guest PATH).
        mem: UML memory size (``mem=`` kernel argument).
        timeout: seconds for boot plus command; None waits forever.
        env: extra environment for the command (on top of :func:`guest_environment`).
        cwd: directory for the command; defaults to ours.
        on_line: receives every console line; defaults to printing on stdout.
        keep_rundir: keep the generated init script and status file for debugging.

    Returns:
        The command's exit status, or EXIT_NOT_INSTALLED, EXIT_TIMEOUT, EXIT_UML_FAILED.
    """
    sink = on_line or _print_line
    uml = find_uml()
    if uml is None:
        sink(NOT_INSTALLED_MSG)
        return EXIT_NOT_INSTALLED
    if not UML_MODULES.is_dir():
        sink(f"lab.uml: {UML_MODULES} is missing: reinstall user-mode-linux")
        return EXIT_NOT_INSTALLED
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    rundir = Path(tempfile.mkdtemp(prefix="ipvsd-uml-"))
    umid = f"ipvsd-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        tty = on_line is None and sys.stdout.isatty()
        init = prepare_rundir(rundir, argv, workdir.resolve(), guest_environment(env, tty=tty))
        cmdline = [
            uml,
            f"mem={mem}",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "con=null",
            "con0=fd:0,fd:1",
            "quiet",
            f"umid={umid}",
            f"uml_dir={rundir / 'uml'}",
        ]
        sink(f"lab.uml: booting User-Mode Linux (mem={mem}, umid={umid})")
        status = _boot(cmdline, rundir, argv, sink, timeout)
    finally:
        # uml_dir= keeps UML's umid directory out of ~/.uml; remove a stray one anyway.
        shutil.rmtree(Path.home() / ".uml" / umid, ignore_errors=True)
        if keep_rundir:
            sink(f"lab.uml: kept {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)
    return status


def _boot(
    cmdline: list[str], rundir: Path, argv: Sequence[str], sink: LineSink, timeout: float | None
) -> int:
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    console = _Console(sink, started, argv)
    proc = subprocess.Popen(
        cmdline,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: UML's helpers die with it
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
                    deadline = now + 3  # a panicked UML may hang: give it 3 s to exit
                if deadline is not None and now >= deadline:
                    timed_out = not console.panicked
                    break
                if exited_at is None and _exited_unreaped(proc.pid):
                    exited_at = now
                if exited_at is not None and (eof or now - exited_at > 2):
                    break  # UML is gone (a helper may still hold the pipe: 2 s grace)
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
        # are UML's own processes (the kernel and its helpers), nothing else.
        _kill_group(proc.pid)
        proc.wait()
        proc.stdout.close()
        _wait_group_gone(proc.pid)
    elapsed = time.monotonic() - started
    if timed_out:
        sink(f"lab.uml: timeout: still running after {timeout:g} s; killed UML (pgid {proc.pid})")
        return EXIT_TIMEOUT
    return _read_status(rundir, proc.returncode, elapsed, console, sink)


def _read_status(
    rundir: Path, uml_rc: int, elapsed: float, console: _Console, sink: LineSink
) -> int:
    try:
        text = (rundir / "rc").read_text().strip()
        status = int(text)
    except (OSError, ValueError):
        why = "kernel panic" if console.panicked else f"UML exit status {uml_rc}"
        stage = "before the command started" if console.ready_at is None else "during the command"
        sink(f"lab.uml: UML died {stage} without reporting the command's exit status ({why})")
        return EXIT_UML_FAILED
    ran = 0.0 if console.ready_at is None else time.monotonic() - console.ready_at
    sink(f"lab.uml: command exited {status} after {ran:.1f} s (UML total {elapsed:.1f} s)")
    return status


def run_here(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run ``argv`` on the running kernel (which has IPVS); output is inherited.

    Returns:
        The command's exit status, or EXIT_TIMEOUT after killing it.
    """
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.Popen(list(argv), env=full_env, cwd=cwd)
    except OSError as exc:
        print(f"lab.uml: cannot run {argv[0]}: {exc}", flush=True)
        return 127
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"lab.uml: timeout after {timeout} s: killed {argv[0]} (pid {proc.pid})", flush=True)
        return EXIT_TIMEOUT
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def run_with_ipvs(
    argv: Sequence[str],
    *,
    mem: str = DEFAULT_MEM,
    timeout: float | None = None,
    force_uml: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    on_line: LineSink | None = None,
    keep_rundir: bool = False,
) -> int:
    """Run ``argv`` on a kernel with IPVS: this one if it has IPVS, else a UML kernel.

    Args:
        argv: command and arguments.
        mem: UML memory size.
        timeout: seconds allowed (boot included); None waits forever.
        force_uml: boot UML even when this kernel has IPVS.
        env: extra environment variables for the command.
        cwd: directory for the command; defaults to ours.
        on_line: UML console line sink (default: stdout). Native runs inherit stdout.
        keep_rundir: keep UML's generated files for debugging.

    Returns:
        The command's exit status, or one of EXIT_NOT_INSTALLED, EXIT_TIMEOUT, EXIT_UML_FAILED.
    """
    if not argv:
        raise ValueError("run_with_ipvs needs a command")
    if not force_uml and host_has_ipvs():
        print(
            f"lab.uml: this kernel ({os.uname().release}) has IPVS: running directly",
            flush=True,
        )
        return run_here(argv, timeout=timeout, env=env, cwd=cwd)
    return run_in_uml(
        argv,
        mem=mem,
        timeout=timeout,
        env=env,
        cwd=cwd,
        on_line=on_line,
        keep_rundir=keep_rundir,
    )


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill UML


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.uml",
        description="Run CMD on a kernel with IPVS (this one, or User-Mode Linux).",
    )
    parser.add_argument("--mem", default=DEFAULT_MEM, help="UML memory (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds, boot included")
    parser.add_argument("--uml", action="store_true", help="boot UML even if this kernel has IPVS")
    parser.add_argument("--keep", action="store_true", help="keep UML's generated files")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    ns = parser.parse_args(args)
    command = list(ns.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("missing command: python -m lab.uml [options] -- CMD [ARGS...]")
    try:
        env = _parse_env(ns.env)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run_with_ipvs(
        command, mem=ns.mem, timeout=ns.timeout, force_uml=ns.uml, env=env, keep_rundir=ns.keep
    )


if __name__ == "__main__":
    sys.exit(main())
