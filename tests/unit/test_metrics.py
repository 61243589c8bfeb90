"""Prometheus metrics: the IPVS exporter over fixture tables, the daemon's push
metrics, the event-loop lag probe and the HTTP endpoint.

The exporter's text is read back with prometheus-client's own parser, and
checked byte for byte against ``generate_latest`` over families built the
ordinary way (``add_metric``).

Label values are node_exporter's (collector/ipvs_linux.go over procfs's
/proc/net/ip_vs parser): proto "TCP"/"UDP"/"FWM", local_mark "%08X" for fwmark
services (local_address "", local_port "0"), IPv6 without brackets.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from typing import cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from structlog.testing import capture_logs

from ipvsd.errors import KernelError
from ipvsd.metrics import (
    BACKEND_LABELS,
    METRIC_NAMES,
    SERVICE_LABELS,
    DaemonMetrics,
    EventLoopLag,
    IpvsExporter,
    backend_labels,
    serve,
    service_labels,
    write_table_text,
)
from ipvsd.metrics.ipvs import CHUNK_LINES, _go
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Family,
    Protocol,
    Service,
    ServiceAttrs,
    ServiceKey,
    Stats,
    Table,
    fwmark_key,
    make_service,
)

TCP = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.0.2.10"), 80)
UDP6 = ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::10"), 53)
FWM = fwmark_key(Family.INET, 10)
FWM6 = fwmark_key(Family.INET6, 10)

float_to_go_string = cast(Callable[[float], str], floatToGoString)
"""prometheus_client's number formatter, which it leaves unannotated."""

REAL1 = DestKey(ip_address("10.1.0.1"), 8080)
REAL2 = DestKey(ip_address("10.1.0.2"), 8080)  # no counters: only its weight is known
REAL6 = DestKey(ip_address("2001:db8:1::2"), 53)
REAL_FWM = DestKey(ip_address("10.1.0.5"), 0)
REAL6_S = "2001:db8:1::2"

TCP_LABELS = {"local_address": "192.0.2.10", "local_port": "80", "proto": "TCP", "local_mark": ""}
UDP6_LABELS = {
    "local_address": "2001:db8::10",
    "local_port": "53",
    "proto": "UDP",
    "local_mark": "",
}
FWM_LABELS = {"local_address": "", "local_port": "0", "proto": "FWM", "local_mark": "0000000A"}


def remote(labels: dict[str, str], address: str, port: int) -> dict[str, str]:
    return {**labels, "remote_address": address, "remote_port": str(port)}


def counters(active: int, inactive: int, persistent: int, base: int) -> DestCounters:
    return DestCounters(active, inactive, persistent, stats(base))


def stats(base: int) -> Stats:
    """Distinct values per counter: conns base, inpkts base+1, ... outbytes base+4."""
    return Stats(conns=base, inpkts=base + 1, outpkts=base + 2, inbytes=base + 3, outbytes=base + 4)


def service(key: ServiceKey, base: int | None, *dests: Dest) -> Service:
    made = make_service(key, ServiceAttrs("wlc"), dests)
    return Service(made.key, made.attrs, made.dests, stats(base) if base is not None else None)


FIXTURE = Table.of(
    [
        service(
            TCP,
            1000,
            Dest(REAL1, DestAttrs(weight=5), counters(3, 50, 2, 100)),
            Dest(REAL2, DestAttrs(weight=0)),
        ),
        service(UDP6, 2000, Dest(REAL6, DestAttrs(weight=1), counters(0, 7, 0, 200))),
        # 2**40 bytes: counters are exported without loss of precision up to 2**53.
        service(FWM, None, Dest(REAL_FWM, DestAttrs(weight=3), counters(9, 1, 4, 2**40))),
    ]
)

TRAFFIC = (
    "connections",
    "incoming_packets",
    "outgoing_packets",
    "incoming_bytes",
    "outgoing_bytes",
)


class Parsed:
    """A collector that scrapes `exporter` and parses its text at every collect."""

    def __init__(self, exporter: IpvsExporter) -> None:
        self.exporter = exporter

    def collect(self) -> list[Metric]:
        return list(text_string_to_metric_families(self.exporter.text().decode()))


def registry_of(exporter: IpvsExporter) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Parsed(exporter))
    return registry


def scrape(table: Table) -> CollectorRegistry:
    return registry_of(IpvsExporter(lambda: table))


def value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    found = registry.get_sample_value(name, labels or {})
    assert found is not None, f"no sample {name}{labels}"
    return found


def all_samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for m in registry.collect() for s in m.samples]


# --- labels ------------------------------------------------------------------


