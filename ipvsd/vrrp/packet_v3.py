"""VRRPv3 advertisement messages (RFC 5798) for IPv4 and IPv6: encode and decode (pure).

Theory of operation
-------------------
The VRRPv3 message (RFC 5798 §5.1) is the payload of an IPv4 or IPv6 packet
with protocol / next header 112, sent to 224.0.0.18 or ff02::12 with TTL /
hop limit 255::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |(rsvd) |     Max Adver Int     |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                      IPvX Address(es)                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

What changes from VRRPv2 (`ipvsd.vrrp.packet`):

- version 3 (the first byte is 0x31); no authentication fields (§5.3.5
  removed them), so the message is ``8 + 4 * count`` bytes for IPv4 and
  ``8 + 16 * count`` for IPv6 (§5.3.5);
- Max Adver Int is 12 bits of **centiseconds** (§5.2.5: 1 to 4095, 0.01 to
  40.95 s); the top 4 bits are reserved, zero on transmit, ignored on
  receive (§5.2.4);
- the checksum covers an IP pseudo-header as well (§5.2.8): for IPv4 the
  one of RFC 768 (source, destination, zero, protocol 112, VRRP length),
  for IPv6 the one of RFC 8200 §8.1 (source, destination, 32-bit upper-layer
  length, three zero bytes, next header 112). So encoding and decoding both
  need the packet's source and destination addresses.

keepalived 2.2.8 and later have a switch for IPv4 VRRPv3 peers that leave the
pseudo-header out of the checksum (``v3_checksum_as_v2``: Cisco and Juniper
read RFC 5798 §5.2.8 as IPv6-only, and RFC 9568 sides with them). Measured:
keepalived 2.2.7 with ``vrrp_version 3`` and default settings includes the
pseudo-header for IPv4 as for IPv6 (its adverts captured on the wire decode
here with the default; ``tests/netns/test_vrrp_v3_keepalived.py``). The
choice stays an argument for peers with the switch on; ipvsd's instances
always include it (docs/vrrp-v3.md).

Receiving follows the v2 codec's split: `decode_v3` checks an IPv4 packet's
structure (`ipvsd.vrrp.packet.ip_payload`, then `decode_message`; IPv6 raw
sockets deliver no IP header, so their transport calls `decode_message` with
the addresses and hop limit from ancillary data), and `validate_v3` compares
the advert with the instance (`ipvsd.vrrp.packet.check_received`): the v2
checks and reasons minus authentication and the interval (RFC 5798 §7.1).

As in the v2 codec, out-of-range fields of our own adverts are our bug
(`ValueError`), and a peer's bad message is a `PacketError` with a
`RejectReason`. This module is pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ipvsd.errors import PacketError, RejectReason
from ipvsd.vrrp.packet import (
    VRRP_GROUP,
    VRRP_PROTOCOL,
    VRRP_TTL,
    VRRP_TYPE_ADVERTISEMENT,
    Expectation,
    check_received,
    checksum,
    ip_packet,
    ip_payload,
)

VRRP_VERSION_3 = 3
"""The protocol version of RFC 5798 (§5.2.1)."""
HEADER_LEN = 8
"""The fixed part of the message, before the addresses, bytes."""
MAX_ADVER_INT_CS = 0x0FFF
"""Max Adver Int is 12 bits of centiseconds: 40.95 s at most (§5.2.5)."""
MAX_ADDRESSES = 255
"""Count IPvX Addr is one byte (§5.2.6)."""

VRRP_GROUP_V6 = IPv6Address("ff02::12")
"""The VRRP multicast group for IPv6 (RFC 5798 §5.1.2.2)."""

_HEADER = struct.Struct("!BBBBHH")
_CHECKSUM_OFFSET = 6

Address = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class AdvertisementV3:
    """One VRRPv3 advertisement, as sent or received (one address family).

    Attributes:
        vrid: the virtual router, 1-255.
        priority: 0 (the master resigns) to 255 (the address owner).
        max_adver_int_cs: the sender's advertisement interval in centiseconds, 1-4095.
        addresses: the virtual addresses, all IPv4 or all IPv6.
    """

    vrid: int
    priority: int
    max_adver_int_cs: int
    addresses: tuple[Address, ...]

    @property
    def advert_int_s(self) -> float:
        return self.max_adver_int_cs / 100


@dataclass(frozen=True, slots=True)
class ReceivedAdvertV3:
    """A VRRPv3 advert with the IP header fields `validate_v3` needs.

    Attributes:
        src: IP source: the sender's primary address (IPv6: its link-local one).
        dst: IP destination: the group, or our address in unicast mode.
        ttl: IPv4 TTL / IPv6 hop limit as received (RFC 5798 §5.1.1.3, §5.1.2.3).
        advert: the VRRP message.
    """

    src: Address
    dst: Address
    ttl: int
    advert: AdvertisementV3


def pseudo_header(source: Address, destination: Address, length: int) -> bytes:
    """The IP pseudo-header the VRRPv3 checksum covers (RFC 5798 §5.2.8).

    Raises:
        ValueError: the two addresses are of different families.
    """
    if source.version != destination.version:
        raise ValueError(f"{source} and {destination} are of different families")
    if source.version == 4:
        return source.packed + destination.packed + struct.pack("!BBH", 0, VRRP_PROTOCOL, length)
    return source.packed + destination.packed + struct.pack("!I3xB", length, VRRP_PROTOCOL)


def encode_message(
    advert: AdvertisementV3,
    source: Address,
    destination: Address,
    *,
    pseudo_header_checksum: bool = True,
) -> bytes:
    """The VRRPv3 message of `advert`, checksummed for that source and destination.

    Args:
        advert: what to announce.
        source: the packet's source address (IPv6: the link-local address).
        destination: 224.0.0.18, ff02::12, or a unicast peer.
        pseudo_header_checksum: False leaves the pseudo-header out of the
            checksum (IPv4 only: what some keepalived peers expect).

    Raises:
        ValueError: a field is out of range, or the families do not agree.
    """
    _check_range("vrid", advert.vrid, 1, 255)
    _check_range("priority", advert.priority, 0, 255)
    _check_range("max_adver_int_cs", advert.max_adver_int_cs, 1, MAX_ADVER_INT_CS)
    _check_range("address count", len(advert.addresses), 1, MAX_ADDRESSES)
    family = source.version
    if destination.version != family or any(a.version != family for a in advert.addresses):
        raise ValueError(f"an IPv{family} advert must carry IPv{family} addresses only")
    body = b"".join(address.packed for address in advert.addresses)
    header = _HEADER.pack(
        (VRRP_VERSION_3 << 4) | VRRP_TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        len(advert.addresses),
        advert.max_adver_int_cs,
        0,
    )
    message = header + body
    covered = _covered(message, source, destination, pseudo_header_checksum)
    value = checksum(covered)
    return message[:_CHECKSUM_OFFSET] + struct.pack("!H", value) + message[_CHECKSUM_OFFSET + 2 :]


def decode_message(
    message: bytes,
    source: Address,
    destination: Address,
    *,
    pseudo_header_checksum: bool = True,
) -> AdvertisementV3:
    """Parse and check the structure of a received VRRPv3 message (RFC 5798 §7.1).

    Checks: the fixed header is complete, version 3, type 1, the length is
    exactly the header and `count` addresses of the packet's family, and the
    checksum verifies. Comparing it with the local configuration (VRID,
    addresses, interval) is the caller's step.

    Raises:
        PacketError: the message is malformed (see `RejectReason`).
    """
    if len(message) < HEADER_LEN:
        raise PacketError(RejectReason.TOO_SHORT, f"{len(message)} bytes")
    first, vrid, priority, count, interval, _ = _HEADER.unpack_from(message)
    if first >> 4 != VRRP_VERSION_3:
        raise PacketError(RejectReason.VERSION, f"version {first >> 4}")
    if first & 0x0F != VRRP_TYPE_ADVERTISEMENT:
        raise PacketError(RejectReason.TYPE, f"type {first & 0x0F}")
    size = 4 if source.version == 4 else 16
    if len(message) != HEADER_LEN + size * count:
        expected = HEADER_LEN + size * count
        raise PacketError(RejectReason.LENGTH, f"{len(message)} bytes for {count}: {expected}")
    if checksum(_covered(message, source, destination, pseudo_header_checksum)) != 0:
        raise PacketError(RejectReason.CHECKSUM)
    factory = IPv4Address if size == 4 else IPv6Address
    addresses = tuple(
        factory(message[offset : offset + size]) for offset in range(HEADER_LEN, len(message), size)
    )
    # The reserved top bits of Max Adver Int are ignored on receive (§5.2.4).
    return AdvertisementV3(vrid, priority, interval & MAX_ADVER_INT_CS, addresses)


def _covered(message: bytes, source: Address, destination: Address, pseudo: bool) -> bytes:
    """What the checksum sums: the pseudo-header (unless left out, IPv4 only), the message."""
    if not pseudo and source.version == 4:
        return message
    return pseudo_header(source, destination, len(message)) + message


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside {low}..{high}")


def encode_ip_v3(
    advert: AdvertisementV3,
    src: IPv4Address,
    dst: IPv4Address = VRRP_GROUP,
    ttl: int = VRRP_TTL,
) -> bytes:
    """A complete IPv4 packet carrying `advert` (`ipvsd.vrrp.packet.ip_packet`), for tests
    and for injecting packets.

    Raises:
        ValueError: as `encode_message`, or ``ttl`` is out of range.
    """
    return ip_packet(encode_message(advert, src, dst), src, dst, ttl)


def decode_v3(packet: bytes, *, pseudo_header_checksum: bool = True) -> ReceivedAdvertV3:
    """Parse a VRRPv3 advert received on a raw IPv4 socket (IP header included).

    The IPv4 header checks of the v2 codec, then `decode_message` with the
    packet's own source and destination for the checksum.

    Raises:
        PacketError: the packet is malformed (`RejectReason`); nothing else escapes.
    """
    src, dst, ttl, message = ip_payload(packet)
    advert = decode_message(message, src, dst, pseudo_header_checksum=pseudo_header_checksum)
    return ReceivedAdvertV3(src, dst, ttl, advert)


def validate_v3(received: ReceivedAdvertV3, expect: Expectation) -> None:
    """RFC 5798 §7.1 against the local instance: VRID, TTL / hop limit 255 (not in
    unicast mode, as keepalived), the address count and set, multicast vs unicast
    mode, the unicast peer, and the owner, with the v2 reasons. Max Adver Int is
    not compared: the Backup adopts it (RFC 5798 §6.4.2).

    Raises:
        PacketError: the advert must be dropped (`RejectReason`).
    """
    advert = received.advert
    check_received(received.src, received.dst, received.ttl, advert.vrid, advert.addresses, expect)
