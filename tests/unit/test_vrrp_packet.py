"""The VRRPv2 codec: golden bytes, round trips, one crafted packet per reject reason, fuzzing."""

from __future__ import annotations

import contextlib
import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvsd.errors import PacketError, RejectReason
from ipvsd.vrrp.packet import (
    VRRP_GROUP,
    VRRP_PROTOCOL,
    VRRP_TTL,
    Advertisement,
    AuthType,
    Expectation,
    ReceivedAdvert,
    checksum,
    decode,
    encode,
    encode_ip,
    password_auth_data,
    validate,
    vmac,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "vrrp"

SRC = IPv4Address("192.168.1.10")
PEER = IPv4Address("192.168.1.11")
VIP = IPv4Address("192.168.1.200")
VIP2 = IPv4Address("192.168.1.201")

ADVERT = Advertisement(vrid=51, priority=100, advert_int=1, addresses=(VIP,))
PASS_ADVERT = Advertisement(
    vrid=51,
    priority=100,
    advert_int=1,
    addresses=(VIP,),
    auth_type=AuthType.SIMPLE,
    auth_data=password_auth_data("secret"),
)
EXPECT = Expectation(vrid=51, advert_int=1, addresses=frozenset({VIP}))
EXPECT_PASS = Expectation(
    vrid=51,
    advert_int=1,
    addresses=frozenset({VIP}),
    auth_type=AuthType.SIMPLE,
    password="secret",
)
EXPECT_UNICAST = Expectation(
    vrid=51, advert_int=1, addresses=frozenset({VIP}), unicast_peers=frozenset({PEER})
)

IP_HEADER_LEN = 20
VRRP_CHECKSUM = IP_HEADER_LEN + 6  # offset of the VRRP checksum in a packet with IHL 5


def load_hex(name: str) -> bytes:
    """A golden file: hex digits and whitespace, ``#`` comment lines ignored."""
    lines = (DATA / name).read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


def reference_checksum(data: bytes) -> int:
    """RFC 1071 written independently of the module: add 16-bit words, carry around."""
    total = 0
    for i in range(0, len(data), 2):
        word = data[i] << 8 | (data[i + 1] if i + 1 < len(data) else 0)
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def reseal(packet: bytes) -> bytes:
    """Recompute the IP header and VRRP checksums of a hand-edited packet."""
    ihl = (packet[0] & 0x0F) * 4
    header = packet[:10] + b"\0\0" + packet[12:ihl]
    header = header[:10] + reference_checksum(header).to_bytes(2, "big") + header[12:]
    message = packet[ihl : ihl + 6] + b"\0\0" + packet[ihl + 8 :]
    message = message[:6] + reference_checksum(message).to_bytes(2, "big") + message[8:]
    return header + message


def patch(packet: bytes, offset: int, data: bytes, *, sealed: bool = True) -> bytes:
    """``packet`` with ``data`` at ``offset``; checksums recomputed if ``sealed``."""
    edited = packet[:offset] + data + packet[offset + len(data) :]
    return reseal(edited) if sealed else edited


def packet(
    advert: Advertisement = ADVERT,
    src: IPv4Address = SRC,
    dst: IPv4Address = VRRP_GROUP,
    ttl: int = VRRP_TTL,
) -> bytes:
    return encode_ip(advert, src, dst, ttl)


def advert(**changes: object) -> Advertisement:
    fields: dict[str, object] = {
        "vrid": 51,
        "priority": 100,
        "advert_int": 1,
        "addresses": (VIP,),
    }
    fields.update(changes)
    return Advertisement(**fields)  # type: ignore[arg-type]


def rejected(data: bytes, expect: Expectation = EXPECT) -> RejectReason:
    with pytest.raises(PacketError) as info:
        validate(decode(data), expect)
    return info.value.reason


# --- golden bytes -----------------------------------------------------------------------------


def test_golden_checksum_is_computed_by_hand() -> None:
    # 2133 + 6401 + 0001 + c0a8 + 01c8 (+ zero auth data) = 0x147a5
    # fold: 0x47a5 + 0x1 = 0x47a6; complement: 0xb859.
    assert encode(ADVERT)[6:8] == bytes.fromhex("b859")
    # IP header: 45c0+0028+ff70+c0a8+010a+e000+0012 = 0x2e71c → 0xe71e → ~ = 0x18e1.
    assert encode_ip(ADVERT, SRC)[10:12] == bytes.fromhex("18e1")


def test_encode_matches_keepalived_layout() -> None:
    golden = load_hex("keepalived_vrid51_prio100.hex")
    # vrrp-notes §1.1: keepalived sends a 54-byte Ethernet frame: 14 + this IP packet.
    assert len(golden) + 14 == 54
    assert golden[:4] == bytes.fromhex("45c00028")
    assert golden[8:10] == bytes.fromhex("ff70")
    assert golden[IP_HEADER_LEN:].startswith(bytes.fromhex("213364010001"))
    assert encode(ADVERT) == golden[IP_HEADER_LEN:]
    assert encode_ip(ADVERT, SRC) == golden
    assert reference_checksum(golden[IP_HEADER_LEN:]) == 0
    assert reference_checksum(golden[:IP_HEADER_LEN]) == 0


def test_encode_password_advert_matches_golden() -> None:
    golden = load_hex("keepalived_vrid51_prio100_pass_secret.hex")
    assert golden[-8:] == b"secret\0\0"
    assert encode(PASS_ADVERT) == golden[IP_HEADER_LEN:]
    assert encode_ip(PASS_ADVERT, SRC) == golden


def test_decode_golden_packets() -> None:
    received = decode(load_hex("keepalived_vrid51_prio100.hex"))
    assert received == ReceivedAdvert(SRC, VRRP_GROUP, 255, ADVERT)
    validate(received, EXPECT)
    received = decode(load_hex("keepalived_vrid51_prio100_pass_secret.hex"))
    assert received == ReceivedAdvert(SRC, VRRP_GROUP, 255, PASS_ADVERT)
    validate(received, EXPECT_PASS)


def test_constants_and_vmac() -> None:
    assert VRRP_PROTOCOL == 112
    assert str(VRRP_GROUP) == "224.0.0.18"
    assert VRRP_TTL == 255
    assert vmac(51) == "00:00:5e:00:01:33"
    assert vmac(255) == "00:00:5e:00:01:ff"
    assert [int(t) for t in AuthType] == [0, 1, 2]


def test_password_auth_data() -> None:
    assert password_auth_data("secret") == b"secret\0\0"
    assert password_auth_data("12345678") == b"12345678"
    with pytest.raises(ValueError, match="at most 8"):
        password_auth_data("123456789")


# --- round trips ------------------------------------------------------------------------------

ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
passwords = st.text(max_size=8).filter(lambda p: len(p.encode()) <= 8)


@st.composite
def adverts(draw: st.DrawFn) -> Advertisement:
    auth_type = draw(st.sampled_from([AuthType.NONE, AuthType.SIMPLE]))
    auth_data = password_auth_data(draw(passwords)) if auth_type is AuthType.SIMPLE else bytes(8)
    return Advertisement(
        vrid=draw(st.integers(1, 255)),
        priority=draw(st.integers(0, 255)),
        advert_int=draw(st.integers(1, 255)),
        addresses=tuple(draw(st.lists(ipv4, max_size=255))),
        auth_type=auth_type,
        auth_data=auth_data,
    )


@given(adverts(), ipv4, ipv4, st.integers(0, 255))
def test_round_trip(adv: Advertisement, src: IPv4Address, dst: IPv4Address, ttl: int) -> None:
    message = encode(adv)
    assert len(message) == 16 + 4 * len(adv.addresses)
    assert checksum(message) == 0
    assert reference_checksum(message) == 0
    assert decode(encode_ip(adv, src, dst, ttl)) == ReceivedAdvert(src, dst, ttl, adv)


@given(st.binary(max_size=64))
def test_checksum_matches_reference(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)


def test_decode_with_ip_options() -> None:
    # IHL 6: a Router Alert option (RFC 2113, 94 04 0000) between header and VRRP.
    plain = packet()
    header = bytes([0x46]) + plain[1:2] + (44).to_bytes(2, "big") + plain[4:IP_HEADER_LEN]
    with_options = reseal(header + bytes.fromhex("94040000") + plain[IP_HEADER_LEN:])
    received = decode(with_options)
    assert received == ReceivedAdvert(SRC, VRRP_GROUP, 255, ADVERT)
    validate(received, EXPECT)


# --- our bugs are ValueError --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(advert(vrid=0), id="vrid-0"),
        pytest.param(advert(vrid=256), id="vrid-256"),
        pytest.param(advert(priority=-1), id="priority-negative"),
        pytest.param(advert(priority=256), id="priority-256"),
        pytest.param(advert(advert_int=0), id="advert-int-0"),
        pytest.param(advert(advert_int=256), id="advert-int-256"),
        pytest.param(
            advert(addresses=tuple(IPv4Address(i) for i in range(256))), id="256-addresses"
        ),
        pytest.param(advert(addresses=("192.168.1.200",)), id="address-is-a-string"),
        pytest.param(advert(auth_data=bytes(7)), id="auth-data-7-bytes"),
        pytest.param(advert(auth_data=b"secret\0\0"), id="auth-none-with-password"),
        pytest.param(advert(auth_type=AuthType.AH), id="auth-ah"),
    ],
)
def test_encode_refuses_out_of_range_fields(bad: Advertisement) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each row has its own message
        encode(bad)