def test_label_values_copy_node_exporter() -> None:
    assert service_labels(TCP) == ("192.0.2.10", "80", "TCP", "")
    assert service_labels(UDP6) == ("2001:db8::10", "53", "UDP", "")
    assert service_labels(FWM) == ("", "0", "FWM", "0000000A")
    assert service_labels(fwmark_key(Family.INET, 0x10001000))[3] == "10001000"
    sctp = ServiceKey(Family.INET, Protocol.SCTP, ip_address("192.0.2.1"), 9)
    assert service_labels(sctp)[2] == "SCTP"
    assert backend_labels(UDP6, REAL6) == ("2001:db8::10", "53", "2001:db8:1::2", "53", "UDP", "")


# --- IpvsExporter ------------------------------------------------------------


def test_backend_gauges_and_counters_of_every_service_kind() -> None:
    registry = scrape(FIXTURE)
    real1 = remote(TCP_LABELS, "10.1.0.1", 8080)
    real6 = remote(UDP6_LABELS, REAL6_S, 53)
    real_fwm = remote(FWM_LABELS, "10.1.0.5", 0)
    for labels, (active, inactive, persistent, weight, base) in [
        (real1, (3, 50, 2, 5, 100)),
        (real6, (0, 7, 0, 1, 200)),
        (real_fwm, (9, 1, 4, 3, 2**40)),
    ]:
        assert value(registry, "ipvs_backend_connections_active", labels) == active
        assert value(registry, "ipvs_backend_connections_inactive", labels) == inactive
        assert value(registry, "ipvs_backend_connections_persistent", labels) == persistent
        assert value(registry, "ipvs_backend_weight", labels) == weight
        for offset, name in enumerate(TRAFFIC):
            assert value(registry, f"ipvs_backend_{name}_total", labels) == base + offset


def test_service_counters_use_service_labels() -> None:
    registry = scrape(FIXTURE)
    for labels, base in [(TCP_LABELS, 1000), (UDP6_LABELS, 2000)]:
        assert tuple(labels) == SERVICE_LABELS
        for offset, name in enumerate(TRAFFIC):
            assert value(registry, f"ipvs_service_{name}_total", labels) == base + offset


def test_exactly_the_expected_series_and_nothing_for_missing_stats() -> None:
    samples = all_samples(scrape(FIXTURE))
    ipvs = [(name, labels) for name, labels, _ in samples if name.startswith("ipvs_")]
    real2 = remote(TCP_LABELS, "10.1.0.2", 8080)
    # The dest without counters has only its weight; the fwmark service without stats
    # has no service series.
    assert [name for name, labels in ipvs if labels == real2] == ["ipvs_backend_weight"]
    assert not [name for name, labels in ipvs if labels == FWM_LABELS]
    assert len(ipvs) == 3 * 9 + 1 + 2 * 5
    assert len(set(map(repr, ipvs))) == len(ipvs)  # no duplicate series
    assert dict((name, v) for name, _, v in samples if not name.startswith("ipvs_")).keys() == {
        "ipvsd_scrape_error",
        "ipvsd_scrape_errors_total",
        "ipvsd_scrape_duration_seconds",
    }


def test_text_exposition_matches_node_exporter_lines() -> None:
    text = IpvsExporter(lambda: FIXTURE).text().decode()
    assert (
        'ipvs_backend_connections_active{local_address="",local_mark="0000000A",local_port="0",'
        'proto="FWM",remote_address="10.1.0.5",remote_port="0"} 9.0\n'
    ) in text
    assert (
        'ipvs_backend_connections_inactive{local_address="2001:db8::10",local_mark="",'
        'local_port="53",proto="UDP",remote_address="2001:db8:1::2",remote_port="53"} 7.0\n'
    ) in text
    assert "# TYPE ipvs_backend_incoming_bytes_total counter\n" in text
    assert "# TYPE ipvs_backend_weight gauge\n" in text
    assert "[" not in text


