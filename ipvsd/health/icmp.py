"""ICMP and ICMPv6 echo messages for the ping check (RFC 792, RFC 4443 §4; pure).

Only what a check needs: an echo request out, and in what comes back, the
echo reply that answers it. A reply answers our request when its identifier
(raw sockets; a ping socket's kernel matches it instead), sequence number and
payload are ours: a raw socket sees every ICMP message of the host, other
pingers' replies included, and those are not garbage but someone else's.

- IPv4 raw sockets deliver the IP header too (its IHL says how long it is);
  ICMP datagram ("ping") sockets and IPv6 sockets deliver the ICMP message
  alone.
- The ICMPv4 checksum is ours to write (RFC 792); the kernel writes the
  ICMPv6 one (it covers a pseudo-header, RFC 4443 §2.3) and a ping socket's.

`decode_reply` returns None for a message that is not an echo reply (another
type: the check keeps waiting) and raises `IcmpError` for one that cannot be
parsed; the I/O is in ``ipvsd.health.probes``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Echo", "IcmpError", "checksum", "decode_reply", "encode_request"]

ECHO_REQUEST = {4: 8, 6: 128}
"""Echo request type per IP version (RFC 792; RFC 4443 §4.1)."""
ECHO_REPLY = {4: 0, 6: 129}
"""Echo reply type per IP version (RFC 792; RFC 4443 §4.2)."""

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence number


class IcmpError(ValueError):
    """A message too short or malformed to be an ICMP message."""


@dataclass(frozen=True, slots=True)
class Echo:
    """An echo reply as the check compares it with its request.

    Attributes:
        ident: the identifier.
        seq: the sequence number.
        payload: the data after the header.
    """

    ident: int
    seq: int
    payload: bytes


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def encode_request(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; its checksum is filled in for IPv4 (the kernel's for ICMPv6).

    Raises:
        ValueError: `version` is not 4 or 6, or `ident`/`seq` is not 16 bits (our bug).
    """
    kind = ECHO_REQUEST[version]
    message = _HEADER.pack(kind, 0, 0, ident, seq) + payload
    if version == 4:
        message = _HEADER.pack(kind, 0, checksum(message), ident, seq) + payload
    return message


def decode_reply(data: bytes, version: int, *, ip_header: bool) -> Echo | None:
    """The echo reply in `data`, or None when it holds another ICMP message.

    Args:
        data: what the socket delivered.
        version: 4 or 6 (ICMP or ICMPv6).
        ip_header: `data` starts with the IPv4 header (IPv4 raw sockets).

    Raises:
        IcmpError: `data` is too short for its headers.
    """
    if ip_header:
        if not data or data[0] >> 4 != 4:
            raise IcmpError("not an IPv4 packet")
        start = (data[0] & 0x0F) * 4
        if start < 20 or len(data) < start:
            raise IcmpError(f"IPv4 header length {start} in a packet of {len(data)} bytes")
        data = data[start:]
    if len(data) < _HEADER.size:
        raise IcmpError(f"an ICMP message of {len(data)} bytes (the header is {_HEADER.size})")
    kind, _code, _sum, ident, seq = _HEADER.unpack_from(data)
    if kind != ECHO_REPLY[version]:
        return None
    return Echo(ident, seq, bytes(data[_HEADER.size :]))
