"""track_services and ha_suspend on real IPVS and VRRP (issue 13), one director.

The director runs one VRRP instance (alone on its segment, so it becomes
MASTER) owning 192.168.1.201, which tracks the web service 192.168.1.201:80
with weight 0: while that service has no quorum (``quorum: 2`` over two
reals of weight 1) the instance is in FAULT and the VIP is gone. A second
service on the same VIP has ``ha_suspend``: its exec check, which logs every
run, runs only while the instance is MASTER.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.scenario import Scenario, wait_until
from tests.kernel.one_director import Lab, one_director

TRACKED_VIP = "192.168.1.201"
INTERVAL = 0.5


def config(runs: Path) -> str:
    log_run = f"[/bin/sh, -c, 'echo run >> {runs}']"
    return textwrap.dedent(
        f"""\
        metrics: {{listen: null}}
        vrrp:
          instances:
            - name: VI_WEB
              interface: eth1
              vrid: 61
              priority: 100
              virtual_ipaddresses: [{TRACKED_VIP}/24]
              track_services: [{{service: "{TRACKED_VIP}:80", weight: 0}}]
        ipvs:
          resync_interval: 30
          services:
            - address: {TRACKED_VIP}
              port: 80
              quorum: 2
              check: {{type: tcp, interval: {INTERVAL}, timeout: 0.5, rise: 1, fall: 1}}
              reals:
                - {{address: 192.168.2.30, port: 80}}
                - {{address: 192.168.2.40, port: 80}}
            - address: {TRACKED_VIP}
              port: 9000
              ha_suspend: true
              check: {{type: exec, command: {log_run}, interval: {INTERVAL}, timeout: 5,
                       rise: 1, fall: 1}}
              reals: [{{address: 192.168.2.30, port: 9000}}]
        """
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with one_director(tmp_path_factory.mktemp("track"), config) as started:
        yield started


def has_vip(scenario: Scenario) -> bool:
    out = scenario.topo.exec(scenario.director, ["ip", "-o", "-4", "addr", "show", "dev", "eth1"])
    return f" {TRACKED_VIP}/" in out.stdout


def runs_of(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def test_with_quorum_the_instance_becomes_master_and_checks_run(lab: Lab) -> None:
    scenario, _, runs = lab
    wait_until(lambda: has_vip(scenario), timeout=20)
    wait_until(lambda: runs_of(runs) >= 2, timeout=10)  # MASTER: ha_suspend resumed


def test_without_quorum_the_instance_is_fault_and_the_checks_pause(lab: Lab) -> None:
    scenario, daemon, runs = lab
    wait_until(lambda: has_vip(scenario), timeout=20)
    r2 = next(ns for ns, address in scenario.reals.items() if address == "192.168.2.40")
    scenario.stop_server(r2)
    wait_until(lambda: not has_vip(scenario), timeout=10)  # FAULT: the VIP is given up
    moves = [e["new"] for e in daemon.events() if e.get("event") == "vrrp.transition"]
    assert moves[-1:] == ["FAULT"], moves
    time.sleep(2 * INTERVAL)  # a check already running ends
    paused = runs_of(runs)
    time.sleep(4 * INTERVAL)
    assert runs_of(runs) == paused, "ha_suspend: no check while the instance is not MASTER"
    scenario.start_server(r2)
    wait_until(lambda: has_vip(scenario), timeout=20)  # quorum back: BACKUP, then MASTER
    wait_until(lambda: runs_of(runs) > paused, timeout=10)
