"""The control socket: the pure request handler, then the server on a real unix socket."""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Interface, ip_address
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.control.client import ControlClientError, DaemonNotRunning, request
from ipvsd.control.protocol import (
    MAX_REQUEST_BYTES,
    ConnectionLimits,
    PeerCredentials,
    admit_connection,
    evaluate_request,
    handle_request,
)
from ipvsd.control.server import WRITE_CHUNK_BYTES, ControlServer, ControlSocketError
from ipvsd.control.status import (
    RealStatus,
    ServiceStatus,
    StatusDocument,
    VrrpStatus,
)
from ipvsd.control.status_json import document_text, to_json
from ipvsd.errors import ControlRequestError, KernelError
from ipvsd.model import DestKey, Family, ForwardMethod, Protocol, ServiceKey, fwmark_key

REPO = Path(__file__).resolve().parents[2]
ROOT = PeerCredentials(pid=100, uid=0, gid=0)
USER = PeerCredentials(pid=200, uid=1000, gid=1000)
WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80)
REAL_30 = DestKey(ip_address("192.168.1.30"), 80)

STATUS_DOC = StatusDocument(
    node="director1",
    version="9.9.9",
    vrrp=(
        VrrpStatus(
            name="VI_1",
            state="MASTER",
            interface="eth1",
            vrid=51,
            priority=100,
            effective_priority=100,
            virtual_ipaddresses=(IPv4Interface("192.168.1.200/24"),),
        ),
    ),
    services=(
        ServiceStatus(
            address=ip_address("192.168.1.200"),
            port=80,
            protocol=Protocol.TCP,
            fwmark=None,
            family=Family.INET,
            scheduler="rr",
            reals=(
                RealStatus(
                    address=ip_address("192.168.1.30"),
                    port=80,
                    forward=ForwardMethod.NAT,
                    weight=1,
                    configured_weight=1,
                    health="up",
                    inactive_conns=25,
                ),
            ),
        ),
    ),
)
"""The fake daemon's status document: one VRRP instance, one service, one real."""

STATUS: dict[str, Any] = to_json(STATUS_DOC)
"""`STATUS_DOC` as the control socket sends it."""


class FakeView:
    """A daemon with one service and one real, which records drains and reloads."""

    version = "9.9.9"
    node = "director1"

    def __init__(self) -> None:
        self.status_doc = STATUS_DOC
        self.configured = {(WEB, REAL_30)}
        self.drained: set[tuple[ServiceKey, DestKey]] = set()
        self.reload_errors: list[str] = []
        self.reloads = 0
        self.is_ready = True
        self.status_error: Exception | None = None
        self.status_requests: list[bool] = []
        """Each status asked for: with its services (True) or without."""
        self.director_drained = False
        self.director_error: str | None = None

    async def status_text(self, *, services: bool = True) -> list[str]:
        if self.status_error is not None:
            raise self.status_error
        self.status_requests.append(services)
        doc = self.status_doc
        return document_text(doc if services else dataclasses.replace(doc, services=()))

    async def reload(self, *, force: bool = False) -> list[str]:
        # Nothing is applied here, so nothing for `force` to override.
        self.reloads += 1
        return list(self.reload_errors)

    def _check(self, service: ServiceKey, real: DestKey) -> None:
        if (service, real) not in self.configured:
            raise ControlRequestError(f"{real} is not a configured real of {service}")

    def drain(self, service: ServiceKey, real: DestKey) -> None:
        self._check(service, real)
        self.drained.add((service, real))

    def undrain(self, service: ServiceKey, real: DestKey) -> None:
        self._check(service, real)
        self.drained.discard((service, real))

    def drain_director(self, drained: bool) -> None:
        if self.director_error is not None:
            raise ControlRequestError(self.director_error)
        self.director_drained = drained

    def ready(self) -> bool:
        return self.is_ready


def line(**request: object) -> bytes:
    return json.dumps(request).encode() + b"\n"


DRAIN = {"service": "192.168.1.200:80", "real": "192.168.1.30:80"}


