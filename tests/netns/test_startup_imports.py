"""What a pure VRRP daemon imports before its first VRRP state (``-X importtime``).

``ipvsd run`` with VRRP only (no services, no /metrics endpoint) runs in a
namespace under ``python -X importtime``: the interpreter writes a line to
stderr for each module as it is imported, and the daemon writes its events to
the same stderr, so the modules listed before the first ``vrrp.transition``
are those imported on the way to BACKUP. None of `NOT_BEFORE_BACKUP` may be
among them: a pure VRRP director needs no IPVS client, no HTTP parser.

pyroute2 is among them since the addresses and links are read and written
over raw rtnetlink (`ipvsd.netlink.rtsock`), and the route and vmac writers
are opened at their first use. Still imported there: prometheus-client (the
daemon's metrics record the first transition). pydantic is not a dependency
any more (`ipvsd.config.strict` validates the config).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lab.netns import in_netns
from lab.vrrp_pair import VrrpLab, ipvsd_config

NOT_BEFORE_BACKUP = frozenset(
    {
        "h11",
        "ipvsd.ipvs.reconciler",
        "ipvsd.netlink.ipvs",
        "ipvsd.netlink.table_reader",
        "ipvsd.metrics.http",
        "pyroute2",
    }
)
#: Imported by then today; listed so that the test notices when one goes (update the doc).
STILL_BEFORE_BACKUP = frozenset({"prometheus_client"})


def _imported_before_backup(ns: str, config: Path) -> set[str]:
    argv = [sys.executable, "-X", "importtime", "-m", "ipvsd", "run", "--config", str(config)]
    with in_netns(ns):
        proc = subprocess.Popen([*argv, "--log-format", "json"], stderr=subprocess.PIPE, text=True)
    modules: set[str] = set()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("import time:"):
                modules.add(line.rsplit("|", 1)[-1].strip())
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "vrrp.transition":
                return modules
            if event.get("event") in ("daemon.failed", "daemon.crashed"):
                raise AssertionError(event)
        raise AssertionError(f"ipvsd exited {proc.wait()} before its first VRRP state")
    finally:
        proc.kill()
        proc.wait(10)


def test_a_pure_vrrp_daemon_reaches_backup_without(vrrp_lab: VrrpLab) -> None:
    config = vrrp_lab.workdir / "d1.yaml"
    config.write_text(ipvsd_config("d1", 100, vrrp_lab.workdir))
    modules = _imported_before_backup(vrrp_lab.routers["d1"], config)
    assert "ipvsd.vrrp.router" in modules  # the harness sees the path
    assert modules & NOT_BEFORE_BACKUP == set()
    assert modules >= STILL_BEFORE_BACKUP
