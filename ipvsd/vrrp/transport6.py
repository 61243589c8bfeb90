"""VRRPv3's IPv6 advert socket: raw IPv6, next header 112, to ff02::12 (RFC 5798).

The IPv6 twin of `vrrp.transport.VrrpSocket`, with the same public surface
(`VrrpSocket6.open`, ``source``, ``bind_source``, ``send``, ``recv``,
``packets``, ``fileno``, ``close``, ``report_send_failure``; the shared code
is `vrrp.transport.AdvertSocket`), so that one interface's endpoint can hold
either. It moves bytes: `vrrp.packet_v3` encodes and decodes the message,
checksum included, with the source and destination this socket reports.

Set up as keepalived sets up its IPv6 socket (``open_vrrp_read_socket`` /
``open_vrrp_send_socket``, ``keepalived/vrrp/vrrp.c`` and ``vrrp_if.c``):

* ``SOCK_RAW`` protocol 112; the kernel writes the IPv6 header, with hop
  limit 255 for multicast and unicast alike (IPV6_MULTICAST_HOPS,
  IPV6_UNICAST_HOPS; RFC 5798 §5.1.2.3) and traffic class 0xc0 (IPV6_TCLASS,
  what keepalived 2.2.7 sends, measured; the IPv4 socket's TOS).
* **No kernel checksum.** For raw IPv6 sockets other than ICMPv6 the
  IPV6_CHECKSUM offset is off (-1) by default (``rawv6_init_sk`` sets it only
  for IPPROTO_ICMPV6 and IPPROTO_MH); `open` sets it to -1 anyway and the
  netns tests read it back. `packet_v3` computes the checksum itself, over the
  pseudo-header; a kernel checksum at offset 6 would add it a second time.
* SO_BINDTODEVICE, IPV6_MULTICAST_IF (the ifindex), IPV6_JOIN_GROUP of
  ff02::12 on the interface (``ipv6_mreq``; the kernel also sends the MLD
  report, as for keepalived), and IPV6_MULTICAST_LOOP 0 (our own adverts are
  not delivered back).
* Unlike IPv4 (IP_MULTICAST_ALL 0), a unicast-mode socket **does** receive
  multicast adverts while any other socket of the namespace is a member of
  ff02::12 on the interface: the kernel hands every protocol-112 packet the
  host accepts to each unbound raw IPv6 socket (``raw_v6_match`` checks group
  membership only for bound sockets), and IPV6_MULTICAST_ALL does not apply.
  The reported destination tells them apart; the receiver must check it
  (keepalived drops multicast adverts in unicast mode).

Receiving. A raw IPv6 socket returns the payload only, **without the IPv6
header** (unlike IPv4 raw sockets), so the two things RFC 5798 needs from the
header come as ancillary data on ``recvmsg``: IPV6_RECVHOPLIMIT gives the
hop limit (§7.1: a packet whose hop limit is not 255 MUST be discarded) and
IPV6_RECVPKTINFO the destination address (``in6_pktinfo``), which the v3
checksum covers and which tells a multicast advert from a unicast one. Both
go into `ReceivedPacket6`; the caller checks the hop limit (keepalived skips
the check for unicast peers, as for IPv4).

The source address. RFC 5798 §5.1.2.1: the IPv6 source is the link-local
address of the interface. It is set **per send, with IPV6_PKTINFO**
(``in6_pktinfo`` with the address and the ifindex), as the IPv4 socket uses
IP_PKTINFO, and not with ``bind(2)``, for three reasons: a raw socket can be
bound once only, so the source could not follow a changed link-local address;
binding to an address still in duplicate address detection (tentative, the
first second after link up) fails with EADDRNOTAVAIL, which would fail the
socket exactly when the link comes up; and a bound raw IPv6 socket receives
unicast packets only if addressed to the bound address, so in unicast mode a
peer's advert to our global address would be lost (``raw_v6_match``; group
packets would still arrive). With no source set, the kernel's source address
selection (RFC 6724) picks the link-local address for ff02::12 anyway, and
a global one for a global unicast peer. A source that is not a usable local
address (tentative, gone) makes the send fail with EINVAL: counted and
logged, like any failed send.

Errors and link state are as for `VrrpSocket` (send on a down link: False,
logged at debug), and so is sharing: one reader task per socket.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import structlog

from ipvsd.vrrp.sockets import (
    IPV6_TCLASS_VRRP,
    VRRP_GROUP6,
    VRRP_HOP_LIMIT,
    open_advert_socket,
)
from ipvsd.vrrp.transport import AdvertSocket

__all__ = [
    "IPV6_TCLASS_VRRP",
    "VRRP_GROUP6",
    "VRRP_HOP_LIMIT",
    "ReceivedPacket6",
    "VrrpSocket6",
    "forwards_ipv6",
]

log = structlog.get_logger("ipvsd.vrrp.transport")

_RECV_SIZE = 65535
_INT = struct.Struct("=i")
#: ``struct in6_pktinfo {struct in6_addr ipi6_addr; int ipi6_ifindex;}`` (20 bytes).
_PKTINFO = struct.Struct("=16si")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_INT.size) + socket.CMSG_SPACE(_PKTINFO.size)


def forwards_ipv6(interface: str) -> bool:
    """Whether ``interface`` forwards IPv6 (``net.ipv6.conf.<if>.forwarding``),
    read in the current network namespace.

    The Router flag of the VIPs' Neighbor Advertisements must say so
    (`vrrp.ndisc.unsolicited_na`, ``router=``), as keepalived's does. A missing
    interface or an unreadable sysctl reads as False (a host).
    """
    path = Path("/proc/sys/net/ipv6/conf") / interface / "forwarding"
    try:
        return path.read_text().strip() not in ("", "0")
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ReceivedPacket6:
    """One packet from a `VrrpSocket6`.

    Attributes:
        message: the VRRP message (the IPv6 payload; raw IPv6 sockets do not
            return the header), for `vrrp.packet_v3.decode_message`.
        source: the sender's address (a link-local address for adverts).
        destination: ff02::12, or our own address for a unicast advert.
        hop_limit: as received; in multicast mode anything but 255 is to be
            dropped (§7.1). Not in unicast mode: keepalived 2.2.7 sends its
            IPv6 unicast adverts with the kernel's default, 64 (measured).
    """

    message: bytes
    source: IPv6Address
    destination: IPv6Address
    hop_limit: int


class VrrpSocket6(AdvertSocket[IPv6Address, ReceivedPacket6]):
    """The raw IPv6 protocol-112 socket of one interface. Use `open()`."""

    @classmethod
    def open(cls, interface: str, *, unicast: bool = False) -> VrrpSocket6:
        """As `VrrpSocket.open`; in unicast mode ff02::12 is not joined (but
        see the module docstring: group packets may still arrive).

        Raises:
            KernelError: no such interface, no CAP_NET_RAW, or a socket option failed.
        """
        sock, ifindex = open_advert_socket("ipv6", interface, unicast=unicast)
        log.debug(
            "vrrp.socket_opened", interface=interface, ifindex=ifindex, unicast=unicast, family=6
        )
        return cls(sock, interface, ifindex, unicast)

    def send(self, payload: bytes, dst: IPv6Address = VRRP_GROUP6) -> bool:
        """As `VrrpSocket.send`: ``payload`` checksummed by `packet_v3` for
        `source` and ``dst``, which is ff02::12 or a unicast peer (a link-local
        peer is reached on this interface). False if the send failed."""
        ancillary = []
        if self._source is not None:
            pktinfo = _PKTINFO.pack(self._source.packed, self.ifindex)
            ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo))
        # The scope id is the interface: needed for link-local destinations,
        # ignored by the kernel for global ones.
        return self._sendmsg(payload, ancillary, (str(dst), 0, 0, self.ifindex), dst)

    def _receive_now(self) -> ReceivedPacket6 | None:
        data, ancillary, flags, address = self._sock.recvmsg(_RECV_SIZE, _ANCILLARY_SIZE)
        hop_limit: int | None = None
        destination: IPv6Address | None = None
        for level, kind, value in ancillary:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == socket.IPV6_HOPLIMIT and len(value) >= _INT.size:
                hop_limit = _INT.unpack_from(value)[0]
            elif kind == socket.IPV6_PKTINFO and len(value) >= _PKTINFO.size:
                destination = IPv6Address(_PKTINFO.unpack_from(value)[0])
        source = IPv6Address(address[0].split("%", 1)[0])
        if hop_limit is None or destination is None or flags & socket.MSG_CTRUNC:
            # Cannot happen with both options set; without them the packet
            # could not be validated (§7.1), so it is not passed on.
            log.warning(
                "vrrp.receive_incomplete",
                interface=self.interface,
                source=str(source),
                hop_limit=hop_limit,
                destination=str(destination) if destination else None,
            )
            return None
        return ReceivedPacket6(data, source, destination, hop_limit)
