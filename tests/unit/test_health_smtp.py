"""smtp checks: the reply reader (pure), then the dialogue against loopback servers.

Each server is an asyncio server on 127.0.0.1, port 0, that plays a script:
its greeting, its answer to HELO, and what it heard. A closed port refuses;
a server that greets nobody times the check out in its greeting phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health import smtp
from ipvsd.health.checks import CheckResult, run_check, target_for

LOCAL = ip_address("127.0.0.1")
TIMEOUT_S = 0.3
SLACK_S = 0.5

# --- the reply reader ----------------------------------------------------------------------


def test_a_multiline_reply_ends_on_its_line_without_a_hyphen() -> None:
    reader = smtp.ReplyReader()
    reader.feed(b"250-mail.example\r\n250-SIZE 1000\r\n")
    assert reader.next_reply() is None
    reader.feed(b"250 HELP\r\n220 next")
    assert reader.next_reply() == smtp.Reply(250, "HELP")
    assert reader.next_reply() is None  # "220 next" has no line end yet
    reader.feed(b"\n")
    assert reader.next_reply() == smtp.Reply(220, "next")


def test_a_bare_code_and_a_lone_lf_are_replies() -> None:
    reader = smtp.ReplyReader()
    reader.feed(b"220\n")
    assert reader.next_reply() == smtp.Reply(220, "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an SMTP reply line: b'SSH-2.0-OpenSSH_9.6'"),
        (b"220text\r\n", "not an SMTP reply line: b'220text'"),
        (b"250-a\r\n251 b\r\n", "reply code 251 inside a 250 reply"),
        (b"2" * 9000, "no end of reply in 9000 bytes"),
    ],
)
def test_garbage_is_an_smtp_error(data: bytes, message: str) -> None:
    reader = smtp.ReplyReader()
    reader.feed(data)
    with pytest.raises(smtp.SmtpError) as info:
        reader.next_reply()
    assert str(info.value) == message


def test_a_long_text_is_cut_in_reasons() -> None:
    assert smtp.Reply(554, "x" * 100).shown() == "554 " + "x" * 76 + "..."


# --- against servers -----------------------------------------------------------------------


@dataclass
class Script:
    """What the server says: `greeting` on connect (None: nothing), `answer` to HELO
    (empty: it hangs up)."""

    greeting: bytes | None = b"220 mail.example ESMTP\r\n"
    answer: bytes = b"250 mail.example\r\n"
    heard: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def server(script: Script) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if script.greeting is None:
                await reader.read()  # say nothing until the check gives up
                return
            writer.write(script.greeting)
            script.heard.append(await reader.readline())
            if not script.answer:
                return  # hang up after HELO
            writer.write(script.answer)
            script.heard.append(await reader.readline())
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def smtp_check(**fields: Any) -> CheckConfig:
    return CheckConfig(type=CheckType.SMTP, timeout=TIMEOUT_S, **fields)


async def check(cfg: CheckConfig, port: int, node: str = "lb1") -> CheckResult:
    return await run_check(target_for(cfg, LOCAL, port, node_name=node))


async def test_greeting_helo_250_and_quit_is_up() -> None:
    script = Script()
    async with server(script) as port:
        result = await check(smtp_check(), port)
        await asyncio.sleep(0.05)  # let the server read the QUIT
    assert (result.ok, result.reason) == (True, "HELO answered 250")
    assert script.heard == [b"HELO lb1\r\n", b"QUIT\r\n"]


async def test_helo_name_replaces_the_node_name() -> None:
    script = Script()
    async with server(script) as port:
        result = await check(smtp_check(helo_name="lb.example"), port)
    assert result.ok
    assert script.heard[0] == b"HELO lb.example\r\n"


async def test_a_refused_connection_is_down() -> None:
    result = await check(smtp_check(), closed_port())
    assert (result.ok, result.reason) == (False, "connection refused")


async def test_a_silent_server_times_out_in_the_greeting() -> None:
    async with server(Script(greeting=None)) as port:
        result = await check(smtp_check(), port)
    assert (result.ok, result.reason) == (False, f"timeout after {TIMEOUT_S} s (greeting)")
    assert TIMEOUT_S <= result.duration_s < TIMEOUT_S + SLACK_S


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (Script(greeting=b"554 no service\r\n"), "greeting 554 no service (expected 220)"),
        (Script(answer=b"501 bad HELO\r\n"), "HELO answered 501 bad HELO (expected 250)"),
        (Script(greeting=b"HTTP/1.1 400 Bad\r\n"),
         "bad SMTP reply: not an SMTP reply line: b'HTTP/1.1 400 Bad'"),
        (Script(answer=b""), "connection closed after HELO"),
    ],
)  # fmt: skip
async def test_wrong_or_garbage_replies_are_down(script: Script, reason: str) -> None:
    async with server(script) as port:
        result = await check(smtp_check(), port)
    assert (result.ok, result.reason) == (False, reason)


@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_give_replies_none_or_an_smtp_error(chunks: list[bytes]) -> None:
    reader = smtp.ReplyReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while reader.next_reply() is not None:
                pass
    except smtp.SmtpError:
        pass
