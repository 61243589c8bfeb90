"""Health checkers against real listeners on loopback (seesaw-style): no root, no other host.

Each HTTP test runs a tiny asyncio server on 127.0.0.1 (or ::1), port 0, that
records the request head it got and answers with canned bytes, so malformed
and truncated responses are as easy to serve as good ones. HTTPS tests use a
self-signed certificate made with ``openssl`` for this session (CN and SAN
``localhost``, SAN ``127.0.0.1``). Exec tests run ``sh``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.checks import (
    BODY_LIMIT,
    USER_AGENT,
    CheckResult,
    CheckTarget,
    run_check,
    target_for,
    tls_context,
)
from ipvsd.health.http import host_header

LOCAL = ip_address("127.0.0.1")
SLACK_S = 0.5  # a timed-out check must report within timeout + SLACK_S

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Type: text/plain\r\n\r\nall ok\n"


def check(kind: CheckType, **fields: Any) -> CheckConfig:
    return CheckConfig(type=kind, **fields)


def target(
    cfg: CheckConfig, port: int = 0, address: IPv4Address | IPv6Address = LOCAL
) -> CheckTarget:
    return target_for(cfg, address, port)


def response(status: int, body: bytes = b"", reason: str = "X") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --- servers ---------------------------------------------------------------------------------


@dataclass
class HttpServer:
    """Answers every request with `reply(head)`; None never answers (reads until EOF)."""

    port: int
    reply: Callable[[bytes], bytes | None]
    heads: list[bytes] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def header(self, name: str) -> str:
        """The value of header `name` in the last request."""
        lines = self.heads[-1].decode().split("\r\n")[1:]
        values = [v.strip() for n, _, v in (ln.partition(":") for ln in lines) if n.lower() == name]
        assert len(values) == 1, values
        return values[0]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(
    handle: Handler, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Serve `handle` on a free port; on exit, stop the handlers and close their connections."""
    handlers: set[asyncio.Task[Any]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the checker hung up first, or its TLS handshake failed
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(tracked, host, 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def http_server(
    reply: Callable[[bytes], bytes | None],
    *,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[HttpServer]:
    state = HttpServer(0, reply)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.peers.append(writer.get_extra_info("peername")[:2])
        head = await reader.readuntil(b"\r\n\r\n")
        state.heads.append(head)
        answer = state.reply(head)
        if answer is None:
            await reader.read()  # until the checker gives up and closes
        else:
            writer.write(answer)
            await writer.drain()

    if tls is not None:
        tls.sni_callback = lambda _obj, name, _ctx: state.server_names.append(name)
    async with tcp_server(handle, host=host, tls=tls) as port:
        state.port = port
        yield state


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    made = Cert(where / "cert.pem", where / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(made.key), "-out", str(made.cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return made


def assert_timed_out(result: CheckResult, timeout: float, phase: str) -> None:
    assert not result.ok
    assert result.reason == f"timeout after {timeout} s ({phase})"
    assert timeout <= result.duration_s < timeout + SLACK_S


# --- targets ---------------------------------------------------------------------------------


def test_target_uses_the_real_unless_the_check_overrides() -> None:
    plain = target_for(check(CheckType.TCP), LOCAL, 80)
    assert (plain.address, plain.port, plain.real) == (LOCAL, 80, "127.0.0.1:80")
    other = ip_address("127.0.0.9")
    moved = target_for(check(CheckType.TCP, address=other, port=8080), LOCAL, 80)
    assert (moved.address, moved.port, moved.real) == (other, 8080, "127.0.0.1:80")


def test_target_of_an_ipv6_real_is_labelled_in_brackets() -> None:
    assert target_for(check(CheckType.TCP), ip_address("::1"), 443).real == "[::1]:443"


def test_port_checks_need_a_port_but_exec_does_not() -> None:
    with pytest.raises(ValueError, match="no port"):
        target_for(check(CheckType.HTTP), LOCAL, 0)
    assert target_for(check(CheckType.HTTP, port=81), LOCAL, 0).port == 81
    assert target_for(check(CheckType.EXEC, command=("true",)), LOCAL, 0).port == 0


@pytest.mark.parametrize(
    ("host", "address", "port", "default", "expected"),
    [
        (None, "10.0.0.1", 80, 80, "10.0.0.1"),
        (None, "10.0.0.1", 8080, 80, "10.0.0.1:8080"),
        (None, "2001:db8::1", 443, 443, "[2001:db8::1]"),
        (None, "2001:db8::1", 8443, 443, "[2001:db8::1]:8443"),
        ("www.example.com", "10.0.0.1", 443, 443, "www.example.com"),
        ("www.example.com", "10.0.0.1", 8443, 443, "www.example.com:8443"),
        ("2001:db8::2", "10.0.0.1", 80, 80, "[2001:db8::2]"),
    ],
)
def test_host_header(
    host: str | None, address: str, port: int, default: int, expected: str
) -> None:
    assert host_header(host, ip_address(address), port, default) == expected


# --- none and tcp ----------------------------------------------------------------------------


async def test_none_is_always_up() -> None:
    result = await run_check(target(check(CheckType.NONE), closed_port()))
    assert result.ok
    assert result.reason == "no check"


async def test_tcp_up_when_a_listener_accepts() -> None:
    accepted = asyncio.Event()

    async def handle(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        accepted.set()

    async with tcp_server(handle) as port:
        result = await run_check(target(check(CheckType.TCP), port))
        await asyncio.wait_for(accepted.wait(), 1)
    assert result == CheckResult(True, "connected", result.duration_s)
    assert 0 < result.duration_s < 1


async def test_tcp_check_closes_with_a_reset_leaving_no_time_wait() -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        try:
            data = await reader.read(1)
            outcome.set_result("eof" if not data else "data")
        except ConnectionResetError:
            outcome.set_result("reset")

    async with tcp_server(handle) as port:
        result = await run_check(target(check(CheckType.TCP), port))
        assert result.ok
        assert await asyncio.wait_for(outcome, 2) == "reset"


async def test_tcp_refused_on_a_closed_port() -> None:
    result = await run_check(target(check(CheckType.TCP), closed_port()))
    assert not result.ok
    assert result.reason == "connection refused"


async def test_tcp_connects_from_the_source_address() -> None:
    async with http_server(lambda _head: OK_RESPONSE) as server:
        cfg = check(CheckType.HTTP, source_address=ip_address("127.0.0.2"))
        result = await run_check(target(cfg, server.port))
    assert result.ok, result.reason
    assert server.peers[0][0] == "127.0.0.2"


async def test_a_source_address_we_do_not_have_is_a_reason() -> None:
    cfg = check(CheckType.TCP, source_address=ip_address("192.0.2.1"))  # TEST-NET-1: bind only
    result = await run_check(target(cfg, closed_port()))
    assert not result.ok
    assert result.reason == "cannot assign requested address (bind to 192.0.2.1)"


# --- http ------------------------------------------------------------------------------------


async def test_http_200_is_up_and_the_request_is_well_formed() -> None:
    async with http_server(lambda _head: OK_RESPONSE) as server:
        cfg = check(CheckType.HTTP, path="/healthz?full=1")
        result = await run_check(target(cfg, server.port))
    assert result.ok
    assert result.reason == "HTTP 200"
    assert server.heads[0].startswith(b"GET /healthz?full=1 HTTP/1.1\r\n")
    assert server.header("host") == f"127.0.0.1:{server.port}"
    assert server.header("user-agent") == USER_AGENT
    assert USER_AGENT.startswith("ipvsd-healthcheck")
    assert server.header("connection") == "close"


async def test_http_sends_the_configured_host() -> None:
    async with http_server(lambda _head: OK_RESPONSE) as server:
        result = await run_check(target(check(CheckType.HTTP, host="www.example"), server.port))
    assert result.ok
    assert server.header("host") == f"www.example:{server.port}"


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_http_over_ipv6_puts_the_literal_in_brackets() -> None:
    async with http_server(lambda _head: OK_RESPONSE, host="::1") as server:
        result = await run_check(target(check(CheckType.HTTP), server.port, ip_address("::1")))
    assert result.ok, result.reason
    assert server.header("host") == f"[::1]:{server.port}"


async def test_http_500_is_down() -> None:
    async with http_server(lambda _head: response(500, b"oops")) as server:
        result = await run_check(target(check(CheckType.HTTP), server.port))
    assert not result.ok
    assert result.reason == "HTTP 500 (expected 200)"


@pytest.mark.parametrize(("status", "ok"), [(200, True), (204, True), (301, False), (404, False)])
async def test_http_status_must_be_one_of_the_expected(status: int, ok: bool) -> None:
    async with http_server(lambda _head: response(status)) as server:
        cfg = check(CheckType.HTTP, expected_status=(200, 204))
        result = await run_check(target(cfg, server.port))
    assert result.ok is ok
    if not ok:
        assert result.reason == f"HTTP {status} (expected 200, 204)"


async def test_http_interim_1xx_responses_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK_RESPONSE
    async with http_server(lambda _head: answer) as server:
        result = await run_check(target(check(CheckType.HTTP, body_regex="ok$"), server.port))
    assert result.ok, result.reason


async def test_http_body_regex_matches() -> None:
    async with http_server(lambda _head: response(200, b'{"status": "ok"}')) as server:
        cfg = check(CheckType.HTTP, body_regex=r'"status":\s*"ok"')
        result = await run_check(target(cfg, server.port))
    assert result.ok
    assert result.reason == "HTTP 200, body matches"


async def test_http_body_regex_mismatch_is_down() -> None:
    async with http_server(lambda _head: response(200, b"degraded")) as server:
        result = await run_check(target(check(CheckType.HTTP, body_regex="ok"), server.port))
    assert not result.ok
    assert result.reason == "body does not match 'ok'"


async def test_http_chunked_body_is_reassembled_before_matching() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nall\r\n4\r\n ok!\r\n0\r\n\r\n"
    )
    async with http_server(lambda _head: chunked) as server:
        result = await run_check(target(check(CheckType.HTTP, body_regex="all ok"), server.port))
    assert result.ok, result.reason


async def test_http_body_is_searched_only_up_to_the_limit() -> None:
    tail_match = response(200, b"a" * BODY_LIMIT + b"needle")
    async with http_server(lambda _head: tail_match) as server:
        result = await run_check(target(check(CheckType.HTTP, body_regex="needle"), server.port))
    assert not result.ok
    assert result.reason == "body does not match 'needle'"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"garbage\r\n\r\n", "bad HTTP response: illegal status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", "bad HTTP response: peer closed"),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "bad HTTP response: "),
        (b"", "connection closed, no response"),
        (b"HTTP/1.1 20", "connection closed mid-response"),
    ],
)
async def test_a_malformed_response_is_a_reason_not_an_exception(
    answer: bytes, reason: str
) -> None:
    async with http_server(lambda _head: answer) as server:
        result = await run_check(target(check(CheckType.HTTP, body_regex="ok"), server.port))
    assert not result.ok
    assert result.reason.startswith(reason), result.reason


async def test_http_server_that_never_answers_times_out() -> None:
    async with http_server(lambda _head: None) as server:
        result = await run_check(target(check(CheckType.HTTP, timeout=0.3), server.port))
    assert_timed_out(result, 0.3, "response")


async def test_http_refused() -> None:
    result = await run_check(target(check(CheckType.HTTP), closed_port()))
    assert result.reason == "connection refused"


# --- https -----------------------------------------------------------------------------------


async def test_https_self_signed_is_accepted_without_verification(cert: Cert) -> None:
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        result = await run_check(target(check(CheckType.HTTPS, body_regex="ok"), server.port))
    assert result.ok, result.reason
    assert server.server_names == [None]  # an IP literal is not sent as SNI (RFC 6066 §3)


async def test_https_self_signed_is_refused_when_verifying_without_its_ca(cert: Cert) -> None:
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        cfg = check(CheckType.HTTPS, verify_tls=True, host="localhost")
        result = await run_check(target(cfg, server.port))
    assert not result.ok
    assert result.reason.startswith("TLS: certificate verify failed"), result.reason
    assert server.heads == []


async def test_https_verified_against_the_ca_file_and_host(cert: Cert) -> None:
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        cfg = check(CheckType.HTTPS, verify_tls=True, ca_file=str(cert.cert), host="localhost")
        result = await run_check(target(cfg, server.port))
    assert result.ok, result.reason
    assert server.server_names == ["localhost"]
    assert server.header("host") == f"localhost:{server.port}"


async def test_https_verified_against_the_address_when_no_host(cert: Cert) -> None:
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        cfg = check(CheckType.HTTPS, verify_tls=True, ca_file=str(cert.cert))  # SAN IP:127.0.0.1
        result = await run_check(target(cfg, server.port))
    assert result.ok, result.reason


async def test_https_hostname_mismatch_is_refused(cert: Cert) -> None:
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        cfg = check(CheckType.HTTPS, verify_tls=True, ca_file=str(cert.cert), host="other.test")
        result = await run_check(target(cfg, server.port))
    assert not result.ok
    assert result.reason.startswith("TLS: certificate verify failed (Hostname mismatch")


async def test_https_shares_a_prebuilt_context(cert: Cert) -> None:
    cfg = check(CheckType.HTTPS, verify_tls=True, ca_file=str(cert.cert), host="localhost")
    shared = tls_context(cfg)
    async with http_server(lambda _head: OK_RESPONSE, tls=cert.server_context()) as server:
        first = await run_check(target_for(cfg, LOCAL, server.port, tls=shared))
        second = await run_check(target_for(cfg, LOCAL, server.port, tls=shared))
    assert first.ok
    assert second.ok


async def test_https_missing_ca_file_is_a_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    cfg = check(CheckType.HTTPS, verify_tls=True, ca_file=str(missing))
    result = await run_check(target(cfg, closed_port()))
    assert not result.ok
    assert result.reason == f"no such file or directory (loading CA file {missing})"


async def test_https_against_a_plain_http_server_fails_the_handshake() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # a ClientHello, which a plain server answers with a 400
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with tcp_server(plain) as port:
        result = await run_check(target(check(CheckType.HTTPS, timeout=2.0), port))
    assert not result.ok
    assert result.reason.startswith("TLS: "), result.reason
    assert result.duration_s < 1


async def test_https_server_that_never_handshakes_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await reader.read()  # never a ServerHello

    async with tcp_server(silent) as port:
        result = await run_check(target(check(CheckType.HTTPS, timeout=0.3), port))
    assert_timed_out(result, 0.3, "TLS handshake")


# --- exec ------------------------------------------------------------------------------------


def sh(script: str, *args: str, timeout: float = 2.0) -> CheckConfig:
    return check(CheckType.EXEC, command=("sh", "-c", script, "sh", *args), timeout=timeout)


async def test_exec_exit_0_is_up() -> None:
    result = await run_check(target(sh("exit 0"), 80))
    assert result == CheckResult(True, "exit status 0", result.duration_s)


async def test_exec_exit_1_is_down() -> None:
    result = await run_check(target(sh("exit 1"), 80))
    assert not result.ok
    assert result.reason == "exit status 1"


async def test_exec_with_dynamic_weight_gives_weight_status_minus_2() -> None:
    dynamic = check(CheckType.EXEC, command=("sh", "-c", "exit 7"), dynamic_weight=True)
    result = await run_check(target(dynamic, 80))
    assert (result.ok, result.reason, result.weight) == (True, "exit status 7: weight 5", 5)
    zero = await run_check(target(check(CheckType.EXEC, command=("sh", "-c", "exit 2"),
                                        dynamic_weight=True), 80))  # fmt: skip
    assert (zero.ok, zero.weight) == (True, 0), "exit 2: up at weight 0"


async def test_exec_with_dynamic_weight_exit_0_is_the_configured_weight_and_1_down() -> None:
    up = await run_check(target(check(CheckType.EXEC, command=("true",), dynamic_weight=True)))
    assert (up.ok, up.weight) == (True, None)
    down = await run_check(target(check(CheckType.EXEC, command=("false",), dynamic_weight=True)))
    assert (down.ok, down.reason, down.weight) == (False, "exit status 1", None)


async def test_exec_without_dynamic_weight_exit_7_is_down() -> None:
    result = await run_check(target(sh("exit 7")))
    assert (result.ok, result.weight) == (False, None)


async def test_exec_reason_carries_the_last_output_line() -> None:
    result = await run_check(
        target(sh("echo starting; echo 'backend: db unreachable' >&2; exit 2"))
    )
    assert result.reason == "exit status 2: backend: db unreachable"


async def test_exec_killed_by_a_signal() -> None:
    result = await run_check(target(sh("kill -TERM $$")))
    assert result.reason == "killed by SIGTERM"


async def test_exec_gets_the_target_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "env"
    cfg = sh('env > "$1"', str(out))
    result = await run_check(target_for(cfg, ip_address("192.0.2.7"), 8080))
    assert result.ok, result.reason
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["IPVSD_REAL_ADDRESS"] == "192.0.2.7"
    assert env["IPVSD_REAL_PORT"] == "8080"
    assert env["PATH"] == os.environ.get("PATH", os.defpath)


def process_group(pgid: int) -> dict[int, str]:
    """Live members of a process group: pid -> state (zombies left out)."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members[int(entry.name)] = state
    return members


async def group_gone(pgid: int) -> bool:
    """Whether process group `pgid` empties within a second (SIGKILL lands asynchronously)."""
    for _ in range(100):
        if not process_group(pgid):
            return True
        await asyncio.sleep(0.01)
    return False


def read_line(path: Path) -> str | None:
    """The file's text once a whole line is in it, else None."""
    text = path.read_text() if path.exists() else ""
    return text if text.endswith("\n") else None


def reaped(pid: int) -> bool:
    """No /proc entry: the process is gone, not even a zombie."""
    return not Path(f"/proc/{pid}").exists()


async def wait_for_line(path: Path) -> str:
    for _ in range(200):
        if (text := read_line(path)) is not None:
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} was not written")


