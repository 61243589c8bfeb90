"""The PromQL of ``contrib/``: the alert rules' expressions and the Grafana dashboard's queries.

Read by the unit tests (every name a query uses is one ipvsd exports; the
syntax is checked by promtool) and by the lab's Prometheus (every query
returns data, every alert expression evaluates; tests/kernel/test_prometheus.py)::

    for rule in alert_rules():            # AlertRule(name, expr, for_)
        ...
    for query in dashboard_queries():     # PanelQuery(panel, ref_id, expr)
        promql = instantiate(query.expr, job="ipvsd")
        metric_names(promql)              # {"ipvsd_vrrp_state", ...}

`metric_names` is a small lexer, not a PromQL parser: it drops strings,
label matchers, ranges and grouping clauses, then keeps the identifiers that
are not called like functions and are not keywords. Good enough for the
queries here, whose syntax promtool checks separately.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "contrib" / "prometheus" / "ipvsd-alerts.yml"
ALERT_TESTS = ROOT / "contrib" / "prometheus" / "ipvsd-alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "ipvsd.json"

#: Series Prometheus itself adds to every target (the alerts and the dashboard use ``up``).
SCRAPE_SERIES = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_: str
    """The rule's ``for:`` duration ("0s" when it has none)."""


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    """As in the dashboard, with Grafana's variables ($job, $instance, $__rate_interval)."""


def alert_rules(path: Path = ALERTS) -> list[AlertRule]:
    """Every alerting rule of the rules file, in file order."""
    document = yaml.safe_load(path.read_text())
    return [
        AlertRule(rule["alert"], rule["expr"], str(rule.get("for", "0s")))
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard as a mapping."""
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(document: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows included (rows too)."""
    found: list[dict[str, Any]] = []
    for panel in (document or dashboard())["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(document: dict[str, Any] | None = None) -> list[PanelQuery]:
    """The PromQL of every panel target, in dashboard order."""
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"])
        for panel in panels(document)
        for target in panel.get("targets", [])
    ]


def instantiate(
    expr: str, *, job: str = "ipvsd", instance: str = ".*", rate_interval: str = "1m"
) -> str:
    """`expr` with the dashboard's variables replaced as Grafana would (all directors)."""
    for name, value in (("__rate_interval", rate_interval), ("instance", instance), ("job", job)):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in expr:
        raise ValueError(f"unknown variable left in {expr!r}")
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (see the module docstring for the method)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS
    }


def exported_metric_names() -> set[str]:
    """Every series name ipvsd's /metrics can carry (as Prometheus stores them)."""
    from prometheus_client import CollectorRegistry

    from ipvsd.metrics import METRIC_NAMES, DaemonMetrics

    registry = CollectorRegistry(auto_describe=False)
    DaemonMetrics(registry, version="0", node="n")
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set(METRIC_NAMES)
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> tuple[int, str]:
    """Run Debian's promtool: (exit status, stdout and stderr).

    Raises:
        AssertionError: promtool is not installed (a test needing it fails, never skips).
    """
    path = shutil.which("promtool")
    assert path, "promtool is missing: install Debian's prometheus (bash scripts/setup.sh apt)"
    done = subprocess.run(
        [path, *args], input=stdin, capture_output=True, timeout=120, check=False, cwd=cwd
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
