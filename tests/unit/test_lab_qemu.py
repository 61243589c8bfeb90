"""lab.qemu's pure parts: the initramfs it builds and the kernel it picks (no qemu run).

The boot itself is proven by running the kernel tier's ``test_no_accept.py``
under ``python -m lab.qemu`` (scripts/test.sh does).
"""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

import pytest

from lab import initramfs
from lab.qemu import find_kernel, kernel_lacks
from lab.uml_guest import QEMU_KERNEL, build_init_script, guest_environment

CONFIG_BOTH = "CONFIG_IP_VS=m\nCONFIG_NF_TABLES_INET=y\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_9P_FS=m\n"


def release_dir(tmp_path: Path) -> Path:
    root = tmp_path / "6.1.0-9-amd64"
    (root / "kernel").mkdir(parents=True)
    (root / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz"
        " kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz\n"
        "kernel/net/9p/9pnet.ko.xz:\n"
        "kernel/fs/netfs/netfs.ko.xz:\n"
        "kernel/drivers/virtio/virtio.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz\n"
        "kernel/drivers/virtio/virtio_ring.ko.xz:\n"
    )
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    return root


def test_modules_load_dependencies_first_each_once_builtins_skipped(tmp_path: Path) -> None:
    root = release_dir(tmp_path)
    order = initramfs.module_load_order(root, initramfs.ROOT_MODULES)
    names = [p.name for p in order]
    assert names == [
        # virtio_pci is built in: nothing loaded for it
        "9pnet.ko.xz",
        "virtio_ring.ko.xz",
        "virtio.ko.xz",
        "9pnet_virtio.ko.xz",
        "netfs.ko.xz",
        "9p.ko.xz",
    ]
    with pytest.raises(initramfs.InitramfsError, match="no module overlay"):
        initramfs.module_load_order(root, ["overlay"])


def test_compressed_modules_are_unpacked_for_busybox_insmod(tmp_path: Path) -> None:
    module = tmp_path / "9p.ko.xz"
    module.write_bytes(lzma.compress(b"\x7fELF module"))
    assert initramfs.module_bytes(module) == b"\x7fELF module"


def elf64(*segment_types: int) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, len(segment_types))  # e_phentsize, e_phnum
    return bytes(header) + b"".join(struct.pack("<I52x", t) for t in segment_types)


def test_only_a_static_busybox_will_do() -> None:
    assert initramfs.is_static_elf(elf64(1, 1, 4))
    assert not initramfs.is_static_elf(elf64(6, 3, 1))  # PT_INTERP: needs ld.so and libc
    assert not initramfs.is_static_elf(b"#!/bin/sh\n")


def test_the_archive_is_newc_with_the_files_in_order() -> None:
    data = initramfs.newc_archive({"init": (0o755, b"#!/bin/busybox sh\n")}, ["bin"])
    names = []
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        start = offset + 110
        name = data[start : start + namesize - 1].decode()
        body = start + namesize + (-(110 + namesize) % 4)
        names.append((name, oct(mode), data[body : body + size]))
        offset = body + size + (-size % 4)
        if name == "TRAILER!!!":
            break
    assert names == [
        ("bin", "0o40755", b""),
        ("init", "0o100755", b"#!/bin/busybox sh\n"),
        ("TRAILER!!!", "0o0", b""),
    ]
    assert offset == len(data)


def test_stage1_mounts_the_shared_root_and_hands_over(tmp_path: Path) -> None:
    script = initramfs.stage1_script(["virtio.ko", "9p.ko"], tmp_path / "init")
    assert "for m in virtio.ko 9p.ko; do" in script
    assert f"{initramfs.ROOT_TAG} /root" in script
    assert script.rstrip().endswith(f"switch_root /root {tmp_path / 'init'}")


def test_the_kernel_picked_is_the_newest_with_ipvs_and_nf_tables_inet(tmp_path: Path) -> None:
    boot, modules = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    for release, config in [
        ("6.1.0-9-amd64", CONFIG_BOTH),
        ("6.1.0-10-amd64", CONFIG_BOTH),
        ("6.12.0-1-amd64", CONFIG_BOTH.replace("CONFIG_NF_TABLES_INET=y", "")),
        ("6.2.0-1-amd64", CONFIG_BOTH),  # no modules installed
    ]:
        (boot / f"vmlinuz-{release}").write_bytes(b"")
        (boot / f"config-{release}").write_text(config)
        if release != "6.2.0-1-amd64":
            (modules / release).mkdir(parents=True)
            (modules / release / "modules.dep").write_text("")
    assert find_kernel(boot, modules) == boot / "vmlinuz-6.1.0-10-amd64"
    assert kernel_lacks("6.12.0-1-amd64", boot) == ["CONFIG_NF_TABLES_INET"]
    assert kernel_lacks("5.10.0-1-amd64", boot) == [
        "CONFIG_IP_VS",
        "CONFIG_NF_TABLES_INET",
        "CONFIG_NET_9P_VIRTIO",
        "CONFIG_9P_FS",
    ]
    assert find_kernel(tmp_path / "empty", modules) is None


def test_pid1_under_qemu_uses_the_hosts_modules_and_says_so(tmp_path: Path) -> None:
    env = guest_environment({}, tty=False, kind="qemu")
    assert env["IPVSD_GUEST"] == "qemu"
    assert "IPVSD_UML" not in env
    script = build_init_script(["true"], rundir=tmp_path, cwd=tmp_path, env=env, kernel=QEMU_KERNEL)
    assert "echo /sbin/modprobe > /proc/sys/kernel/modprobe" in script
    assert "modprobe -d / -a $mods" in script
    assert "echo ipvsd-qemu > /proc/sys/kernel/hostname" in script
    assert guest_environment({}, tty=False)["IPVSD_UML"] == "1"