def test_encode_limits_are_inclusive() -> None:
    encode(advert(vrid=255, priority=255, advert_int=255))
    encode(advert(priority=0, addresses=()))
    encode(advert(addresses=tuple(IPv4Address(i) for i in range(255))))


def test_other_bugs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="ttl"):
        encode_ip(ADVERT, SRC, VRRP_GROUP, ttl=256)
    with pytest.raises(ValueError, match="vrid"):
        vmac(0)
    with pytest.raises(ValueError, match="password"):
        Expectation(1, 1, frozenset(), auth_type=AuthType.SIMPLE)
    with pytest.raises(ValueError, match="password"):
        Expectation(1, 1, frozenset(), password="secret")
    with pytest.raises(ValueError, match="AH"):
        Expectation(1, 1, frozenset(), auth_type=AuthType.AH)
    with pytest.raises(ValueError, match="at most 8"):
        Expectation(1, 1, frozenset(), auth_type=AuthType.SIMPLE, password="123456789")


# --- every reject reason, from a crafted packet -----------------------------------------------

REJECTS = [
    pytest.param(RejectReason.NOT_IPV4, patch(packet(), 0, b"\x65", sealed=False), EXPECT),
    pytest.param(RejectReason.IP_HEADER, patch(packet(), 0, b"\x44"), EXPECT),
    pytest.param(RejectReason.PROTOCOL, patch(packet(), 9, b"\x11"), EXPECT),
    pytest.param(RejectReason.TOO_SHORT, packet()[:30], EXPECT, id="truncated"),
    # count says 2 addresses, but 1 address + auth data follow (checksum correct).
    pytest.param(RejectReason.LENGTH, patch(packet(), IP_HEADER_LEN + 3, b"\x02"), EXPECT),
    pytest.param(RejectReason.TTL, packet(ttl=64), EXPECT, id="ttl-64"),
    pytest.param(RejectReason.VERSION, patch(packet(), IP_HEADER_LEN, b"\x31"), EXPECT),
    pytest.param(RejectReason.TYPE, patch(packet(), IP_HEADER_LEN, b"\x22"), EXPECT),
    pytest.param(
        RejectReason.CHECKSUM,
        patch(packet(advert(priority=254)), VRRP_CHECKSUM, b"\xbe\xef", sealed=False),
        EXPECT,
        id="higher-priority-bad-checksum",
    ),
    pytest.param(RejectReason.UNKNOWN_VRID, packet(advert(vrid=52)), EXPECT),
    pytest.param(
        RejectReason.AUTH_TYPE, patch(packet(), IP_HEADER_LEN + 4, b"\x02"), EXPECT, id="ah"
    ),
    pytest.param(
        RejectReason.AUTH_PASSWORD,
        packet(advert(auth_type=AuthType.SIMPLE, auth_data=password_auth_data("wrong"))),
        EXPECT_PASS,
    ),
    pytest.param(RejectReason.ADVERT_INTERVAL, packet(advert(advert_int=3)), EXPECT),
    pytest.param(
        RejectReason.VIP_MISMATCH,
        packet(advert(addresses=(VIP, VIP2))),
        EXPECT,
        id="count-mismatch",
    ),
    pytest.param(RejectReason.OWNER, packet(), Expectation(51, 1, frozenset({VIP}), owner=True)),
    pytest.param(RejectReason.UNEXPECTED_UNICAST, packet(dst=PEER), EXPECT),
    pytest.param(
        RejectReason.UNEXPECTED_MULTICAST, packet(src=PEER, dst=VRRP_GROUP), EXPECT_UNICAST
    ),
    pytest.param(RejectReason.UNKNOWN_PEER, packet(src=SRC, dst=PEER), EXPECT_UNICAST),
]


