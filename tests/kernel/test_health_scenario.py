"""Health checks drive real IPVS: a dead real is drained, a recovered one returns, sorry server.

The NAT reference scenario with a tcp check (interval 0.5 s, timeout 0.5 s,
rise 2, fall 2) and a sorry server on the real-server segment.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from ipvsd.model import Family, Protocol, ServiceKey
from lab.daemon import DaemonProcess, kernel_table
from lab.netns import Topology
from lab.scenario import VIP, Scenario, nat_scenario, wait_until

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)
SORRY = "192.168.2.50"
INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.5, 2, 2


def config(on_failure: str) -> str:
    return textwrap.dedent(
        f"""\
        metrics: {{listen: null}}
        ipvs:
          resync_interval: 30
          services:
            - address: {VIP}
              port: 80
              scheduler: rr
              on_failure: {on_failure}
              sorry_server: {{address: {SORRY}, port: 80}}
              check: {{type: tcp, interval: {INTERVAL}, timeout: {TIMEOUT},
                       rise: {RISE}, fall: {FALL}}}
              reals:
                - {{address: 192.168.2.30, port: 80, weight: 3}}
                - {{address: 192.168.2.40, port: 80, weight: 1}}
        """
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, DaemonProcess]]:
    workdir = tmp_path_factory.mktemp("health")
    with Topology() as topo:
        scenario = nat_scenario(topo, workdir, sorry=SORRY)
        scenario.start_real_servers()
        path = workdir / "ipvsd.yaml"
        path.write_text(config("drain"))
        daemon = DaemonProcess(topo, scenario.director, path, workdir / "ipvsd.log")
        daemon.start()
        yield scenario, daemon


def weights(scenario: Scenario) -> dict[str, int]:
    service = kernel_table(scenario.director).services[WEB]
    return {str(k.address): d.attrs.weight for k, d in service.dests.items()}


def real_ns(scenario: Scenario, address: str) -> str:
    return next(ns for ns, a in scenario.reals.items() if a == address)


def test_fresh_reals_enter_after_their_first_check(lab: tuple[Scenario, DaemonProcess]) -> None:
    scenario, _ = lab
    wait_until(lambda: weights(scenario) == {"192.168.2.30": 3, "192.168.2.40": 1}, timeout=5)


def test_dead_real_is_drained_within_the_bound_and_comes_back(
    lab: tuple[Scenario, DaemonProcess],
) -> None:
    scenario, daemon = lab
    wait_until(lambda: weights(scenario).get("192.168.2.30") == 3, timeout=5)
    stopped = time.monotonic()
    scenario.stop_server(real_ns(scenario, "192.168.2.30"))
    bound = FALL * INTERVAL + TIMEOUT + 1
    wait_until(lambda: weights(scenario).get("192.168.2.30") == 0, timeout=bound + 2)
    drained_after = time.monotonic() - stopped
    assert drained_after <= bound, drained_after
    served = Counter(body for status, body in scenario.requests(50) if status == 200)
    assert served == Counter({"192.168.2.40": 50}), served
    started = time.monotonic()
    scenario.start_server(real_ns(scenario, "192.168.2.30"))
    wait_until(lambda: weights(scenario).get("192.168.2.30") == 3, timeout=RISE * INTERVAL + 3)
    assert time.monotonic() - started <= RISE * INTERVAL + TIMEOUT + 1
    change = daemon.wait_event("health.change", timeout=1)
    assert change["health"] in ("down", "up")


def test_all_reals_down_brings_the_sorry_server(lab: tuple[Scenario, DaemonProcess]) -> None:
    scenario, _ = lab
    for address in ("192.168.2.30", "192.168.2.40"):
        scenario.stop_server(real_ns(scenario, address))
    wait_until(lambda: SORRY in weights(scenario), timeout=FALL * INTERVAL + TIMEOUT + 3)
    results = scenario.requests(10)
    assert results == [(200, "sorry")] * 10, results
    scenario.start_server(real_ns(scenario, "192.168.2.40"))
    wait_until(lambda: SORRY not in weights(scenario), timeout=RISE * INTERVAL + 3)
    served = Counter(body for status, body in scenario.requests(10) if status == 200)
    assert served == Counter({"192.168.2.40": 10})
    scenario.start_server(real_ns(scenario, "192.168.2.30"))


def test_remove_on_failure_deletes_the_dest(lab: tuple[Scenario, DaemonProcess]) -> None:
    scenario, daemon = lab
    wait_until(lambda: weights(scenario).get("192.168.2.30") == 3, timeout=5)
    before = len(daemon.events())
    daemon.config.write_text(config("remove"))
    daemon.reload()
    daemon.wait_event("config.reloaded", timeout=10, after=before)
    # The reload kept the health state: no real left the table, nothing flapped.
    assert weights(scenario) == {"192.168.2.30": 3, "192.168.2.40": 1}
    assert not [e for e in daemon.events()[before:] if e.get("event") == "health.change"]
    scenario.stop_server(real_ns(scenario, "192.168.2.30"))
    wait_until(lambda: "192.168.2.30" not in weights(scenario), timeout=FALL * INTERVAL + 3)
    assert _all_ok(scenario.requests(20))
    scenario.start_server(real_ns(scenario, "192.168.2.30"))
    wait_until(lambda: weights(scenario).get("192.168.2.30") == 3, timeout=RISE * INTERVAL + 3)


def _all_ok(results: list[tuple[int, str]]) -> bool:
    return all(status == 200 for status, _ in results)
