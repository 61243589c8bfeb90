"""What the director's host must have for BGP mode, checked and warned about, not changed.

IPVS accepts a packet only for a local address, so every announced VIP must be
on an interface of the director (a dummy interface or ``lo``); and Linux
answers ARP for any local address on any interface, so without
``arp_ignore = 1`` the director answers ARP for the VIP on its LAN, and
without ``arp_announce = 2`` it may send ARP requests from it (docs/bgp.md).
These are the operator's settings (ipvsd changes no sysctl of the host), so
`host_problems` only reports what is missing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from ipvsd.bgp.birdconf import Prefix

#: (sysctl, least value, why) for IPv4 VIPs.
ARP_SYSCTLS = (
    ("net.ipv4.conf.all.arp_ignore", 1, "the director would answer ARP for its VIPs"),
    ("net.ipv4.conf.all.arp_announce", 2, "ARP requests may carry a VIP as their source"),
)


def _sysctl(name: str, proc: Path) -> int | None:
    try:
        return int((proc / name.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_local(prefix: Prefix) -> bool:
    """Whether the VIP is an address of this host: binding to it works (no IP_FREEBIND)."""
    family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(prefix.network_address), 0))
        except OSError:
            return False
    return True


def host_problems(prefixes: Iterable[Prefix], proc: Path = Path("/proc/sys")) -> list[str]:
    """One sentence per thing the host lacks for announcing `prefixes`."""
    prefixes = list(prefixes)
    problems = [
        f"VIP {prefix.network_address} is not an address of this host: IPVS will not accept "
        "its packets (add it to a dummy interface or lo, see docs/bgp.md)"
        for prefix in prefixes
        if not _is_local(prefix)
    ]
    if any(prefix.version == 4 for prefix in prefixes):
        for name, least, why in ARP_SYSCTLS:
            value = _sysctl(name, proc)
            if value is not None and value < least:
                problems.append(f"{name} is {value}, not {least}: {why}")
    return problems
