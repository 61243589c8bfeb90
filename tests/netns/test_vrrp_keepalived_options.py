"""keepalived's garp_master_refresh and dont_track_primary, on the wire (issue 13
items 2 and 3): ipvsd processes in namespaces, an observer capturing ARP."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipvsd.control.client import request
from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.scenario import wait_until
from lab.vrrp_pair import VIP, VrrpLab, build, holds_vip
from tests.netns.test_vrrp_notify import daemon
from tests.netns.test_vrrp_relink import ArpCapture

MDI_100 = 3 + (256 - 100) / 256


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def director(lab: VrrpLab, short: str, priority: int, **fields: Any) -> DaemonProcess:
    instance = {
        "name": "VI_1",
        "interface": "eth1",
        "vrid": 51,
        "priority": priority,
        "virtual_ipaddresses": [f"{VIP}/24"],
        **fields,
    }
    return daemon(lab, short, [instance])


def arrivals(capture: ArpCapture, mac: str, seconds: float) -> list[float]:
    """When each new GARP from `mac` for the VIP was seen, over `seconds` (polled)."""
    seen, times = capture.garps(mac), []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = capture.garps(mac)
        times += [time.monotonic()] * (now - seen)
        seen = now
        time.sleep(0.02)
    return times


@pytest.mark.parametrize("refresh", [0, 1])
def test_a_master_refreshes_its_garps_every_garp_refresh_seconds(
    lab: VrrpLab, refresh: int
) -> None:
    d1 = director(lab, "d1", 100, garp_refresh=refresh, garp_delay=0, garp_repeat=2)
    with ArpCapture(lab.observer) as capture:
        d1.start()
        wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_100 + 2)
        wait_until(lambda: capture.garps(lab.mac("d1")) >= 2, timeout=1)  # the burst
        refreshes = arrivals(capture, lab.mac("d1"), 4.5)
    if refresh == 0:
        assert refreshes == []
        return
    # One GARP (not a burst of garp_repeat) every second: 4 in 4.5 s, 1 s apart.
    assert len(refreshes) in (4, 5), refreshes
    gaps = [b - a for a, b in itertools.pairwise(refreshes)]
    assert all(0.8 < gap < 1.2 for gap in gaps), gaps


def state(lab: VrrpLab, short: str) -> str:
    sock = str(lab.workdir / f"{short}.sock")
    vrrp: list[dict[str, Any]] = request(sock, {"command": "status"})["result"]["vrrp"]
    return str(vrrp[0]["state"])


@pytest.mark.parametrize(("dont_track_primary", "after"), [(True, "MASTER"), (False, "FAULT")])
def test_dont_track_primary_keeps_a_master_whose_link_goes_down(
    lab: VrrpLab, dont_track_primary: bool, after: str
) -> None:
    d1 = director(lab, "d1", 100, dont_track_primary=dont_track_primary)
    d1.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_100 + 2)
    ns = lab.routers["d1"]
    lab.topo.exec(ns, ["ip", "link", "set", "eth1", "down"])
    if after == "FAULT":
        wait_until(lambda: state(lab, "d1") == "FAULT", timeout=2)
    else:
        time.sleep(1.5)  # FAULT comes within a loop turn of the link event when tracked
    assert state(lab, "d1") == after
    assert holds_vip(lab.topo, ns) is (after == "MASTER")
    lab.topo.exec(ns, ["ip", "link", "set", "eth1", "up"])
    wait_until(lambda: state(lab, "d1") == "MASTER", timeout=MDI_100 + 2)
    transitions = [e["new"] for e in d1.events() if e.get("event") == "vrrp.transition"]
    expected = ["BACKUP", "MASTER"] + ([] if dont_track_primary else ["FAULT", "BACKUP", "MASTER"])
    assert transitions == expected
