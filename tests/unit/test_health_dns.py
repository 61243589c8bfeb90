"""dns checks: the pure codec, and the check against a tiny DNS responder on loopback.

The responder answers on 127.0.0.1 over UDP (and TCP, on the same port, for
truncated answers) with replies built here with `struct`, not with the codec
under test: good ones, truncated ones, errors, garbage, or silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from typing import Any

import pytest

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import DNS_TYPES, CheckType
from ipvsd.health import dns
from ipvsd.health.checks import CheckResult, run_check, target_for

LOCAL = ip_address("127.0.0.1")
TIMEOUT_S = 0.3
A, SOA = dns.QUERY_TYPES["A"], dns.QUERY_TYPES["SOA"]


def reply(
    query: bytes,
    answers: list[tuple[int, bytes]],
    *,
    rcode: int = 0,
    tc: bool = False,
    ident: int | None = None,
) -> bytes:
    """A reply to `query` with `answers`, each named by a pointer to the question."""
    qid = struct.unpack_from("!H", query)[0] if ident is None else ident
    flags = 0x8180 | rcode | (0x0200 if tc else 0)
    out = struct.pack("!HHHHHH", qid, flags, 1, len(answers), 0, 0) + query[12:]
    for rtype, data in answers:
        out += struct.pack("!HHHIH", 0xC00C, rtype, 1, 60, len(data)) + data
    return out


def test_the_query_is_rfc_1035() -> None:
    assert dns.encode_query(0x1234, "www.example.test", A) == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    )
    assert dns.encode_query(1, ".", SOA)[12:] == b"\x00\x00\x06\x00\x01"


def test_a_reply_decodes_to_rcode_flags_and_answers() -> None:
    query = dns.encode_query(7, "example.test.", A)
    got = dns.decode_reply(reply(query, [(A, b"\x0a\0\0\1"), (5, b"\x00")]), 7)
    assert got == dns.Reply(0, False, ((A, b"\x0a\0\0\1"), (5, b"\x00")))
    assert dns.decode_reply(reply(query, [], rcode=3, tc=True), 7) == dns.Reply(3, True, ())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x07\x81", "3 bytes, shorter than a DNS header"),
        (dns.encode_query(7, "x", A), "not a reply"),
        (reply(dns.encode_query(8, "x", A), []), "id 8 is not the query's 7"),
        (reply(dns.encode_query(7, "x", A), [(A, b"\1\2\3\4")])[:-2], "runs past the end"),
        (reply(dns.encode_query(7, "x", A), [(A, b"")])[:-6], "ends inside a record"),
        (
            struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1",
            "points forward",
        ),
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\x80", "label type 2"),
    ],
)
def test_garbage_is_a_dns_error(data: bytes, message: str) -> None:
    with pytest.raises(dns.DnsError, match=message):
        dns.decode_reply(data, 7)


def test_names_are_checked_and_the_config_types_are_the_codec_s() -> None:
    with pytest.raises(dns.DnsError):
        dns.encode_name("a..b")
    with pytest.raises(dns.DnsError):
        dns.encode_name("x" * 64)
    assert set(DNS_TYPES) == set(dns.QUERY_TYPES)


# --- the check against a responder ----------------------------------------------------------

Answer = Callable[[bytes], bytes | None]
"""The responder's answer to a query (None: silence)."""


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.answer(data)
        if out is not None:
            self.transport.sendto(out, addr)


@contextlib.asynccontextmanager
async def responder(udp: Answer, tcp: Answer | None = None) -> AsyncIterator[int]:
    """UDP (and TCP, when `tcp` is given) DNS on one loopback port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(udp), local_addr=("127.0.0.1", 0)
    )
    port: int = transport.get_extra_info("sockname")[1]
    server = None
    if tcp is not None:
        answer_tcp = tcp

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            size = int.from_bytes(await reader.readexactly(2), "big")
            out = answer_tcp(await reader.readexactly(size))
            if out is not None:
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield port
    finally:
        transport.close()
        if server is not None:
            server.close()


def dns_check(**fields: Any) -> CheckConfig:
    return CheckConfig(type=CheckType.DNS, timeout=TIMEOUT_S, **fields)


async def check(cfg: CheckConfig, port: int) -> CheckResult:
    return await run_check(target_for(cfg, LOCAL, port))


async def test_a_soa_answer_for_the_root_is_up() -> None:
    seen: list[bytes] = []

    def answer(query: bytes) -> bytes:
        seen.append(query[12:])
        return reply(query, [(SOA, b"\0\0" + b"\0" * 20)])

    async with responder(answer) as port:
        result = await check(dns_check(), port)
    assert (result.ok, result.reason) == (True, "1 SOA record")
    assert seen == [b"\x00\x00\x06\x00\x01"], "default: SOA for '.'"


async def test_the_expected_address_must_be_in_the_answer() -> None:
    def answer(query: bytes) -> bytes:
        return reply(query, [(A, bytes([10, 0, 0, 1])), (A, bytes([10, 0, 0, 2]))])

    async with responder(answer) as port:
        good = await check(dns_check(query_name="w.test", query_type="A",
                                     expected_answer="10.0.0.2"), port)  # fmt: skip
        bad = await check(dns_check(query_name="w.test", query_type="A",
                                    expected_answer="10.0.0.3"), port)  # fmt: skip
    assert (good.ok, good.reason) == (True, "2 A records")
    assert (bad.ok, bad.reason) == (False, "10.0.0.3 is not among the 2 A records")


async def test_a_truncated_udp_reply_is_asked_again_over_tcp() -> None:
    def udp(query: bytes) -> bytes:
        return reply(query, [], tc=True)

    def tcp(query: bytes) -> bytes:
        return reply(query, [(A, bytes([10, 0, 0, 9]))] * 40)

    async with responder(udp, tcp) as port:
        result = await check(dns_check(query_name="big.test", query_type="A"), port)
    assert (result.ok, result.reason) == (True, "40 A records")


async def test_an_error_rcode_or_no_record_of_the_type_is_down() -> None:
    async with responder(lambda q: reply(q, [], rcode=3)) as port:
        nx = await check(dns_check(query_name="no.test", query_type="A"), port)
    async with responder(lambda q: reply(q, [(5, b"\0")])) as port:
        none = await check(dns_check(query_name="c.test", query_type="A"), port)
    assert (nx.ok, nx.reason) == (False, "DNS NXDOMAIN")
    assert (none.ok, none.reason) == (False, "no A record for 'c.test'")


async def test_refused_timeout_and_garbage_are_down() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = await check(dns_check(), closed)
    async with responder(lambda q: None) as port:
        silent = await check(dns_check(), port)
    async with responder(lambda q: b"\xff" * 5) as port:
        garbage = await check(dns_check(), port)
    async with responder(lambda q: reply(q, [], ident=(q[0] << 8 | q[1]) ^ 1)) as port:
        other = await check(dns_check(), port)
    assert (refused.ok, refused.reason) == (False, "port unreachable (ICMP)")
    assert (silent.ok, silent.reason) == (False, f"timeout after {TIMEOUT_S} s (reply)")
    assert (garbage.ok, garbage.reason) == (
        False,
        "bad DNS reply: 5 bytes, shorter than a DNS header",
    )
    assert not other.ok
    assert other.reason.startswith("bad DNS reply: id ")


async def test_a_tcp_refusal_after_truncation_is_down() -> None:
    async with responder(lambda q: reply(q, [], tc=True)) as port:
        result = await check(dns_check(), port)
    assert (result.ok, result.reason) == (False, "connection refused")