async def test_a_hanging_exec_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cfg = sh('sleep 30 & echo "$$ $!" > "$1"; sleep 30', str(pids), timeout=0.5)
    result = await run_check(target(cfg))
    assert not result.ok
    assert result.reason == "killed after 0.5 s timeout"
    assert 0.5 <= result.duration_s < 0.5 + SLACK_S
    shell, background = (int(pid) for pid in (read_line(pids) or "").split())
    assert await group_gone(shell)  # the shell, its background sleep and its foreground sleep
    assert reaped(shell)  # our child is reaped, not left a zombie
    assert background != shell


async def test_a_cancelled_exec_leaves_no_process(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cfg = sh('sleep 30 & echo "$$ $!" > "$1"; sleep 30', str(pids), timeout=30)
    task = asyncio.create_task(run_check(target(cfg)))
    shell = int((await wait_for_line(pids)).split()[0])
    assert len(process_group(shell)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await group_gone(shell)
    assert reaped(shell)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def gone(pid: int) -> bool:
    """Whether `pid` dies within a second (SIGKILL lands asynchronously)."""
    for _ in range(100):
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


# A grandchild that writes its own pid, then lives on; "$1" is the pid file.
# The command then waits for the file, so the grandchild is surely running.
GRANDCHILD = 'sh -c \'echo $$ > "$0"; exec sleep 100\' "$1" &'
STARTED = 'until [ -s "$1" ]; do sleep 0.01; done;'


@pytest.mark.parametrize(
    "script",
    [
        f"{GRANDCHILD} {STARTED} exit 0",  # holds our output pipe too
        f"{GRANDCHILD.removesuffix(' &')} >/dev/null 2>&1 & {STARTED} exit 0",  # does not
        f"( {GRANDCHILD} ) ; {STARTED} exit 0",  # a subshell's child: a great-grandchild
        f"nohup {GRANDCHILD} {STARTED} exit 0",
    ],
)
async def test_a_passing_exec_leaves_no_background_child(tmp_path: Path, script: str) -> None:
    pid_file = tmp_path / "pid"
    result = await run_check(target(sh(script, str(pid_file), timeout=5)))
    assert result.ok, result.reason
    grandchild = int(await wait_for_line(pid_file))
    try:
        assert await gone(grandchild), f"grandchild {grandchild} outlived its check"
        assert result.duration_s < 1.0  # and the check did not wait for it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


async def test_a_failing_exec_leaves_no_background_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = await run_check(target(sh(f"{GRANDCHILD} {STARTED} exit 3", str(pid_file), timeout=5)))
    assert result.reason == "exit status 3"
    grandchild = int(await wait_for_line(pid_file))
    try:
        assert await gone(grandchild)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


async def test_a_timed_out_exec_leaves_no_grandchild(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = await run_check(
        target(sh(f"{GRANDCHILD} {STARTED} sleep 100", str(pid_file), timeout=0.5))
    )
    assert result.reason == "killed after 0.5 s timeout"
    grandchild = int(await wait_for_line(pid_file))
    try:
        assert await gone(grandchild)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


async def test_repeated_checks_do_not_pile_up_children(tmp_path: Path) -> None:
    pids = []
    for i in range(5):
        pid_file = tmp_path / f"pid{i}"
        result = await run_check(
            target(sh(f"{GRANDCHILD} {STARTED} exit 0", str(pid_file), timeout=5))
        )
        assert result.ok
        pids.append(int(await wait_for_line(pid_file)))
    try:
        for pid in pids:
            assert await gone(pid)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_exec_missing_executable() -> None:
    cfg = check(CheckType.EXEC, command=("ipvsd-no-such-check",))
    result = await run_check(target(cfg))
    assert not result.ok
    assert result.reason == "cannot run 'ipvsd-no-such-check': no such file or directory"


async def test_exec_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = await run_check(target(check(CheckType.EXEC, command=(str(script),))))
    assert result.reason == f"cannot run '{script}': permission denied"


# --- logging ---------------------------------------------------------------------------------


async def test_a_failed_check_logs_one_debug_event() -> None:
    with capture_logs() as logs:
        await run_check(target(check(CheckType.TCP), closed_port()))
    assert len(logs) == 1
    event = logs[0]
    assert event["event"] == "health.check"
    assert event["log_level"] == "debug"
    assert event["ok"] is False
    assert event["reason"] == "connection refused"
    assert event["type"] == "tcp"


async def test_a_passing_check_logs_nothing() -> None:
    async with http_server(lambda _head: OK_RESPONSE) as server:
        with capture_logs() as logs:
            assert (await run_check(target(check(CheckType.TCP), server.port))).ok
            assert (await run_check(target(check(CheckType.HTTP), server.port))).ok
    assert logs == []
