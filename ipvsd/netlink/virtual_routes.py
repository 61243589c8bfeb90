"""A VRRP instance's routes and policy rules (``virtual_routes``, ``virtual_rules``) over rtnetlink.

keepalived adds them with the VIPs on becoming MASTER and removes them on
leaving it, so that traffic sourced from a VIP, or a network only the MASTER
should route, follows the VIP. This adapter writes them; `vrrp.instance`
decides when (after the VIPs on the way in: a route with ``src`` = a VIP is
refused while the VIP is absent; before them on the way out).

Like `addresses`, every request is idempotent because the runner repeats
them at each transition and at start: EEXIST on add and ESRCH/ENOENT on
delete mean "already so". Other refusals become `KernelError`; the caller
logs and counts them and goes on (a route is not worth a FAULT).

Requests go through one pyroute2 ``AsyncIPRoute`` in the namespace that was
current for the calling thread when `RouteManager.open` ran (see
`addresses`).
"""

from __future__ import annotations

import errno
from typing import Any

import structlog

from ipvsd.config.model import VirtualRoute, VirtualRule
from ipvsd.netlink.rtnl import RtnlClient, get_link, kernel_error

__all__ = ["RouteManager"]

log = structlog.get_logger("ipvsd.netlink.virtual_routes")

_ABSENT = (errno.ESRCH, errno.ENOENT)


class RouteManager(RtnlClient):
    """Adds and removes `VirtualRoute` / `VirtualRule` entries. Use `open()`."""

    async def _route_args(self, route: VirtualRoute) -> dict[str, Any]:
        args: dict[str, Any] = {"dst": str(route.to)}
        if route.via is not None:
            args["gateway"] = str(route.via)
        if route.dev is not None:
            args["oif"] = int((await get_link(self._ipr, route.dev))["index"])
        if route.src is not None:
            args["prefsrc"] = str(route.src)
        if route.table is not None:
            args["table"] = route.table
        if route.metric is not None:
            args["priority"] = route.metric
        return args

    async def add_route(self, route: VirtualRoute) -> bool:
        """Add `route`; False if it was there already.

        Raises:
            KernelError: no such ``dev``, or the kernel refused (no route to ``via``,
                ``src`` not local ...).
        """
        return await self._request("route", "add", route)

    async def remove_route(self, route: VirtualRoute) -> bool:
        """Remove `route`; False if it was not there.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request("route", "del", route)

    async def add_rule(self, rule: VirtualRule) -> bool:
        """Add `rule`; False if the same rule was there already.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request("rule", "add", rule)

    async def remove_rule(self, rule: VirtualRule) -> bool:
        """Remove `rule` (the first one that matches); False if none did.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request("rule", "del", rule)

    async def _request(self, kind: str, command: str, entry: VirtualRoute | VirtualRule) -> bool:
        from pyroute2.netlink.exceptions import NetlinkError

        what = f"{command} {kind} {_describe(entry)}"
        async with self._lock:
            try:
                if isinstance(entry, VirtualRoute):
                    await self._ipr.route(command, **await self._route_args(entry))
                else:
                    await self._ipr.rule(command, **_rule_args(entry))
            except NetlinkError as exc:
                if command == "add" and exc.code == errno.EEXIST:
                    return False
                if command == "del" and exc.code in _ABSENT:
                    return False
                raise kernel_error(exc, what) from exc
            except OSError as exc:
                raise kernel_error(exc, what) from exc
        log.info(f"netlink.{kind}_{'added' if command == 'add' else 'removed'}", entry=what)
        return True


def _rule_args(rule: VirtualRule) -> dict[str, Any]:
    args: dict[str, Any] = {"table": rule.table}
    if rule.from_ is not None:
        args.update(src=str(rule.from_.network_address), src_len=rule.from_.prefixlen)
    if rule.to is not None:
        args.update(dst=str(rule.to.network_address), dst_len=rule.to.prefixlen)
    if rule.priority is not None:
        args["priority"] = rule.priority
    return args


def _describe(entry: VirtualRoute | VirtualRule) -> str:
    """``to 10.1.0.0/16 via 192.168.1.1 table 100``: the ``ip route``/``ip rule`` words."""
    words: list[tuple[str, object]]
    if isinstance(entry, VirtualRoute):
        words = [("to", entry.to), ("via", entry.via), ("dev", entry.dev), ("src", entry.src)]
        words += [("table", entry.table), ("metric", entry.metric)]
    else:
        words = [("from", entry.from_), ("to", entry.to), ("table", entry.table)]
        words += [("priority", entry.priority)]
    return " ".join(f"{key} {value}" for key, value in words if value is not None)
