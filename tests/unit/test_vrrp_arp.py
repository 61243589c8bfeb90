"""Gratuitous ARP frames: golden bytes (keepalived's layout), bad input, purity."""

from __future__ import annotations

import ast
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ipvsd.vrrp import arp
from ipvsd.vrrp.arp import ARP_FRAME_LEN, gratuitous_arp, mac_bytes

# keepalived 2.2.7 send_gratuitous_arp_immediate() for 192.168.1.200 on a NIC
# with MAC 52:54:00:12:34:56, field by field.
GOLDEN = bytes.fromhex(
    "ffffffffffff"  # Ethernet destination: broadcast
    "525400123456"  # Ethernet source: the interface MAC
    "0806"  # EtherType ARP
    "0001"  # hardware type Ethernet
    "0800"  # protocol type IPv4
    "06"  # hardware address length
    "04"  # protocol address length
    "0001"  # op: request (not reply)
    "525400123456"  # sender hardware address
    "c0a801c8"  # sender protocol address: the VIP
    "ffffffffffff"  # target hardware address: all ones, not zero
    "c0a801c8"  # target protocol address: the VIP again
)


def test_golden_frame() -> None:
    assert gratuitous_arp("52:54:00:12:34:56", IPv4Address("192.168.1.200")) == GOLDEN


def test_frame_is_42_bytes_unpadded() -> None:
    frame = gratuitous_arp("02:00:00:00:00:01", IPv4Address("10.98.0.100"))
    assert len(frame) == ARP_FRAME_LEN == 42


@pytest.mark.parametrize(
    ("mac", "ip", "expected"),
    [
        (  # the VRID 51 virtual MAC, upper case accepted
            "00:00:5E:00:01:33",
            IPv4Address("10.98.1.100"),
            "ffffffffffff00005e0001330806000108000604000100005e0001330a620164ffffffffffff0a620164",
        ),
        (
            "02:00:00:00:00:99",
            IPv4Address("10.98.255.1"),
            "ffffffffffff020000000099080600010800060400010200000000990a62ff01ffffffffffff0a62ff01",
        ),
    ],
)
def test_other_addresses(mac: str, ip: IPv4Address, expected: str) -> None:
    assert gratuitous_arp(mac, ip).hex() == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "5254.0012.3456",
        "52-54-00-12-34-56",
        "zz:54:00:12:34:56",
    ],
)
def test_malformed_mac_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        gratuitous_arp(bad, IPv4Address("10.98.0.1"))


def test_mac_bytes() -> None:
    assert mac_bytes("02:00:00:00:00:99") == b"\x02\x00\x00\x00\x00\x99"


def test_module_is_pure() -> None:
    tree = ast.parse(Path(arp.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "asyncio", "time", "structlog", "pyroute2"}
