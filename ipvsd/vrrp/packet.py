"""VRRPv2 advertisements (RFC 3768): encode, decode and validate (pure).

Theory of operation
-------------------
A VRRPv2 advertisement is an IPv4 datagram with protocol 112 (RFC 3768
§5.2.4), sent to 224.0.0.18 (§5.2.2), or to each peer in keepalived's
unicast mode, with TTL 255 (§5.2.3). Its payload is the VRRP message (§5.1)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Auth Type   |   Adver Int   |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         IP Address (1)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                            .........                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         IP Address (n)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Authentication Data (1)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Authentication Data (2)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Version 2, type 1 (§5.3.1, §5.3.2), so the first byte is 0x21. Adver Int is
in whole seconds (§5.3.7). The 8 bytes of authentication data are always
present, so the message is exactly ``16 + 4 * count`` bytes (§5.3.5). The
checksum is the RFC 1071 one's complement sum over the whole VRRP message with
the checksum field zero, **without** a pseudo-header (§5.3.8; VRRPv3 adds one).

Authentication (§5.3.6, §5.3.10, vrrp-notes §1.5): RFC 3768 only defines type 0
(none; auth data zero on transmit, ignored on receive). For interoperability
with keepalived's ``auth_type PASS``, type 1 is supported too: the password,
zero-padded to 8 bytes, compared in constant time. Type 2 (IP AH) is refused.

The work is split in three steps, so that each failure has one owner:

* `encode` / `encode_ip` build what *we* send. Out-of-range fields are *our*
  bug and raise `ValueError`.
* `decode` parses an IPv4 packet as a raw ``IPPROTO_VRRP`` socket delivers it
  (IP header included, options allowed) and checks only its *structure*: a
  sane IP header, protocol 112, complete lengths, version 2, type 1 and the
  checksum (RFC 3768 §7.1 steps 2-4, §5.3.2).
* `validate` compares a decoded advert with the local configuration
  (`Expectation`): RFC 3768 §7.1 plus keepalived 2.2.7's extra checks, in
  keepalived's order (``vrrp_check_packet``, vrrp-notes §2.1).

A peer's bad packet is never an exception other than `PacketError`; its
``reason`` is a `RejectReason` (``ipvsd.errors``), whose value is also the
``reason`` label of ``ipvsd_vrrp_invalid_packets_total`` (style G3). The transport drops the
packet, counts it and logs at debug with rate limiting; the state machine
never sees it.

This module is pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from ipvsd.errors import PacketError, RejectReason

VRRP_PROTOCOL = 112
"""IP protocol number of VRRP (RFC 3768 §5.2.4)."""
VRRP_GROUP = IPv4Address("224.0.0.18")
"""The VRRP multicast group (RFC 3768 §5.2.2); link-local, never routed."""
VRRP_TTL = 255
"""IP TTL of every advert on transmit, checked on receive (RFC 3768 §5.2.3, §7.1)."""
VRRP_VERSION = 2
"""The protocol version this module speaks (RFC 3768 §5.3.1)."""
VRRP_TYPE_ADVERTISEMENT = 1
"""The only VRRP packet type (RFC 3768 §5.3.2)."""
MAX_ADDRESSES = 255
"""Count IP Addrs is one byte (RFC 3768 §5.3.5)."""
AUTH_DATA_LEN = 8
"""Authentication data, always present in VRRPv2 (RFC 3768 §5.1, §5.3.10), bytes."""
HEADER_LEN = 8
"""The fixed part of the VRRP message, before the addresses, bytes."""
IP_TOS = 0xC0
"""IP TOS of our adverts: internetwork control, as keepalived's ``vrrp_build_ip4``."""

_IPV4_MIN_HEADER_LEN = 20
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_VRRP_HEADER = struct.Struct("!BBBBBBH")
_CHECKSUM_OFFSET = 6  # of the checksum field inside the VRRP message
_BYTE_MAX = 0xFF


