"""ping checks: echo messages (pure, golden bytes), then a ping of loopback.

Refusal, timeouts, garbage replies and IPv6 need addresses and routes of
their own: they are in tests/netns/test_health_ping.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health import icmp
from ipvsd.health.checks import run_check, target_for


def test_an_ipv4_echo_request_carries_its_checksum() -> None:
    # 0x0800 + 0x1234 + 0x0001 = 0x1a35, whose complement is 0xe5ca (RFC 1071)
    assert icmp.encode_request(4, 0x1234, 1, b"").hex() == "0800e5ca12340001"
    message = icmp.encode_request(4, 7, 9, b"odd")
    assert icmp.checksum(message) == 0  # a correct checksum sums to all ones


def test_an_icmpv6_echo_request_leaves_the_checksum_to_the_kernel() -> None:
    assert icmp.encode_request(6, 0x1234, 1, b"ab").hex() == "80000000123400016162"


def test_an_ipv4_raw_reply_is_read_after_its_ip_header() -> None:
    header = bytes([0x46]) + bytes(23)  # IHL 6: 24 bytes, options included
    reply = bytes([0, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"data"
    assert icmp.decode_reply(header + reply, 4, ip_header=True) == icmp.Echo(0x1234, 1, b"data")
    assert icmp.decode_reply(reply, 4, ip_header=False) == icmp.Echo(0x1234, 1, b"data")


def test_other_messages_are_none_and_short_ones_errors() -> None:
    request = icmp.encode_request(6, 1, 1, b"")
    assert icmp.decode_reply(request, 6, ip_header=False) is None
    assert icmp.decode_reply(bytes([129, 0, 0, 0, 0, 5, 0, 6]), 6, ip_header=False) == icmp.Echo(
        5, 6, b""
    )
    for data, ip_header in [(b"\0\0\0", False), (b"\x45" + bytes(10), True), (b"\x60", True)]:
        with pytest.raises(icmp.IcmpError):
            icmp.decode_reply(data, 4, ip_header=ip_header)


def may_ping() -> bool:
    """Root (a raw socket), or a group in net.ipv4.ping_group_range (a ping socket)."""
    if os.geteuid() == 0:
        return True
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return False
    return True


@pytest.mark.skipif(not may_ping(), reason="needs root or net.ipv4.ping_group_range")
async def test_loopback_answers_a_ping() -> None:
    check = CheckConfig(type=CheckType.PING, timeout=1.0)
    result = await run_check(target_for(check, ip_address("127.0.0.1"), 0))
    assert (result.ok, result.reason) == (True, "echo reply"), result


@given(data=st.binary(max_size=64), version=st.sampled_from([4, 6]), ip_header=st.booleans())
def test_any_bytes_decode_to_a_reply_none_or_an_icmp_error(
    data: bytes, version: int, ip_header: bool
) -> None:
    with contextlib.suppress(icmp.IcmpError):
        icmp.decode_reply(data, version, ip_header=ip_header)
