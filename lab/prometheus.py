"""Debian's Prometheus server in a lab namespace, scraping ipvsd, with contrib's alert rules.

The server (``/usr/bin/prometheus`` from Debian's ``prometheus`` package)
runs in a namespace of its own and listens on 127.0.0.1:9090 there only:
nothing outside the lab can reach it, and the lab reaches it through a
socket opened in that namespace. Its data lives in a temporary directory on
tmpfs (``/dev/shm``), removed by :meth:`PrometheusServer.close`.

It scrapes every target each second (job ``ipvsd``, the ``instance`` label
set to the director's name) and evaluates contrib/prometheus/ipvsd-alerts.yml
each second, with every ``for:`` divided by `FOR_DIVISOR` and at most
`FOR_MAX_S`, so that an alert fires within seconds (``promtool test rules``
covers the real durations). The two VRRP-master rules keep 6 s: longer than a
failover takes in the lab (3.7 s at most), so a failover fires neither::

    server = PrometheusServer(topo, ns, workdir, {"director1": "192.168.100.10:9477"})
    server.start()                          # waits until every target is up
    server.query("ipvsd_vrrp_state == 2")   # -> [{"metric": {...}, "value": [t, "2"]}]
    server.firing("IpvsdBackendDown")       # -> [labels of each firing alert]
    server.close()                          # (the topology stops the process too)
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from lab.contrib import ALERTS
from lab.netns import Topology, in_netns
from lab.scenario import wait_until

PROMETHEUS = "/usr/bin/prometheus"
LISTEN = ("127.0.0.1", 9090)
"""Where the server listens, inside its namespace (loopback only)."""
JOB = "ipvsd"
SCRAPE_INTERVAL_S = 1
FOR_DIVISOR = 5
FOR_MAX_S = 6
"""The lab's alert rules wait min(``for:`` / FOR_DIVISOR, FOR_MAX_S): 30s -> 6s, 1m -> 6s."""

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class PrometheusError(RuntimeError):
    """The API answered an error (a bad query) or something unreadable."""


def duration_s(text: str) -> float:
    """A Prometheus duration (``1m``, ``30s``, ``1h30m``) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(number) * _UNIT_S[unit] for number, unit in parts)


def lab_rules(source: Path = ALERTS) -> dict[str, Any]:
    """The rules file with every ``for:`` shortened (FOR_DIVISOR, FOR_MAX_S)."""
    document: dict[str, Any] = yaml.safe_load(source.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                ms = round(min(duration_s(rule["for"]) / FOR_DIVISOR, FOR_MAX_S) * 1000)
                rule["for"] = f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
    return document


def scrape_config(targets: Mapping[str, str], rules: Path) -> dict[str, Any]:
    """prometheus.yml: one static target per director, its name as ``instance``."""
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {"targets": [address], "labels": {"instance": name}}
                    for name, address in targets.items()
                ],
            }
        ],
    }


class PrometheusServer:
    """One Prometheus server in namespace `ns`, started through `topo` (so always stopped)."""

    def __init__(self, topo: Topology, ns: str, workdir: Path, targets: Mapping[str, str]) -> None:
        """Plan the server; :meth:`start` writes its files and starts it.

        Args:
            topo: the lab's topology (stops the process on close).
            ns: the namespace it runs in (must reach every target).
            workdir: where ``prometheus.yml``, the rules and its log go.
            targets: instance name -> ``ADDRESS:PORT`` of each ipvsd /metrics.
        """
        self.topo, self.ns, self.workdir = topo, ns, workdir
        self.targets = dict(targets)
        self.config = workdir / "prometheus.yml"
        self.rules = workdir / "ipvsd-alerts.yml"
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[Any] | None = None
        self._storage: Path | None = None

    @property
    def url(self) -> str:
        """The server's address as seen from its namespace."""
        return f"http://{LISTEN[0]}:{LISTEN[1]}"

    def start(self, timeout: float = 120) -> float:
        """Start the server and wait until every target has been scraped successfully.

        Returns:
            Seconds from starting the process until then.

        Raises:
            AssertionError: not ready, or a target not up, within `timeout` s.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rules.write_text(yaml.safe_dump(lab_rules(), sort_keys=False))
        self.config.write_text(
            yaml.safe_dump(scrape_config(self.targets, self.rules), sort_keys=False)
        )
        # The TSDB maps its files: keep them on tmpfs, not on UML's hostfs root.
        self._storage = Path(tempfile.mkdtemp(prefix="ipvsd-lab-prometheus-", dir="/dev/shm"))
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = self.topo.popen(
                self.ns,
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self._storage}",
                    "--storage.tsdb.retention.time=1h",
                    f"--web.listen-address={LISTEN[0]}:{LISTEN[1]}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_until(self._targets_up, timeout, 0.25)
        except AssertionError:
            raise AssertionError(
                f"Prometheus not scraping every target within {timeout} s: "
                f"{self._target_health()}; log: {self.log.read_text()[-2000:]}"
            ) from None
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the server (by PID) and remove its data."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None

    # ------------------------------------------------------------------ API

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/PATH`` with `params`; the ``data`` of a successful answer.

        Raises:
            PrometheusError: the answer is an error (``error`` says why).
            OSError: the server cannot be reached.
        """
        query = f"?{urlencode(params)}" if params else ""
        status, body = self._get(f"/api/v1/{path}{query}")
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{path}: HTTP {status}, not JSON: {body[:200]!r}") from None
        if answer.get("status") != "success":
            raise PrometheusError(f"{path}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now (``[{"metric": labels, "value": [t, "v"]}]``).

        Raises:
            PrometheusError: `expr` does not evaluate (syntax, types) or is not a vector.
        """
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} is a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, by: str = "instance") -> dict[str, float]:
        """`expr` now as {value of label `by`: value}."""
        return {s["metric"].get(by, ""): float(s["value"][1]) for s in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        """Every active alert (pending or firing)."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def firing(self, name: str) -> list[dict[str, str]]:
        """The labels of each firing alert called `name`."""
        return [
            a["labels"]
            for a in self.alerts()
            if a["labels"].get("alertname") == name and a["state"] == "firing"
        ]

    def rule_health(self) -> dict[str, str]:
        """Alert name -> the health of its last evaluation (``ok``, ``err``, ``unknown``)."""
        groups = self.api("rules", type="alert")["groups"]
        return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}

    def _targets_up(self) -> bool:
        health = self._target_health()
        return len(health) == len(self.targets) and set(health.values()) == {"up"}

    def _target_health(self) -> dict[str, str]:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )
        try:
            active = self.api("targets", state="active")["activeTargets"]
        except (OSError, PrometheusError, http.client.HTTPException):
            return {}
        return {t["labels"].get("instance", "?"): t["health"] for t in active}

    def _get(self, path: str) -> tuple[int, bytes]:
        with in_netns(self.ns):
            sock = socket.create_connection(LISTEN, timeout=30)
        conn = http.client.HTTPConnection(*LISTEN, timeout=30)
        conn.sock = sock  # connected inside the namespace
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