# --- the pure handler --------------------------------------------------------------------


async def test_read_only_commands() -> None:
    view = FakeView()
    assert await handle_request(line(command="status"), view, USER) == {
        "ok": True,
        "result": STATUS,
    }
    assert await handle_request(line(command="version"), view, USER) == {
        "ok": True,
        "result": {"version": "9.9.9"},
    }
    assert await handle_request(line(command="ready"), view, USER) == {
        "ok": True,
        "result": {"ready": True},
    }
    view.is_ready = False
    answer = await handle_request(line(command="ready"), view, USER)
    assert answer["result"] == {"ready": False}


async def test_reload_reports_the_refused_configs_errors() -> None:
    view = FakeView()
    assert await handle_request(line(command="reload"), view, ROOT) == {
        "ok": True,
        "result": {"reloaded": True},
    }
    view.reload_errors = ["a.yaml:3: vrrp.instances.0.vrid: bad", "a.yaml:9: ipvs: bad"]
    answer = await handle_request(line(command="reload"), view, ROOT)
    assert answer["ok"] is False
    assert "running config is kept" in answer["error"]
    assert answer["errors"] == view.reload_errors
    assert view.reloads == 2


async def test_drain_and_undrain() -> None:
    view = FakeView()
    answer = await handle_request(line(command="drain", **DRAIN), view, ROOT)
    # The node: a drain is this director's alone (the CLI says so, naming it).
    assert answer == {"ok": True, "result": {**DRAIN, "drained": True, "node": "director1"}}
    assert view.drained == {(WEB, REAL_30)}
    answer = await handle_request(line(command="undrain", **DRAIN), view, ROOT)
    assert answer == {"ok": True, "result": {**DRAIN, "drained": False, "node": "director1"}}
    assert view.drained == set()


async def test_drain_all_drains_the_director() -> None:
    view = FakeView()
    answer = await handle_request(line(command="drain", all=True), view, ROOT)
    assert answer == {"ok": True, "result": {"all": True, "drained": True, "node": "director1"}}
    assert view.director_drained
    answer = await handle_request(line(command="undrain", all=True), view, ROOT)
    assert answer["result"]["drained"] is False
    assert not view.director_drained
    for bad, error in (
        ({"all": 1}, '"all" must be true or false'),
        ({"all": True, **DRAIN}, '"all" drains the whole director: no service or real'),
    ):
        answer = await handle_request(line(command="drain", **bad), view, ROOT)
        assert answer == {"ok": False, "error": error}
    answer = await handle_request(line(command="drain", all=True), view, USER)
    assert not answer["ok"]
    assert "needs root" in answer["error"]
    view.director_error = "no bgp: section"
    answer = await handle_request(line(command="drain", all=True), view, ROOT)
    assert answer == {"ok": False, "error": "no bgp: section"}


async def test_drain_parses_every_service_form() -> None:
    view = FakeView()
    v6_real = DestKey(ip_address("2001:db8::30"), 53)
    udp6 = ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::200"), 53)
    mark = fwmark_key(Family.INET, 10)
    view.configured |= {(udp6, v6_real), (mark, REAL_30)}
    requests = [
        ("udp/[2001:db8::200]:53", "[2001:db8::30]:53"),
        ("fwmark:10", "192.168.1.30:80"),
    ]
    for service, real in requests:
        answer = await handle_request(line(command="drain", service=service, real=real), view, ROOT)
        assert answer["ok"], answer
    assert view.drained == {(udp6, v6_real), (mark, REAL_30)}


async def test_drain_of_an_unconfigured_real_is_the_views_error() -> None:
    answer = await handle_request(
        line(command="drain", service="192.168.1.200:80", real="192.168.1.99:80"), FakeView(), ROOT
    )
    assert answer == {
        "ok": False,
        "error": "192.168.1.99:80 is not a configured real of 192.168.1.200:80",
    }


