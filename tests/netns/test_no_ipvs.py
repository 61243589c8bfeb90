"""On a kernel without IPVS (this host's): a clear one-line error, or a pure-VRRP start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.uml import host_has_ipvs

pytestmark = pytest.mark.skipif(
    host_has_ipvs(), reason="this kernel has IPVS: the no-IPVS paths cannot be exercised here"
)

SERVICE = """\
metrics: {listen: null}
ipvs:
  services:
    - {address: 10.0.0.1, port: 80, reals: [{address: 10.0.0.2, port: 80}]}
"""


def test_services_without_ipvs_exit_with_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "ipvsd.yaml"
    config.write_text(SERVICE)
    proc = subprocess.run(
        [sys.executable, "-m", "ipvsd", "run", "--config", str(config), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    last = json.loads(proc.stderr.strip().splitlines()[-1])  # a JSON event: stderr is no TTY
    assert (last["event"], last["level"]) == ("daemon.failed", "error")
    assert last["error"] == (
        "IPVS is not available in this kernel (load the ip_vs module); "
        f"services are configured in {config}"
    )


def test_no_services_runs_without_ipvs_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "ipvsd.yaml"
    config.write_text(
        f"metrics: {{listen: null}}\ncontrol: {{socket: {tmp_path}/ipvsd.sock}}\n"
        f"state_dir: {tmp_path}/state\n"
        "ipvs: {services: []}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipvsd", "run", "--config", str(config), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"daemon.ready"' in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_second_daemon_exits_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ipvsd.yaml"
    config.write_text(
        f"metrics: {{listen: null}}\ncontrol: {{socket: {tmp_path}/ipvsd.sock}}\n"
        f"state_dir: {tmp_path}/state\n"
        "ipvs: {services: []}\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "ipvsd", "run", "--config", str(config), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if '"daemon.ready"' in line:
                break
        second = subprocess.run(
            [sys.executable, "-m", "ipvsd", "run", "--config", str(config), "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        last = json.loads(second.stderr.strip().splitlines()[-1])
        assert (last["event"], last["level"]) == ("daemon.failed", "error")
        assert last["error"].startswith(
            f"another ipvsd is already running in this network namespace (pid {first.pid})"
        )
        assert first.poll() is None  # the running one is unaffected
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
