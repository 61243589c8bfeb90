"""The command line: check-config, the control-socket clients (status, reload, drain), help."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd import cli as cli_module
from ipvsd.cli import main
from ipvsd.control.render import status_text
from ipvsd.control.server import ControlServer
from ipvsd.control.status import (
    RunningSyncDaemon,
    StatusDocument,
    SyncDaemonStatusView,
)
from ipvsd.control.status_json import to_json
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Table,
    fwmark_key,
    make_service,
)
from ipvsd.netlink import ipvs as netlink_ipvs
from ipvsd.netlink.ipvs import IpvsInfo
from tests.unit.test_control import REAL_30, STATUS, STATUS_DOC, WEB, FakeView

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
    assert lines[:2] == ["ipvsd 9.9.9 on director1", ""]
    assert lines[2].split() == [
        "Instance",
        "State",
        "Interface",
        "VRID",
        "VRRP",
        "AdvertInt",
        "Priority",
        "EffPriority",
        "Master",
        "VIPs",
    ]
    assert lines[3].split() == [
        "VI_1",
        "MASTER",
        "eth1",
        "51",
        "v2/ipv4",
        "1s",
        "100",
        "100",
        "-",
        "192.168.1.200/24",
    ]
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
    service = STATUS_DOC.services[0]
    drained = dataclasses.replace(service.reals[0], weight=0, drained=True)
    status = dataclasses.replace(
        STATUS_DOC, services=(dataclasses.replace(service, reals=(drained,)),)
    )
    text = status_text(status)
    real = next(line for line in text.splitlines() if "192.168.1.30:80" in line)
    assert real.split()[3:6] == ["0", "1", "up,drained"]
    empty = status_text(StatusDocument(node="n", version="v"))
    assert empty.splitlines() == [
        "ipvsd v on n",
        "",
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
    # The VRRP states need no services (40,000 reals at 10,000 x 4).
    assert view.status_requests == ([] if check == "ready" else [False])


async def test_status_check_needs_every_instance(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    first = view.status_doc.vrrp[0]
    second = dataclasses.replace(first, name="VI_2", vrid=52, state="BACKUP")
    view.status_doc = dataclasses.replace(view.status_doc, vrrp=(first, second))
    assert await cli("status", "--socket", sock, "--check", "master") == 1
    assert await cli("status", "--socket", sock, "--check", "backup") == 1
    view.status_doc = dataclasses.replace(view.status_doc, vrrp=())
    assert await cli("status", "--socket", sock, "--check", "master") == 1
    assert capsys.readouterr() == ("", "")


def test_daemon_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.sock"
    for command in (["status"], ["reload"], ["drain", "192.168.1.200:80", "192.168.1.30:80"]):
        assert main([*command, "--socket", str(missing)]) == 1
        assert capsys.readouterr() == ("", f"ipvsd is not running (no daemon at {missing})\n")
    assert main(["status", "--socket", str(missing), "--check", "ready"]) == 1
    assert capsys.readouterr() == ("", "")


async def test_the_wait_for_an_answer_is_the_timeout_option(
    socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon that is slow to answer (a 10k x 4 status took 13 s in UML):
    --timeout says how long the CLI waits; the error names the wait."""
    answered = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await asyncio.sleep(0.6)
        writer.write(json.dumps({"ok": True, "result": STATUS}).encode() + b"\n")
        await writer.drain()
        writer.close()
        answered.set()

    path = socket_dir / "slow.sock"
    server = await asyncio.start_unix_server(slow, str(path))
    try:
        assert await cli("status", "--socket", str(path), "--json", "--timeout", "0.2") == 1
        assert capsys.readouterr().err == f"ipvsd: ipvsd did not answer within 0.2 s ({path})\n"
        assert await cli("status", "--socket", str(path), "--json", "--timeout", "5") == 0
        assert json.loads(capsys.readouterr().out) == STATUS
    finally:
        server.close()