@pytest.mark.parametrize("command", ["reload", "drain", "undrain"])
async def test_non_root_cannot_change_anything(command: str) -> None:
    view = FakeView()
    answer = await handle_request(line(command=command, **DRAIN), view, USER)
    assert answer == {
        "ok": False,
        "error": f"permission denied: {command} needs root (you are uid 1000)",
    }
    assert view.reloads == 0
    assert view.drained == set()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"status\n", "request is not valid JSON"),
        (b"{'command': 'status'}\n", "request is not valid JSON"),
        (b"\xff\xfe\n", "not valid UTF-8"),
        (b'["status"]\n', "must be a JSON object"),
        (b'"status"\n', "must be a JSON object"),
        (b"{" + b" " * MAX_REQUEST_BYTES + b"}\n", "longer than 65536 bytes"),
    ],
)
async def test_malformed_requests_are_answered_and_hung_up_on(raw: bytes, message: str) -> None:
    outcome = await evaluate_request(raw, FakeView(), ROOT)
    assert outcome.response["ok"] is False
    assert message in outcome.response["error"]
    assert outcome.close


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, 'missing "command"'),
        ({"command": 7}, 'missing "command"'),
        ({"command": "flush"}, "unknown command 'flush' (one of: drain, ready, reload, status"),
        ({"command": "drain"}, '"service" is required, as a string'),
        ({"command": "drain", "service": "192.168.1.200:80"}, '"real" is required'),
        ({"command": "drain", **DRAIN, "real": 30}, '"real" is required, as a string'),
        (
            {"command": "drain", **DRAIN, "service": "192.168.1.200"},
            "service: '192.168.1.200': expected ADDRESS:PORT",
        ),
        (
            {"command": "drain", **DRAIN, "service": "icmp/192.168.1.200:80"},
            "service: 'icmp/192.168.1.200:80': protocol must be tcp, udp or sctp",
        ),
        ({"command": "undrain", **DRAIN, "real": "192.168.1.300:80"}, "real: "),
        ({"command": "drain", **DRAIN, "real": "192.168.1.30:99999"}, "port must be 0..65535"),
    ],
)
async def test_invalid_requests_keep_the_connection(request_: dict[str, Any], message: str) -> None:
    view = FakeView()
    outcome = await evaluate_request(json.dumps(request_).encode(), view, ROOT)
    assert outcome.response["ok"] is False
    assert message in outcome.response["error"]
    assert not outcome.close
    assert view.drained == set()


async def test_a_status_without_services_for_the_vrrp_states() -> None:
    """``ipvsd status --check master`` reads the VRRP states: no 40,000 reals for that."""
    view = FakeView()
    answer = await handle_request(line(command="status", services=False), view, USER)
    assert answer == {"ok": True, "result": {**STATUS, "services": []}}
    assert await handle_request(line(command="status", services=True), view, USER) == {
        "ok": True,
        "result": STATUS,
    }
    assert view.status_requests == [False, True]


@pytest.mark.parametrize("services", [0, "no", None, []])
async def test_a_status_with_services_not_a_boolean_is_refused(services: object) -> None:
    view = FakeView()
    answer = await handle_request(line(command="status", services=services), view, USER)
    assert answer == {"ok": False, "error": '"services" must be true or false'}
    assert view.status_requests == []


async def test_a_kernel_error_behind_status_is_an_answer() -> None:
    view = FakeView()
    view.status_error = KernelError("netlink timeout")
    answer = await handle_request(line(command="status"), view, ROOT)
    assert answer == {"ok": False, "error": "status failed: netlink timeout"}


async def test_deeply_nested_json_is_a_bad_request() -> None:
    # json raises RecursionError past the interpreter's limit: a peer's input,
    # not a bug (it is answered, and the connection hung up on).
    for raw in (b"[" * 60_000, b'{"command": "status", "x": ' + b"[" * 60_000):
        outcome = await evaluate_request(raw + b"\n", FakeView(), USER)
        assert outcome.response == {"ok": False, "error": "request is nested too deeply"}
        assert outcome.close


