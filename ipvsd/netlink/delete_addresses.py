"""Delete interface addresses with one raw rtnetlink socket: the start-up's first write.

Why not `ipvsd.netlink.addresses` (pyroute2): this runs before anything heavy
is imported (`ipvsd.daemon.early`), and importing pyroute2 alone takes longer
than the whole budget (stale VIPs gone 100 ms after exec). One RTM_DELADDR per
address, all sent in one ``sendmsg``; the kernel answers each with an ack.

The request carries IFA_LOCAL and IFA_ADDRESS, so the kernel deletes only an
address with the same prefix length (``inet_rtm_deladdr``,
``inet6_rtm_deladdr``): exactly what ``ip addr del ADDRESS/PREFIX dev IF``
and `ipvsd.netlink.addresses.AddressManager.remove` delete, nothing else.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv6Interface

__all__ = ["delete_addresses"]

# The netlink header constants are also `ipvsd.netlink.wire`'s; not imported from
# there: wire imports the IPVS model and planner (~30 ms), not needed this early.
RTM_DELADDR = 21
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
IFA_ADDRESS = 1
IFA_LOCAL = 2

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_NLA = struct.Struct("=HH")
_ERROR = struct.Struct("=i")
#: Errors that mean "not there": nothing to delete.
ABSENT = frozenset({errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV})


def _request(seq: int, index: int, address: IPv4Interface | IPv6Interface) -> bytes:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    packed = address.ip.packed
    attrs = b"".join(_NLA.pack(4 + len(packed), kind) + packed for kind in (IFA_LOCAL, IFA_ADDRESS))
    body = _IFADDRMSG.pack(family, address.network.prefixlen, 0, 0, index) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_DELADDR, flags, seq, 0) + body


def delete_addresses(
    targets: Sequence[tuple[int, IPv4Interface | IPv6Interface]], *, timeout_s: float = 1.0
) -> list[int]:
    """Delete each (ifindex, ADDRESS/PREFIX), in this network namespace.

    Args:
        targets: the interface index and the address with its prefix length.
        timeout_s: how long to wait for the kernel's answers.

    Returns:
        Per target, in order: 0 if it was deleted, else the errno (one of
        `ABSENT` when the address was not there).

    Raises:
        OSError: the socket could not be opened, or the kernel did not answer
            within `timeout_s` (TimeoutError).
    """
    if not targets:
        return []
    kind = socket.SOCK_RAW | socket.SOCK_CLOEXEC
    with socket.socket(socket.AF_NETLINK, kind, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout_s)
        sock.bind((0, 0))
        sock.sendto(
            b"".join(_request(seq, index, address) for seq, (index, address) in enumerate(targets)),
            (0, 0),
        )
        outcome: dict[int, int] = {}
        while len(outcome) < len(targets):
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_ERROR and length >= _NLMSGHDR.size + _ERROR.size:
                    (code,) = _ERROR.unpack_from(data, offset + _NLMSGHDR.size)
                    outcome[seq] = -code
                offset += max((length + 3) & ~3, _NLMSGHDR.size)
    return [outcome[seq] for seq in range(len(targets))]