def test_status_and_reload_wait_a_minute_by_default_the_others_ten_seconds() -> None:
    parser = cli_module.build_parser()
    waits = {
        command: parser.parse_args([command, *extra]).timeout
        for command, extra in (
            ("status", []),
            ("reload", []),
            ("drain", ["10.0.0.1:80", "10.0.0.2:80"]),
            ("undrain", ["10.0.0.1:80", "10.0.0.2:80"]),
        )
    }
    assert waits == {"status": 60.0, "reload": 60.0, "drain": 10.0, "undrain": 10.0}


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf", "nan"])
def test_a_timeout_that_is_no_positive_number_is_refused(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--timeout", bad])
    assert exited.value.code == 2
    assert "is not a positive number of seconds" in capsys.readouterr().err


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
    assert capsys.readouterr() == (
        "192.168.1.30:80 of 192.168.1.200:80 drained on this director (director1) only; "
        "run the same command on the other directors\n",
        "",
    )
    assert await cli("undrain", "192.168.1.200:80", "192.168.1.30:80", "--socket", sock) == 0
    assert view.drained == set()
    assert capsys.readouterr() == (
        "192.168.1.30:80 of 192.168.1.200:80 undrained on this director (director1) only; "
        "run the same command on the other directors\n",
        "",
    )
    assert await cli("drain", "192.168.1.200:80", "192.168.1.99:80", "--socket", sock) == 1
    assert capsys.readouterr().err == (
        "ipvsd: 192.168.1.99:80 is not a configured real of 192.168.1.200:80\n"
    )


def test_a_drain_answer_without_the_node_still_says_this_director_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A daemon started before the CLI was upgraded answers without "node".
    answering(monkeypatch, {"service": "192.168.1.200:80", "real": "192.168.1.30:80"})
    assert main(["drain", "192.168.1.200:80", "192.168.1.30:80", "--socket", "/nonexistent"]) == 0
    assert capsys.readouterr().out == (
        "192.168.1.30:80 of 192.168.1.200:80 drained on this director only; "
        "run the same command on the other directors\n"
    )


@pytest.mark.parametrize("command", ["drain", "undrain"])
def test_drain_help_says_it_is_this_directors_alone(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "this director only" in out
    assert "ipvsadm -e" in out  # what not to use instead, and why
    assert "ipvs.resync_interval" in out


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
    assert "Sync daemon" not in status_text(STATUS_DOC)  # not configured: no line
    sync = SyncDaemonStatusView(
        vrrp_instance="VI_1",
        interface="eth1",
        sync_id=51,
        wanted="master",
        running=(RunningSyncDaemon(state="master", interface="eth1", sync_id=51),),
        error=None,
    )
    lines = status_text(dataclasses.replace(STATUS_DOC, sync_daemon=sync)).splitlines()
    assert (
        "Sync daemon: master on eth1, syncid 51 (follows VI_1); running: master on eth1 syncid 51"
        in lines
    )
    sync = dataclasses.replace(sync, running=(), error="eth1: No such device")
    lines = status_text(dataclasses.replace(STATUS_DOC, sync_daemon=sync)).splitlines()
    assert any(line.endswith("running: none") for line in lines)
    assert "Sync daemon error: eth1: No such device" in lines
    unread = dataclasses.replace(sync, running=None, error=None)
    lines = status_text(dataclasses.replace(STATUS_DOC, sync_daemon=unread)).splitlines()
    assert any(line.endswith("running: unknown") for line in lines)


# --- status: what the CLI does with the daemon's document ---------------------------------


def answering(monkeypatch: pytest.MonkeyPatch, result: object) -> None:
    """Make the control client answer every request with `result`, no socket involved."""

    def fake_request(path: str, payload: dict[str, Any], *args: object) -> dict[str, Any]:
        return {"ok": True, "result": result}

    monkeypatch.setattr(cli_module, "request", fake_request)


def test_status_json_into_a_pipe_is_one_write_of_compact_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """json.dump wrote token by token (5.7 million writes at 10,000 x 4: 24 s on the
    host, 333 s in UML); the document is encoded at once and written once."""

    class Pipe(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Pipe.writes += 1
            return super().write(text)

    document = {**STATUS, "services": [STATUS["services"][0]] * 50}
    answering(monkeypatch, document)
    pipe = Pipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    assert main(["status", "--json", "--socket", "/nonexistent"]) == 0
    assert pipe.getvalue() == json.dumps(document) + "\n"
    assert Pipe.writes <= 2


def test_status_json_is_printed_as_the_daemon_sent_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = {**STATUS, "from_a_newer_daemon": {"x": 1}}
    answering(monkeypatch, newer)
    assert main(["status", "--json", "--socket", "/nonexistent"]) == 0
    assert json.loads(capsys.readouterr().out) == newer
    assert main(["status", "--socket", "/nonexistent"]) == 0  # the tables ignore unknown keys
    assert "TCP  192.168.1.200:80 rr" in capsys.readouterr().out.splitlines()


def test_status_of_a_malformed_document_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = json.loads(json.dumps(STATUS))
    broken["services"][0]["reals"][0]["weight"] = "heavy"
    answering(monkeypatch, broken)
    assert main(["status", "--socket", "/nonexistent"]) == 1
    assert capsys.readouterr() == (
        "",
        "ipvsd: services[0].reals[0].weight: expected an integer, got a string\n",
    )


async def test_status_shows_the_persistence_the_config_asks_for(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    service = dataclasses.replace(
        view.status_doc.services[0], flags=ServiceFlag.PERSISTENT, persistence_timeout=300
    )
    view.status_doc = dataclasses.replace(view.status_doc, services=(service,))
    assert await cli("status", "--socket", sock) == 0
    assert "TCP  192.168.1.200:80 rr persistent 300" in capsys.readouterr().out.splitlines()


async def test_status_shows_how_long_ago_a_real_went_down(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    service = view.status_doc.services[0]
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    down = dataclasses.replace(
        service.reals[0], health="down", health_reason="connection refused", health_since=since
    )
    view.status_doc = dataclasses.replace(
        view.status_doc, services=(dataclasses.replace(service, reals=(down,)),)
    )
    assert await cli("status", "--socket", sock) == 0
    out = capsys.readouterr().out
    # In the local time zone, as journalctl shows the log.
    local = since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf"\n       down since {local} \S+ \(5m0\ds ago\): connection refused\n", out)


# --- list: the kernel's table, read over (a fake) netlink ---------------------------------


class FakeIpvsClient:
    """What `ipvsd list` uses of `IpvsClient`: open, dump, info."""

    table = Table()

    @classmethod
    async def open(cls) -> FakeIpvsClient:
        return cls()

    async def __aenter__(self) -> FakeIpvsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def dump(self) -> Table:
        return self.table

    async def info(self) -> IpvsInfo:
        return IpvsInfo(version="1.2.1", conn_tab_size=4096)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> type[FakeIpvsClient]:
    web = make_service(
        ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80),
        ServiceAttrs("rr", ServiceFlag.PERSISTENT, 300, 32),
        [
            Dest(
                DestKey(ip_address("192.168.1.30"), 80),
                DestAttrs(ForwardMethod.NAT, 1),
                DestCounters(active_conns=3, inactive_conns=25),
            )
        ],
    )
    mark = make_service(
        fwmark_key(Family.INET6, 5),
        ServiceAttrs("wrr"),
        [Dest(DestKey(ip_address("2001:db8::31"), 80), DestAttrs(ForwardMethod.DR, 2))],
    )
    monkeypatch.setattr(FakeIpvsClient, "table", Table.of([mark, web]))
    monkeypatch.setattr(netlink_ipvs, "IpvsClient", FakeIpvsClient)
    return FakeIpvsClient


def test_list_prints_the_kernel_table_like_ipvsadm(
    kernel: type[FakeIpvsClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  192.168.1.200:80 rr persistent 300\n"
        "  -> 192.168.1.30:80              Masq    1      3          25\n"
        "FWM  5 IPv6 wrr\n"
        "  -> [2001:db8::31]:80            Route   2      0          0\n"
    )


def test_list_json_is_the_status_contracts_services(
    kernel: type[FakeIpvsClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--json"]) == 0
    services = json.loads(capsys.readouterr().out)
    assert [(s["address"], s["port"], s["fwmark"], s["family"]) for s in services] == [
        ("192.168.1.200", 80, None, "ipv4"),
        (None, None, 5, "ipv6"),
    ]
    assert services[0]["persistence_timeout"] == 300
    assert services[0]["reals"][0]["inactive_conns"] == 25
    assert services[1]["reals"][0]["forward"] == "dr"
    assert services[1]["reals"][0]["health"] is None  # no health without the daemon
    assert set(services[0]) == set(to_json(STATUS_DOC)["services"][0])  # one encoder


async def test_drain_all_drains_the_director(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("drain", "--all", "--socket", sock) == 0
    assert view.director_drained
    assert capsys.readouterr().out == (
        "this director (director1) drained: its VIPs are withdrawn from BGP until "
        "`ipvsd undrain --all`\n"
    )
    assert await cli("undrain", "--all", "--socket", sock) == 0
    assert not view.director_drained
    view.director_error = "drain --all withdraws the BGP announcements; no bgp: section"
    assert await cli("drain", "--all", "--socket", sock) == 1
    assert "no bgp: section" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["drain"], "ipvsd drain: SERVICE and REAL are required (or --all alone)"),
        (["undrain", "10.0.0.1:80"], "ipvsd undrain: SERVICE and REAL are required"),
        (["drain", "--all", "10.0.0.1:80"], "ipvsd drain: --all takes no SERVICE or REAL"),
    ],
)
def test_drain_usage_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--socket", "/nonexistent/ipvsd.sock"]) == 2
    assert capsys.readouterr().err.startswith(error)
