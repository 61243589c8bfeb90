"""The reference scenario on real IPVS: NAT and DR forwarding programmed by `ipvsd run`.

One director (VRRP comes with its own issue), two reals, one client, each in a
namespace of the UML kernel. Requests are real TCP connections through IPVS.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
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


def config_text(
    forward: str,
    reals: list[str],
    *,
    echo_weights: tuple[int, ...] = (1, 1),
    socket: str = "/run/ipvsd/ipvsd.sock",
) -> str:
    web = ", ".join(f"{{address: {r}, port: 80}}" for r in reals)
    echo = ", ".join(
        f"{{address: {r}, port: 9000, weight: {w}}}"
        for r, w in zip(reals, echo_weights, strict=True)
    )
    return textwrap.dedent(
        f"""\
        node_name: director1
        metrics: {{listen: "127.0.0.1:9477"}}
        control: {{socket: {socket}}}
        state_dir: {socket}.state
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
        self.socket = str(scenario.workdir / "ipvsd.sock")

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
    config.write_text(
        config_text(forward, list(scenario.reals.values()), socket=str(workdir / "ipvsd.sock"))
    )
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
    nat.write_config(config_text("nat", nat.reals, echo_weights=weights, socket=nat.socket))
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
    before = len(nat.daemon.events())
    nat.write_config(config_text("nat", nat.reals, socket=nat.socket))
    nat.daemon.reload()
    nat.daemon.wait_event("config.reloaded", timeout=30, after=before)
    wait_until(lambda: not weight_is_5(), timeout=10)


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


def ipvsd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipvsd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ipvsadm_counts(ns: str) -> dict[str, tuple[int, int, int]]:
    """`ipvsadm -Ln` of the web service: real -> (weight, ActiveConn, InActConn)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ipvsadm", "-Ln", "-t", f"{VIP}:80"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["->"] and parts[1][0].isdigit():
            counts[parts[1]] = (int(parts[3]), int(parts[4]), int(parts[5]))
    return counts


def test_status_json_and_tables_show_the_kernel_counters(nat: Lab) -> None:
    assert _served_by(nat.scenario.requests(20))
    result = ipvsd_cli("status", "--json", "--socket", nat.socket)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    expected = ipvsadm_counts(nat.scenario.director)
    assert status["node"] == "director1"
    assert status["vrrp"] == []
    web = next(s for s in status["services"] if s["port"] == 80)
    assert web["protocol"] == "tcp"
    assert web["fwmark"] is None
    assert web["scheduler"] == "rr"
    for real in web["reals"]:
        name = f"{real['address']}:{real['port']}"
        assert (real["weight"], real["active_conns"], real["inactive_conns"]) == expected[name]
        assert real["inactive_conns"] > 0
        assert real["health"] == "up"
        assert real["configured_weight"] == 1
        assert real["forward"] == "nat"
    text = ipvsd_cli("status", "--socket", nat.socket).stdout
    assert "InActConn" in text
    assert "192.168.2.30:80" in text
    assert ipvsd_cli("status", "--check", "ready", "--socket", nat.socket).returncode == 0
    assert ipvsd_cli("status", "--check", "master", "--socket", nat.socket).returncode == 1


def test_drain_survives_reload_and_undrain_restores(nat: Lab) -> None:
    real = nat.reals[0]

    def weight() -> int:
        return ipvsadm_counts(nat.scenario.director)[f"{real}:80"][0]

    result = ipvsd_cli("drain", f"{VIP}:80", f"{real}:80", "--socket", nat.socket)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: weight() == 0, timeout=5)
    before = len(nat.daemon.events())
    assert ipvsd_cli("reload", "--socket", nat.socket).returncode == 0
    nat.daemon.wait_event("config.reloaded", timeout=10, after=before)
    time.sleep(0.5)
    assert weight() == 0
    bad = ipvsd_cli("drain", f"{VIP}:80", "192.168.2.99:80", "--socket", nat.socket)
    assert bad.returncode == 1
    assert "no real" in bad.stderr
    assert ipvsd_cli("undrain", f"{VIP}:80", f"{real}:80", "--socket", nat.socket).returncode == 0
    wait_until(lambda: weight() == 1, timeout=5)


def test_sd_notify_ready_only_after_reconcile_and_watchdog_pings(nat: Lab) -> None:
    assert nat.daemon.stop() == 0
    nat.scenario.topo.exec(nat.scenario.director, ["ipvsadm", "-C"])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(nat.scenario.workdir / "notify.sock")
    notify.bind(path)
    notify.settimeout(30)
    try:
        nat.daemon.start(wait_ready=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
        try:
            first = notify.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no READY: {nat.daemon.events()}") from None
        table = kernel_table(nat.scenario.director)  # at the moment READY arrived
        assert first.startswith("READY=1"), first
        assert set(table.services) == {WEB, ECHO}
        assert table.dest_count() == 4
        pings = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and pings < 2:
            pings += notify.recv(4096) == b"WATCHDOG=1"
        assert pings >= 2
    finally:
        notify.close()


def scrape(ns: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics inside the director's namespace, parsed into (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with in_netns(ns):
        conn = socket.create_connection(("127.0.0.1", 9477), timeout=30)
    conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_metrics_show_inactconn_as_ipvsadm_does(nat: Lab) -> None:
    assert _served_by(nat.scenario.requests(20))
    samples = scrape(nat.scenario.director)
    expected = ipvsadm_counts(nat.scenario.director)
    for real in nat.reals:
        labels = frozenset(
            {
                "local_address": VIP,
                "local_port": "80",
                "remote_address": real,
                "remote_port": "80",
                "proto": "TCP",
                "local_mark": "",
            }.items()
        )
        weight, active, inactive = expected[f"{real}:80"]
        assert samples[("ipvs_backend_connections_inactive", labels)] == inactive
        assert samples[("ipvs_backend_connections_active", labels)] == active
        assert samples[("ipvs_backend_weight", labels)] == weight
        assert inactive > 0
        assert (
            samples[("ipvsd_backend_up", labels)] == 1
            or ("ipvsd_backend_up", labels) not in samples
        )
    assert samples[("ipvsd_scrape_error", frozenset())] == 0
    reloads = [v for (name, _), v in samples.items() if name == "ipvsd_config_reloads_total"]
    assert reloads