class AuthType(enum.IntEnum):
    """VRRPv2 Auth Type (RFC 3768 §5.3.6; types 1 and 2 come from RFC 2338)."""

    NONE = 0
    """No authentication: the only type RFC 3768 defines."""
    SIMPLE = 1
    """Clear-text password of up to 8 bytes (keepalived ``auth_type PASS``)."""
    AH = 2
    """IP Authentication Header (keepalived ``auth_type AH``): not supported."""


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One VRRPv2 advertisement: the VRRP message, without the IP header.

    Attributes:
        vrid: Virtual Router ID, 1-255 (RFC 3768 §5.3.3).
        priority: 255 = address owner, 1-254 = backup, 0 = master resigning
            (RFC 3768 §5.3.4).
        advert_int: Advertisement interval in whole seconds, 1-255 (§5.3.7).
        addresses: the virtual IPv4 addresses, in wire order (§5.3.9).
        auth_type: the Auth Type field (§5.3.6).
        auth_data: the 8 bytes of authentication data (§5.3.10): zeros for
            `AuthType.NONE`, `password_auth_data` for `AuthType.SIMPLE`.
            Received adverts carry the bytes as received.
    """

    vrid: int
    priority: int
    advert_int: int
    addresses: tuple[IPv4Address, ...]
    auth_type: AuthType = AuthType.NONE
    auth_data: bytes = bytes(AUTH_DATA_LEN)


@dataclass(frozen=True, slots=True)
class ReceivedAdvert:
    """An advertisement with the IP header fields that `validate` needs.

    Attributes:
        src: IP source: the sender's primary interface address (RFC 3768 §5.2.1).
        dst: IP destination: 224.0.0.18, or our address in unicast mode.
        ttl: IP TTL as received (RFC 3768 §5.2.3).
        advert: the VRRP message.
    """

    src: IPv4Address
    dst: IPv4Address
    ttl: int
    advert: Advertisement


@dataclass(frozen=True, slots=True)
class Expectation:
    """What one local VRRP instance accepts, from its configuration.

    Attributes:
        vrid: our Virtual Router ID.
        advert_int: our advertisement interval, seconds (VRRPv2; VRRPv3 does not
            check it: centiseconds, for information).
        addresses: our virtual addresses, as advertised (order does not matter).
        auth_type: our auth type: `AuthType.NONE` or `AuthType.SIMPLE` (v2 only).
        password: our password when ``auth_type`` is `AuthType.SIMPLE`, else None.
        owner: True when we are the address owner (priority 255).
        unicast_peers: keepalived-style unicast peers; empty means multicast mode.
        version: 2 (RFC 3768) or 3 (RFC 5798, `ipvsd.vrrp.packet_v3.validate_v3`).
        group: the multicast destination of multicast mode (IPv6: ff02::12).
    """

    vrid: int
    advert_int: int
    addresses: frozenset[IPv4Address | IPv6Address]
    auth_type: AuthType = AuthType.NONE
    password: str | None = None
    owner: bool = False
    unicast_peers: frozenset[IPv4Address | IPv6Address] = field(default_factory=frozenset)
    version: int = VRRP_VERSION
    group: IPv4Address | IPv6Address = VRRP_GROUP

    def __post_init__(self) -> None:
        if self.version != VRRP_VERSION and self.auth_type is not AuthType.NONE:
            raise ValueError("VRRPv3 has no authentication (RFC 5798 §9)")
        if self.auth_type is AuthType.AH:
            raise ValueError("AH authentication is not supported")
        if (self.auth_type is AuthType.SIMPLE) != (self.password is not None):
            raise ValueError("a password goes with auth type SIMPLE, and only with it")
        if self.password is not None:
            password_auth_data(self.password)  # raises ValueError if too long


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071).

    Used for the VRRP checksum (RFC 3768 §5.3.8) and the IPv4 header checksum.
    Computed over a message whose checksum field holds a correct value, the
    result is 0.

    Args:
        data: the bytes to sum; an odd length is padded with a zero byte.

    Returns:
        The 16-bit one's complement of the one's complement sum of ``data``.
    """
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def password_auth_data(password: str) -> bytes:
    """The authentication data for auth type 1: the password, zero-padded to 8 bytes.

    This is keepalived's ``auth_pass`` layout (vrrp-notes §1.5).

    Args:
        password: the shared password, at most 8 bytes in UTF-8.

    Returns:
        8 bytes.

    Raises:
        ValueError: the password is longer than 8 bytes.
    """
    raw = password.encode()
    if len(raw) > AUTH_DATA_LEN:
        raise ValueError(f"a VRRP password is at most {AUTH_DATA_LEN} bytes, got {len(raw)}")
    return raw.ljust(AUTH_DATA_LEN, b"\x00")


