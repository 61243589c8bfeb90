"""Interop with keepalived (Debian's 2.2.7) as the peer, both ways round.

A migration replaces keepalived on one director while the other keeps it, so
election, failover and preemption must work in both directions, and
keepalived must log no complaint about ipvsd's packets.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.netns import Topology
from lab.scenario import wait_until
from lab.vrrp_pair import VrrpLab, build

pytestmark = pytest.mark.skipif(
    shutil.which("keepalived") is None, reason="keepalived is not installed (scripts/setup.sh)"
)

MDI_90 = 3 + (256 - 90) / 256
SLACK = 0.5

# What keepalived logs when it drops or dislikes a peer's advert (vrrp_check_packet).
COMPLAINTS = re.compile(
    r"invalid|wrong|mismatch|bogus|too short|too long|unexpected|not present|"
    r"CONFIGURATION ERROR|Invalid",
    re.IGNORECASE,
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def complaints(text: str) -> list[str]:
    return [line for line in text.splitlines() if COMPLAINTS.search(line)]


def test_ipvsd_master_keepalived_backup(lab: VrrpLab) -> None:
    ipvsd = lab.daemon("d1", 100)
    keepalived = lab.keepalived("d2", 90)
    ipvsd.start()
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)
    time.sleep(2)
    assert lab.holder() == ["d1"]  # keepalived accepts our adverts and stays BACKUP
    ipvsd.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=MDI_90 + SLACK + 1)
    assert took <= MDI_90 + SLACK
    ipvsd.start()  # removes its stale VIP, then preempts keepalived
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)
    assert ipvsd.stop() == 0  # priority 0: keepalived takes over within its skew time
    wait_until(lambda: lab.holder() == ["d2"], timeout=1.5)
    keepalived.stop()
    assert complaints(keepalived.text()) == [], keepalived.text()


def test_keepalived_master_ipvsd_backup(lab: VrrpLab) -> None:
    keepalived = lab.keepalived("d1", 100)
    ipvsd = lab.daemon("d2", 90)
    keepalived.start()
    ipvsd.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)
    time.sleep(2)
    assert lab.holder() == ["d1"]
    before = len(ipvsd.events())
    stopped = time.monotonic()
    keepalived.stop(signal.SIGTERM, wait=False)  # keepalived sends priority 0
    wait_until(lambda: lab.holder() == ["d2"], timeout=2, interval=0.02)
    assert time.monotonic() - stopped < 1.0
    keepalived.wait()
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)  # keepalived preempts
    keepalived.stop(signal.SIGKILL)  # a crash of the whole process group
    took = wait_until(lambda: "d2" in lab.holder(), timeout=MDI_90 + SLACK + 1)
    assert took <= MDI_90 + SLACK
    rejected = [e for e in ipvsd.events()[before:] if e.get("event") == "vrrp.packet_rejected"]
    assert rejected == []  # ipvsd accepted every keepalived advert
    assert complaints(keepalived.text()) == [], keepalived.text()
