"""A reload that fails while it is applied changes nothing, on either director (issue #11).

Two ipvsd routers elect d1 (priority 100) over d2 (90). d1 is then asked to
reload a config that raises its priority to 110 and moves its metrics
endpoint to a port something else already holds inside d1's namespace. The
endpoint is bound before anything else is touched, so the reload fails
there: ``ipvsd reload`` exits 1 naming the port, d1 keeps running its old
config (priority 100, endpoint off), and the VIP never leaves d1 nor shows up
on d2, sampled every 20 ms through the reload and the seconds after it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.netns import Topology, in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import OwnershipMonitor, VrrpLab, build

MDI_90 = 3 + (256 - 90) / 256


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def cli(lab: VrrpLab, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.topo.exec(ns, [sys.executable, "-m", "ipvsd", *args], check=False)


def test_a_reload_failing_at_apply_time_changes_nothing_on_either_director(
    lab: VrrpLab,
) -> None:
    d1 = lab.daemon("d1", 100)
    d2 = lab.daemon("d2", 90)
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 2)
    ns1 = lab.routers["d1"]
    sock1 = str(lab.workdir / "d1.sock")
    with in_netns(ns1):
        busy = socket.socket()
    with busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = d1.config.read_text()
        d1.config.write_text(
            text.replace("priority: 100", "priority: 110").replace(
                "metrics: {listen: null}", f'metrics: {{listen: "127.0.0.1:{port}"}}'
            )
        )
        with OwnershipMonitor(lab.topo, list(lab.routers.values())) as monitor:
            answer = cli(lab, ns1, "reload", "--socket", sock1)
            time.sleep(3 * 1 + 1)  # longer than d2's Master_Down_Interval would need
    assert answer.returncode == 1, answer
    assert "metrics.listen" in answer.stderr
    assert f"127.0.0.1:{port}" in answer.stderr
    assert all(state == (True, False) for _, state in monitor.samples), "the VIP moved"
    assert len(monitor.samples) > 100
    status = json.loads(cli(lab, ns1, "status", "--json", "--socket", sock1).stdout)
    assert [(v["state"], v["priority"]) for v in status["vrrp"]] == [("MASTER", 100)]
    sock2 = str(lab.workdir / "d2.sock")
    status2 = json.loads(cli(lab, lab.routers["d2"], "status", "--json", "--socket", sock2).stdout)
    assert [(v["state"], v["priority"]) for v in status2["vrrp"]] == [("BACKUP", 90)]
    refused = d1.wait_event("config.reload_refused", timeout=5)
    assert "metrics.listen" in refused["errors"][0]