@pytest.mark.parametrize(("reason", "data", "expect"), REJECTS)
def test_each_reject_reason(reason: RejectReason, data: bytes, expect: Expectation) -> None:
    assert rejected(data, expect) is reason


def test_every_reject_reason_has_a_crafted_packet() -> None:
    assert {row.values[0] for row in REJECTS} == set(RejectReason)


def test_reason_labels_are_stable_snake_case() -> None:
    for reason in RejectReason:
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", reason.value)
        assert reason.name == reason.value.upper()


@pytest.mark.parametrize(
    ("reason", "data", "expect"),
    [
        pytest.param(RejectReason.TOO_SHORT, b"", EXPECT, id="empty"),
        pytest.param(RejectReason.TOO_SHORT, packet()[:6], EXPECT, id="6-bytes"),
        pytest.param(RejectReason.LENGTH, packet() + b"\0", EXPECT, id="trailing-byte"),
        pytest.param(
            RejectReason.IP_HEADER,
            patch(packet(), 2, (16).to_bytes(2, "big")),
            EXPECT,
            id="total-length-below-header",
        ),
        pytest.param(
            RejectReason.TOO_SHORT,
            patch(packet(), 2, (24).to_bytes(2, "big"))[:24],
            EXPECT,
            id="vrrp-header-incomplete",
        ),
        pytest.param(
            RejectReason.LENGTH,
            patch(packet(advert(addresses=(VIP, VIP2))), IP_HEADER_LEN + 3, b"\x01"),
            EXPECT,
            id="count-below-addresses",
        ),
        pytest.param(
            RejectReason.VERSION,
            # A real VRRPv3 advert: no auth data, centisecond interval (RFC 5798 §5.1).
            reseal(
                bytes.fromhex("45c0 0020 0000 0000 ff70 0000 c0a8010a e0000012")
                + bytes.fromhex("31 33 64 01 0064 0000")
                + VIP.packed
            ),
            EXPECT,
            id="vrrpv3-advert",
        ),
        pytest.param(
            RejectReason.AUTH_TYPE,
            patch(packet(), IP_HEADER_LEN + 4, b"\x07"),
            EXPECT,
            id="unknown-auth-type",
        ),
        pytest.param(
            RejectReason.AUTH_TYPE, packet(PASS_ADVERT), EXPECT, id="password-but-we-have-none"
        ),
        pytest.param(RejectReason.AUTH_TYPE, packet(), EXPECT_PASS, id="none-but-we-have-one"),
        pytest.param(
            RejectReason.VIP_MISMATCH,
            packet(advert(addresses=(VIP2,))),
            EXPECT,
            id="same-count-other-address",
        ),
        pytest.param(
            RejectReason.VIP_MISMATCH,
            packet(advert(addresses=(VIP, VIP))),
            Expectation(51, 1, frozenset({VIP, VIP2})),
            id="duplicate-address",
        ),
        pytest.param(
            RejectReason.VIP_MISMATCH,
            packet(advert(priority=255, addresses=(VIP2,))),
            EXPECT,
            id="owner-priority-still-dropped",  # keepalived 2.2.7, vrrp-notes §2.2
        ),
        pytest.param(
            RejectReason.UNEXPECTED_UNICAST,
            packet(dst=IPv4Address("224.0.0.19")),
            EXPECT,
            id="other-group",
        ),
    ],
)
def test_more_rejects(reason: RejectReason, data: bytes, expect: Expectation) -> None:
    assert rejected(data, expect) is reason


