"""Gratuitous ARP frames, built exactly as keepalived builds them (pure).

Why gratuitous ARP: a new VRRP master must move the hosts' neighbour entries
for each VIP to itself (RFC 3768 §6.4.1 and §6.4.2: "broadcast a gratuitous
ARP request ... for each IP address associated with the virtual router").
ipvsd, like keepalived by default, binds the VIP to the interface's real MAC
rather than the virtual-router MAC (vrrp-notes §1.6), so every failover
depends on these frames reaching every host; the runner repeats them in bursts
(keepalived: 5 back to back, again 5 s later).

Frame layout (keepalived ``send_gratuitous_arp_immediate``,
``keepalived/vrrp/vrrp_arp.c``), 42 bytes, no padding (the NIC pads to 60)::

    Ethernet  dst ff:ff:ff:ff:ff:ff   src MAC   type 0x0806
    ARP       htype 1 (Ethernet)  ptype 0x0800  hlen 6  plen 4  op 1 (request)
              sha MAC   spa VIP   tha ff:ff:ff:ff:ff:ff   tpa VIP

A *request* with ``spa == tpa`` is what Linux treats as gratuitous
(``arp_is_garp``): it overrides an existing neighbour entry even inside the
entry's locktime, and it does not need ``arp_accept`` because the hosts that
matter already have an entry for the VIP. ``tha`` is all-ones, not zero, as
keepalived sends it (the kernel ignores ``tha`` for requests).
"""

from __future__ import annotations

import re
import struct
from ipaddress import IPv4Address

__all__ = ["ARP_FRAME_LEN", "BROADCAST_MAC", "gratuitous_arp", "mac_bytes"]

BROADCAST_MAC = b"\xff" * 6
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV4 = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
#: Ethernet header (14) + ARP for IPv4 over Ethernet (28).
ARP_FRAME_LEN = _ETHERNET.size + _ARP.size
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def mac_bytes(mac: str) -> bytes:
    """The 6 bytes of a colon-separated MAC address such as ``02:00:5e:10:00:01``.

    Raises:
        ValueError: ``mac`` is not six colon-separated hex octets.
    """
    if not _MAC.fullmatch(mac):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes.fromhex(mac.replace(":", ""))


def gratuitous_arp(mac: str, ip: IPv4Address) -> bytes:
    """A broadcast gratuitous ARP request announcing that ``ip`` is at ``mac``.

    Args:
        mac: the sender's hardware address (the interface MAC, or the VMAC),
            used as Ethernet source and ARP sender hardware address.
        ip: the address announced (a VIP), as both sender and target protocol
            address.

    Returns:
        The 42-byte Ethernet frame, ready for an ``AF_PACKET``/``SOCK_RAW`` socket.

    Raises:
        ValueError: ``mac`` is malformed.
    """
    sha = mac_bytes(mac)
    address = ip.packed
    return _ETHERNET.pack(BROADCAST_MAC, sha, ETHERTYPE_ARP) + _ARP.pack(
        ARPHRD_ETHER,
        ETHERTYPE_IPV4,
        6,
        4,
        ARPOP_REQUEST,
        sha,
        address,
        BROADCAST_MAC,
        address,
    )
