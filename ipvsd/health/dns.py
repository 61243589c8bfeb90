"""A small DNS message encoder and decoder for the dns check (RFC 1035, pure).

Only what a health check needs: one question out; in the answer, the header
(id, QR, TC, RCODE) and each answer record's type and data. Names in the
answer are skipped, compression pointers included, and never followed
backwards in a loop: every pointer must point before the one that names it.
Anything malformed raises `DnsError` (a `ValueError`); the I/O is in
``ipvsd.health.checks``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["QUERY_TYPES", "DnsError", "Reply", "decode_reply", "encode_query"]

QUERY_TYPES = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
}
"""The record types a dns check can ask for, by name (keepalived's DNS_CHECK set and SRV)."""

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
"""RCODE names for reasons; others are shown as numbers."""

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QR, _TC, _RD = 0x8000, 0x0200, 0x0100
_CLASS_IN = 1


class DnsError(ValueError):
    """A message that is not a well-formed reply to our query."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a check reads of a reply.

    Attributes:
        rcode: the response code (0: NOERROR).
        truncated: TC was set (the answer did not fit in the datagram).
        answers: (type, data) of each answer-section record.
    """

    rcode: int
    truncated: bool
    answers: tuple[tuple[int, bytes], ...]


def encode_name(name: str) -> bytes:
    """``www.example.test`` (or ``.``, the root) as DNS labels.

    Raises:
        DnsError: an empty label, a label over 63 bytes, a name over 255 bytes.
    """
    labels = [] if name in (".", "") else name.rstrip(".").split(".")
    out = bytearray()
    for label in labels:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 1 <= len(raw) <= 63:
            raise DnsError(f"label {label!r} must have 1 to 63 bytes")
        out += bytes([len(raw)]) + raw
    out += b"\0"
    if len(out) > 255:
        raise DnsError("a name has at most 255 bytes")
    return bytes(out)


def encode_query(ident: int, name: str, qtype: int) -> bytes:
    """A recursive query (RD set) for `name`, type `qtype`, class IN, with id `ident`."""
    return (
        _HEADER.pack(ident, _RD, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, _CLASS_IN)
    )


def decode_reply(data: bytes, ident: int) -> Reply:
    """The reply to our query `ident`.

    Raises:
        DnsError: too short, not a reply, another id, or a malformed record.
    """
    if len(data) < _HEADER.size:
        raise DnsError(f"{len(data)} bytes, shorter than a DNS header")
    got, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    if not flags & _QR:
        raise DnsError("not a reply (QR is 0)")
    if got != ident:
        raise DnsError(f"id {got} is not the query's {ident}")
    rcode, truncated = flags & 0xF, bool(flags & _TC)
    offset = _HEADER.size
    answers: list[tuple[int, bytes]] = []
    try:
        for _ in range(qdcount):
            offset = _skip_name(data, offset) + 4
        for _ in range(ancount):
            offset = _skip_name(data, offset)
            rtype, _, _, length = _RR.unpack_from(data, offset)
            offset += _RR.size
            if offset + length > len(data):
                raise DnsError("a record runs past the end of the message")
            answers.append((rtype, data[offset : offset + length]))
            offset += length
    except (struct.error, IndexError):
        if not truncated:
            raise DnsError("the message ends inside a record") from None
    if offset > len(data) and not truncated:
        raise DnsError("the message ends inside a question")
    return Reply(rcode, truncated, tuple(answers))


def _skip_name(data: bytes, offset: int) -> int:
    """The offset after the name at `offset` (a pointer ends it)."""
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if target >= offset:
                raise DnsError("a compression pointer points forward")
            return offset + 2
        if length & 0xC0:
            raise DnsError(f"label type {length >> 6} is not supported")
        offset += 1 + length