@pytest.mark.parametrize(
    ("reason", "data", "expect"),
    [
        # keepalived's order (vrrp-notes §2.1): TTL before auth, auth before interval.
        pytest.param(RejectReason.TTL, packet(PASS_ADVERT, ttl=64), EXPECT, id="ttl-first"),
        pytest.param(
            RejectReason.AUTH_TYPE,
            packet(advert(auth_type=AuthType.SIMPLE, auth_data=bytes(8), advert_int=3)),
            EXPECT,
            id="auth-before-interval",
        ),
        pytest.param(
            RejectReason.UNKNOWN_VRID, packet(advert(vrid=9), ttl=1), EXPECT, id="vrid-first"
        ),
        pytest.param(
            RejectReason.VIP_MISMATCH,
            packet(advert(addresses=(VIP2,))),
            Expectation(51, 1, frozenset({VIP}), owner=True),
            id="owner-last",
        ),
        # decode's checks come first: a bad checksum hides everything validate would say.
        pytest.param(
            RejectReason.CHECKSUM,
            patch(packet(advert(vrid=9), ttl=1), VRRP_CHECKSUM, b"\0\0", sealed=False),
            EXPECT,
            id="checksum-before-vrid",
        ),
    ],
)
def test_check_order(reason: RejectReason, data: bytes, expect: Expectation) -> None:
    assert rejected(data, expect) is reason


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        pytest.param(packet(advert(priority=0)), EXPECT, id="priority-0"),
        pytest.param(packet(advert(priority=255)), EXPECT, id="priority-255"),
        pytest.param(
            packet(advert(addresses=(VIP2, VIP))),
            Expectation(51, 1, frozenset({VIP, VIP2})),
            id="vip-order-does-not-matter",
        ),
        pytest.param(
            patch(packet(), len(packet()) - 8, b"garbage!"),
            EXPECT,
            id="auth-none-data-ignored",  # RFC 3768 §5.3.10
        ),
        pytest.param(
            packet(src=PEER, dst=SRC, ttl=64), EXPECT_UNICAST, id="unicast-ttl-not-checked"
        ),
        pytest.param(packet(advert(addresses=())), Expectation(51, 1, frozenset()), id="no-vips"),
    ],
)
def test_accepted(data: bytes, expect: Expectation) -> None:
    validate(decode(data), expect)


