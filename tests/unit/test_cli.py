"""The command line: check-config, the control-socket clients (status, reload, drain), help."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ipvsd.cli import main
from ipvsd.control.render import status_text
from ipvsd.control.server import ControlServer
from tests.unit.test_control import REAL_30, STATUS, WEB, FakeView

REPO = Path(__file__).resolve().parents[2]


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(REPO / "etc" / "ipvsd.yaml")]) == 0
    assert capsys.readouterr().out == ""


def test_check_config_prints_path_line_field_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "ipvs:\n"
        "  services:\n"
        "    - address: 192.168.1.200\n"
        "      port: 80\n"
        "      reals:\n"
        "        - {address: 192.168.1.30, port: 80, weight: 70000}\n"
        "        - {address: 192.168.1.300, port: 80}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{config}:6: ipvs.services.0.reals.0.weight: ")
    assert lines[1].startswith(f"{config}:7: ipvs.services.0.reals.1.address: ")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "No such file" in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "run",
        "check-config",
        "list",
        "status",
        "reload",
        "drain",
        "SIGHUP",
        "exit status",
    ):
        assert word in out


# --- status / reload / drain against a control server with a fake daemon behind it -------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ipvsd-cli-"))  # short: unix paths are ≤ 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
async def sock(socket_dir: Path, view: FakeView) -> AsyncIterator[str]:
    # The server's log events are captured, so that stdout holds only the CLI's output.
    with capture_logs():
        async with ControlServer(socket_dir / "ipvsd.sock", view) as server:
            yield str(server.path)


async def cli(*argv: str) -> int:
    """Run the command line in a thread: its blocking client talks to the server on this loop."""
    return await asyncio.to_thread(main, list(argv))


async def test_status_json(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("status", "--socket", sock, "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


async def test_status_tables(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("status", "--socket", sock) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "Instance",
        "State",
        "Interface",
        "VRID",
        "Priority",
        "EffPriority",
        "VIPs",
    ]
    assert lines[1].split() == ["VI_1", "MASTER", "eth1", "51", "100", "100", "192.168.1.200/24"]
    assert "TCP  192.168.1.200:80 rr" in lines
    header = next(line for line in lines if "RemoteAddress:Port" in line)
    assert header.split()[2:] == [
        "Forward",
        "Weight",
        "CfgWeight",
        "Health",
        "ActiveConn",
        "InActConn",
        "PersistConn",
    ]
    real = next(line for line in lines if "192.168.1.30:80" in line)
    assert real.split() == ["->", "192.168.1.30:80", "Masq", "1", "1", "up", "0", "25", "0"]


def test_status_text_marks_drained_reals_and_empty_sections() -> None:
    status = copy.deepcopy(STATUS)
    status["services"][0]["reals"][0].update(weight=0, drained=True)
    text = status_text(status)
    real = next(line for line in text.splitlines() if "192.168.1.30:80" in line)
    assert real.split()[3:6] == ["0", "1", "up,drained"]
    empty = status_text({"node": "n", "version": "v", "vrrp": [], "services": []})
    assert empty.splitlines() == [
        "VRRP: no instances configured",
        "",
        "IPVS: no services configured",
    ]


@pytest.mark.parametrize(
    ("check", "ready", "expected"),
    [("master", True, 0), ("backup", True, 1), ("ready", True, 0), ("ready", False, 1)],
)
async def test_status_check(
    sock: str,
    view: FakeView,
    capsys: pytest.CaptureFixture[str],
    check: str,
    ready: bool,
    expected: int,
) -> None:
    view.is_ready = ready
    assert await cli("status", "--socket", sock, "--check", check) == expected
    assert capsys.readouterr() == ("", "")


async def test_status_check_needs_every_instance(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    second = {**view.status_doc["vrrp"][0], "name": "VI_2", "vrid": 52, "state": "BACKUP"}
    view.status_doc["vrrp"].append(second)
    assert await cli("status", "--socket", sock, "--check", "master") == 1
    assert await cli("status", "--socket", sock, "--check", "backup") == 1
    view.status_doc["vrrp"] = []
    assert await cli("status", "--socket", sock, "--check", "master") == 1
    assert capsys.readouterr() == ("", "")


def test_daemon_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.sock"
    for command in (["status"], ["reload"], ["drain", "192.168.1.200:80", "192.168.1.30:80"]):
        assert main([*command, "--socket", str(missing)]) == 1
        assert capsys.readouterr() == ("", f"ipvsd is not running (no daemon at {missing})\n")
    assert main(["status", "--socket", str(missing), "--check", "ready"]) == 1
    assert capsys.readouterr() == ("", "")


async def test_reload(sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("reload", "--socket", sock) == 0
    assert capsys.readouterr() == ("", "")
    view.reload_errors = ["/etc/ipvsd/ipvsd.yaml:7: vrrp.instances.0.vrid: bad", "x:1: y: z"]
    assert await cli("reload", "-s", sock) == 1
    assert capsys.readouterr() == ("", "\n".join(view.reload_errors) + "\n")
    assert view.reloads == 2


async def test_drain_and_undrain(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("drain", "192.168.1.200:80", "192.168.1.30:80", "--socket", sock) == 0
    assert view.drained == {(WEB, REAL_30)}
    assert await cli("undrain", "192.168.1.200:80", "192.168.1.30:80", "--socket", sock) == 0
    assert view.drained == set()
    assert capsys.readouterr() == ("", "")
    assert await cli("drain", "192.168.1.200:80", "192.168.1.99:80", "--socket", sock) == 1
    assert capsys.readouterr().err == (
        "ipvsd: 192.168.1.99:80 is not a configured real of 192.168.1.200:80\n"
    )


def test_drain_arguments_are_checked_before_asking(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["drain", "192.168.1.200", "192.168.1.30:80"])
    assert exit_info.value.code == 2
    assert "SERVICE: '192.168.1.200': expected ADDRESS:PORT" in capsys.readouterr().err


async def test_the_socket_comes_from_the_config_unless_given(
    sock: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ipvsd.yaml"
    config.write_text(f"control:\n  socket: {sock}\n")
    assert await cli("status", "--config", str(config), "--check", "master") == 0
    config.write_text(f"control:\n  socket: {tmp_path / 'other.sock'}\n")
    assert await cli("status", "--config", str(config), "--socket", sock, "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS
    assert main(["status", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_help_describes_the_control_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("status", "reload", "drain", "undrain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        for word in ("--socket", "--config", "exit status", "example"):
            assert word in out, (command, word)


def test_status_text_shows_the_sync_daemon_wanted_and_running() -> None:
    status = copy.deepcopy(STATUS)
    assert "Sync daemon" not in status_text(status)  # not configured: no line
    status["sync_daemon"] = {
        "vrrp_instance": "VI_1",
        "interface": "eth1",
        "sync_id": 51,
        "wanted": "master",
        "running": [{"state": "master", "interface": "eth1", "sync_id": 51}],
        "error": None,
    }
    lines = status_text(status).splitlines()
    assert (
        "Sync daemon: master on eth1, syncid 51 (follows VI_1); running: master on eth1 syncid 51"
        in lines
    )
    status["sync_daemon"].update(running=[], error="eth1: No such device")
    lines = status_text(status).splitlines()
    assert any(line.endswith("running: none") for line in lines)
    assert "Sync daemon error: eth1: No such device" in lines