def reference_families(table: Table) -> list[Metric]:
    """The table's families built the ordinary prometheus-client way (the oracle)."""
    by = "by local and remote address."
    gauges = [
        GaugeMetricFamily(f"ipvs_backend_{name}", f"The current {doc} {by}", labels=BACKEND_LABELS)
        for name, doc in (
            ("connections_active", "active connections"),
            ("connections_inactive", "inactive connections"),
            ("connections_persistent", "persistent connections"),
            ("weight", "backend weight"),
        )
    ]
    docs = (
        "The total number of connections made",
        "The total number of incoming packets",
        "The total number of outgoing packets",
        "The total amount of incoming data in bytes",
        "The total amount of outgoing data in bytes",
    )
    backend, service_ = (
        [
            CounterMetricFamily(f"ipvs_{kind}_{name}", f"{doc} by this {kind}.", labels=labels)
            for name, doc in zip(TRAFFIC, docs, strict=True)
        ]
        for kind, labels in (("backend", BACKEND_LABELS), ("service", SERVICE_LABELS))
    )
    for svc in table.services.values():
        if svc.stats is not None:
            for family, v in zip(service_, traffic(svc.stats), strict=True):
                family.add_metric(service_labels(svc.key), v)
        for dest in svc.dests.values():
            labels = backend_labels(svc.key, dest.key)
            c = dest.counters
            values = (
                (None, None, None, dest.attrs.weight)
                if c is None
                else (c.active_conns, c.inactive_conns, c.persistent_conns, dest.attrs.weight)
            )
            for gauge, value in zip(gauges, values, strict=True):
                if value is not None:
                    gauge.add_metric(labels, value)
            if c is not None:
                for family, v in zip(backend, traffic(c.stats), strict=True):
                    family.add_metric(labels, v)
    return [*gauges, *backend, *service_]


def traffic(st: Stats) -> tuple[int, ...]:
    return (st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes)


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


@pytest.mark.parametrize("services", [1, 3, 700])
def test_the_streamed_text_is_byte_for_byte_what_generate_latest_makes(services: int) -> None:
    # 700 services x 2 reals: backend families span two chunks of CHUNK_LINES.
    big = [
        service(
            ServiceKey(Family.INET, Protocol.TCP, ip_address(f"10.9.{i // 250}.{i % 250}"), 80),
            i * 1_000_003,  # values on both sides of 10^6 (Go's exponent form)
            Dest(REAL1, DestAttrs(weight=i % 7), counters(i, i * 3, i % 2, i * 999_983)),
            Dest(REAL2, DestAttrs(weight=1)),
        )
        for i in range(services)
    ]
    table = Table.of([*FIXTURE.services.values(), *big])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(reference_families(table)))
    chunks: list[bytes] = []
    write_table_text(table, chunks.append)
    assert b"".join(chunks) == generate_latest(registry)
    assert max(chunk.count(b"\n") for chunk in chunks) <= CHUNK_LINES


@given(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 10**8), st.floats(0, 1e20)))
@example(999_999)
@example(1_000_000)
@example(1_200_000)
@example(10**10)
@example(2**53 - 1)
@example(2**53 + 1)
def test_counters_print_as_prometheus_client_prints_them(value: float) -> None:
    """The inline int path of the page writer is the client's formatter, digit for digit."""
    assert _go(value) == float_to_go_string(value)


def test_every_family_name_is_emitted_and_none_clashes_with_the_daemons() -> None:
    mh = make_service(
        ServiceKey(Family.INET, Protocol.TCP, ip_address("10.9.9.9"), 80), ServiceAttrs("mh")
    )  # ipvsd_service_mh_table_info is written only for mh services
    table = Table.of([*FIXTURE.services.values(), mh])
    emitted = {m.name for m in Parsed(IpvsExporter(lambda: table)).collect()}
    assert {n.removesuffix("_total") for n in METRIC_NAMES} == emitted
    registry = CollectorRegistry()
    DaemonMetrics(registry, version="1", node="n")
    daemon_names = {m.name for m in registry.collect()}
    assert not emitted & daemon_names


def test_ipv4_and_ipv6_fwmark_services_with_one_mark_are_summed() -> None:
    # /proc/net/ip_vs shows both as "FWM 0000000A": node_exporter sums colliding series.
    table = Table.of(
        [
            service(FWM, 10, Dest(REAL_FWM, DestAttrs(weight=3), counters(1, 2, 0, 100))),
            service(
                FWM6,
                20,
                Dest(REAL_FWM, DestAttrs(weight=4), counters(10, 20, 1, 1000)),
                Dest(REAL6, DestAttrs(weight=1), counters(5, 0, 0, 0)),
            ),
        ]
    )
    registry = scrape(table)
    real_fwm = remote(FWM_LABELS, "10.1.0.5", 0)
    assert value(registry, "ipvs_backend_connections_active", real_fwm) == 11
    assert value(registry, "ipvs_backend_weight", real_fwm) == 7
    assert value(registry, "ipvs_backend_incoming_bytes_total", real_fwm) == 103 + 1003
    assert value(registry, "ipvs_backend_connections_active", remote(FWM_LABELS, REAL6_S, 53)) == 5
    assert value(registry, "ipvs_service_connections_total", FWM_LABELS) == 30
    names = [(n, repr(labels)) for n, labels, _ in all_samples(registry)]
    assert len(names) == len(set(names))


