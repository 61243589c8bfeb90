"""rtnetlink messages by hand: encode the requests VRRP sends, decode links and addresses.

Why not pyroute2 here: importing it takes ~100 ms on the host (seconds in
UML), longer than the whole budget from exec to the first VRRP state (issue
14). VRRP's start needs few message kinds — RTM_GETLINK, RTM_{NEW,DEL,GET}ADDR
and the link and address broadcasts — whose layouts are fixed in
``<linux/netlink.h>``, ``<linux/rtnetlink.h>``, ``<linux/if_link.h>`` and
``<linux/if_addr.h>``. This module is the standard library only, so the
early step (`ipvsd.netlink.delete_addresses`) can use it too.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_address

__all__ = [
    "Address",
    "Link",
    "Message",
    "address_request",
    "attributes",
    "decode_address",
    "decode_link",
    "error_of",
    "link_request",
    "messages",
    "request",
]

# <linux/netlink.h>
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
#: In an error message's header: the request is not echoed whole (NETLINK_CAP_ACK) ...
NLM_F_CAPPED = 0x100
#: ... and TLVs after it carry the extended ack.
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLMSGERR_ATTR_MSG = 1
# <linux/rtnetlink.h>
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
# <linux/if_link.h>
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
# <linux/if_addr.h>
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_BROADCAST = 4
IFA_CACHEINFO = 6
IFA_FLAGS = 8

NLMSGHDR = struct.Struct("=IHHII")
IFADDRMSG = struct.Struct("=BBBBI")
IFINFOMSG = struct.Struct("=BxHiII")
NLA = struct.Struct("=HH")
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")
_CACHEINFO = struct.Struct("=IIII")
#: RFC 2863 operstates in the kernel's order (``IF_OPER_*``), named as ``ip link`` does.
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")


def _align(length: int) -> int:
    return (length + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = NLA.size + len(payload)
    return NLA.pack(length, kind) + payload + bytes(_align(length) - length)


def request(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A netlink message: the header, then `body` (a family header and attributes)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def address_request(
    kind: int,
    flags: int,
    seq: int,
    index: int,
    address: IPv4Interface | IPv6Interface,
    *,
    scope: int = 0,
    ifa_flags: int = 0,
    label: str | None = None,
    broadcast: bytes | None = None,
    lifetimes: tuple[int, int] | None = None,
) -> bytes:
    """An RTM_NEWADDR / RTM_DELADDR for ``address`` (with its prefix length) on link `index`.

    IFA_LOCAL and IFA_ADDRESS both carry the address, as ``ip addr`` sends them:
    the kernel then matches (deletes) only an address of that prefix length.
    `lifetimes`: (preferred, valid) seconds, as IFA_CACHEINFO.
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    packed = address.ip.packed
    attrs = attribute(IFA_LOCAL, packed) + attribute(IFA_ADDRESS, packed)
    if label is not None:
        attrs += attribute(IFA_LABEL, label.encode() + b"\0")
    if broadcast is not None:
        attrs += attribute(IFA_BROADCAST, broadcast)
    if ifa_flags:
        attrs += attribute(IFA_FLAGS, _U32.pack(ifa_flags))
    if lifetimes is not None:
        attrs += attribute(IFA_CACHEINFO, _CACHEINFO.pack(*lifetimes, 0, 0))
    header = IFADDRMSG.pack(family, address.network.prefixlen, ifa_flags & 0xFF, scope, index)
    return request(kind, flags, seq, header + attrs)


