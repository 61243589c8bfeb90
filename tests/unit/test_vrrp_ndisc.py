"""Unsolicited Neighbor Advertisement frames: keepalived's bytes, the checksum, the flags."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from ipvsd.vrrp import ndisc
from ipvsd.vrrp.ndisc import NA_FRAME_LEN, unsolicited_na

# Captured on a veth from keepalived 2.2.7 (vrrp_version 3, VIP 2001:db8::200/64,
# interface MAC 56:58:2d:ef:4c:66, IPv6 forwarding off) as it became MASTER;
# it sent five of these back to back, and five more 5 s later.
KEEPALIVED = bytes.fromhex(
    "333300000001"  # Ethernet destination: ff02::1's multicast MAC
    "56582def4c66"  # Ethernet source: the interface MAC
    "86dd"  # EtherType IPv6
    "60000000"  # version 6, traffic class 0, flow label 0
    "0020"  # payload length 32
    "3a"  # next header ICMPv6
    "ff"  # hop limit 255
    "20010db8000000000000000000000200"  # source: the VIP itself
    "ff020000000000000000000000000001"  # destination: all nodes
    "88"  # type 136, Neighbor Advertisement
    "00"  # code
    "2680"  # checksum
    "20000000"  # flags: Override only (not Router, not Solicited)
    "20010db8000000000000000000000200"  # target: the VIP
    "02"  # option: target link-layer address
    "01"  # length 1 (8 bytes)
    "56582def4c66"  # the MAC
)
VIP = IPv6Address("2001:db8::200")


def test_matches_keepalived_byte_for_byte() -> None:
    assert unsolicited_na("56:58:2d:ef:4c:66", VIP) == KEEPALIVED


def test_frame_is_86_bytes_unpadded() -> None:
    assert len(unsolicited_na("02:00:00:00:00:01", VIP)) == NA_FRAME_LEN == 86


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071, written out again here so the test does not trust the module's checksum."""
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | (data[i + 1] if i + 1 < len(data) else 0)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize(
    ("mac", "ip"),
    [
        ("56:58:2d:ef:4c:66", VIP),
        ("00:00:5E:00:02:33", IPv6Address("fd00:98::1")),  # the VRID 51 IPv6 VMAC
        ("02:00:00:00:00:99", IPv6Address("fe80::1")),
        ("ff:ff:ff:ff:ff:fe", IPv6Address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")),
    ],
)
def test_icmpv6_checksum_covers_the_pseudo_header(mac: str, ip: IPv6Address) -> None:
    frame = unsolicited_na(mac, ip)
    ipv6, icmp = frame[14:54], frame[54:]
    source, destination = ipv6[8:24], ipv6[24:40]
    pseudo = source + destination + len(icmp).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert ones_complement_sum(pseudo + icmp) == 0xFFFF
    # and the checksum really binds the addresses: another source breaks it
    other = IPv6Address(int(ip) ^ 1).packed
    assert ones_complement_sum(other + destination + pseudo[32:] + icmp) != 0xFFFF


def test_headers_and_flags() -> None:
    mac = "02:00:00:00:00:99"
    ip = IPv6Address("fd00:98::100")
    frame = unsolicited_na(mac, ip)
    assert frame[0:6] == bytes.fromhex("333300000001")
    assert frame[6:12] == bytes.fromhex("020000000099")
    assert frame[12:14] == b"\x86\xdd"
    ipv6 = frame[14:54]
    assert ipv6[0] >> 4 == 6
    assert int.from_bytes(ipv6[4:6], "big") == 32  # payload length
    assert ipv6[6] == 58  # ICMPv6
    assert ipv6[7] == 255  # hop limit (RFC 4861 §7.1.2)
    assert IPv6Address(ipv6[8:24]) == ip
    assert IPv6Address(ipv6[24:40]) == IPv6Address("ff02::1")
    icmp = frame[54:]
    assert (icmp[0], icmp[1]) == (136, 0)
    flags = icmp[4]
    assert flags & ndisc.NA_FLAG_OVERRIDE
    assert not flags & ndisc.NA_FLAG_SOLICITED  # unsolicited (RFC 4861 §7.2.6)
    assert not flags & ndisc.NA_FLAG_ROUTER
    assert icmp[5:8] == b"\x00\x00\x00"  # reserved
    assert IPv6Address(icmp[8:24]) == ip
    assert icmp[24:] == bytes.fromhex("0201020000000099")


def test_router_flag_when_forwarding() -> None:
    plain = unsolicited_na("02:00:00:00:00:99", VIP)
    router = unsolicited_na("02:00:00:00:00:99", VIP, router=True)
    assert router[54 + 4] == ndisc.NA_FLAG_ROUTER | ndisc.NA_FLAG_OVERRIDE
    assert plain[:56] == router[:56]
    assert plain[59:] == router[59:]  # only the checksum and the flags differ
    pseudo = router[22:54] + (32).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert ones_complement_sum(pseudo + router[54:]) == 0xFFFF


@pytest.mark.parametrize("bad", ["", "52:54:00:12:34", "5254.0012.3456", "zz:54:00:12:34:56"])
def test_malformed_mac_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        unsolicited_na(bad, VIP)
