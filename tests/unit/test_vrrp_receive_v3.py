"""VRRPv3 on the wire: golden bytes for both families, and the RFC 5798 §7.1 receive
checks of an IPv4 packet against an instance (issue 14)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvsd.errors import PacketError, RejectReason
from ipvsd.vrrp.machine import AdvertReceived
from ipvsd.vrrp.packet import Advertisement, Expectation, checksum, encode_ip, ip_packet
from ipvsd.vrrp.packet_v3 import (
    VRRP_GROUP_V6,
    AdvertisementV3,
    ReceivedAdvertV3,
    decode_message,
    decode_v3,
    encode_ip_v3,
    encode_message,
    validate_v3,
)
from ipvsd.vrrp.receive import Receiver, accept
from tests.unit.test_vrrp_packet import load_hex

SRC, GROUP = IPv4Address("192.168.1.10"), IPv4Address("224.0.0.18")
PEER = IPv4Address("192.168.1.20")
VIP = IPv4Address("192.168.1.200")
ADVERT = AdvertisementV3(51, 100, 100, (VIP,))
EXPECT = Expectation(vrid=51, advert_int=100, addresses=frozenset({VIP}), version=3)

# RFC 5798 §5.1: 0x31 (version 3, type 1), VRID 51, priority 100, 1 address,
# Max Adver Int 100 cs (reserved bits 0), checksum, 192.168.1.200. The checksum
# covers the pseudo-header (§5.2.8), so it differs by destination; worked by hand
# for the multicast one: the 16-bit words of 192.168.1.10, 224.0.0.18, 0/112,
# length 12 and the message sum to 0x2fa48, folded 0xfa4a, complement 0x05b5.
GOLDEN_V4_MULTICAST = bytes.fromhex("31336401006405b5c0a801c8")
GOLDEN_V4_UNICAST = bytes.fromhex("313364010064240bc0a801c8")  # to 192.168.1.20
GOLDEN_V6 = bytes.fromhex(
    "31349602000adb1c20010db800000000000000000000020020010db8000000000000000000000201"
)  # fe80::1 -> ff02::12, VRID 52, priority 150, 10 cs, 2001:db8::200 and ::201


def test_golden_ipv4_messages() -> None:
    assert encode_message(ADVERT, SRC, GROUP) == GOLDEN_V4_MULTICAST
    assert encode_message(ADVERT, SRC, PEER) == GOLDEN_V4_UNICAST


def test_golden_ipv6_message() -> None:
    advert = AdvertisementV3(
        52, 150, 10, (IPv6Address("2001:db8::200"), IPv6Address("2001:db8::201"))
    )
    assert encode_message(advert, IPv6Address("fe80::1"), VRRP_GROUP_V6) == GOLDEN_V6


def test_the_ipv4_packet_carries_the_message_with_ttl_255() -> None:
    packet = encode_ip_v3(ADVERT, SRC)
    assert (packet[0], packet[8], packet[9]) == (0x45, 255, 112)
    assert (packet[12:16], packet[16:20]) == (SRC.packed, GROUP.packed)
    assert checksum(packet[:20]) == 0  # the IP header checksum verifies
    assert packet[20:] == GOLDEN_V4_MULTICAST
    assert decode_v3(packet) == ReceivedAdvertV3(SRC, GROUP, 255, ADVERT)


def test_a_vrrpv2_packet_is_a_version_error_for_the_v3_decoder() -> None:
    v2 = encode_ip(Advertisement(51, 100, 1, (VIP,)), SRC)
    with pytest.raises(PacketError) as caught:
        decode_v3(v2)
    assert caught.value.reason is RejectReason.VERSION


def test_a_broken_ipv4_header_has_the_v2_reasons() -> None:
    packet = encode_ip_v3(ADVERT, SRC)
    with pytest.raises(PacketError) as caught:
        decode_v3(packet[:10])
    assert caught.value.reason is RejectReason.TOO_SHORT
    with pytest.raises(PacketError) as caught:
        decode_v3(packet + b"\0")
    assert caught.value.reason is RejectReason.LENGTH


def _received(**changes: object) -> ReceivedAdvertV3:
    fields: dict[str, object] = {"src": PEER, "dst": GROUP, "ttl": 255, "advert": ADVERT}
    return ReceivedAdvertV3(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("received", "expect", "reason"),
    [
        (_received(ttl=64), EXPECT, RejectReason.TTL),
        (
            _received(advert=AdvertisementV3(52, 100, 100, (VIP,))),
            EXPECT,
            RejectReason.UNKNOWN_VRID,
        ),
        (
            _received(advert=AdvertisementV3(51, 100, 100, (IPv4Address("10.0.0.1"),))),
            EXPECT,
            RejectReason.VIP_MISMATCH,
        ),
        (
            _received(advert=AdvertisementV3(51, 100, 100, (VIP, IPv4Address("10.0.0.1")))),
            EXPECT,
            RejectReason.VIP_MISMATCH,
        ),
        (_received(dst=SRC), EXPECT, RejectReason.UNEXPECTED_UNICAST),
        (
            _received(dst=SRC, src=IPv4Address("192.168.1.99"), ttl=64),
            Expectation(51, 100, frozenset({VIP}), unicast_peers=frozenset({PEER}), version=3),
            RejectReason.UNKNOWN_PEER,
        ),
        (
            _received(),
            Expectation(51, 100, frozenset({VIP}), owner=True, version=3),
            RejectReason.OWNER,
        ),
    ],
)
def test_receive_checks_with_the_v2_reasons(
    received: ReceivedAdvertV3, expect: Expectation, reason: RejectReason
) -> None:
    with pytest.raises(PacketError) as caught:
        validate_v3(received, expect)
    assert caught.value.reason is reason


def test_another_interval_is_no_error_in_v3() -> None:
    """RFC 5798 §7.1 dropped RFC 3768's interval check: the backup adopts it (§6.4.2)."""
    validate_v3(_received(advert=AdvertisementV3(51, 100, 4095, (VIP,))), EXPECT)