# --- fuzzing: a peer's garbage is only ever a PacketError --------------------------------------


def decode_and_validate(data: bytes) -> None:
    """Decode and validate ``data``; any exception but a PacketError fails the test.

    A PacketError's reason is a `RejectReason` by its type, so every drop has a
    metric label.
    """
    with contextlib.suppress(PacketError):
        received = decode(data)
        for expect in (EXPECT, EXPECT_PASS, EXPECT_UNICAST):
            with contextlib.suppress(PacketError):
                validate(received, expect)


@given(st.binary(max_size=128))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decode_and_validate(data)


@given(st.binary(max_size=96))
def test_fuzz_vrrp_payload_behind_a_valid_ip_header(payload: bytes) -> None:
    header = packet()[:IP_HEADER_LEN]
    decode_and_validate(
        patch(header, 2, (IP_HEADER_LEN + len(payload)).to_bytes(2, "big")) + payload
    )


mutations = st.lists(st.tuples(st.integers(0, 39), st.integers(0, 255)), min_size=1, max_size=6)


@given(mutations, st.booleans())
def test_fuzz_mutated_packets(changes: list[tuple[int, int]], sealed: bool) -> None:
    data = bytearray(load_hex("keepalived_vrid51_prio100_pass_secret.hex"))
    for index, value in changes:
        data[index] = value
    if sealed and len(data) >= 28 and (data[0] & 0x0F) * 4 == IP_HEADER_LEN:
        data = bytearray(reseal(bytes(data)))
    decode_and_validate(bytes(data))


@given(st.integers(IP_HEADER_LEN, 39), st.integers(1, 255))
def test_any_single_byte_change_in_the_vrrp_message_is_rejected(index: int, xor: int) -> None:
    # RFC 1071: a one's complement sum detects every change confined to one byte.
    data = bytearray(packet())
    data[index] ^= xor
    with pytest.raises(PacketError):
        decode(bytes(data))
