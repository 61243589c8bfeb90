"""udp checks against a tiny UDP responder on loopback: silence, ICMP refusal, replies.

The responder (an asyncio datagram endpoint on 127.0.0.1, port 0) records each
datagram it gets and answers with canned bytes, or not at all. A closed port
draws an ICMP port unreachable from the kernel (loopback is not rate limited).
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

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.checks import CheckResult, run_check, target_for, udp_payload

LOCAL = ip_address("127.0.0.1")
TIMEOUT_S = 0.3
SLACK_S = 0.5


@dataclass
class Responder(asyncio.DatagramProtocol):
    """Records datagrams; answers each with `reply` (None: silence)."""

    reply: bytes | None = None
    got: list[bytes] = field(default_factory=list)
    transport: Any = None  # a _SelectorDatagramTransport, not an asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append(data)
        if self.reply is not None and self.transport is not None:
            self.transport.sendto(self.reply, addr)


@contextlib.asynccontextmanager
async def responder(reply: bytes | None = None) -> AsyncIterator[tuple[Responder, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(reply), local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def udp(**fields: Any) -> CheckConfig:
    return CheckConfig(type=CheckType.UDP, timeout=TIMEOUT_S, **fields)


async def check(cfg: CheckConfig, port: int) -> CheckResult:
    return await run_check(target_for(cfg, LOCAL, port))


async def test_silence_from_an_open_port_is_up_and_the_payload_arrives() -> None:
    async with responder() as (server, port):
        result = await check(udp(payload="ping\n"), port)
    assert (result.ok, result.reason) == (True, f"no reply and no ICMP error in {TIMEOUT_S} s")
    assert TIMEOUT_S <= result.duration_s < TIMEOUT_S + SLACK_S
    assert server.got == [b"ping\n"]


async def test_icmp_port_unreachable_is_down_at_once() -> None:
    result = await check(udp(), closed_udp_port())
    assert (result.ok, result.reason) == (False, "port unreachable (ICMP)")
    assert result.duration_s < TIMEOUT_S


@pytest.mark.parametrize("fields", [{"require_reply": True}, {"reply_regex": "^OK"}])
async def test_silence_is_a_timeout_when_a_reply_is_required(fields: dict[str, Any]) -> None:
    async with responder() as (_, port):
        result = await check(udp(**fields), port)
    assert (result.ok, result.reason) == (False, f"timeout after {TIMEOUT_S} s (reply)")


async def test_a_required_reply_is_up_and_the_hex_payload_is_sent() -> None:
    async with responder(b"\x00\x01anything") as (server, port):
        result = await check(udp(payload_hex="de ad be ef", require_reply=True), port)
    assert (result.ok, result.reason) == (True, "reply of 10 bytes")
    assert server.got == [b"\xde\xad\xbe\xef"]


async def test_a_reply_matching_the_regex_is_up() -> None:
    async with responder(b"OK ready\n") as (_, port):
        result = await check(udp(payload="status", reply_regex=r"^OK\b"), port)
    assert (result.ok, result.reason) == (True, "reply of 9 bytes matches")


async def test_a_garbage_reply_is_down_with_what_came() -> None:
    async with responder(b"\xff\xfeERR" + b"x" * 100) as (_, port):
        result = await check(udp(reply_regex="^OK"), port)
    assert not result.ok
    shown = "b'\\xff\\xfeERR" + "x" * 55 + "'"  # the first 60 bytes
    assert result.reason == f"reply does not match '^OK': {shown}"


async def test_refused_when_a_reply_is_required_too() -> None:
    result = await check(udp(require_reply=True), closed_udp_port())
    assert (result.ok, result.reason) == (False, "port unreachable (ICMP)")


def test_the_payload_is_text_hex_or_empty() -> None:
    assert udp_payload(udp(payload="héllo")) == "héllo".encode()
    assert udp_payload(udp(payload_hex="0a1BfF")) == b"\n\x1b\xff"
    assert udp_payload(udp()) == b""
