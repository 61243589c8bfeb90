"""The reference scenario on real IPVS: NAT and DR forwarding programmed by `ipvsd run`.

One director (VRRP comes with its own issue), two reals, one client, each in a
namespace of the UML kernel. Requests are real TCP connections through IPVS.
"""

from __future__ import annotations

import socket
import textwrap
from collections import Counter
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from ipvsd.model import DestKey, Family, Protocol, ServiceKey
from lab.daemon import DaemonProcess, kernel_table
from lab.netns import Topology, in_netns
from lab.scenario import VIP, Scenario, dr_scenario, nat_scenario, wait_until

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)
ECHO = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 9000)


def config_text(forward: str, reals: list[str], *, echo_weights: tuple[int, int] = (1, 1)) -> str:
    web = ", ".join(f"{{address: {r}, port: 80}}" for r in reals)
    echo = ", ".join(
        f"{{address: {r}, port: 9000, weight: {w}}}"
        for r, w in zip(reals, echo_weights, strict=True)
    )
    return textwrap.dedent(
        f"""\
        node_name: director1
        metrics: {{listen: null}}
        ipvs:
          resync_interval: 1
          services:
            - {{address: {VIP}, port: 80, scheduler: rr, forward: {forward}, reals: [{web}]}}
            - {{address: {VIP}, port: 9000, scheduler: rr, forward: {forward}, reals: [{echo}]}}
        """
    )


class Lab:
    def __init__(self, scenario: Scenario, daemon: DaemonProcess, forward: str) -> None:
        self.scenario, self.daemon, self.forward = scenario, daemon, forward
        self.reals = list(scenario.reals.values())

    def write_config(self, text: str) -> None:
        self.daemon.config.write_text(text)

    def connect_echo(self) -> socket.socket:
        with in_netns(self.scenario.client):
            conn = socket.create_connection((VIP, 9000), timeout=5)
        return conn


def echo(conn: socket.socket, text: str) -> str:
    conn.sendall(text.encode() + b"\n")
    return conn.recv(1024).decode().strip()


@pytest.fixture(scope="module")
def nat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("nat")
    with Topology() as topo:
        scenario = nat_scenario(topo, workdir)
        scenario.start_real_servers()
        lab = _start(scenario, workdir, "nat")
        yield lab


@pytest.fixture(scope="module")
def dr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("dr")
    with Topology() as topo:
        scenario = dr_scenario(topo, workdir)
        scenario.start_real_servers()
        yield _start(scenario, workdir, "dr")


def _start(scenario: Scenario, workdir: Path, forward: str) -> Lab:
    config = workdir / "ipvsd.yaml"
    config.write_text(config_text(forward, list(scenario.reals.values())))
    daemon = DaemonProcess(scenario.topo, scenario.director, config, workdir / "ipvsd.log")
    daemon.start()
    return Lab(scenario, daemon, forward)


def _served_by(results: list[tuple[int, str]]) -> Counter[str]:
    assert all(status == 200 for status, _ in results), results
    return Counter(body for _, body in results)


def test_nat_50_requests_all_succeed_and_show_as_inactconn(nat: Lab) -> None:
    served = _served_by(nat.scenario.requests(50))
    assert set(served) == set(nat.reals), served
    dests = kernel_table(nat.scenario.director).services[WEB].dests
    # The closed connections linger in IPVS (TIME_WAIT / FIN states) until their timeout.
    for real in nat.reals:
        counters = dests[DestKey(ip_address(real), 80)].counters
        assert counters is not None
        assert counters.inactive_conns > 0, (real, counters)
    assert sum(d.counters.inactive_conns for d in dests.values() if d.counters) >= 45


def test_weight_edit_is_in_place_and_keeps_connections(nat: Lab) -> None:
    conn = nat.connect_echo()
    serving = echo(conn, "before").split()[0]
    before = len(nat.daemon.events())
    weights = tuple(5 if real == serving else 1 for real in nat.reals)
    nat.write_config(config_text("nat", nat.reals, echo_weights=weights))
    nat.daemon.reload()
    nat.daemon.wait_event("config.reloaded", timeout=30, after=before)
    key = DestKey(ip_address(serving), 9000)

    def weight_is_5() -> bool:
        return kernel_table(nat.scenario.director).services[ECHO].dests[key].attrs.weight == 5

    wait_until(weight_is_5, timeout=10)
    reconcile = nat.daemon.wait_event("ipvs.reconcile", timeout=10, after=before)
    assert reconcile["operations"] == {"edit_dest": 1}
    dest = kernel_table(nat.scenario.director).services[ECHO].dests[key]
    assert dest.counters is not None
    assert dest.counters.active_conns == 1  # the same dest object: its connection is still on it
    assert echo(conn, "after") == f"{serving} after"
    conn.close()
    nat.write_config(config_text("nat", nat.reals))
    nat.daemon.reload()


def test_restart_adopts_the_table_and_keeps_a_live_connection(nat: Lab) -> None:
    conn = nat.connect_echo()
    serving = echo(conn, "one").split()[0]
    assert nat.daemon.stop() == 0
    table = kernel_table(nat.scenario.director)
    assert set(table.services) == {WEB, ECHO}  # SIGTERM leaves the table in place
    assert echo(conn, "two") == f"{serving} two"  # balancing goes on without the daemon
    nat.daemon.start()
    events = nat.daemon.events()
    assert not [e for e in events if e.get("event") == "ipvs.reconcile"], events
    assert echo(conn, "three") == f"{serving} three"
    dest = (
        kernel_table(nat.scenario.director).services[ECHO].dests[DestKey(ip_address(serving), 9000)]
    )
    assert dest.counters is not None
    assert dest.counters.active_conns == 1  # had the dest been re-created, it would be 0
    conn.close()


def test_drift_is_repaired_after_ipvsadm_clear(nat: Lab) -> None:
    before = len(nat.daemon.events())
    nat.scenario.topo.exec(nat.scenario.director, ["ipvsadm", "-C"])
    wait_until(lambda: len(kernel_table(nat.scenario.director)) == 2, timeout=5)
    repaired = nat.daemon.wait_event("ipvs.drift_repaired", timeout=5, after=before)
    assert repaired["operations"] == 6
    assert _served_by(nat.scenario.requests(4))


def test_bad_config_on_reload_is_refused_and_changes_nothing(nat: Lab) -> None:
    good = nat.daemon.config.read_text()
    before = len(nat.daemon.events())
    table_before = kernel_table(nat.scenario.director)
    nat.write_config(good.replace("port: 80,", "port: 99999,", 1))
    nat.daemon.reload()
    refused = nat.daemon.wait_event("config.reload_refused", timeout=30, after=before)
    assert any("ipvs.services.0.port" in error for error in refused["errors"]), refused
    assert kernel_table(nat.scenario.director) == table_before
    assert nat.daemon.proc is not None
    assert nat.daemon.proc.poll() is None
    nat.write_config(good)


def test_dr_50_requests_all_succeed_on_both_reals(dr: Lab) -> None:
    served = _served_by(dr.scenario.requests(50))
    assert set(served) == set(dr.reals), served
    assert all(count >= 20 for count in served.values()), served
    table = kernel_table(dr.scenario.director)
    assert {d.attrs.forward.value for d in table.services[WEB].dests.values()} == {"dr"}
