"""sd_notify messages and the systemd unit."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ipvsd.systemd import Notifier

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ipvsd.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    return sock


def test_messages_reach_the_notify_socket(notify_socket: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    notifier.ready("VI_1 MASTER")
    message = notify_socket.recv(4096).decode().splitlines()
    assert message[:2] == ["READY=1", "STATUS=VI_1 MASTER"]
    notifier.stopping()
    assert notify_socket.recv(4096).decode().splitlines()[0] == "STOPPING=1"


def test_abstract_socket_names_and_no_socket_at_all() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0ipvsd-test-notify")
        sock.settimeout(2)
        Notifier({"NOTIFY_SOCKET": "@ipvsd-test-notify"}).status("hello")
        assert sock.recv(100) == b"STATUS=hello"
    quiet = Notifier({})
    assert not quiet.enabled
    quiet.ready("ignored")  # no socket: nothing happens


def test_watchdog_interval_only_for_our_pid() -> None:
    assert Notifier({"WATCHDOG_USEC": "2000000"}).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    ipvsd = Path(sys.executable).parent / "ipvsd"
    unit = tmp_path / "ipvsd.service"
    unit.write_text(UNIT.read_text().replace("/usr/sbin/ipvsd", str(ipvsd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        # Waits for the verdict: a refused config fails `systemctl reload`.
        "ExecReload=/usr/sbin/ipvsd reload --config /etc/ipvsd/ipvsd.yaml",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=ipvsd",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
    ):
        assert line in text
