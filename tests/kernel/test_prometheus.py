"""A real Prometheus scraping both directors of the DR lab: contrib/ against live data.

Debian's Prometheus server runs on the lab's monitor host (its own namespace,
listening on 127.0.0.1 there only) and scrapes director1 and director2 over
the management segment every second, with contrib/prometheus/ipvsd-alerts.yml
loaded (``for:`` shortened, see `lab.prometheus`). Then:

- every query of the Grafana dashboard returns data (Grafana's variables
  filled in for all directors);
- every alert expression evaluates without error, and no alert is active
  while the lab is healthy;
- stopping real1's nginx fires IpvsdBackendDown for it on both directors,
  and only for it;
- taking director1's eth1 down shows in ``ipvsd_vrrp_state`` (director1
  FAULT, director2 MASTER) and fires IpvsdVrrpFault for director1.

The tests run in this order and share one lab (~25 s to start in UML).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lab.contrib import alert_rules, dashboard_queries, instantiate
from lab.prometheus import PrometheusServer
from lab.reference import ReferenceLab
from lab.scenario import wait_until
from tests.kernel.narrate import say

REAL1 = "192.168.1.30"


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReferenceLab]:
    with ReferenceLab("dr", tmp_path_factory.mktemp("prometheus"), monitor=True) as lab:
        started = lab.start()
        up = time.monotonic()
        lab.start_prometheus()
        say(
            request,
            f"dr lab up in {started:.1f} s; Prometheus scraping both directors "
            f"{time.monotonic() - up:.1f} s later",
        )
        yield lab


@pytest.fixture(scope="module")
def prometheus(lab: ReferenceLab) -> PrometheusServer:
    assert lab.prometheus is not None
    return lab.prometheus


def test_prometheus_listens_on_loopback_only(lab: ReferenceLab) -> None:
    listening = lab.exec("monitor", ["ss", "-Hltn"], check=True).stdout.split("\n")
    addresses = {line.split()[3] for line in listening if line.strip()}
    assert addresses == {"127.0.0.1:9090"}


def test_both_directors_are_scraped_and_vrrp_is_as_elected(prometheus: PrometheusServer) -> None:
    assert prometheus.values('up{job="ipvsd"}') == {"director1": 1.0, "director2": 1.0}
    assert prometheus.values("ipvsd_vrrp_state") == {"director1": 2.0, "director2": 1.0}


def test_every_dashboard_query_returns_data(
    request: pytest.FixtureRequest, lab: ReferenceLab, prometheus: PrometheusServer
) -> None:
    lab.curl(20)  # traffic, so that the rates are not all 0
    # Two samples of every series in the shortest window used below.
    time.sleep(3)
    empty = []
    queries = dashboard_queries()
    for query in queries:
        promql = instantiate(query.expr, rate_interval="30s")
        if not prometheus.query(promql):
            empty.append(f"{query.panel} ({query.ref_id}): {promql}")
    assert empty == []
    say(request, f"{len(queries)} dashboard queries, each with data")


def test_every_alert_expression_evaluates_and_none_is_active(
    prometheus: PrometheusServer,
) -> None:
    for rule in alert_rules():
        prometheus.query(rule.expr)  # PrometheusError if it does not evaluate
    health = prometheus.rule_health()
    assert set(health) == {rule.name for rule in alert_rules()}
    wait_until(lambda: set(prometheus.rule_health().values()) == {"ok"}, 10, 0.5)
    assert prometheus.alerts() == []


def test_stopping_a_real_fires_backend_down_for_it(
    request: pytest.FixtureRequest, lab: ReferenceLab, prometheus: PrometheusServer
) -> None:
    stopped = time.monotonic()
    lab.stop_nginx("real1")

    def fired() -> set[tuple[str, str]]:
        return {
            (labels["instance"], labels["remote_address"])
            for labels in prometheus.firing("IpvsdBackendDown")
            if labels["local_port"] == "80"
        }

    wait_until(lambda: len(fired()) == 2, 60, 0.5)
    assert fired() == {("director1", REAL1), ("director2", REAL1)}
    say(request, f"IpvsdBackendDown firing for real1 {time.monotonic() - stopped:.1f} s after stop")
    assert prometheus.firing("IpvsdServiceAllBackendsDown") == []
    lab.start_nginx("real1")
    wait_until(lambda: not prometheus.firing("IpvsdBackendDown"), 60, 0.5)


def test_a_failover_is_seen_in_the_vrrp_state_and_fires_the_fault_alert(
    request: pytest.FixtureRequest, lab: ReferenceLab, prometheus: PrometheusServer
) -> None:
    lab.link_down("director1")
    took = wait_until(
        lambda: prometheus.values("ipvsd_vrrp_state") == {"director1": 3.0, "director2": 2.0},
        30,
        0.25,
    )
    assert prometheus.values("ipvsd_vrrp_state == 2") == {"director2": 2.0}
    wait_until(lambda: prometheus.firing("IpvsdVrrpFault"), 30, 0.5)
    assert [labels["instance"] for labels in prometheus.firing("IpvsdVrrpFault")] == ["director1"]
    # A failover is no split brain and no master-less VRID.
    assert prometheus.firing("IpvsdVrrpNoMaster") == []
    assert prometheus.firing("IpvsdVrrpMultipleMasters") == []
    say(request, f"failover in ipvsd_vrrp_state {took:.1f} s after link down")
