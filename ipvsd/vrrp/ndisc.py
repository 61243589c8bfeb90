"""Unsolicited Neighbor Advertisement frames, built as keepalived builds them (pure).

Why: IPv6 has no ARP. A new VRRP master moves the hosts' neighbour entries for
each IPv6 VIP to itself with an unsolicited Neighbor Advertisement (RFC 5798
§6.4.1 and §8.2.2; RFC 4861 §7.2.6), the IPv6 twin of the gratuitous ARP in
`vrrp.arp`. Like GARPs, they go out in bursts from `transport.GarpSender`, an
``AF_PACKET`` socket, so the frame is built whole here, Ethernet header
included; the kernel's own NDISC code never sends for an address we choose.

Fields, as keepalived 2.2.7 sets them (``ndisc_send_unsolicited_na_immediate``,
``keepalived/vrrp/vrrp_ndisc.c``), and as captured on the wire from it
(``tests/unit/test_vrrp_ndisc.py``, 86 bytes, no padding)::

    Ethernet  dst 33:33:00:00:00:01 (RFC 2464 §7: ff02::1)  src MAC  type 0x86dd
    IPv6      version 6, traffic class 0, flow label 0, payload length 32,
              next header 58 (ICMPv6), hop limit 255,
              src the VIP itself, dst ff02::1 (all nodes)
    ICMPv6    type 136, code 0, checksum, flags R|S|O, reserved, target = the VIP
    option    type 2 (target link-layer address), length 1 (8 bytes), MAC

Flags (RFC 4861 §4.4): **Override** is set, so receivers replace the cached
link-layer address of an existing entry (§7.2.5); **Solicited** is clear, as
it must be for an unsolicited advertisement (§7.2.6); **Router** is set only
when the interface forwards IPv6 (keepalived reads
``net.ipv6.conf.<if>.forwarding``): a host that sees R go from 1 to 0 removes
the sender from its default router list (§7.2.5), so R must tell the truth.
The caller reads the sysctl; this module stays pure.

Hop limit 255 is what lets receivers trust the message came from the link
(RFC 4861 §7.1.2 drops NDISC with any other hop limit). The source is the
target address itself, as keepalived sends it; RFC 4861 only asks for "an
address assigned to the interface", which the VIP is once added.

Receivers: Linux accepts an unsolicited NA for an *existing* entry and, with
O set, moves it to the new MAC in state STALE; it does not create an entry
unless ``accept_untracked_na`` is on (the same rule as ``arp_accept`` for
gratuitous ARP).
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from ipvsd.vrrp.arp import mac_bytes
from ipvsd.vrrp.packet import checksum

__all__ = [
    "ALL_NODES",
    "ALL_NODES_MAC",
    "NA_FLAG_OVERRIDE",
    "NA_FLAG_ROUTER",
    "NA_FLAG_SOLICITED",
    "NA_FRAME_LEN",
    "NDISC_HOP_LIMIT",
    "unsolicited_na",
]

ETHERTYPE_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ICMPV6_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
NDISC_HOP_LIMIT = 255
"""RFC 4861 §7.1.2: receivers drop Neighbor Discovery with any other hop limit."""

ALL_NODES = IPv6Address("ff02::1")
#: RFC 2464 §7: 33:33 followed by the low 32 bits of the group address.
ALL_NODES_MAC = b"\x33\x33" + ALL_NODES.packed[-4:]

#: RFC 4861 §4.4, in the first byte of the 32-bit flags-and-reserved word.
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20

_ETHERNET = struct.Struct("!6s6sH")
_IPV6 = struct.Struct("!IHBB16s16s")
_NA = struct.Struct("!BBHB3x16s")
_OPTION = struct.Struct("!BB6s")
#: The ICMPv6 message: NA (24 bytes) + one 8-byte option.
_ICMP_LEN = _NA.size + _OPTION.size
#: Ethernet (14) + IPv6 (40) + NA (24) + target link-layer option (8).
NA_FRAME_LEN = _ETHERNET.size + _IPV6.size + _ICMP_LEN


def unsolicited_na(mac: str, ip: IPv6Address, *, router: bool = False) -> bytes:
    """An all-nodes unsolicited Neighbor Advertisement announcing that ``ip`` is at ``mac``.

    Args:
        mac: the interface MAC (or the VMAC): Ethernet source and the target
            link-layer address option.
        ip: the address announced (a VIP): the target, and the IPv6 source.
        router: set the Router flag (the interface forwards IPv6).

    Returns:
        The 86-byte Ethernet frame, ready for an ``AF_PACKET``/``SOCK_RAW`` socket.

    Raises:
        ValueError: ``mac`` is malformed.
    """
    lladdr = mac_bytes(mac)
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    option = _OPTION.pack(ND_OPT_TARGET_LINKADDR, 1, lladdr)
    unsummed = _NA.pack(ICMPV6_NEIGHBOR_ADVERT, 0, 0, flags, ip.packed) + option
    # RFC 4443 §2.3: the ICMPv6 checksum covers the RFC 8200 §8.1 pseudo-header.
    pseudo = ip.packed + ALL_NODES.packed + struct.pack("!I3xB", _ICMP_LEN, IPPROTO_ICMPV6)
    value = checksum(pseudo + unsummed)
    icmp = unsummed[:2] + struct.pack("!H", value) + unsummed[4:]
    header = _IPV6.pack(
        6 << 28, _ICMP_LEN, IPPROTO_ICMPV6, NDISC_HOP_LIMIT, ip.packed, ALL_NODES.packed
    )
    return _ETHERNET.pack(ALL_NODES_MAC, lladdr, ETHERTYPE_IPV6) + header + icmp
