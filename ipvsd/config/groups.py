"""Service groups: one configured service standing for several kernel services. Pure.

keepalived's ``virtual_server_group`` lets one ``virtual_server`` block (its
scheduler, reals and checks) apply to many addresses; it makes one IPVS
service per member and checks each real once for all of them. ipvsd's
``ipvs.service_groups: [{name, members}]`` and a service's ``group: NAME``
do the same:

1. A member is ``ADDRESS:PORT`` (IPv6 in brackets), ``A.B.C.D-E:PORT`` (the
   last octet from D to E, as keepalived writes ``10.0.0.1-10 80``) or
   ``fwmark:N`` (``fwmark:N/ipv6`` for an IPv6 fwmark service).
2. Loading a config *expands* each service with ``group`` into one service
   per member address, in member order, each with the member's address and
   port (or fwmark) and everything else of the service, ``group`` included.
   So every part of ipvsd that reads ``ipvs.services`` (the desired table,
   status, drains, metrics) sees plain services.
3. The expanded services of one configured service share its checks
   (`ipvsd.health.manager`): real *i* of every member is checked through
   real *i* of the first member, so a real of a group of 40 addresses gets
   one check, not 40. A real with port 0 is checked at the first member's port.
4. Each member service has its own quorum (a drain is per member), but the
   ``quorum_up`` / ``quorum_down`` commands run once for the group: on the
   first member's transitions (keepalived runs them per virtual_server).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from ipvsd.model import Family, IPAddress, parse_endpoint

RANGE_MAX = 256
"""Addresses one range member stands for, at most (the last octet's values)."""


@dataclass(frozen=True, slots=True)
class Member:
    """One parsed member: its addresses and port, or a fwmark.

    Attributes:
        addresses: the member's addresses (several for a range); empty for a fwmark.
        port: their port (0 for a fwmark).
        fwmark: the mark, or None.
        family: the fwmark's family (address members: their address's).
    """

    addresses: tuple[IPAddress, ...] = ()
    port: int = 0
    fwmark: int | None = None
    family: Family = Family.INET

    def endpoints(self) -> Iterator[tuple[IPAddress | None, int, int | None]]:
        """(address, port, fwmark) of each kernel service this member stands for."""
        if self.fwmark is not None:
            yield None, 0, self.fwmark
            return
        for address in self.addresses:
            yield address, self.port, None


def parse_member(text: str) -> Member:
    """Parse one ``members`` entry (module docstring, Rule 1).

    Raises:
        ValueError: with a message for the config error.
    """
    if text.startswith("fwmark:"):
        mark, _, family = text.removeprefix("fwmark:").partition("/")
        if not mark.isdigit() or not 0 < int(mark) < 2**32:
            raise ValueError(f"'{text}': the fwmark must be 1..4294967295")
        if family not in ("", "ipv4", "ipv6"):
            raise ValueError(f"'{text}': the family after '/' must be ipv4 or ipv6")
        return Member(fwmark=int(mark), family=Family.INET6 if family == "ipv6" else Family.INET)
    host, sep, port_text = text.rpartition(":")
    first, dash, last = host.partition("-")
    if sep and dash and not host.startswith("["):
        return _range(text, first, last, port_text)
    try:
        address, port = parse_endpoint(text)
    except ValueError:
        raise ValueError(
            f"'{text}' is not ADDRESS:PORT, A.B.C.D-E:PORT or fwmark:N (IPv6 in brackets)"
        ) from None
    if port == 0:
        raise ValueError(f"'{text}': the port must be 1..65535")
    return Member((address,), port)


def _range(text: str, first: str, last: str, port_text: str) -> Member:
    """``A.B.C.D-E:PORT``: the last octet from D to E."""
    try:
        start = IPv4Address(first)
    except ValueError:
        raise ValueError(f"'{text}': a range starts with an IPv4 address") from None
    low = int(start) & 0xFF
    if not last.isdigit() or not low <= int(last) <= 255:
        raise ValueError(f"'{text}': the range's end must be a last octet from {low} to 255")
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"'{text}': the port must be 1..65535")
    base = int(start) - low
    addresses = tuple(IPv4Address(base + octet) for octet in range(low, int(last) + 1))
    return Member(addresses, int(port_text))
