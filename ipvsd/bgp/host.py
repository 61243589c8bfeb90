"""What the director's host must have for BGP mode: set up where ipvsd can, warned about.

IPVS accepts a packet only for a local address, so every announced VIP must be
on an interface of the director (a dummy interface or ``lo``): `LocalVips` adds
the missing ones to ``bgp.vip_interface``. Linux answers ARP for any local
address on any interface, so without ``arp_ignore = 1`` the director answers
ARP for the VIP on its LAN, and without ``arp_announce = 2`` it may send ARP
requests from it (docs/bgp.md); those are host-wide settings of the operator's,
so `host_problems` only reports them. ``net.ipv4.vs.sloppy_tcp`` is IPVS's own
and BGP mode needs it (`enable_sloppy_tcp`): when ECMP moves a flow to another
director, that director sees its packets without a SYN, and IPVS schedules a
non-SYN packet only with sloppy_tcp; without it the director's own stack
answers RST (measured in UML, tests/kernel/test_bgp_lab.py).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from pathlib import Path
from typing import Protocol

import structlog

from ipvsd.bgp.birdconf import Prefix
from ipvsd.errors import IpvsdError

log = structlog.get_logger("ipvsd.bgp")

#: IPVS's sysctl for scheduling a TCP packet that is not a SYN.
SLOPPY_TCP = "net.ipv4.vs.sloppy_tcp"
#: Longest address label (IFNAMSIZ - 1), as `ipvsd.netlink.addresses` checks it.
_LABEL_MAX = 15

Vip = IPv4Interface | IPv6Interface

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


def enable_sloppy_tcp(proc: Path = Path("/proc/sys")) -> None:
    """Set ``net.ipv4.vs.sloppy_tcp = 1`` (this network namespace's); a warning if it fails."""
    path = proc / SLOPPY_TCP.replace(".", "/")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
            log.info("bgp.sysctl_set", name=SLOPPY_TCP, value=1)
    except OSError as exc:
        log.warning(
            "bgp.host_problem",
            problem=f"cannot set {SLOPPY_TCP} = 1 ({exc}): a flow that ECMP moves to this "
            "director is answered with RST instead of scheduled",
        )


class AddressWriter(Protocol):
    """The address adapter (`ipvsd.netlink.addresses.AddressManager`) as `LocalVips` uses it."""

    async def add(self, interface: str, vip: Vip, label: str) -> bool: ...

    async def remove(self, interface: str, vip: Vip) -> bool: ...

    def close(self) -> None: ...


class LocalVips:
    """Keeps each VIP a local address on one interface; takes back what it added.

    An address that was there before (the operator's, or left by a crashed
    ipvsd) is used as it is and never removed. What `ensure` added is removed
    by `release` (a graceful stop, or ``bgp.vip_interface`` set to null) and by
    `ensure` when a reload drops its VIP, so that a director left by ipvsd
    has the addresses it had before. After a crash they stay: harmless, since
    no route attracts their traffic and ARP for them is suppressed.

    Args:
        open_addresses: opens the address adapter (on first use).
        interface: ``bgp.vip_interface``; None: manage nothing.
    """

    def __init__(
        self, open_addresses: Callable[[], Awaitable[AddressWriter]], interface: str | None
    ) -> None:
        self._open = open_addresses
        self._writer: AddressWriter | None = None
        self.interface = interface
        self.added: dict[Vip, str] = {}  # VIP -> the interface it was added to

    async def ensure(self, prefixes: Iterable[Prefix], interface: str | None) -> None:
        """Add the missing ones of `prefixes` to `interface`; remove ours no longer wanted.

        Raises:
            IpvsdError: the interface does not exist, or the kernel refused.
        """
        wanted = {ip_interface(str(prefix)) for prefix in prefixes} if interface else set()
        for vip, where in list(self.added.items()):
            if vip not in wanted or where != interface:
                await self._remove(vip, where)
        self.interface = interface
        if interface is None:
            return
        label = f"{interface}:bgp" if len(interface) <= _LABEL_MAX - 4 else interface
        for vip in sorted(wanted - self.added.keys(), key=str):
            if _is_local_address(vip):
                continue
            writer = await self._writer_open()
            try:
                if await writer.add(interface, vip, label):
                    self.added[vip] = interface
            except (OSError, IpvsdError) as exc:
                msg = f"bgp.vip_interface: cannot add {vip} to {interface}: {exc}"
                raise IpvsdError(msg) from exc

    async def release(self) -> None:
        """Remove the addresses `ensure` added (errors are logged) and close the adapter."""
        for vip, where in list(self.added.items()):
            try:
                await self._remove(vip, where)
            except (OSError, IpvsdError) as exc:
                log.warning("bgp.vip_remove_failed", vip=str(vip), error=str(exc))
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _remove(self, vip: Vip, interface: str) -> None:
        del self.added[vip]
        await (await self._writer_open()).remove(interface, vip)

    async def _writer_open(self) -> AddressWriter:
        if self._writer is None:
            self._writer = await self._open()
        return self._writer


def _is_local_address(vip: Vip) -> bool:
    return _is_local(vip.network)