def vmac(vrid: int) -> str:
    """The virtual router MAC address of ``vrid`` (RFC 3768 §7.3).

    Args:
        vrid: Virtual Router ID, 1-255.

    Returns:
        ``00:00:5e:00:01:{vrid:02x}``.

    Raises:
        ValueError: ``vrid`` is out of range.
    """
    _check_range("vrid", vrid, 1, _BYTE_MAX)
    return f"00:00:5e:00:01:{vrid:02x}"


def encode(advert: Advertisement) -> bytes:
    """The VRRP message of ``advert`` (the payload of the IP packet).

    The kernel's raw socket adds the IP header on transmit.

    Args:
        advert: what to send.

    Returns:
        ``16 + 4 * len(advert.addresses)`` bytes with a correct checksum.

    Raises:
        ValueError: a field is out of range, there are more than 255 addresses,
            an address is not IPv4, the auth data is not 8 bytes, auth type
            NONE carries non-zero auth data, or the auth type is AH.
    """
    _check_range("vrid", advert.vrid, 1, _BYTE_MAX)  # §5.3.3
    _check_range("priority", advert.priority, 0, _BYTE_MAX)  # §5.3.4
    _check_range("advert_int", advert.advert_int, 1, _BYTE_MAX)  # §5.3.7
    if len(advert.addresses) > MAX_ADDRESSES:  # §5.3.5: one byte
        raise ValueError(f"at most {MAX_ADDRESSES} addresses fit in an advert")
    if not all(isinstance(address, IPv4Address) for address in advert.addresses):
        raise ValueError("VRRPv2 adverts carry IPv4 addresses only")
    auth_type = AuthType(advert.auth_type)
    if auth_type is AuthType.AH:
        raise ValueError("AH authentication is not supported")
    if len(advert.auth_data) != AUTH_DATA_LEN:
        raise ValueError(f"auth_data must be {AUTH_DATA_LEN} bytes")
    if auth_type is AuthType.NONE and any(advert.auth_data):
        # §5.3.10: auth data SHOULD be zero on transmit; never leak a password.
        raise ValueError("auth type NONE sends zero auth data")
    header = _VRRP_HEADER.pack(
        VRRP_VERSION << 4 | VRRP_TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        len(advert.addresses),
        auth_type,
        advert.advert_int,
        0,
    )
    message = b"".join([header, *(a.packed for a in advert.addresses), advert.auth_data])
    # §5.3.8: sum over the whole message with the checksum field zero; no pseudo-header.
    return _with_checksum(message, _CHECKSUM_OFFSET)


def encode_ip(
    advert: Advertisement,
    src: IPv4Address,
    dst: IPv4Address = VRRP_GROUP,
    ttl: int = VRRP_TTL,
) -> bytes:
    """A complete IPv4 packet carrying ``advert``, laid out as keepalived builds it.

    keepalived's ``vrrp_build_ip4``: IHL 5, TOS 0xc0, ID 0, no DF, TTL 255,
    protocol 112. The header checksum is filled in here (the kernel fills it in
    for an ``IP_HDRINCL`` socket, and may replace ID 0). For tests, and for
    injecting packets.

    Args:
        advert: the VRRP message.
        src: IP source (RFC 3768 §5.2.1: the sender's primary address).
        dst: IP destination (224.0.0.18, or a peer in unicast mode).
        ttl: IP TTL; anything but 255 is only useful to test rejection.

    Returns:
        The IP header followed by `encode` (advert).

    Raises:
        ValueError: as `encode`, or ``ttl`` is out of range.
    """
    return ip_packet(encode(advert), src, dst, ttl)