def test_unicast_mode_skips_the_ttl_as_keepalived() -> None:
    expect = Expectation(51, 100, frozenset({VIP}), unicast_peers=frozenset({PEER}), version=3)
    validate_v3(_received(dst=SRC, ttl=64), expect)


class _Instance:
    def __init__(self, version: int, expectation: Expectation) -> None:
        self.version = version
        self.expectation = expectation


V2_EXPECT = Expectation(vrid=51, advert_int=1, addresses=frozenset({VIP}))


def _lookup(instance: Receiver | None) -> Callable[[int], Receiver | None]:
    return lambda vrid: instance if vrid == 51 else None


def test_accept_routes_by_the_instances_version() -> None:
    v3 = _Instance(3, EXPECT)
    found, event = accept(encode_ip_v3(AdvertisementV3(51, 200, 25, (VIP,)), PEER), _lookup(v3))
    assert found is v3
    assert (event.src, event.priority, event.advert_int) == (PEER, 200, 0.25)
    v2 = _Instance(2, V2_EXPECT)
    found, event = accept(encode_ip(Advertisement(51, 200, 1, (VIP,)), PEER), _lookup(v2))
    assert found is v2
    assert (event.src, event.priority, event.advert_int) == (PEER, 200, None)


@pytest.mark.parametrize(
    ("packet", "instance", "reason"),
    [
        # A v3 advert for a v2 instance and the reverse: "wrong version" (keepalived).
        (encode_ip_v3(ADVERT, PEER), _Instance(2, V2_EXPECT), RejectReason.VERSION),
        (
            encode_ip(Advertisement(51, 100, 1, (VIP,)), PEER),
            _Instance(3, EXPECT),
            RejectReason.VERSION,
        ),
        (encode_ip_v3(ADVERT, PEER), None, RejectReason.VERSION),  # as before for a v2 router
        (
            encode_ip(Advertisement(51, 100, 1, (VIP,)), PEER),
            None,
            RejectReason.UNKNOWN_VRID,
        ),
        (encode_ip_v3(ADVERT, PEER, ttl=1), _Instance(3, EXPECT), RejectReason.TTL),
        (encode_ip_v3(ADVERT, PEER)[:-1], _Instance(3, EXPECT), RejectReason.TOO_SHORT),
        (b"\x45", _Instance(3, EXPECT), RejectReason.TOO_SHORT),
    ],
)
def test_accept_rejects_with_the_reason(
    packet: bytes, instance: Receiver | None, reason: RejectReason
) -> None:
    with pytest.raises(PacketError) as caught:
        accept(packet, _lookup(instance))
    assert caught.value.reason is reason


def test_a_bad_v3_checksum_on_the_ipv4_packet() -> None:
    packet = bytearray(encode_ip_v3(ADVERT, PEER))
    packet[-1] ^= 1
    with pytest.raises(PacketError) as caught:
        accept(bytes(packet), _lookup(_Instance(3, EXPECT)))
    assert caught.value.reason is RejectReason.CHECKSUM


def test_keepalived_s_ipv4_advert_is_ours_byte_for_byte() -> None:
    """keepalived 2.2.7's captured advert decodes, passes the receive checks, and our
    encoder writes the same message (checksum included) for the same fields."""
    packet = load_hex("keepalived_v3_vrid51_prio150_ipv4.hex")
    advert = AdvertisementV3(51, 150, 50, (VIP,))
    assert decode_v3(packet) == ReceivedAdvertV3(SRC, GROUP, 255, advert)
    v3 = _Instance(3, EXPECT)
    assert accept(packet, _lookup(v3))[1] == AdvertReceived(SRC, 150, 0.5)
    assert encode_message(advert, SRC, GROUP) == packet[20:]


def test_keepalived_s_ipv6_advert_is_ours_byte_for_byte() -> None:
    packet = load_hex("keepalived_v3_vrid52_prio150_ipv6.hex")
    src, dst = IPv6Address(packet[8:24]), IPv6Address(packet[24:40])
    assert (src.is_link_local, dst) == (True, VRRP_GROUP_V6)
    advert = AdvertisementV3(52, 150, 100, (IPv6Address("2001:db8::200"),))
    assert decode_message(packet[40:], src, dst) == advert
    assert encode_message(advert, src, dst) == packet[40:]


def _accept_or_reject(data: bytes) -> None:
    """`accept` for a v3 and a v2 instance of the packet's VRID: a result or a
    PacketError, never another exception (style G3)."""
    for instance in (_Instance(3, EXPECT), _Instance(2, V2_EXPECT)):

        def instance_for(vrid: int, found: _Instance = instance) -> _Instance:
            return found

        with contextlib.suppress(PacketError):
            accept(data, instance_for)


@given(st.binary(max_size=96))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _accept_or_reject(data)


@given(st.binary(max_size=64))
def test_fuzz_a_message_behind_a_valid_ip_header(message: bytes) -> None:
    _accept_or_reject(ip_packet(message, PEER, GROUP))


@given(st.lists(st.tuples(st.integers(0, 31), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_keepalived_adverts(changes: list[tuple[int, int]]) -> None:
    data = bytearray(load_hex("keepalived_v3_vrid51_prio150_ipv4.hex"))
    for index, value in changes:
        data[index] = value
    _accept_or_reject(bytes(data))
