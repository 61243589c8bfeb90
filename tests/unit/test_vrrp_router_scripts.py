"""`VrrpRouter` with ``vrrp.scripts``: real scripts move an instance's priority and
FAULT, one runner serves several instances, and reloads apply in place."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from ipvsd.config.model import VrrpScriptConfig
from tests.unit.test_vrrp_router import BACKUP, FAULT, MASTER, Rig, config, rig, until

__all__ = ["rig"]  # the fixture


def toggled(tmp_path: Path) -> tuple[tuple[str, ...], Path]:
    """A script exiting with the number in a file; returns its argv and the file."""
    code = tmp_path / "code"
    code.write_text("0")
    path = tmp_path / "chk"
    path.write_text(f'#!/bin/sh\nexit "$(cat {code})"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return (str(path),), code


def script(command: tuple[str, ...], **fields: object) -> VrrpScriptConfig:
    return VrrpScriptConfig.model_validate(
        {"name": "chk", "command": command, "interval": 0.1} | fields
    )


async def test_a_failing_weight_0_script_puts_the_instance_in_fault(
    rig: Rig, tmp_path: Path
) -> None:
    command, code = toggled(tmp_path)
    tracked = config(priority=100, track_scripts=({"script": "chk"},))
    await rig.router.start([tracked], [], [script(command)])
    await until(lambda: rig.state() is BACKUP)
    assert rig.instance().status.scripts == {"chk": True}
    code.write_text("1")
    await until(lambda: rig.state() is FAULT)
    assert rig.instance().status.fault_reason == (
        "a tracked script of weight 0 is failing or has not reported yet"
    )
    code.write_text("0")
    await until(lambda: rig.state() is BACKUP)


async def test_negative_weight_lowers_the_priority_of_every_tracking_instance(
    rig: Rig, tmp_path: Path
) -> None:
    command, code = toggled(tmp_path)
    rig.host.add_link("eth2", address="10.0.0.1/24")
    first = config(priority=100, track_scripts=({"script": "chk", "weight": -30},))
    second = config(
        "VI_2",
        interface="eth2",
        vrid=52,
        priority=100,
        virtual_ipaddresses=("10.0.0.254/24",),
        track_scripts=({"script": "chk"},),  # the script's weight, -10
    )
    await rig.router.start([first, second], [], [script(command, weight=-10)])
    code.write_text("1")
    await until(lambda: rig.instance().status.effective_priority == 70)
    await until(lambda: rig.instance("VI_2").status.effective_priority == 90)
    code.write_text("0")
    await until(lambda: rig.instance().status.effective_priority == 100)
    await until(lambda: rig.instance("VI_2").status.effective_priority == 100)


async def test_a_reload_changes_weights_in_place(rig: Rig, tmp_path: Path) -> None:
    command, code = toggled(tmp_path)
    code.write_text("1")
    owner = config(track_scripts=({"script": "chk"},))  # 255; weight 0: FAULT
    await rig.router.start([owner], [], [script(command)])
    await until(lambda: rig.state() is FAULT)
    await rig.router.update(
        [config(track_scripts=({"script": "chk", "weight": -20},))], [], [script(command)]
    )
    await until(lambda: rig.state() is MASTER)  # the owner ignores weights
    await asyncio.sleep(0.3)
    assert rig.state() is MASTER
    await rig.router.update([config()], [], [])
    assert rig.router._scripts.runners == {}
    await until(lambda: rig.instance().status.scripts == {})


async def test_track_files_fault_weights_and_reload_in_place(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "prio"
    rig.router._files.interval = 0.02
    tracked = config(priority=100, track_files=({"path": str(path), "weight": 0},))
    await rig.router.start([tracked], [], [])
    await until(lambda: rig.state() is BACKUP)  # missing: 0
    path.write_text("1\n")
    await until(lambda: rig.state() is FAULT)
    assert rig.instance().status.files == {str(path): 1}
    path.write_text("0")
    await until(lambda: rig.state() is BACKUP)
    path.write_text("3")
    weighted = config(priority=100, track_files=({"path": str(path), "weight": 5},))
    await until(lambda: rig.instance().status.files == {str(path): 3})
    # The value is recorded before the machine handles it: FAULT comes a turn later.
    await until(lambda: rig.state() is FAULT)
    await rig.router.update([weighted], [], [])
    await until(lambda: rig.state() is BACKUP)
    assert rig.instance().status.effective_priority == 115
    await rig.router.update([config(priority=100)], [], [])
    assert rig.router._files.watchers == {}
    await until(lambda: rig.instance().status.effective_priority == 100)