def ip_packet(payload: bytes, src: IPv4Address, dst: IPv4Address, ttl: int = VRRP_TTL) -> bytes:
    """`payload` (a VRRP message, v2 or v3) in an IPv4 header as keepalived builds it.

    Raises:
        ValueError: ``ttl`` is out of range.
    """
    _check_range("ttl", ttl, 0, _BYTE_MAX)
    header = _IP_HEADER.pack(
        4 << 4 | _IPV4_MIN_HEADER_LEN // 4,
        IP_TOS,
        _IPV4_MIN_HEADER_LEN + len(payload),
        0,  # identification
        0,  # flags and fragment offset: no DF
        ttl,
        VRRP_PROTOCOL,
        0,
        src.packed,
        dst.packed,
    )
    return _with_checksum(header, 10) + payload


def ip_payload(ip_packet: bytes) -> tuple[IPv4Address, IPv4Address, int, bytes]:
    """The IPv4 header of a packet a raw ``IPPROTO_VRRP`` socket delivered, checked.

    The first checks of `decode`, shared by both VRRP versions: IP version 4, a
    sane IHL and total length, protocol 112, and exactly the total length received.

    Returns:
        The IP source, destination, TTL, and the VRRP message (the IP payload).

    Raises:
        PacketError: the packet is malformed (`RejectReason`).
    """
    size = len(ip_packet)
    if size == 0:
        raise PacketError(RejectReason.TOO_SHORT, "empty packet")
    if ip_packet[0] >> 4 != 4:
        raise PacketError(RejectReason.NOT_IPV4, f"IP version {ip_packet[0] >> 4}")
    if size < _IPV4_MIN_HEADER_LEN:
        raise PacketError(RejectReason.TOO_SHORT, f"{size} bytes cannot hold an IPv4 header")
    version_ihl, _, total_length, _, _, ttl, protocol, _, src, dst = _IP_HEADER.unpack_from(
        ip_packet
    )
    ihl = (version_ihl & 0x0F) * 4
    if ihl < _IPV4_MIN_HEADER_LEN:
        raise PacketError(RejectReason.IP_HEADER, f"IHL {ihl // 4} is below 5")
    if total_length < ihl:
        raise PacketError(
            RejectReason.IP_HEADER, f"IP total length {total_length} < header length {ihl}"
        )
    if protocol != VRRP_PROTOCOL:  # RFC 3768 §5.2.4
        raise PacketError(RejectReason.PROTOCOL, f"IP protocol {protocol}, expected 112")
    if size < total_length:
        raise PacketError(
            RejectReason.TOO_SHORT, f"received {size} bytes, IP total length is {total_length}"
        )
    if size > total_length:
        # keepalived: "ip_tot_len mismatch against received length".
        raise PacketError(
            RejectReason.LENGTH, f"received {size} bytes, IP total length is {total_length}"
        )
    return IPv4Address(src), IPv4Address(dst), ttl, ip_packet[ihl:total_length]


