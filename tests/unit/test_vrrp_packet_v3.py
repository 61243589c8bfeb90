"""The VRRPv3 message codec (RFC 5798), IPv4 and IPv6 (issue 14, first part)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from ipvsd.errors import PacketError, RejectReason
from ipvsd.vrrp.packet_v3 import AdvertisementV3, decode_message, encode_message, pseudo_header

V4_SRC, V4_DST = IPv4Address("192.168.1.10"), IPv4Address("224.0.0.18")
V6_SRC, V6_DST = IPv6Address("fe80::1"), IPv6Address("ff02::12")
V4_ADVERT = AdvertisementV3(51, 100, 100, (IPv4Address("192.168.1.200"),))
V6_ADVERT = AdvertisementV3(
    52, 150, 10, (IPv6Address("2001:db8::200"), IPv6Address("2001:db8::201"))
)


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 written out a second way, to check the codec's checksum against."""
    data += b"\0" * (len(data) % 2)
    total = 0
    for index in range(0, len(data), 2):
        total += int.from_bytes(data[index : index + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_ipv4_message_layout_and_pseudo_header_checksum() -> None:
    message = encode_message(V4_ADVERT, V4_SRC, V4_DST)
    # version 3 / type 1, VRID 51, priority 100, 1 address, 100 cs, checksum, address.
    assert message[:6] == bytes([0x31, 51, 100, 1, 0x00, 100])
    assert message[8:] == IPv4Address("192.168.1.200").packed
    pseudo = V4_SRC.packed + V4_DST.packed + bytes([0, 112, 0, len(message)])
    assert ones_complement_sum(pseudo + message) == 0xFFFF  # verifies to all ones


def test_ipv6_message_layout_and_pseudo_header_checksum() -> None:
    message = encode_message(V6_ADVERT, V6_SRC, V6_DST)
    assert message[:6] == bytes([0x31, 52, 150, 2, 0x00, 10])
    assert len(message) == 8 + 2 * 16
    pseudo = V6_SRC.packed + V6_DST.packed + struct.pack("!I", len(message)) + bytes([0, 0, 0, 112])
    assert ones_complement_sum(pseudo + message) == 0xFFFF


@pytest.mark.parametrize(
    ("advert", "source", "destination"),
    [(V4_ADVERT, V4_SRC, V4_DST), (V6_ADVERT, V6_SRC, V6_DST)],
)
def test_round_trip(advert: AdvertisementV3, source: object, destination: object) -> None:
    assert isinstance(source, IPv4Address | IPv6Address)
    assert isinstance(destination, IPv4Address | IPv6Address)
    assert (
        decode_message(encode_message(advert, source, destination), source, destination) == advert
    )


def test_the_checksum_binds_the_addresses() -> None:
    """Another source or destination than the sender's breaks the checksum (§5.2.8)."""
    message = encode_message(V4_ADVERT, V4_SRC, V4_DST)
    with pytest.raises(PacketError) as caught:
        decode_message(message, IPv4Address("192.168.1.11"), V4_DST)
    assert caught.value.reason is RejectReason.CHECKSUM


def test_ipv4_without_the_pseudo_header_is_a_switch_on_both_sides() -> None:
    plain = encode_message(V4_ADVERT, V4_SRC, V4_DST, pseudo_header_checksum=False)
    assert ones_complement_sum(plain) == 0xFFFF
    assert decode_message(plain, V4_SRC, V4_DST, pseudo_header_checksum=False) == V4_ADVERT
    with pytest.raises(PacketError):
        decode_message(plain, V4_SRC, V4_DST)


def test_reserved_interval_bits_are_ignored_on_receive() -> None:
    message = bytearray(encode_message(V4_ADVERT, V4_SRC, V4_DST))
    message[4] |= 0xF0
    # Fix the checksum for the changed word: the bits are legal, only reserved.
    message[6:8] = b"\0\0"
    pseudo = pseudo_header(V4_SRC, V4_DST, len(message))
    value = ~ones_complement_sum(pseudo + bytes(message)) & 0xFFFF
    message[6:8] = value.to_bytes(2, "big")
    assert decode_message(bytes(message), V4_SRC, V4_DST).max_adver_int_cs == 100


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda m: m[:7], RejectReason.TOO_SHORT),
        (lambda m: bytes([0x21]) + m[1:], RejectReason.VERSION),
        (lambda m: bytes([0x32]) + m[1:], RejectReason.TYPE),
        (lambda m: m + b"\0\0\0\0", RejectReason.LENGTH),
        (lambda m: m[:3] + bytes([2]) + m[4:], RejectReason.LENGTH),
        (lambda m: m[:2] + bytes([m[2] ^ 1]) + m[3:], RejectReason.CHECKSUM),
    ],
)
def test_malformed_messages_are_rejected_with_their_reason(
    mangle: object, reason: RejectReason
) -> None:
    assert callable(mangle)
    message = mangle(encode_message(V4_ADVERT, V4_SRC, V4_DST))
    with pytest.raises(PacketError) as caught:
        decode_message(message, V4_SRC, V4_DST)
    assert caught.value.reason is reason


def test_an_ipv4_message_read_as_ipv6_fails_on_length() -> None:
    message = encode_message(V4_ADVERT, V4_SRC, V4_DST)
    with pytest.raises(PacketError) as caught:
        decode_message(message, V6_SRC, V6_DST)
    assert caught.value.reason is RejectReason.LENGTH


@pytest.mark.parametrize(
    ("advert", "message"),
    [
        (AdvertisementV3(0, 100, 100, V4_ADVERT.addresses), "vrid 0"),
        (AdvertisementV3(51, 256, 100, V4_ADVERT.addresses), "priority 256"),
        (AdvertisementV3(51, 100, 0, V4_ADVERT.addresses), "max_adver_int_cs 0"),
        (AdvertisementV3(51, 100, 4096, V4_ADVERT.addresses), "max_adver_int_cs 4096"),
        (AdvertisementV3(51, 100, 100, ()), "address count 0"),
        (AdvertisementV3(51, 100, 100, (ip_address("2001:db8::1"),)), "IPv4 addresses only"),
    ],
)
def test_our_own_bad_adverts_are_value_errors(advert: AdvertisementV3, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_message(advert, V4_SRC, V4_DST)


def test_the_pseudo_header_refuses_mixed_families() -> None:
    with pytest.raises(ValueError, match="different families"):
        pseudo_header(V4_SRC, V6_DST, 12)
