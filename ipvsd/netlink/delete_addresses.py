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
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv6Interface

from ipvsd.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RTM_DELADDR,
    address_request,
    error_of,
    messages,
)

__all__ = ["delete_addresses"]

#: Errors that mean "not there": nothing to delete.
ABSENT = frozenset({errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV})


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
            b"".join(
                address_request(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, index, address)
                for seq, (index, address) in enumerate(targets)
            ),
            (0, 0),
        )
        outcome: dict[int, int] = {}
        while len(outcome) < len(targets):
            for message in messages(sock.recv(65536)):
                if message.kind == NLMSG_ERROR:
                    outcome[message.seq] = error_of(message)[0]
    return [outcome[seq] for seq in range(len(targets))]
