"""Advice on valid configs: consistent hashing across directors in BGP mode
(issue 15 part 3, `ipvsd.config.advice`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ipvsd.cli import main
from ipvsd.config import config_advice, load_config, parse_config
from ipvsd.daemon.root import _advise

BGP = """\
bgp:
  local_as: 65001
  neighbors: [{address: 10.0.0.1, remote_as: 65000}]
"""
SERVICES = """\
ipvs:
  service_groups:
    - {name: web, members: ["10.0.0.100:80", "10.0.0.100:8080"]}
  services:
    - address: 10.0.0.100
      port: 443
      reals: [{address: 10.0.1.1}]
    - address: 10.0.0.100
      port: 444
      scheduler: rr
      reals: [{address: 10.0.1.1}]
    - address: 10.0.0.100
      port: 445
      scheduler: mh
      reals: [{address: 10.0.1.1}]
    - address: 10.0.0.100
      port: 446
      scheduler: mh
      scheduler_flags: [mh-fallback, mh-port]
      on_failure: remove
      reals: [{address: 10.0.1.1}]
    - group: web
      scheduler: wlc
      reals: [{address: 10.0.1.1}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ipvsd.yaml"
    path.write_text("metrics: {listen: null}\n" + text)
    return path


def test_each_rule_is_a_warning_at_the_line_of_its_service(tmp_path: Path) -> None:
    path = _write(tmp_path, BGP + SERVICES)
    warnings = config_advice(path, load_config(path))
    where = [f"{w.line}: {w.field}" for w in warnings]
    # BGP mode's own defaults (the first service) draw none; the group entry
    # keeps the index written in the file (4), not its members'.
    assert where == [
        "14: ipvs.services.1.scheduler",
        "16: ipvs.services.2.scheduler_flags",  # not written: the service's line
        "24: ipvs.services.3.on_failure",
        "27: ipvs.services.4.scheduler",
    ]
    assert all(w.path == str(path) for w in warnings)
    assert all(w.message.startswith("warning: ") for w in warnings)
    assert "rr in BGP mode" in warnings[0].message
    assert "add mh-fallback" in warnings[1].message


def test_no_advice_outside_bgp_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, SERVICES)
    assert config_advice(path, load_config(path)) == []


def test_check_config_prints_warnings_and_still_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, BGP + SERVICES)
    assert main(["check-config", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{path}:14: ipvs.services.1.scheduler: warning: rr in BGP mode")


def test_the_daemon_logs_the_same_advice_by_service() -> None:
    config = parse_config(BGP + SERVICES, default_node_name="n1")
    with capture_logs() as logs:
        _advise(config)
    assert [(e["service"], e["field"]) for e in logs] == [
        ("10.0.0.100:444", "scheduler"),
        ("10.0.0.100:445", "scheduler_flags"),
        ("10.0.0.100:446", "on_failure"),
        # The group's members, each its own service once expanded.
        ("10.0.0.100:80", "scheduler"),
        ("10.0.0.100:8080", "scheduler"),
    ]
    assert all(e["event"] == "config.advice" and e["log_level"] == "warning" for e in logs)