LIMITS = ConnectionLimits(max_connections=10, max_per_uid=3, root_reserved=2)


@pytest.mark.parametrize(
    ("open_by_uid", "uid", "refusal"),
    [
        ({}, 1000, None),
        ({1000: 2}, 1000, None),
        ({1000: 3}, 1000, "busy: too many control connections from uid 1000; try again"),
        ({1000: 3}, 1001, None),  # the cap is per uid
        ({1000: 3}, 0, None),
        ({0: 7}, 0, None),  # root has no per-uid cap
        # 8 open: the last 2 slots are root's.
        ({1000: 3, 1001: 3, 1002: 2}, 1003, "busy: too many control connections; try again"),
        ({1000: 3, 1001: 3, 1002: 2}, 0, None),
        ({1000: 3, 1001: 3, 1002: 2, 0: 1}, 0, None),
        ({1000: 3, 1001: 3, 1002: 2, 0: 2}, 0, "busy: too many control connections; try again"),
    ],
)
def test_admission_keeps_slots_for_root(
    open_by_uid: dict[int, int], uid: int, refusal: str | None
) -> None:
    assert admit_connection(LIMITS, open_by_uid, uid) == refusal


def test_root_reserve_leaves_non_root_at_least_one_slot() -> None:
    tiny = ConnectionLimits(max_connections=2, max_per_uid=8, root_reserved=4)
    assert admit_connection(tiny, {}, 1000) is None
    assert admit_connection(tiny, {1000: 1}, 1001) is not None
    assert admit_connection(tiny, {1000: 1}, 0) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"max_connections": 0},
        {"max_per_uid": 0},
        {"root_reserved": -1},
    ],
)
def test_connection_limits_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ConnectionLimits(**bad)