def decode(ip_packet: bytes) -> ReceivedAdvert:
    """Parse a VRRPv2 advertisement received on a raw IPv4 socket.

    Checks structure only, in this order: the IPv4 header (version, IHL, total
    length, protocol 112, received length), then the VRRP message as RFC 3768
    §7.1 orders it: version 2 (step 2), type 1 (§5.3.2), completeness
    (step 3: exactly ``16 + 4 * count`` bytes) and the checksum (step 4).
    The IP header checksum is not checked: the kernel drops bad ones before
    raw sockets see them. Everything that depends on our configuration,
    including the TTL, is left to `validate`.

    Args:
        ip_packet: the bytes ``recv`` returned, IP header included.

    Returns:
        The advert with its IP source, destination and TTL.

    Raises:
        PacketError: the packet is malformed; ``reason`` is a `RejectReason`
            value. No other exception escapes, whatever the bytes.
    """
    src, dst, ttl, message = ip_payload(ip_packet)
    if len(message) < HEADER_LEN:
        raise PacketError(RejectReason.TOO_SHORT, f"VRRP message of {len(message)} bytes")
    vers_type, vrid, priority, count, auth_type, advert_int, _ = _VRRP_HEADER.unpack_from(message)
    if vers_type >> 4 != VRRP_VERSION:  # RFC 3768 §7.1 step 2
        raise PacketError(RejectReason.VERSION, f"VRRP version {vers_type >> 4}, expected 2")
    if vers_type & 0x0F != VRRP_TYPE_ADVERTISEMENT:  # RFC 3768 §5.3.2
        raise PacketError(RejectReason.TYPE, f"VRRP type {vers_type & 0x0F}, expected 1")
    expected = HEADER_LEN + 4 * count + AUTH_DATA_LEN
    if len(message) != expected:  # RFC 3768 §7.1 step 3, §5.3.5
        raise PacketError(
            RejectReason.LENGTH,
            f"VRRP message of {len(message)} bytes, {expected} for {count} addresses",
        )
    if checksum(message):  # RFC 3768 §7.1 step 4, §5.3.8: no pseudo-header in v2
        raise PacketError(RejectReason.CHECKSUM, "invalid VRRPv2 checksum")
    try:
        # RFC 3768 §5.3.6: an unknown auth type MUST be discarded. It has no
        # `AuthType` member to carry it to `validate`, so it is refused here.
        auth = AuthType(auth_type)
    except ValueError:
        raise PacketError(RejectReason.AUTH_TYPE, f"unknown auth type {auth_type}") from None
    addresses = tuple(
        IPv4Address(message[offset : offset + 4])
        for offset in range(HEADER_LEN, HEADER_LEN + 4 * count, 4)
    )
    return ReceivedAdvert(
        src=src,
        dst=dst,
        ttl=ttl,
        advert=Advertisement(
            vrid=vrid,
            priority=priority,
            advert_int=advert_int,
            addresses=addresses,
            auth_type=auth,
            auth_data=message[-AUTH_DATA_LEN:],
        ),
    )


def validate(received: ReceivedAdvert, expect: Expectation) -> None:
    """Check a decoded advert against the local instance's configuration.

    RFC 3768 §7.1 with keepalived 2.2.7's additions, in the order of
    keepalived's ``vrrp_check_packet`` (vrrp-notes §2.1), after the VRID
    demultiplexing that precedes it:

    1. VRID is ours (§7.1 step 5);
    2. TTL is 255 (§7.1 step 1), skipped in unicast mode as keepalived does;
    3. auth type is ours, and not AH (§7.1 step 6);
    4. type 1: the password matches, compared in constant time;
    5. Adver Int is ours (§7.1);
    6. the address count is ours (§7.1 MAY);
    7. multicast mode gets adverts to 224.0.0.18 only, unicast mode no
       multicast ones;
    8. the address set is ours, in any order (§7.1 MAY);
    9. unicast mode: the source is a configured peer;
    10. we are not the address owner (§7.1 step 5), checked last so that
        malformed adverts keep their specific reason.

    VIP mismatches (6, 8) are dropped **whatever the sender's priority**, as
    keepalived ≤ 2.3.2 does (vrrp-notes §2.2). RFC 3768 §7.1 would go on
    processing a priority-255 advert; dropping it keeps ipvsd and keepalived
    2.2.7 symmetric, so a misconfiguration fails the same way on both sides.

    Args:
        received: the output of `decode`.
        expect: the local instance's configuration.

    Raises:
        PacketError: the advert must be dropped; ``reason`` is a `RejectReason`
            value.
    """
    advert = received.advert
    check_received(
        received.src, received.dst, received.ttl, advert.vrid, advert.addresses, expect, advert
    )