def test_a_successful_scrape_reports_no_error_and_its_duration() -> None:
    ticks = itertools.count(10.0, 0.25)  # each read takes 0.25 s
    registry = registry_of(IpvsExporter(lambda: FIXTURE, clock=lambda: next(ticks)))
    assert value(registry, "ipvsd_scrape_error") == 0
    assert value(registry, "ipvsd_scrape_errors_total") == 0
    assert value(registry, "ipvsd_scrape_duration_seconds") == 0.25


@pytest.mark.parametrize(
    "error",
    [KernelError("dump failed", errno=errno.EBUSY), TimeoutError(), RuntimeError("a bug")],
)
def test_a_failed_read_emits_no_ipvs_series_and_counts_the_error(error: Exception) -> None:
    failing = True

    def read_table() -> Table:
        if failing:
            raise error
        return FIXTURE

    registry = registry_of(IpvsExporter(read_table))
    with capture_logs() as logs:
        samples = all_samples(registry)
    assert not [name for name, _, _ in samples if name.startswith("ipvs_")]
    assert value(registry, "ipvsd_scrape_error") == 1
    # Every get_sample_value scrapes again: this is the third failure.
    assert value(registry, "ipvsd_scrape_errors_total") == 3
    assert [(e["event"], e["log_level"]) for e in logs] == [("metrics.scrape_error", "warning")]
    failing = False
    assert value(registry, "ipvsd_scrape_error") == 0
    assert value(registry, "ipvsd_scrape_errors_total") == 3
    assert value(registry, "ipvs_backend_weight", remote(TCP_LABELS, "10.1.0.1", 8080)) == 5


# --- DaemonMetrics -----------------------------------------------------------


