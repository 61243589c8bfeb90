"""Service quorum on real IPVS (issue 13): the sorry server takes over below quorum.

The NAT reference scenario, reals weighted 3 and 1, ``quorum: 4``: both reals
must be up. An inhibited sorry server waits in the kernel at weight 0 while
the reals serve; when one real dies the service loses quorum, ``quorum_down``
runs, the sorry server gets weight 1 and the surviving real weight 0, and
clients get the sorry page. ``omega``: stopping ipvsd runs ``quorum_down``
once more.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from ipvsd.model import Family, ForwardMethod, Protocol, ServiceKey
from lab.daemon import kernel_table
from lab.scenario import VIP, Scenario, wait_until
from tests.kernel.one_director import Lab, one_director

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)
SORRY = "192.168.2.50"
INTERVAL, TIMEOUT = 0.5, 0.5


def config(log: Path) -> str:
    hook = "[/bin/sh, -c, 'echo {0} >> " + str(log) + "']"
    return textwrap.dedent(
        f"""\
        metrics: {{listen: null}}
        ipvs:
          resync_interval: 30
          services:
            - address: {VIP}
              port: 80
              scheduler: rr
              quorum: 4
              omega: true
              quorum_up: {hook.format("up")}
              quorum_down: {hook.format("down")}
              sorry_server: {{address: {SORRY}, port: 80, inhibit: true}}
              check: {{type: tcp, interval: {INTERVAL}, timeout: {TIMEOUT}, rise: 1, fall: 1}}
              reals:
                - {{address: 192.168.2.30, port: 80, weight: 3}}
                - {{address: 192.168.2.40, port: 80, weight: 1}}
        """
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with one_director(tmp_path_factory.mktemp("quorum"), config, sorry=SORRY) as started:
        yield started


def weights(scenario: Scenario) -> dict[str, int]:
    service = kernel_table(scenario.director).services[WEB]
    return {str(k.address): d.attrs.weight for k, d in service.dests.items()}


def ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_with_quorum_the_inhibited_sorry_server_waits_at_weight_0(lab: Lab) -> None:
    scenario, _, log = lab
    wait_until(lambda: weights(scenario) == {"192.168.2.30": 3, "192.168.2.40": 1, SORRY: 0}, 10)
    dest = kernel_table(scenario.director).services[WEB].dests
    assert {str(k.address) for k in dest} == {"192.168.2.30", "192.168.2.40", SORRY}
    assert all(d.attrs.forward is ForwardMethod.NAT for d in dest.values())
    # Nothing was up at start (alpha): quorum lost, then regained with both reals.
    wait_until(lambda: ran(log) == ["down", "up"], 10)
    bodies = {body for status, body in scenario.requests(8) if status == 200}
    assert bodies == {"192.168.2.30", "192.168.2.40"}


def test_below_quorum_the_sorry_server_takes_over_and_quorum_down_runs(lab: Lab) -> None:
    scenario, daemon, log = lab
    wait_until(lambda: ran(log) == ["down", "up"], 10)
    r2 = next(ns for ns, address in scenario.reals.items() if address == "192.168.2.40")
    scenario.stop_server(r2)
    # live weight 3 < quorum 4: the reals are drained, the sorry server serves.
    wait_until(lambda: weights(scenario) == {"192.168.2.30": 0, "192.168.2.40": 0, SORRY: 1}, 10)
    wait_until(lambda: ran(log) == ["down", "up", "down"], 10)
    assert scenario.requests(5) == [(200, "sorry")] * 5
    event = daemon.wait_event("ipvs.quorum_command", timeout=5)
    assert event["returncode"] == 0
    scenario.start_server(r2)
    wait_until(lambda: weights(scenario) == {"192.168.2.30": 3, "192.168.2.40": 1, SORRY: 0}, 10)
    wait_until(lambda: ran(log) == ["down", "up", "down", "up"], 10)


def test_omega_runs_quorum_down_when_ipvsd_stops(lab: Lab) -> None:
    _, daemon, log = lab
    wait_until(lambda: ran(log)[-1:] == ["up"], 10)
    before = len(ran(log))
    assert daemon.stop() == 0
    assert ran(log)[before:] == ["down"]