def check_received(
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    ttl: int,
    vrid: int,
    addresses: Sequence[IPv4Address | IPv6Address],
    expect: Expectation,
    v2: Advertisement | None = None,
) -> None:
    """The checks of `validate` on an advert's fields, for both versions.

    `v2`: a VRRPv2 advert, whose auth type, password and interval are checked
    too (steps 3-5); None for VRRPv3, which has no authentication (RFC 5798
    §5.3.5 removed it) and no interval check (a Backup adopts the master's,
    RFC 5798 §6.4.2; keepalived checks it for v2 only).

    Raises:
        PacketError: the advert must be dropped (`RejectReason`).
    """
    unicast = bool(expect.unicast_peers)
    if vrid != expect.vrid:
        raise PacketError(RejectReason.UNKNOWN_VRID, f"VRID {vrid}, ours is {expect.vrid}")
    # RFC 3768 §7.1 step 1, §10: the TTL is the only protection against
    # off-link injection. keepalived skips it in unicast mode (vrrp.c:848).
    if not unicast and ttl != VRRP_TTL:
        raise PacketError(RejectReason.TTL, f"TTL {ttl}, expected {VRRP_TTL}")
    if v2 is not None:
        _check_v2(v2, expect)
    if len(addresses) != len(expect.addresses):
        raise PacketError(
            RejectReason.VIP_MISMATCH,
            f"{len(addresses)} addresses {_addresses(addresses)}, "
            f"we have {len(expect.addresses)}: {_addresses(expect.addresses)}",
        )
    if not unicast and dst != expect.group:
        raise PacketError(RejectReason.UNEXPECTED_UNICAST, f"expected multicast, sent to {dst}")
    if unicast and dst.is_multicast:
        raise PacketError(RejectReason.UNEXPECTED_MULTICAST, f"expected unicast, sent to {dst}")
    # keepalived's vrrp_in_chk_vips: every local VIP must be in the advert.
    if frozenset(addresses) != expect.addresses:
        raise PacketError(
            RejectReason.VIP_MISMATCH,
            f"advertised {_addresses(addresses)}, ours are {_addresses(expect.addresses)}",
        )
    # keepalived checks this only with vrrp_check_unicast_src; ipvsd always does.
    if unicast and src not in expect.unicast_peers:
        raise PacketError(RejectReason.UNKNOWN_PEER, f"{src} is not a unicast peer")
    # RFC 3768 §7.1 step 5: the address owner discards adverts for its VRID.
    if expect.owner:
        raise PacketError(RejectReason.OWNER, f"we own VRID {expect.vrid}; advert from {src}")


def _check_v2(advert: Advertisement, expect: Expectation) -> None:
    # RFC 3768 §7.1 step 6, §5.3.6: discard a type that is not ours. AH
    # adverts travel as IP protocol 51, so type 2 inside protocol 112 is bogus.
    if advert.auth_type is AuthType.AH or advert.auth_type != expect.auth_type:
        raise PacketError(
            RejectReason.AUTH_TYPE,
            f"auth type {int(advert.auth_type)}, expected {int(expect.auth_type)}",
        )
    if expect.password is not None and not hmac.compare_digest(
        advert.auth_data, password_auth_data(expect.password)
    ):
        raise PacketError(RejectReason.AUTH_PASSWORD, "invalid password")
    # RFC 3768 §7.1: Adver Int MUST match, "to prevent concurrent VRID
    # running" (keepalived drops rather than counting an error).
    if advert.advert_int != expect.advert_int:
        raise PacketError(
            RejectReason.ADVERT_INTERVAL,
            f"advert interval {advert.advert_int} s, ours is {expect.advert_int} s",
        )


def _addresses(
    addresses: Sequence[IPv4Address | IPv6Address] | frozenset[IPv4Address | IPv6Address],
) -> str:
    return ",".join(str(address) for address in sorted(addresses, key=_sort_key))


def _sort_key(address: IPv4Address | IPv6Address) -> tuple[int, int]:
    return address.version, int(address)


def _with_checksum(data: bytes, offset: int) -> bytes:
    value = checksum(data)
    return data[:offset] + value.to_bytes(2, "big") + data[offset + 2 :]


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