@pytest.fixture
def daemon() -> tuple[CollectorRegistry, DaemonMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    return registry, DaemonMetrics(registry, version="1.2.3", node="director1")


def test_info_and_zeroed_reload_counters(daemon: tuple[CollectorRegistry, DaemonMetrics]) -> None:
    registry, _ = daemon
    assert value(registry, "ipvsd_info", {"version": "1.2.3", "node": "director1"}) == 1
    assert value(registry, "ipvsd_build_info", {"version": "1.2.3"}) == 1
    for result in ("success", "failure"):
        assert value(registry, "ipvsd_config_reloads_total", {"result": result}) == 0
    # The config the daemon started with was valid: an alert on "== 0" stays quiet.
    assert value(registry, "ipvsd_config_last_reload_successful") == 1
    started = value(registry, "ipvsd_config_last_reload_success_timestamp_seconds")
    assert started is not None
    assert abs(started - time.time()) < 60


def test_vrrp_metrics(daemon: tuple[CollectorRegistry, DaemonMetrics]) -> None:
    registry, metrics = daemon
    # vrrp_instance, not instance: Prometheus gives ``instance`` to the target.
    vi = {"vrrp_instance": "VI_1", "interface": "eth1", "vrid": "51"}
    for state, expected in [("INIT", 0), ("BACKUP", 1), ("MASTER", 2), ("FAULT", 3)]:
        metrics.vrrp_state("VI_1", "eth1", 51, state)
        assert value(registry, "ipvsd_vrrp_state", vi) == expected
    with pytest.raises(ValueError, match="unknown VRRP state 'master'"):
        metrics.vrrp_state("VI_1", "eth1", 51, "master")
    metrics.vrrp_priority("VI_1", 90)
    assert value(registry, "ipvsd_vrrp_priority", {"vrrp_instance": "VI_1"}) == 90
    metrics.vrrp_transition("VI_1", "MASTER")
    metrics.vrrp_transition("VI_1", "MASTER")
    metrics.vrrp_transition("VI_1", "BACKUP")
    transitions = "ipvsd_vrrp_transitions_total"
    assert value(registry, transitions, {"vrrp_instance": "VI_1", "to": "MASTER"}) == 2
    assert value(registry, transitions, {"vrrp_instance": "VI_1", "to": "BACKUP"}) == 1
    metrics.invalid_packet("eth1", "ttl")
    invalid = {"interface": "eth1", "reason": "ttl"}
    assert value(registry, "ipvsd_vrrp_invalid_packets_total", invalid) == 1


def test_backend_up_joins_the_collector_series(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    metrics.backend_up((FWM, REAL_FWM), True)
    metrics.backend_up((UDP6, REAL6), False)
    real_fwm = remote(FWM_LABELS, "10.1.0.5", 0)
    assert value(registry, "ipvsd_backend_up", real_fwm) == 1
    assert value(registry, "ipvsd_backend_up", remote(UDP6_LABELS, REAL6_S, 53)) == 0
    # The same label set as the kernel series of that real.
    assert value(scrape(FIXTURE), "ipvs_backend_weight", real_fwm) == 3


# --- DaemonMetrics.retain, backend_gone: series follow the config across reloads ----------


def vrrp_samples(registry: CollectorRegistry, instance: str) -> list[tuple[str, dict[str, str]]]:
    """Every per-instance VRRP sample of `instance`, ``_created`` ones included."""
    return [
        (name, labels)
        for name, labels, _ in all_samples(registry)
        if name.startswith(("ipvsd_vrrp_state", "ipvsd_vrrp_priority", "ipvsd_vrrp_transitions"))
        and labels["vrrp_instance"] == instance
    ]


def state_labels(registry: CollectorRegistry) -> list[dict[str, str]]:
    return [labels for name, labels, _ in all_samples(registry) if name == "ipvsd_vrrp_state"]


def run_instance(metrics: DaemonMetrics, name: str, interface: str, vrid: int) -> None:
    metrics.vrrp_transition(name, "BACKUP")
    metrics.vrrp_state(name, interface, vrid, "BACKUP")
    metrics.vrrp_priority(name, 100)


def test_retain_drops_every_series_of_a_removed_instance(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    run_instance(metrics, "VI_1", "eth1", 51)
    run_instance(metrics, "VI_2", "eth2", 52)
    metrics.invalid_packet("eth2", "ttl")
    metrics.retain([("VI_1", "eth1", 51)])
    vi_1, vi_2 = {"vrrp_instance": "VI_1"}, {"vrrp_instance": "VI_2"}
    assert value(registry, "ipvsd_vrrp_state", {**vi_1, "interface": "eth1", "vrid": "51"}) == 1
    assert value(registry, "ipvsd_vrrp_priority", vi_1) == 100
    assert value(registry, "ipvsd_vrrp_transitions_total", {**vi_1, "to": "BACKUP"}) == 1
    get = registry.get_sample_value
    assert get("ipvsd_vrrp_state", {**vi_2, "interface": "eth2", "vrid": "52"}) is None
    assert get("ipvsd_vrrp_priority", vi_2) is None
    assert get("ipvsd_vrrp_transitions_total", {**vi_2, "to": "BACKUP"}) is None
    assert get("ipvsd_vrrp_transitions_created", {**vi_2, "to": "BACKUP"}) is None
    assert vrrp_samples(registry, "VI_2") == []
    # Keyed by interface, not instance: what eth2 received stays counted.
    invalid = {"interface": "eth2", "reason": "ttl"}
    assert value(registry, "ipvsd_vrrp_invalid_packets_total", invalid) == 1


def test_retain_with_no_instance_left(daemon: tuple[CollectorRegistry, DaemonMetrics]) -> None:
    registry, metrics = daemon
    run_instance(metrics, "VI_1", "eth1", 51)
    metrics.retain([])
    assert vrrp_samples(registry, "VI_1") == []
    metrics.retain([])  # nothing left to drop: no error


@pytest.mark.parametrize(
    ("interface", "vrid"),
    [("eth2", 51), ("eth1", 52), ("eth2", 52)],
    ids=["interface", "vrid", "both"],
)
def test_retain_drops_the_old_state_of_a_moved_instance(
    daemon: tuple[CollectorRegistry, DaemonMetrics], interface: str, vrid: int
) -> None:
    registry, metrics = daemon
    run_instance(metrics, "VI_1", "eth1", 51)
    metrics.retain([("VI_1", interface, vrid)])
    old = {"vrrp_instance": "VI_1", "interface": "eth1", "vrid": "51"}
    assert registry.get_sample_value("ipvsd_vrrp_state", old) is None
    # Unknown under the new labels until the restarted instance reports; the
    # series keyed by name alone carry over.
    assert state_labels(registry) == []
    assert value(registry, "ipvsd_vrrp_priority", {"vrrp_instance": "VI_1"}) == 100
    metrics.vrrp_state("VI_1", interface, vrid, "MASTER")
    new = {"vrrp_instance": "VI_1", "interface": interface, "vrid": str(vrid)}
    assert value(registry, "ipvsd_vrrp_state", new) == 2
    assert state_labels(registry) == [new]


def test_a_state_under_new_labels_replaces_the_old_one(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    # The restarted instance may report before retain runs: it still ends with
    # one state series, and the other instances keep theirs.
    registry, metrics = daemon
    run_instance(metrics, "VI_1", "eth1", 51)
    run_instance(metrics, "VI_2", "eth1", 52)
    metrics.vrrp_state("VI_1", "eth3", 61, "FAULT")
    moved = {"vrrp_instance": "VI_1", "interface": "eth3", "vrid": "61"}
    other = {"vrrp_instance": "VI_2", "interface": "eth1", "vrid": "52"}
    assert value(registry, "ipvsd_vrrp_state", moved) == 3
    assert value(registry, "ipvsd_vrrp_state", other) == 1
    assert len(state_labels(registry)) == 2


def test_backend_gone_drops_the_backend_up_of_a_removed_real(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    for service, real, up in [
        (TCP, REAL1, True),
        (TCP, REAL2, False),
        (FWM, REAL_FWM, True),
        (UDP6, REAL6, False),
    ]:
        metrics.backend_up((service, real), up)
    metrics.backend_gone((TCP, REAL2))
    metrics.backend_gone((FWM, REAL_FWM))
    assert value(registry, "ipvsd_backend_up", remote(TCP_LABELS, "10.1.0.1", 8080)) == 1
    assert value(registry, "ipvsd_backend_up", remote(UDP6_LABELS, REAL6_S, 53)) == 0
    get = registry.get_sample_value
    assert get("ipvsd_backend_up", remote(TCP_LABELS, "10.1.0.2", 8080)) is None
    assert get("ipvsd_backend_up", remote(FWM_LABELS, "10.1.0.5", 0)) is None
    metrics.backend_gone((TCP, REAL2))  # gone already: no error
    metrics.backend_gone((TCP, REAL1))
    metrics.backend_gone((UDP6, REAL6))
    assert [sample for sample in all_samples(registry) if sample[0] == "ipvsd_backend_up"] == []


def test_health_reconcile_reload_and_loop_lag(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    for seconds in (0.0005, 0.02, 0.02, 12.0):
        metrics.health_check_duration(seconds)
    health = "ipvsd_health_check_duration_seconds"
    assert value(registry, f"{health}_count") == 4
    assert value(registry, f"{health}_bucket", {"le": "0.001"}) == 1
    assert value(registry, f"{health}_bucket", {"le": "0.025"}) == 3
    assert value(registry, f"{health}_bucket", {"le": "10.0"}) == 3
    assert value(registry, f"{health}_bucket", {"le": "+Inf"}) == 4

    metrics.reconcile_operations({"add_dest": 3, "edit_dest": 0, "delete_service": 1})
    metrics.reconcile_operations({"add_dest": 2})
    ops = "ipvsd_reconcile_operations_total"
    assert value(registry, ops, {"op": "add_dest"}) == 5
    assert value(registry, ops, {"op": "delete_service"}) == 1
    assert registry.get_sample_value(ops, {"op": "edit_dest"}) is None
    metrics.reconcile_error()
    metrics.reconcile_error(2)
    assert value(registry, "ipvsd_reconcile_errors_total") == 3

    metrics.config_reload(True)
    assert value(registry, "ipvsd_config_last_reload_successful") == 1
    applied = value(registry, "ipvsd_config_last_reload_success_timestamp_seconds")
    metrics.config_reload(False)
    metrics.config_reload(False)
    assert value(registry, "ipvsd_config_reloads_total", {"result": "success"}) == 1
    assert value(registry, "ipvsd_config_reloads_total", {"result": "failure"}) == 2
    assert value(registry, "ipvsd_config_last_reload_successful") == 0
    # The time of the config in force: a refused reload does not move it.
    assert value(registry, "ipvsd_config_last_reload_success_timestamp_seconds") == applied

    metrics.loop_lag(0.3)
    metrics.loop_lag(0.002)
    assert value(registry, "ipvsd_event_loop_lag_seconds") == 0.002
    assert value(registry, "ipvsd_event_loop_wakeup_lag_seconds_count") == 2
    assert value(registry, "ipvsd_event_loop_wakeup_lag_seconds_sum") == pytest.approx(0.302)


# --- EventLoopLag ------------------------------------------------------------


async def _block(seconds: float) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 - the point: a coroutine that blocks the loop


async def test_loop_lag_detects_a_blocked_loop_and_warns_once(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    probe = EventLoopLag(metrics, threshold_s=0.1, interval_s=0.01, warn_every_s=10.0)
    with capture_logs() as logs:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.05)
        await _block(0.3)
        await asyncio.sleep(0.05)
        await _block(0.15)  # also late, but within warn_every_s of the first warning
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert probe.max_lag_s >= 0.2
    assert value(registry, "ipvsd_event_loop_wakeup_lag_seconds_sum") >= 0.2 + 0.1
    assert value(registry, "ipvsd_event_loop_wakeup_lag_seconds_count") >= 5
    warnings = [e for e in logs if e["event"] == "loop.lag"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["lag_s"] >= 0.2
    assert warnings[0]["threshold_s"] == 0.1


async def test_loop_lag_stays_quiet_on_an_idle_loop(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    _, metrics = daemon
    # A generous threshold: a busy CI machine may delay a timer by some tens of ms.
    probe = EventLoopLag(metrics, threshold_s=1.0, interval_s=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 0 <= probe.max_lag_s < 1.0
    assert logs == []


def test_loop_lag_rejects_a_zero_interval(daemon: tuple[CollectorRegistry, DaemonMetrics]) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        EventLoopLag(daemon[1], threshold_s=0.1, interval_s=0)


# --- serve -------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_serve_exports_the_registry_over_http() -> None:
    registry = CollectorRegistry(auto_describe=False)
    DaemonMetrics(registry, version="1.2.3", node="director1")
    server = serve(registry, "127.0.0.1:0", ipvs=IpvsExporter(lambda: FIXTURE))
    try:
        status, body = _get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.shutdown()
    assert status == 200
    assert 'ipvsd_info{node="director1",version="1.2.3"} 1.0' in body
    assert 'ipvs_backend_weight{local_address="192.0.2.10"' in body
    server.shutdown()  # idempotent


def test_shutdown_releases_the_port() -> None:
    # prometheus/client_python#1068: shutdown() alone leaves the socket open.
    registry = CollectorRegistry(auto_describe=False)
    first = serve(registry, "127.0.0.1:0")
    first.shutdown()
    second = serve(registry, f"127.0.0.1:{first.port}")
    second.shutdown()


def test_serve_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1")
    registry = CollectorRegistry(auto_describe=False)
    DaemonMetrics(registry, version="1", node="n")
    server = serve(registry, "[::1]:0")
    try:
        status, body = _get(f"http://[::1]:{server.port}/metrics")
    finally:
        server.shutdown()
    assert status == 200
    assert "ipvsd_info" in body


def test_a_scrape_whose_read_fails_still_answers_200() -> None:
    def fail() -> Table:
        raise KernelError("netlink timeout")

    registry = CollectorRegistry(auto_describe=False)
    server = serve(registry, "127.0.0.1:0", ipvs=IpvsExporter(fail))
    try:
        status, body = _get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.shutdown()
    assert status == 200
    assert "ipvsd_scrape_error 1.0" in body
    assert "ipvs_backend" not in body


def test_serve_reports_a_port_in_use_clearly(listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    listen = f"127.0.0.1:{port}"
    with pytest.raises(OSError, match=f"cannot listen on {listen}: Address already in use") as exc:
        serve(CollectorRegistry(auto_describe=False), listen)
    assert exc.value.errno == errno.EADDRINUSE


def test_serve_rejects_a_malformed_listen_address() -> None:
    with pytest.raises(ValueError, match="expected ADDRESS:PORT"):
        serve(CollectorRegistry(auto_describe=False), "localhost")


def test_other_paths_get_a_landing_page_or_404() -> None:
    server = serve(CollectorRegistry(auto_describe=False), "127.0.0.1:0")
    try:
        status, body = _get(f"http://127.0.0.1:{server.port}/")
        assert status == 200
        assert 'href="/metrics"' in body
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(f"http://127.0.0.1:{server.port}/nope")
        assert missing.value.code == 404
    finally:
        server.shutdown()


def big_table(services: int = 5000) -> Table:
    """`services` TCP services of one real each, with counters."""
    return Table.of(
        [
            service(
                ServiceKey(Family.INET, Protocol.TCP, ip_address(f"10.8.{i // 250}.{i % 250}"), 80),
                i,
                Dest(REAL1, DestAttrs(weight=1), counters(1, 2, 3, i)),
            )
            for i in range(services)
        ]
    )


def test_a_scraper_that_hangs_up_mid_page_leaves_the_server_serving() -> None:
    big = big_table()
    registry = CollectorRegistry(auto_describe=False)
    server = serve(registry, "127.0.0.1:0", ipvs=IpvsExporter(lambda: big))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
            # Reset instead of FIN, so the server's next write fails at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        status, body = _get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200
        assert body.count("ipvs_backend_weight{") == 5000
        assert body.splitlines()[-1].startswith("ipvsd_scrape_duration_seconds ")
    finally:
        server.shutdown()


def test_an_http_1_0_scraper_gets_the_plain_body() -> None:
    server = serve(
        CollectorRegistry(auto_describe=False), "127.0.0.1:0", ipvs=IpvsExporter(lambda: FIXTURE)
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            answer = b""
            while data := sock.recv(65536):
                answer += data
    finally:
        server.shutdown()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    table_text: list[bytes] = []
    write_table_text(FIXTURE, table_text.append)
    assert body.startswith(b"".join(table_text))
    assert b"\nipvsd_scrape_error 0.0\n" in body


def test_vrrp_instance_failures_are_counted_and_follow_the_config(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    registry, metrics = daemon
    metrics.vrrp_failure("VI_1", "RuntimeError('boom')")
    metrics.vrrp_failure("VI_1", "again")
    metrics.vrrp_failure("VI_2", "x")
    assert value(registry, "ipvsd_vrrp_instance_failures_total", {"vrrp_instance": "VI_1"}) == 2
    metrics.retain(instances=[("VI_1", "eth1", 51)])
    assert value(registry, "ipvsd_vrrp_instance_failures_total", {"vrrp_instance": "VI_1"}) == 2
    name = "ipvsd_vrrp_instance_failures_total"
    assert registry.get_sample_value(name, {"vrrp_instance": "VI_2"}) is None


def test_a_disabled_exporter_writes_nothing_and_reads_no_table() -> None:
    def read() -> Table:
        raise AssertionError("a disabled exporter must not dump the kernel")

    assert IpvsExporter(read, enabled=lambda: False).text() == b""


def test_vrrp_instance_info_says_version_family_and_interval(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    """Issue 14: one info series per instance, so the state series keep their identity."""
    registry, metrics = daemon
    metrics.vrrp_instance_info("VI_1", version=2, family="ipv4", advert_int=1.0)
    metrics.vrrp_instance_info("VI_3", version=3, family="ipv4", advert_int=0.1)
    info = "ipvsd_vrrp_instance_info"
    v2 = {"vrrp_instance": "VI_1", "version": "2", "family": "ipv4", "advert_int": "1.00"}
    v3 = {"vrrp_instance": "VI_3", "version": "3", "family": "ipv4", "advert_int": "0.10"}
    assert value(registry, info, v2) == 1
    assert value(registry, info, v3) == 1
    # A reload to another interval replaces the instance's series.
    metrics.vrrp_instance_info("VI_3", version=3, family="ipv4", advert_int=0.25)
    assert registry.get_sample_value(info, v3) is None
    assert value(registry, info, {**v3, "advert_int": "0.25"}) == 1
    # And a removed instance's goes with its other series.
    metrics.retain([("VI_1", "eth1", 51)])
    assert registry.get_sample_value(info, {**v3, "advert_int": "0.25"}) is None
    assert value(registry, info, v2) == 1


def test_backend_up_and_quorum_read_as_prometheus_client_gauges_would(
    daemon: tuple[CollectorRegistry, DaemonMetrics],
) -> None:
    """KeyedGauge renders exactly the text a labelled Gauge did: HELP, TYPE, order, values."""
    from prometheus_client import Gauge

    from ipvsd.metrics.labels import BACKEND_LABELS, SERVICE_LABELS

    registry, metrics = daemon
    reference = CollectorRegistry(auto_describe=False)
    up = Gauge(
        "ipvsd_backend_up",
        "1 if the real server passes its health checks, else 0.",
        BACKEND_LABELS,
        registry=reference,
    )
    quorum = Gauge(
        "ipvsd_service_quorum",
        "1 while the service has quorum (enough live real weight), else 0.",
        SERVICE_LABELS,
        registry=reference,
    )
    for service, real, healthy in ((FWM, REAL_FWM, True), (UDP6, REAL6, False), (TCP, REAL1, True)):
        metrics.backend_up((service, real), healthy)
        up.labels(*backend_labels(service, real)).set(1 if healthy else 0)
    metrics.backend_up((FWM, REAL_FWM), False)  # set again: keeps its place
    up.labels(*backend_labels(FWM, REAL_FWM)).set(0)
    metrics.backend_gone((UDP6, REAL6))
    up.remove(*backend_labels(UDP6, REAL6))
    metrics.service_quorum(TCP, True)
    quorum.labels(*service_labels(TCP)).set(1)

    def text(of: CollectorRegistry, name: str) -> list[str]:
        lines = generate_latest(of).decode().splitlines()
        ours = (f"{name}{{", f"# HELP {name} ", f"# TYPE {name} ")
        return [line for line in lines if line.startswith(ours)]

    assert text(registry, "ipvsd_backend_up") == text(reference, "ipvsd_backend_up")
    assert len(text(registry, "ipvsd_backend_up")) == 4  # HELP, TYPE, two reals
    assert text(registry, "ipvsd_service_quorum") == text(reference, "ipvsd_service_quorum")
    assert len(text(registry, "ipvsd_service_quorum")) == 3
