"""contrib/: the Prometheus alert rules and the Grafana dashboard, checked offline.

promtool (Debian's ``prometheus`` package, installed by scripts/setup.sh)
checks the rules file, runs its unit tests (ipvsd-alerts.test.yml) and checks
the syntax of every dashboard query. Every metric name either uses is one
ipvsd exports: a renamed metric breaks this test, not an operator's
dashboard. The kernel tier evaluates the same queries against a real
Prometheus scraping the lab (tests/kernel/test_prometheus.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.contrib import (
    ALERT_TESTS,
    ALERTS,
    SCRAPE_SERIES,
    alert_rules,
    dashboard,
    dashboard_queries,
    exported_metric_names,
    instantiate,
    metric_names,
    panels,
    promtool,
)
from lab.prometheus import duration_s, lab_rules, scrape_config

#: What issue 12 asks of the rules: one alert per situation.
REQUIRED_ALERTS = {
    "IpvsdVrrpFault",  # a VRRP instance in FAULT
    "IpvsdVrrpMultipleMasters",  # two masters for one VRID across directors
    "IpvsdVrrpNoMaster",  # none
    "IpvsdBackendDown",
    "IpvsdServiceAllBackendsDown",
    "IpvsdConfigReloadFailed",
    "IpvsdScrapeError",
    "IpvsdEventLoopLag",
}


# --- alert rules ----------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    status, output = promtool("check", "rules", str(ALERTS))
    assert status == 0, output
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    status, output = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert status == 0, output
    assert "SUCCESS" in output


def test_every_situation_of_the_issue_has_an_alert() -> None:
    assert {rule.name for rule in alert_rules()} >= REQUIRED_ALERTS


def test_every_alert_is_unit_tested_firing() -> None:
    document = yaml.safe_load(ALERT_TESTS.read_text())
    fired = {
        case["alertname"]
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule.name for rule in alert_rules()}


def test_alert_expressions_use_only_metrics_ipvsd_exports() -> None:
    known = exported_metric_names() | SCRAPE_SERIES
    unknown = {rule.name: metric_names(rule.expr) - known for rule in alert_rules()}
    assert {name: names for name, names in unknown.items() if names} == {}


# --- dashboard ------------------------------------------------------------------------


def test_dashboard_queries_use_only_metrics_ipvsd_exports() -> None:
    known = exported_metric_names() | SCRAPE_SERIES
    queries = dashboard_queries()
    assert len(queries) >= 20
    for query in queries:
        names = metric_names(instantiate(query.expr))
        assert names, f"{query.panel}: no metric in {query.expr!r}"
        assert names <= known, f"{query.panel}: {sorted(names - known)} not exported by ipvsd"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule) with Grafana's variables filled in."""
    rules = [
        {"record": f"dashboard:query{n}", "expr": instantiate(query.expr)}
        for n, query in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    status, output = promtool("check", "rules", str(path))
    assert status == 0, output


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """VRRP state per director, connections and traffic per service and backend, health,
    reloads, loop lag."""
    used = set().union(*(metric_names(instantiate(q.expr)) for q in dashboard_queries()))
    assert used >= {
        "ipvsd_vrrp_state",
        "ipvs_backend_connections_active",
        "ipvs_backend_connections_inactive",
        "ipvs_service_incoming_bytes_total",
        "ipvs_service_outgoing_bytes_total",
        "ipvs_backend_incoming_bytes_total",
        "ipvs_backend_outgoing_bytes_total",
        "ipvsd_backend_up",
        "ipvsd_config_reloads_total",
        "ipvsd_event_loop_wakeup_lag_seconds_bucket",
    }
    titles = {panel["title"] for panel in panels()}
    assert {"VRRP state per director", "Backend health", "Event-loop lag"} <= titles


def test_dashboard_is_importable() -> None:
    """The parts Grafana needs to import it: ids, grid, data source variable, job and director."""
    document = dashboard()
    assert document["uid"] == "ipvsd"
    all_panels = panels(document)
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["instance"]["allValue"] == ".*"
    assert "ipvsd_build_info" in variables["job"]["definition"]


# --- the lexer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("ipvsd_vrrp_state == 3", {"ipvsd_vrrp_state"}),
        ('count by (job, vrid) (ipvsd_vrrp_state{job="x"} == 2) > 1', {"ipvsd_vrrp_state"}),
        (
            "histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket[5m]))) > 0.25",
            {"a_bucket"},
        ),
        (
            'increase(c_count[5m]) - ignoring(le) increase(c_bucket{le="1.0"}[5m]) > 0.5',
            {
                "c_count",
                "c_bucket",
            },
        ),
        ("time() - t_seconds offset 5m", {"t_seconds"}),
        ("a unless on (x) b or c and bool d", {"a", "b", "c", "d"}),
        ("8 * rate(x_total[1m]) > 1e3", {"x_total"}),
        ('up{job="ipvsd", instance=~"a.*"} == 0', {"up"}),
    ],
)
def test_metric_names_finds_the_selected_series(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_instantiate_refuses_an_unknown_variable() -> None:
    assert instantiate('x{job="$job"}[$__rate_interval]') == 'x{job="ipvsd"}[1m]'
    with pytest.raises(ValueError, match="unknown variable"):
        instantiate("x{a=~'$unknown'}")


# --- the lab's Prometheus (lab/prometheus.py) ----------------------------------------


def test_the_lab_s_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "ipvsd-alerts.yml"
    rules.write_text(yaml.safe_dump(lab_rules()))
    config = tmp_path / "prometheus.yml"
    targets = {"director1": "192.168.100.10:9477", "director2": "192.168.100.20:9477"}
    config.write_text(yaml.safe_dump(scrape_config(targets, rules)))
    status, output = promtool("check", "config", str(config))
    assert status == 0, output
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_the_lab_shortens_every_for_and_nothing_else() -> None:
    original = yaml.safe_load(ALERTS.read_text())
    shortened = lab_rules()
    waits = {}
    for before, after in zip(
        original["groups"][0]["rules"], shortened["groups"][0]["rules"], strict=True
    ):
        assert {k: v for k, v in after.items() if k != "for"} == {
            k: v for k, v in before.items() if k != "for"
        }
        if "for" in before:
            waits[before["alert"]] = (duration_s(before["for"]), duration_s(after["for"]))
    assert waits["IpvsdBackendDown"] == (60, 6)
    assert waits["IpvsdVrrpNoMaster"] == (30, 6)
    assert all(lab <= 6 and lab < real for real, lab in waits.values())


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m", 60), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_duration_s(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1m x", "m5"])
def test_duration_s_refuses_what_prometheus_would(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_s(text)
