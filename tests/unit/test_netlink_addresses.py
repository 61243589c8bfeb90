"""What `AddressManager.add` asks the kernel for: IPv6 VIPs without DAD, IPv4 VIPs labelled.

The request is decoded field by field from the bytes sent (`ipvsd.netlink.rtmsg`
has no pyroute2 behind it to trust). The kernel's side (the address usable at
once, not ``tentative``) is proven in ``tests/netns/test_vrrp_io6.py``."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from ipvsd.netlink.addresses import IFA_F_NODAD, add_request
from ipvsd.netlink.rtmsg import (
    IFA_BROADCAST,
    IFA_CACHEINFO,
    IFA_FLAGS,
    IFA_LABEL,
    IFADDRMSG,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    RTM_NEWADDR,
    attributes,
    decode_address,
    messages,
)


def _decoded(data: bytes) -> tuple[int, int, tuple[int, ...], dict[int, bytes]]:
    (message,) = messages(data)
    attrs = {
        kind: bytes(value) for kind, value in attributes(message.payload, IFADDRMSG.size).items()
    }
    return message.kind, message.flags, IFADDRMSG.unpack_from(message.payload), attrs


def test_ipv6_vips_are_added_without_duplicate_address_detection_and_deprecated() -> None:
    vip = IPv6Interface("2001:db8::200/64")
    kind, flags, header, attrs = _decoded(add_request(7, 3, vip, "eth1:vrrp52", scope=0))
    assert kind == RTM_NEWADDR
    assert flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    # family, prefix length, ifa_flags (NODAD fits the old byte too), scope, ifindex
    assert header == (socket.AF_INET6, 64, IFA_F_NODAD, 0, 3)
    assert struct.unpack("=I", attrs[IFA_FLAGS]) == (IFA_F_NODAD,)  # as `ip addr add ... nodad`
    # preferred_lft 0, valid_lft forever: never the director's own source address
    assert struct.unpack("=IIII", attrs[IFA_CACHEINFO]) == (0, 0xFFFFFFFF, 0, 0)
    assert IFA_F_NODAD == 0x02  # <linux/if_addr.h>
    (message,) = messages(add_request(7, 3, vip, "eth1:vrrp52"))
    decoded = decode_address(message)
    assert decoded is not None
    assert decoded.address == vip
    assert decoded.index == 3


def test_ipv6_vips_get_no_label() -> None:
    # IPv6 addresses have no labels: the kernel ignores IFA_LABEL, keepalived refuses one
    _, _, _, attrs = _decoded(add_request(1, 2, IPv6Interface("fd00::1/128"), "eth1:vrrp52"))
    assert IFA_LABEL not in attrs


def test_ipv4_vips_are_labelled_and_keep_dad_out_of_it() -> None:
    vip = IPv4Interface("10.0.0.100/24")
    _, _, header, attrs = _decoded(add_request(1, 2, vip, "eth1:vrrp51", scope=253))
    assert header == (socket.AF_INET, 24, 0, 253, 2)
    assert attrs[IFA_LABEL] == b"eth1:vrrp51\0"
    assert IFA_BROADCAST not in attrs
    assert IFA_FLAGS not in attrs
    assert IFA_CACHEINFO not in attrs
    broadcast = IPv4Address("10.0.0.255")
    _, _, _, with_broadcast = _decoded(add_request(1, 2, vip, "eth1:vrrp51", broadcast=broadcast))
    assert with_broadcast[IFA_BROADCAST] == broadcast.packed
