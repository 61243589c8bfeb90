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

The script itself is built by :mod:`lab.uml_guest`, and the console loop is
:mod:`lab.guest_boot`'s (both shared with :mod:`lab.qemu`). The same is
available as :func:`run_with_ipvs` for the demo and benchmarks.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.guest_boot import (
    EXIT_GUEST_FAILED,
    EXIT_NOT_INSTALLED,
    EXIT_TIMEOUT,
    GuestKind,
    LineSink,
    add_run_arguments,
    boot,
    command_and_env,
    print_line,
)
from lab.uml_guest import SYSTEM_PATH, UML_MODULES, guest_environment, prepare_rundir

__all__ = [
    "EXIT_NOT_INSTALLED",
    "EXIT_TIMEOUT",
    "EXIT_UML_FAILED",
    "host_has_ipvs",
    "run_with_ipvs",
]

#: The guest died without reporting a status (the shared EXIT_GUEST_FAILED).
EXIT_UML_FAILED = EXIT_GUEST_FAILED

UML_BINARY = "linux.uml"
NOT_INSTALLED_MSG = "user-mode-linux is not installed: apt-get install user-mode-linux"
DEFAULT_MEM = "768M"

UML = GuestKind(
    prog="lab.uml",
    name="UML",
    # Console lines that every boot prints and that mean nothing for us.
    noise=(
        "mmapper_init - find_iomem failed",
        "Failed to initialize ubd device 0",
        "SELinux: CONFIG_SECURITY_SELINUX_CHECKREQPROT_VALUE is non-zero",
        "SELinux: https://github.com/SELinuxProject/selinux-kernel/wiki/DEPRECATE-checkreqprot",
        "Powering off.",
        "reboot: System halted",
    ),
)


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
    sink = on_line or print_line
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
        status = boot(UML, cmdline, rundir, argv, sink, timeout)
    finally:
        # uml_dir= keeps UML's umid directory out of ~/.uml; remove a stray one anyway.
        shutil.rmtree(Path.home() / ".uml" / umid, ignore_errors=True)
        if keep_rundir:
            sink(f"lab.uml: kept {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)
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


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.uml",
        description="Run CMD on a kernel with IPVS (this one, or User-Mode Linux).",
    )
    parser.add_argument("--mem", default=DEFAULT_MEM, help="UML memory (default %(default)s)")
    parser.add_argument("--uml", action="store_true", help="boot UML even if this kernel has IPVS")
    add_run_arguments(parser)
    ns = parser.parse_args(args)
    command, env = command_and_env(parser, ns)
    return run_with_ipvs(
        command, mem=ns.mem, timeout=ns.timeout, force_uml=ns.uml, env=env, keep_rundir=ns.keep
    )


if __name__ == "__main__":
    sys.exit(main())
