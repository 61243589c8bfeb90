"""Per-state notify programs and a sync group's notify, run by real transitions of two
ipvsd processes (issue 13 item 1).

Each director runs VI_1 (192.168.1.200) and VI_2 (192.168.1.201) on eth1 in sync
group G. The programs append their arguments to a file per director, so the test
reads which ran, how often and in which order.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.scenario import wait_until
from lab.vrrp_pair import VrrpLab, build, holds_vip

MDI_90 = 3 + (256 - 90) / 256
STATES = ("master", "backup", "stop")
VIPS = {"VI_1": (51, "192.168.1.200"), "VI_2": (52, "192.168.1.201")}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def hook(workdir: Path, short: str) -> tuple[Path, Path]:
    """A program appending its arguments to ``calls_<short>``: (program, file)."""
    out = workdir / f"calls_{short}"
    program = workdir / f"hook_{short}.sh"
    program.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, out


def director(lab: VrrpLab, short: str, priority: int) -> tuple[DaemonProcess, Path]:
    """`short`'s ipvsd with VI_1 and VI_2 in sync group G; the file its programs write."""
    program, out = hook(lab.workdir, short)
    instances = [
        {
            "name": name,
            "interface": "eth1",
            "vrid": vrid,
            "priority": priority,
            "virtual_ipaddresses": [f"{vip}/24"],
            **{f"notify_{state}": [str(program), state, name] for state in STATES},
        }
        for name, (vrid, vip) in VIPS.items()
    ]
    group = {
        "name": "G",
        "instances": list(VIPS),
        "notify": str(program),
        "notify_master": [str(program), "group-master"],
    }
    return daemon(lab, short, instances, [group]), out


def daemon(
    lab: VrrpLab,
    short: str,
    instances: list[dict[str, Any]],
    sync_groups: list[dict[str, Any]] | None = None,
) -> DaemonProcess:
    """`short`'s ipvsd (not started) with these ``vrrp`` instances and sync groups."""
    config = lab.workdir / f"{short}.yaml"
    config.write_text(
        json.dumps(  # YAML 1.2 is a superset of JSON
            {
                "node_name": short,
                "metrics": {"listen": None},
                "control": {"socket": str(lab.workdir / f"{short}.sock")},
                "state_dir": str(lab.workdir / f"{short}.state"),
                "vrrp": {"instances": instances, "sync_groups": sync_groups or []},
            }
        )
    )
    return DaemonProcess(lab.topo, lab.routers[short], config, lab.workdir / f"{short}.log")


def calls(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def holds_both(lab: VrrpLab, short: str) -> bool:
    return all(holds_vip(lab.topo, lab.routers[short], vip) for _, vip in VIPS.values())


def test_state_programs_run_per_instance_and_the_groups_once(lab: VrrpLab) -> None:
    d1, out1 = director(lab, "d1", 100)
    d2, out2 = director(lab, "d2", 90)
    d1.start()
    d2.start()
    wait_until(lambda: holds_both(lab, "d1"), timeout=MDI_90 + 3)
    wait_until(lambda: "GROUP G BACKUP 0" in calls(out2), timeout=5)
    wait_until(lambda: "GROUP G MASTER 0" in calls(out1), timeout=5)
    assert d1.stop() == 0  # SIGTERM: STOP programs, priority 0: d2 takes over
    wait_until(lambda: holds_both(lab, "d2"), timeout=3)
    wait_until(lambda: "GROUP G MASTER 0" in calls(out2), timeout=5)
    first = calls(out1)
    # d1: each instance BACKUP at start, then MASTER, then STOP; the group once each,
    # its own notify_master before notify.
    assert sorted(line for line in first if "VI_" in line) == [
        "backup VI_1",
        "backup VI_2",
        "master VI_1",
        "master VI_2",
        "stop VI_1",
        "stop VI_2",
    ]
    group = [line for line in first if "VI_" not in line]
    assert group == [
        "GROUP G BACKUP 0",
        "group-master",
        "GROUP G MASTER 0",
        "GROUP G STOP 0",
    ], first
    second = calls(out2)
    assert [line for line in second if "VI_" not in line] == [
        "GROUP G BACKUP 0",
        "group-master",
        "GROUP G MASTER 0",
    ], second
    assert sorted(line for line in second if line.startswith("master")) == [
        "master VI_1",
        "master VI_2",
    ]
