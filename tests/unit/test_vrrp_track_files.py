"""VRRP track files (keepalived's track_file): the machine's arithmetic and FAULT,
reading the file as keepalived does, and the watcher.

keepalived references: track_file.c ``process_track_file`` and
``process_update_vrrp_track_file_status``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ipvsd.vrrp.machine import FileChanged, Startup, VrrpMachine, VrrpState
from ipvsd.vrrp.tracking import FilePool, read_track_file
from tests.unit.test_vrrp_machine import config, moved

BACKUP, FAULT = VrrpState.BACKUP, VrrpState.FAULT


@pytest.mark.parametrize(
    ("weight", "value", "effective"),
    [
        (1, 0, 100),  # a missing file reads 0: no change
        (1, 5, 105),
        (2, -10, 80),
        (-3, 4, 88),
        (10, 100, 254),  # + 253 at most, then clamped to 254
        (1, -253, 1),  # -253 is not yet FAULT: clamped to 1
    ],
)
def test_value_times_weight_is_added(weight: int, value: int, effective: int) -> None:
    machine = VrrpMachine(config(100, track_files={"/run/prio": weight}))
    machine.handle(Startup(), 0.0)
    machine.handle(FileChanged("/run/prio", value), 1.0)
    assert machine.effective_priority == effective
    assert machine.state is BACKUP


def test_weight_0_non_zero_means_fault() -> None:
    machine = VrrpMachine(config(100, track_files={"/run/down": 0}))
    machine.handle(Startup(), 0.0)
    assert machine.state is BACKUP  # absent: 0
    assert machine.handle(FileChanged("/run/down", 1), 1.0) == moved(BACKUP, FAULT, "track_file")
    assert machine.handle(FileChanged("/run/down", 0), 2.0) == moved(FAULT, BACKUP, "track_file")


def test_a_product_of_minus_254_or_less_means_fault() -> None:
    machine = VrrpMachine(config(100, track_files={"/run/prio": -100}))
    machine.handle(Startup(), 0.0)
    machine.handle(FileChanged("/run/prio", 3), 1.0)
    assert machine.state is FAULT
    assert machine.last_transition_reason == "track_file"


def test_the_owner_ignores_weights_but_not_fault() -> None:
    machine = VrrpMachine(config(255, track_files={"/a": 5, "/b": 0}))
    machine.handle(Startup(), 0.0)
    machine.handle(FileChanged("/a", -10), 1.0)
    assert machine.effective_priority == 255
    machine.handle(FileChanged("/b", 1), 2.0)
    assert machine.state is FAULT


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b"42\n", 42),
        (b"  -7 trailing", -7),
        (b"0x10", 16),
        (b"010", 8),  # strtol base 0: octal
        (b"08", 0),  # octal stops at 8
        (b"", 0),
        (b"abc", 0),
        (b"+3", 3),
        (b"99999999999", None),  # out of the 32-bit range: ignored
    ],
)
def test_the_file_is_read_as_strtol_base_0(
    tmp_path: Path, content: bytes, value: int | None
) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    assert read_track_file(str(path)) == value


def test_a_missing_or_unreadable_file_is_0(tmp_path: Path) -> None:
    assert read_track_file(str(tmp_path / "missing")) == 0
    assert read_track_file(str(tmp_path)) == 0  # a directory: read fails


async def test_the_watcher_tells_each_change_once(tmp_path: Path) -> None:
    path = tmp_path / "prio"
    path.write_text("1")
    pool = FilePool(interval=0.02)
    await pool.update([str(path)])
    heard: list[tuple[str, int]] = []
    pool.watchers[str(path)].subscribe(lambda key, value: heard.append((key, value)))
    try:
        assert heard == [(str(path), 1)]  # the value read at start, at once
        path.write_text("5")
        await asyncio.sleep(0.1)
        path.unlink()
        await asyncio.sleep(0.1)
    finally:
        await pool.stop()
    assert heard == [(str(path), 1), (str(path), 5), (str(path), 0)]
    assert pool.watchers == {}