# --- the server on a real socket ----------------------------------------------------------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 107 bytes), readable by anyone."""
    path = Path(tempfile.mkdtemp(prefix="ipvsd-ctl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
async def server(socket_dir: Path, view: FakeView) -> AsyncIterator[ControlServer]:
    async with ControlServer(socket_dir / "ipvsd.sock", view, idle_timeout_s=0.5) as srv:
        yield srv


async def exchange(path: Path, *requests: bytes) -> list[dict[str, Any]]:
    """Send the lines on one connection; return the answers until the server hangs up."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(b"".join(requests))
        await writer.drain()
        answers = []
        for _ in requests:
            raw = await asyncio.wait_for(reader.readline(), 5)
            if not raw:
                break
            answers.append(json.loads(raw))
        return answers
    finally:
        writer.close()


async def test_status_round_trip_with_the_blocking_client(server: ControlServer) -> None:
    answer = await asyncio.to_thread(request, server.path, {"command": "status"})
    assert answer == {"ok": True, "result": STATUS}


async def test_several_requests_on_one_connection(server: ControlServer, view: FakeView) -> None:
    with capture_logs() as logs:
        answers = await exchange(
            server.path,
            line(command="version"),
            line(command="drain", **DRAIN),
            line(command="ready"),
        )
    assert [answer["result"] for answer in answers] == [
        {"version": "9.9.9"},
        {**DRAIN, "drained": True, "node": "director1"},
        {"ready": True},
    ]
    assert view.drained == {(WEB, REAL_30)}  # the test runs as root
    audit = [entry for entry in logs if entry["event"] == "control.command"]
    assert [(entry["command"], entry["uid"], entry["log_level"]) for entry in audit] == [
        ("version", 0, "debug"),
        ("drain", 0, "info"),
        ("ready", 0, "debug"),
    ]


async def test_fifty_concurrent_clients(server: ControlServer) -> None:
    results = await asyncio.gather(
        *(exchange(server.path, line(command="status")) for _ in range(50))
    )
    assert all(answers == [{"ok": True, "result": STATUS}] for answers in results)


async def test_a_silent_client_blocks_nobody_and_is_timed_out(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:
        answers = await asyncio.wait_for(exchange(server.path, line(command="version")), 2)
        assert answers[0]["ok"]
        assert await asyncio.wait_for(reader.read(), 5) == b""  # idle_timeout_s = 0.5
    finally:
        writer.close()


@pytest.mark.parametrize(
    "garbage", [b"hello\n", b"\x00\x01\x02\n", b"x" * (MAX_REQUEST_BYTES + 10) + b"\n"]
)
async def test_garbage_gets_an_error_and_the_server_goes_on(
    server: ControlServer, garbage: bytes
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(garbage + line(command="version"))
    answer = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert answer["ok"] is False
    assert await asyncio.wait_for(reader.read(), 5) == b""  # hung up: no second answer
    writer.close()
    assert (await exchange(server.path, line(command="version")))[0]["ok"]


async def test_over_the_connection_cap_the_answer_is_busy(socket_dir: Path, view: FakeView) -> None:
    async with ControlServer(socket_dir / "s", view, max_connections=2) as server:
        held = [await asyncio.open_unix_connection(str(server.path)) for _ in range(2)]
        for reader, writer in held:  # make sure both are being served
            writer.write(line(command="version"))
            assert json.loads(await reader.readline())["ok"]
        answers = await exchange(server.path, line(command="version"))
        assert answers == [{"ok": False, "error": "busy: too many control connections; try again"}]
        for _, writer in held:
            writer.close()


async def test_deeply_nested_json_is_answered_not_logged_as_a_bug(server: ControlServer) -> None:
    with capture_logs() as logs:
        answers = await exchange(server.path, b"[" * 60_000 + b"\n")
    assert answers == [{"ok": False, "error": "request is nested too deeply"}]
    assert not [entry for entry in logs if entry["event"] == "control.error"]
    assert (await exchange(server.path, line(command="version")))[0]["ok"]


async def test_a_refused_request_is_not_echoed_into_the_log(server: ControlServer) -> None:
    huge = "x" * 60_000
    with capture_logs() as logs:
        answers = await exchange(
            server.path,
            line(command=huge),
            line(command="drain", service=huge, real="192.168.1.30:80"),
        )
    assert [answer["ok"] for answer in answers] == [False, False]
    refused = [entry for entry in logs if entry["event"] == "control.refused"]
    assert len(refused) == 2
    for entry in refused:
        assert len(repr(entry)) < 1000, repr(entry)[:200]
        assert entry["error"].endswith("...")


async def test_refusals_are_logged_at_a_limited_rate(server: ControlServer) -> None:
    with capture_logs() as logs:
        answers = await exchange(server.path, *[line(command="flush")] * 200)
    assert len(answers) == 200
    assert all(answer["ok"] is False for answer in answers)
    refused = [entry for entry in logs if entry["event"] == "control.refused"]
    assert 1 <= len(refused) <= 20


async def test_the_busy_answer_is_logged_at_a_limited_rate(
    socket_dir: Path, view: FakeView
) -> None:
    async with ControlServer(socket_dir / "s", view, max_connections=1) as server:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(line(command="version"))
        assert json.loads(await reader.readline())["ok"]
        with capture_logs() as logs:
            for _ in range(100):
                answers = await exchange(server.path, line(command="version"))
                assert answers[0]["error"].startswith("busy")
        writer.close()
    assert 1 <= len([entry for entry in logs if entry["event"] == "control.busy"]) <= 20


async def test_a_bug_behind_status_is_logged_and_answered(
    server: ControlServer, view: FakeView
) -> None:
    view.status_error = RuntimeError("boom")
    with capture_logs() as logs:
        answers = await exchange(server.path, line(command="status"))
    assert answers[0]["ok"] is False
    assert "internal error" in answers[0]["error"]
    assert any(entry["event"] == "control.error" for entry in logs)
    view.status_error = None
    assert (await exchange(server.path, line(command="status")))[0]["ok"]


def big_status(view: FakeView, services: int) -> bytes:
    """Make the fake's status `services` copies of its service; its answer line."""
    view.status_doc = dataclasses.replace(STATUS_DOC, services=STATUS_DOC.services * services)
    return json.dumps({"ok": True, "result": to_json(view.status_doc)},
                      separators=(",", ":")).encode() + b"\n"  # fmt: skip


async def test_a_big_status_is_written_in_chunks_and_arrives_whole(
    server: ControlServer, view: FakeView
) -> None:
    """Several `WRITE_CHUNK_BYTES` chunks, byte for byte what `encode` makes, and the
    loop turns while they go out (a client that reads slowly)."""
    expected = big_status(view, 2000)
    assert len(expected) > 4 * WRITE_CHUNK_BYTES
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    reader, writer = await asyncio.open_unix_connection(str(server.path), limit=len(expected) + 1)
    try:
        writer.write(line(command="status"))
        await writer.drain()
        before = turns
        received = b""
        while not received.endswith(b"\n"):
            received += await asyncio.wait_for(reader.read(65536), 5)
            await asyncio.sleep(0.001)  # a slow client
    finally:
        writer.close()
        counter.cancel()
    assert received == expected
    assert turns - before > 4


async def test_a_client_that_hangs_up_mid_status_harms_nothing(
    server: ControlServer, view: FakeView
) -> None:
    big_status(view, 2000)
    with capture_logs() as logs:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(line(command="status"))
        await writer.drain()
        await reader.read(1000)  # the start of the answer, then gone
        writer.close()
        await asyncio.sleep(0.2)
        answers = await exchange(server.path, line(command="version"))
    assert answers == [{"ok": True, "result": {"version": "9.9.9"}}]
    assert not any(entry["event"] == "control.error" for entry in logs)


async def test_a_client_that_stops_reading_a_status_is_timed_out(
    server: ControlServer, view: FakeView
) -> None:
    """It holds no slot for ever: the idle timeout (0.5 s here) runs for each chunk."""
    big_status(view, 20000)
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:
        writer.write(line(command="status"))
        await writer.drain()
        await asyncio.sleep(1.5)  # reads nothing meanwhile
        received = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
            received += len(chunk)
    finally:
        writer.close()
    assert 0 < received < len(big_status(view, 20000))  # cut off, not the whole answer
    assert await asyncio.wait_for(exchange(server.path, line(command="version")), 2)


async def test_socket_mode_and_directory(socket_dir: Path, view: FakeView) -> None:
    path = socket_dir / "run" / "ipvsd" / "ipvsd.sock"
    async with ControlServer(path, view):
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert not path.exists()  # close() removes it
    with pytest.raises(DaemonNotRunning, match=f"no daemon at {path}"):
        request(path, {"command": "status"})


async def test_group_mode(socket_dir: Path, view: FakeView) -> None:
    gid = grp.getgrnam("nogroup").gr_gid
    async with ControlServer(socket_dir / "s", view, group="nogroup") as server:
        info = server.path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, gid)


async def test_unknown_group_is_a_clear_error(socket_dir: Path, view: FakeView) -> None:
    server = ControlServer(socket_dir / "s", view, group="no-such-group-ipvsd")
    with pytest.raises(ControlSocketError, match=r"control\.group: unknown group"):
        await server.start()
    assert not server.path.exists()


async def test_a_stale_socket_file_is_replaced(socket_dir: Path, view: FakeView) -> None:
    path = socket_dir / "s"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # left behind, nobody listening: a daemon that died
    async with ControlServer(path, view):
        assert (await exchange(path, line(command="version")))[0]["ok"]


async def test_a_live_daemon_is_not_replaced(server: ControlServer, view: FakeView) -> None:
    with pytest.raises(ControlSocketError, match="another ipvsd is already listening"):
        await ControlServer(server.path, view).start()
    assert (await exchange(server.path, line(command="version")))[0]["ok"]


async def test_a_file_that_is_not_a_socket_is_left_alone(socket_dir: Path, view: FakeView) -> None:
    path = socket_dir / "s"
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        await ControlServer(path, view).start()
    assert path.read_text() == "precious"


# --- a peer that is not root ---------------------------------------------------------------

AS_NOBODY = """
import json, sys
from ipvsd.control.client import ControlClientError, request
answers = {}
for command in ("status", "drain"):
    payload = {"command": command, "service": "192.168.1.200:80", "real": "192.168.1.30:80"}
    try:
        answers[command] = request(sys.argv[1], payload)
    except ControlClientError as exc:
        answers[command] = {"exception": str(exc)}
print(json.dumps(answers))
"""


async def run_as_nobody(path: Path) -> dict[str, Any]:
    """Ask the server from a process running as uid/gid 65534 (nobody/nogroup)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as another user")
    argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    process = await asyncio.create_subprocess_exec(
        *argv,
        sys.executable,
        "-c",
        AS_NOBODY,
        str(path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    answers: dict[str, Any] = json.loads(out)
    return answers


async def test_a_group_member_may_read_but_not_drain(socket_dir: Path, view: FakeView) -> None:
    async with ControlServer(socket_dir / "s", view, group="nogroup") as server:
        answers = await run_as_nobody(server.path)
    assert answers["status"] == {"ok": True, "result": STATUS}
    assert answers["drain"] == {
        "ok": False,
        "error": "permission denied: drain needs root (you are uid 65534)",
    }
    assert view.drained == set()


HOLD_AS_NOBODY = """
import json, socket, sys
path, count = sys.argv[1], int(sys.argv[2])
held, answers = [], []
for _ in range(count + 1):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    try:
        sock.sendall(b'{"command": "version"}\\n')
    except OSError:  # refused: the server may answer "busy" and hang up before we send
        pass
    answers.append(json.loads(sock.makefile("rb").readline()))
    held.append(sock)
print(json.dumps(answers), flush=True)
sys.stdin.read()  # hold them until the test closes our stdin
"""


async def test_a_non_root_uid_cannot_lock_root_out(socket_dir: Path, view: FakeView) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as another user")
    per_uid = 3
    async with ControlServer(
        socket_dir / "s", view, group="nogroup", max_connections=8, max_connections_per_uid=per_uid
    ) as server:
        argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        process = await asyncio.create_subprocess_exec(
            *argv,
            sys.executable,
            "-c",
            HOLD_AS_NOBODY,
            str(server.path),
            str(per_uid),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            raw = await asyncio.wait_for(process.stdout.readline(), 30)
            if not raw:  # say why, instead of a JSONDecodeError on ""
                assert process.stderr is not None
                error = (await asyncio.wait_for(process.stderr.read(), 5)).decode()
                pytest.fail(f"the uid-65534 client printed nothing; its stderr: {error}")
            held = json.loads(raw)
            # Root is answered while nobody holds its whole per-uid share.
            assert (await exchange(server.path, line(command="version")))[0]["ok"]
        finally:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
    assert [answer["ok"] for answer in held] == [True] * per_uid + [False]
    assert held[-1]["error"] == "busy: too many control connections from uid 65534; try again"


async def test_without_the_group_the_socket_keeps_others_out(
    socket_dir: Path, view: FakeView
) -> None:
    async with ControlServer(socket_dir / "s", view) as server:
        answers = await run_as_nobody(server.path)
    assert answers["status"]["exception"].startswith(f"permission denied on {server.path}")


# --- the blocking client against servers that misbehave ------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"not json\n", "answer that is not JSON"),
        (b"[1]\n", 'answer without "ok"'),
        (b"", "closed without an answer"),
        (None, "did not answer within 0.3 s"),
    ],
)
async def test_the_client_explains_a_bad_answer(
    socket_dir: Path, reply: bytes | None, message: str
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        if reply is None:
            await asyncio.sleep(5)
        writer.write(reply or b"")
        writer.close()

    path = socket_dir / "s"
    server = await asyncio.start_unix_server(answer, str(path))
    try:
        with pytest.raises(ControlClientError, match=re.escape(message)):
            await asyncio.to_thread(request, path, {"command": "status"}, 0.3)
    finally:
        server.close()
