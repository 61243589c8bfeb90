"""Opening VRRP's raw advert sockets, both families: the standard library only.

`ipvsd.daemon.early` opens them with this module before the daemon's modules
are imported (`ipvsd.vrrp.prelisten`); `vrrp.transport.VrrpSocket.open` and
`vrrp.transport6.VrrpSocket6.open` open theirs with it too, so a socket opened
early is the socket the runtime would have opened. The transport modules'
docstrings say why each option is set.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv6Address

from ipvsd.errors import KernelError
from ipvsd.vrrp.packet import IP_TOS, VRRP_GROUP, VRRP_PROTOCOL, VRRP_TTL

# Linux <linux/in.h> values the socket module does not export (Python 3.11).
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_MULTICAST_ALL = 49


ANY = b"\x00\x00\x00\x00"

VRRP_GROUP6 = IPv6Address("ff02::12")
"""RFC 5798 §5.1.2.2: the IPv6 multicast address of VRRP, link-local scope."""
VRRP_HOP_LIMIT = 255
"""RFC 5798 §5.1.2.3, checked on receipt (§7.1)."""
IPV6_TCLASS_VRRP = 0xC0
"""The traffic class keepalived 2.2.7 sends (measured), as IPv4's TOS 0xc0."""


def ip_mreqn(group: bytes, ifindex: int) -> bytes:
    """``struct ip_mreqn {in_addr multiaddr; in_addr address; int ifindex}`` (12 bytes)."""
    return struct.pack("=4s4si", group, ANY, ifindex)


def open_error(interface: str, what: str, exc: OSError) -> KernelError:
    code = exc.errno or 0
    if code in (errno.ENODEV, errno.ENXIO):
        return KernelError(f"no interface {interface!r}", errno=code, operation=what)
    if code == errno.EPERM:
        return KernelError(
            f"{what} on {interface!r}: operation not permitted (needs CAP_NET_RAW)",
            errno=code,
            operation=what,
        )
    return KernelError(
        f"{what} on {interface!r}: {os.strerror(code)} (errno {code})", errno=code, operation=what
    )


def ifindex_of(interface: str) -> int:
    """The ifindex of ``interface`` in the current namespace.

    Raises:
        KernelError: no such interface (errno ENODEV).
    """
    try:
        return socket.if_nametoindex(interface)
    except OSError as exc:
        raise KernelError(
            f"no interface {interface!r}", errno=exc.errno or errno.ENODEV, operation="ifindex"
        ) from None


def open_raw_socket(
    family: socket.AddressFamily,
    interface: str,
    options: Sequence[tuple[str, int, bytes | int]],
) -> socket.socket:
    """A non-blocking raw protocol-112 socket of ``family`` with ``options`` set.

    Args:
        family: AF_INET or AF_INET6.
        interface: for error messages.
        options: (name, option, value); the level follows the name's prefix
            (``SO_``: SOL_SOCKET, ``IPV6_``: IPPROTO_IPV6, else IPPROTO_IP).

    Raises:
        KernelError: the socket or an option failed (the socket is closed).
    """
    try:
        sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, VRRP_PROTOCOL)
    except OSError as exc:
        raise open_error(interface, "open raw socket", exc) from None
    try:
        for name, option, value in options:
            if name.startswith("SO_"):
                level = socket.SOL_SOCKET
            elif name.startswith("IPV6_"):
                level = socket.IPPROTO_IPV6
            else:
                level = socket.IPPROTO_IP
            try:
                sock.setsockopt(level, option, value)
            except OSError as exc:
                raise open_error(interface, f"setsockopt {name}", exc) from None
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_advert_socket(family: str, interface: str, *, unicast: bool) -> tuple[socket.socket, int]:
    """The configured advert socket of `family` (``ipv4``/``ipv6``) on `interface`,
    with the interface's ifindex. `unicast`: no group membership.

    Raises:
        KernelError: no such interface, no CAP_NET_RAW, or a socket option failed.
    """
    ifindex = ifindex_of(interface)
    if family == "ipv6":
        options = _options_v6(interface, ifindex, unicast)
        return open_raw_socket(socket.AF_INET6, interface, options), ifindex
    return open_raw_socket(
        socket.AF_INET, interface, _options_v4(interface, ifindex, unicast)
    ), ifindex


def _options_v4(interface: str, ifindex: int, unicast: bool) -> list[tuple[str, int, bytes | int]]:
    options: list[tuple[str, int, bytes | int]] = [
        ("SO_BINDTODEVICE", socket.SO_BINDTODEVICE, interface.encode()),
        ("IP_TTL", socket.IP_TTL, VRRP_TTL),
        ("IP_MULTICAST_TTL", socket.IP_MULTICAST_TTL, VRRP_TTL),
        ("IP_TOS", socket.IP_TOS, IP_TOS),
        ("IP_MTU_DISCOVER", IP_MTU_DISCOVER, IP_PMTUDISC_DONT),
        ("IP_MULTICAST_LOOP", socket.IP_MULTICAST_LOOP, 0),
        ("IP_MULTICAST_ALL", IP_MULTICAST_ALL, 0),
        ("IP_MULTICAST_IF", socket.IP_MULTICAST_IF, ip_mreqn(ANY, ifindex)),
    ]
    if not unicast:
        membership = ip_mreqn(VRRP_GROUP.packed, ifindex)
        options.append(("IP_ADD_MEMBERSHIP", socket.IP_ADD_MEMBERSHIP, membership))
    return options


def _options_v6(interface: str, ifindex: int, unicast: bool) -> list[tuple[str, int, bytes | int]]:
    options: list[tuple[str, int, bytes | int]] = [
        ("SO_BINDTODEVICE", socket.SO_BINDTODEVICE, interface.encode()),
        ("IPV6_CHECKSUM", socket.IPV6_CHECKSUM, -1),
        ("IPV6_UNICAST_HOPS", socket.IPV6_UNICAST_HOPS, VRRP_HOP_LIMIT),
        ("IPV6_MULTICAST_HOPS", socket.IPV6_MULTICAST_HOPS, VRRP_HOP_LIMIT),
        ("IPV6_TCLASS", socket.IPV6_TCLASS, IPV6_TCLASS_VRRP),
        ("IPV6_MULTICAST_LOOP", socket.IPV6_MULTICAST_LOOP, 0),
        ("IPV6_MULTICAST_IF", socket.IPV6_MULTICAST_IF, ifindex),
        ("IPV6_RECVHOPLIMIT", socket.IPV6_RECVHOPLIMIT, 1),
        ("IPV6_RECVPKTINFO", socket.IPV6_RECVPKTINFO, 1),
    ]
    if not unicast:
        mreq = VRRP_GROUP6.packed + struct.pack("=I", ifindex)  # struct ipv6_mreq
        options.append(("IPV6_JOIN_GROUP", socket.IPV6_JOIN_GROUP, mreq))
    return options