def link_request(seq: int, name: str | None = None) -> bytes:
    """RTM_GETLINK: of the interface called `name` (acked: the ack ends the answer), or
    (None) a dump of every link (NLMSG_DONE ends it)."""
    if name is None:
        return request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, IFINFOMSG.pack(0, 0, 0, 0, 0))
    body = IFINFOMSG.pack(0, 0, 0, 0, 0) + attribute(IFLA_IFNAME, name.encode() + b"\0")
    return request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message of a datagram: its header fields and its payload."""

    kind: int
    flags: int
    seq: int
    payload: memoryview


def messages(data: bytes) -> Iterator[Message]:
    """The messages of one datagram, in order (a truncated tail is dropped)."""
    view = memoryview(data)
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            return
        yield Message(kind, flags, seq, view[offset + NLMSGHDR.size : offset + length])
        offset += _align(length)


def attributes(payload: memoryview, offset: int) -> dict[int, memoryview]:
    """The attributes from `offset` on (the first of each kind; nested ones left packed)."""
    found: dict[int, memoryview] = {}
    end = len(payload)
    while offset + NLA.size <= end:
        length, kind = NLA.unpack_from(payload, offset)
        if length < NLA.size or offset + length > end:
            break
        found.setdefault(kind & 0x3FFF, payload[offset + NLA.size : offset + length])
        offset += _align(length)
    return found


def _text(value: memoryview | None) -> str:
    return "" if value is None else bytes(value).split(b"\0", 1)[0].decode(errors="replace")


def error_of(message: Message) -> tuple[int, str]:
    """(errno, the kernel's extended-ack text or "") of an NLMSG_ERROR; errno 0: an ack.

    The TLVs follow the echoed request: its header alone when capped
    (NETLINK_CAP_ACK), else the whole request.
    """
    (code,) = _ERROR.unpack_from(message.payload, 0)
    text = ""
    if message.flags & NLM_F_ACK_TLVS:
        echoed = NLMSGHDR.size
        if not message.flags & NLM_F_CAPPED:
            (echoed,) = _U32.unpack_from(message.payload, _ERROR.size)
        tlvs = attributes(message.payload, _ERROR.size + _align(echoed))
        text = _text(tlvs.get(NLMSGERR_ATTR_MSG))
    return -code, text


@dataclass(frozen=True, slots=True)
class Link:
    """An RTM_NEWLINK / RTM_DELLINK, decoded.

    Attributes:
        index: the ifindex.
        name: IFLA_IFNAME.
        flags: ``ifi_flags`` (IFF_*).
        mac: IFLA_ADDRESS as ``aa:bb:cc:dd:ee:ff`` ("" when the link has none).
        operstate: IFLA_OPERSTATE as ``ip link`` names it ("" when absent).
    """

    index: int
    name: str
    flags: int
    mac: str
    operstate: str


def decode_link(message: Message) -> Link:
    """The link of an RTM_NEWLINK / RTM_DELLINK message."""
    _, _, index, flags, _ = IFINFOMSG.unpack_from(message.payload, 0)
    attrs = attributes(message.payload, IFINFOMSG.size)
    mac = attrs.get(IFLA_ADDRESS)
    operstate = attrs.get(IFLA_OPERSTATE)
    state = ""
    if operstate is not None and len(operstate):
        code = operstate[0]
        state = OPERSTATES[code] if code < len(OPERSTATES) else str(code)
    return Link(
        index=index,
        name=_text(attrs.get(IFLA_IFNAME)),
        flags=flags,
        mac=":".join(f"{byte:02x}" for byte in bytes(mac)) if mac is not None else "",
        operstate=state,
    )


@dataclass(frozen=True, slots=True)
class Address:
    """An RTM_NEWADDR / RTM_DELADDR, decoded.

    Attributes:
        index: the link's ifindex.
        address: IFA_LOCAL (else IFA_ADDRESS) with the prefix length.
        flags: IFA_FLAGS when present (it carries the bits above 0xff), else ``ifa_flags``.
        label: IFA_LABEL ("" for IPv6, which has none).
    """

    index: int
    address: IPv4Interface | IPv6Interface
    flags: int
    label: str


def decode_address(message: Message) -> Address | None:
    """The address of an RTM_NEWADDR / RTM_DELADDR; None for another family or none given."""
    family, prefixlen, ifa_flags, _, index = IFADDRMSG.unpack_from(message.payload, 0)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = attributes(message.payload, IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL)
    if raw is None:
        raw = attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    flags = attrs.get(IFA_FLAGS)
    ip = ip_address(bytes(raw))
    interface = (
        IPv4Interface((ip, prefixlen)) if ip.version == 4 else IPv6Interface((ip, prefixlen))
    )
    return Address(
        index=index,
        address=interface,
        flags=ifa_flags if flags is None or len(flags) < 4 else _U32.unpack_from(flags)[0],
        label=_text(attrs.get(IFA_LABEL)),
    )
