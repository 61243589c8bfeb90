"""Run one command on a kernel with IPVS *and* nf_tables inet: a Debian kernel under qemu.

Usage::

    python -m lab.qemu [--mem 1G] [--smp 1] [--accel tcg|kvm] [--kernel VMLINUZ] \\
        [--timeout SECONDS] [--keep] [--env NAME=VALUE ...] -- CMD [ARGS...]

Why a second guest
------------------
:mod:`lab.uml`'s User-Mode Linux (Debian's 6.1) has IPVS but builds nf_tables
for the bridge family only, and the host kernel here has nf_tables but no
IPVS. ``accept_mode: false`` (``ipvsd/netlink/nftables.py``) is an nf_tables
chain that must run *after* IPVS's LOCAL_IN hooks: only a kernel with both
shows it (``tests/kernel/test_no_accept.py``). Debian's ``linux-image-amd64``
has both, as modules.

Theory of operation
-------------------
qemu boots that kernel (``/boot/vmlinuz-RELEASE``, the newest whose
``/boot/config-RELEASE`` has ``CONFIG_IP_VS`` and ``CONFIG_NF_TABLES_INET``)
with no disk and no network card: the host's ``/`` is shared read-write over
virtio-9p, as UML shares it over hostfs, so the project's venv and code run
unchanged. A per-run initramfs (:mod:`lab.initramfs`) loads virtio and 9p,
mounts the root and hands over to the same PID-1 script as UML's
(:mod:`lab.uml_guest`), which loads IPVS, runs the command with the caller's
environment plus ``IPVSD_GUEST=qemu`` (and ``TMPDIR=/dev/shm``: temporary
files on tmpfs, as 9p cannot truncate an unlinked open file), writes its exit status into the run
directory and powers off. The console (the first serial port) is streamed,
the timeout kills qemu, and no status file is an error
(:mod:`lab.guest_boot`, shared with UML).

The default accelerator is TCG (software emulation: about 3 s to the command
here). ``--accel kvm`` needs a working ``/dev/kvm``; in a Firecracker VM the
device opens but the guest hangs as it leaves real mode, so it is not the
default. Unlike :mod:`lab.uml`, this always boots the guest: the point is a
known kernel with both features.

Only ``tests/kernel/test_no_accept.py`` runs here in ``make test`` (about a
minute). The rest of the kernel tier runs too but slowly: on 2026-12-06,
``tests/kernel`` minus that file took 21 minutes on one emulated CPU
(110 passed, 1 skipped; one failure, a health-check timing bound missed by
0.25 s in ``test_health_scenario.py``), where UML is the faster kernel.

Exit codes beyond the command's own: 2 (qemu, a suitable kernel or
busybox-static missing; bad usage), 124 (timeout), 125 (the guest died
without reporting a status).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab import initramfs
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
from lab.uml_guest import QEMU_KERNEL, guest_environment
from lab.uml_guest import build_init_script as build_pid1_script

__all__ = ["EXIT_GUEST_FAILED", "EXIT_NOT_INSTALLED", "EXIT_TIMEOUT", "find_kernel", "run_in_qemu"]

QEMU_BINARY = "qemu-system-x86_64"
PACKAGES = "apt-get install qemu-system-x86 linux-image-amd64 busybox-static"
DEFAULT_MEM = "1G"
#: One CPU: the kernel tier's UML runs beside it on the other one in scripts/test.sh.
DEFAULT_SMP = 1
#: What the guest kernel must have built (``=y`` or ``=m``).
REQUIRED_CONFIG = ("CONFIG_IP_VS", "CONFIG_NF_TABLES_INET", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS")

#: A tmpfs PID 1 mounts (see `run_in_qemu` for why temporary files go there).
GUEST_TMPDIR = "/dev/shm"  # noqa: S108 (the throw-away guest's own tmpfs)

QEMU = GuestKind(
    prog="lab.qemu",
    name="qemu",
    noise=("Powering off.", "reboot: Power down"),
)


def _version_key(release: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def kernel_lacks(release: str, boot_dir: Path = Path("/boot")) -> list[str]:
    """The `REQUIRED_CONFIG` options kernel ``release`` was built without (all, if unknown)."""
    try:
        config = (boot_dir / f"config-{release}").read_text()
    except OSError:
        return list(REQUIRED_CONFIG)
    built = set(re.findall(r"^(CONFIG_\w+)=[ym]$", config, re.MULTILINE))
    return [opt for opt in REQUIRED_CONFIG if opt not in built]


def find_kernel(
    boot_dir: Path = Path("/boot"), modules: Path = Path("/lib/modules")
) -> Path | None:
    """The newest ``vmlinuz-RELEASE`` with the required options and its modules installed."""
    found = [
        image
        for image in boot_dir.glob("vmlinuz-*")
        if (modules / image.name.removeprefix("vmlinuz-") / "modules.dep").exists()
        and not kernel_lacks(image.name.removeprefix("vmlinuz-"), boot_dir)
    ]
    return max(found, key=lambda p: _version_key(p.name), default=None)


def qemu_command(
    kernel: Path, initrd: Path, *, mem: str, smp: int, accel: str, qemu: str
) -> list[str]:
    """The qemu command line: no disk, no NIC, the host root over 9p, console on stdio."""
    cpu = "host" if accel == "kvm" else "max"
    return [
        qemu,
        "-accel", accel,
        "-cpu", cpu,
        "-m", mem,
        "-smp", str(smp),
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none", "-monitor", "none", "-serial", "stdio",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        # panic=-1 + -no-reboot: a panic ends qemu (no status: an error) instead of hanging.
        "-append", "console=ttyS0 quiet panic=-1 edd=off",
        # multidevs=remap: / spans several host filesystems; keep their inodes apart.
        "-fsdev", "local,id=root,path=/,security_model=passthrough,multidevs=remap",
        "-device", f"virtio-9p-pci,fsdev=root,mount_tag={initramfs.ROOT_TAG}",
    ]  # fmt: skip


def run_in_qemu(
    argv: Sequence[str],
    *,
    mem: str = DEFAULT_MEM,
    smp: int = DEFAULT_SMP,
    accel: str = "tcg",
    kernel: Path | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    on_line: LineSink | None = None,
    keep_rundir: bool = False,
) -> int:
    """Boot a Debian kernel under qemu once, run ``argv`` inside it, return its exit status.

    Args:
        argv: command and arguments (resolved through the guest PATH).
        mem: guest memory (qemu ``-m``).
        smp: guest CPUs.
        accel: ``tcg`` (software) or ``kvm``.
        kernel: the ``vmlinuz`` to boot; `find_kernel`'s by default.
        timeout: seconds for boot plus command; None waits forever.
        env: extra environment for the command (on top of the caller's relevant variables).
        cwd: directory for the command; defaults to ours.
        on_line: receives every console line; defaults to printing on stdout.
        keep_rundir: keep the generated initramfs, scripts and status file for debugging.

    Returns:
        The command's exit status, or EXIT_NOT_INSTALLED, EXIT_TIMEOUT, EXIT_GUEST_FAILED.
    """
    sink = on_line or print_line
    qemu = shutil.which(QEMU_BINARY)
    image = kernel or find_kernel()
    if qemu is None or image is None:
        missing = QEMU_BINARY if qemu is None else "a kernel with " + ", ".join(REQUIRED_CONFIG)
        sink(f"lab.qemu: no {missing}: {PACKAGES}")
        return EXIT_NOT_INSTALLED
    release = image.name.removeprefix("vmlinuz-")
    if not image.is_file():
        sink(f"lab.qemu: no kernel image {image}")
        return EXIT_NOT_INSTALLED
    if lacks := kernel_lacks(release):
        sink(f"lab.qemu: warning: /boot/config-{release} lacks {', '.join(lacks)}")
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    rundir = Path(tempfile.mkdtemp(prefix="ipvsd-qemu-"))
    try:
        tty = on_line is None and sys.stdout.isatty()
        # 9p cannot ftruncate a file that is open but unlinked (ENOENT), which is what
        # tempfile.TemporaryFile (pytest's output capture) does: temp files go to tmpfs.
        environment = guest_environment(
            {"TMPDIR": GUEST_TMPDIR, **(env or {})}, tty=tty, kind=QEMU_KERNEL.kind
        )
        init = rundir / "init"
        init.write_text(
            build_pid1_script(
                argv, rundir=rundir, cwd=workdir.resolve(), env=environment, kernel=QEMU_KERNEL
            )
        )
        init.chmod(0o755)
        try:
            initramfs.build(rundir / "initrd", Path("/lib/modules") / release, init)
        except initramfs.InitramfsError as exc:
            sink(f"lab.qemu: {exc}")
            return EXIT_NOT_INSTALLED
        cmdline = qemu_command(image, rundir / "initrd", mem=mem, smp=smp, accel=accel, qemu=qemu)
        sink(f"lab.qemu: booting {image} under qemu ({accel}, mem={mem}, smp={smp})")
        return boot(QEMU, cmdline, rundir, argv, sink, timeout)
    finally:
        if keep_rundir:
            sink(f"lab.qemu: kept {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.qemu",
        description="Run CMD on a Debian kernel with IPVS and nf_tables inet, under qemu.",
    )
    parser.add_argument("--mem", default=DEFAULT_MEM, help="guest memory (default %(default)s)")
    parser.add_argument("--smp", type=int, default=DEFAULT_SMP, help="CPUs (default %(default)s)")
    parser.add_argument("--accel", choices=["tcg", "kvm"], default="tcg")
    parser.add_argument("--kernel", type=Path, default=None, help="vmlinuz (default: newest)")
    add_run_arguments(parser)
    ns = parser.parse_args(args)
    command, env = command_and_env(parser, ns)
    return run_in_qemu(
        command,
        mem=ns.mem,
        smp=ns.smp,
        accel=ns.accel,
        kernel=ns.kernel,
        timeout=ns.timeout,
        env=env,
        keep_rundir=ns.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
