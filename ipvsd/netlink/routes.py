"""Which reals this director reaches only through a VRRP address (design.md's pitfall).

When the route to a real goes through a gateway that is a virtual address,
only the MASTER holding that address forwards for it. On a BACKUP, health
checks to that real then travel through the master, and they fail in the very
seconds the master dies and this director takes over: measured with
keepalived, the new master removed every real (~2.3 s of refused connections
after a failover). The cure is an on-link route to the reals (or to the
directors' own addresses on the reals' side), so ipvsd warns at start and at
every reload.

The check reads the main routing table once (one rtnetlink dump) and matches
each real's address by longest prefix, as the kernel does for the main table.
Policy routing (``ip rule``) and other tables are not looked at: this is a
warning for a common mistake, not a routing engine.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import structlog

from ipvsd.errors import KernelError
from ipvsd.model import IPAddress

log = structlog.get_logger("ipvsd.netlink.routes")

_MAIN_TABLE = 254
_RTN_UNICAST = 1


@dataclass(frozen=True)
class Route:
    """A unicast route of the main table: its destination and next hops (none: on-link)."""

    destination: IPv4Network | IPv6Network
    gateways: tuple[IPAddress, ...]


@dataclass(frozen=True)
class RealBehindVip:
    """A real whose best route leaves only through virtual addresses."""

    real: IPAddress
    route: Route


def reals_behind_vips(
    routes: Iterable[Route], reals: Iterable[IPAddress], vips: Collection[IPAddress]
) -> list[RealBehindVip]:
    """The reals whose longest-prefix route has only VRRP addresses as next hops.

    Routes are indexed by (family, prefix length) and each real is looked up
    once per prefix length in use, longest first, so a director carrying a
    full routing table costs ~33 dict lookups per real, not a scan per real.
    Where several routes share a destination (other metrics), the real counts
    as behind a VIP only if all of them are.

    Args:
        routes: the main table's unicast routes.
        reals: real-server addresses (duplicates are checked once).
        vips: every virtual address of the config.

    Returns:
        One entry per such real, in address order.
    """
    index: dict[tuple[int, int], dict[int, list[Route]]] = {}
    suspicious = False
    for route in routes:
        net = route.destination
        index.setdefault((net.version, net.prefixlen), {}).setdefault(
            int(net.network_address), []
        ).append(route)
        suspicious = suspicious or _only_via(route, vips)
    if not suspicious:
        return []  # the usual case: no route at all points at a VIP
    lengths = sorted(index, key=lambda key: key[1], reverse=True)
    found = []
    for real in sorted(set(reals), key=lambda a: (a.version, a)):
        best = _longest_match(index, lengths, real)
        if best and all(_only_via(route, vips) for route in best):
            found.append(RealBehindVip(real, best[0]))
    return found


def _only_via(route: Route, vips: Collection[IPAddress]) -> bool:
    return bool(route.gateways) and all(g in vips for g in route.gateways)


def _longest_match(
    index: dict[tuple[int, int], dict[int, list[Route]]],
    lengths: list[tuple[int, int]],
    address: IPAddress,
) -> list[Route] | None:
    bits = address.max_prefixlen
    value = int(address)
    for version, prefixlen in lengths:
        if version != address.version:
            continue
        shift = bits - prefixlen
        match = index[version, prefixlen].get(value >> shift << shift)
        if match is not None:
            return match
    return None


async def main_routes() -> list[Route]:
    """The unicast routes of the main table, IPv4 and IPv6, from this namespace.

    Raises:
        KernelError: the dump failed.
    """
    from pyroute2 import AsyncIPRoute

    routes = []
    try:
        async with AsyncIPRoute() as ipr:
            async for msg in await ipr.get_routes(table=_MAIN_TABLE):
                route = _route(msg)
                if route is not None:
                    routes.append(route)
    except OSError as exc:
        raise KernelError(f"cannot read the routing table: {exc}", errno=exc.errno or 0) from exc
    return routes


def _route(msg: Any) -> Route | None:
    if msg.get("type") != _RTN_UNICAST:
        return None
    network = IPv4Network if msg.get("family") == socket.AF_INET else IPv6Network
    # No RTA_DST: a default route (the address part is 0).
    destination = network((msg.get_attr("RTA_DST") or 0, msg.get("dst_len")))
    gateway = msg.get_attr("RTA_GATEWAY")
    if gateway is not None:
        gateways: tuple[IPAddress, ...] = (ip_address(gateway),)
    else:
        hops = msg.get_attr("RTA_MULTIPATH") or []
        gateways = tuple(
            ip_address(g) for hop in hops if (g := hop.get_attr("RTA_GATEWAY")) is not None
        )
    return Route(destination, gateways)


async def warn_reals_behind_vips(reals: Iterable[IPAddress], vips: Collection[IPAddress]) -> int:
    """Log ``routing.real_behind_vip`` for each real reached only through a VIP.

    Never raises: a failed route dump is logged and counts as nothing found.

    Returns:
        How many reals were reported.
    """
    if not vips:
        return 0
    try:
        found = reals_behind_vips(await main_routes(), reals, vips)
    except KernelError as exc:
        log.warning("routing.check_failed", error=str(exc))
        return 0
    for entry in found:
        log.warning(
            "routing.real_behind_vip",
            real=str(entry.real),
            route=str(entry.route.destination),
            via=[str(g) for g in entry.route.gateways],
            hint="on a BACKUP its checks go through the MASTER and fail when it dies; "
            "give this director an on-link route to the real",
        )
    return len(found)
