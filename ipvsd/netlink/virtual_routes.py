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
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

import structlog

from ipvsd.netlink.rtnl import RtnlClient, get_link, kernel_error

__all__ = ["RouteEntry", "RouteManager", "RuleEntry"]

log = structlog.get_logger("ipvsd.netlink.virtual_routes")

_ABSENT = (errno.ESRCH, errno.ENOENT)


class RouteEntry(Protocol):
    """A route as the config gives it (``ipvsd.config.model.VirtualRoute``)."""

    @property
    def to(self) -> IPv4Network: ...
    @property
    def via(self) -> IPv4Address | None: ...
    @property
    def dev(self) -> str | None: ...
    @property
    def src(self) -> IPv4Address | None: ...
    @property
    def table(self) -> int | None: ...
    @property
    def metric(self) -> int | None: ...


class RuleEntry(Protocol):
    """A policy rule as the config gives it (``ipvsd.config.model.VirtualRule``)."""

    @property
    def from_(self) -> IPv4Network | None: ...
    @property
    def to(self) -> IPv4Network | None: ...
    @property
    def table(self) -> int: ...
    @property
    def priority(self) -> int | None: ...


class RouteManager(RtnlClient):
    """Adds and removes routes and policy rules. Use `open()`."""

    async def add_route(self, route: RouteEntry) -> bool:
        """Add `route`; False if it was there already.

        Raises:
            KernelError: no such ``dev``, or the kernel refused (no route to ``via``,
                ``src`` not local ...).
        """
        return await self._request(
            "route", "add", _describe_route(route), lambda: self._send_route("add", route)
        )

    async def remove_route(self, route: RouteEntry) -> bool:
        """Remove `route`; False if it was not there.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request(
            "route", "del", _describe_route(route), lambda: self._send_route("del", route)
        )

    async def add_rule(self, rule: RuleEntry) -> bool:
        """Add `rule`; False if the same rule was there already.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request(
            "rule", "add", _describe_rule(rule), lambda: self._ipr.rule("add", **_rule_args(rule))
        )

    async def remove_rule(self, rule: RuleEntry) -> bool:
        """Remove `rule` (the first one that matches); False if none did.

        Raises:
            KernelError: the kernel refused.
        """
        return await self._request(
            "rule", "del", _describe_rule(rule), lambda: self._ipr.rule("del", **_rule_args(rule))
        )

    async def _send_route(self, command: str, route: RouteEntry) -> None:
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
        await self._ipr.route(command, **args)

    async def _request(
        self, kind: str, command: str, described: str, send: Callable[[], Awaitable[Any]]
    ) -> bool:
        """`send` under the lock; EEXIST on add and ESRCH/ENOENT on del mean "already so"."""
        from pyroute2.netlink.exceptions import NetlinkError

        what = f"{command} {kind} {described}"
        async with self._lock:
            try:
                await send()
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


def _rule_args(rule: RuleEntry) -> dict[str, Any]:
    args: dict[str, Any] = {"table": rule.table}
    if rule.from_ is not None:
        args.update(src=str(rule.from_.network_address), src_len=rule.from_.prefixlen)
    if rule.to is not None:
        args.update(dst=str(rule.to.network_address), dst_len=rule.to.prefixlen)
    if rule.priority is not None:
        args["priority"] = rule.priority
    return args


def _describe_route(route: RouteEntry) -> str:
    """``to 10.1.0.0/16 via 192.168.1.1 table 100``: the ``ip route`` words."""
    return _words(
        ("to", route.to),
        ("via", route.via),
        ("dev", route.dev),
        ("src", route.src),
        ("table", route.table),
        ("metric", route.metric),
    )


def _describe_rule(rule: RuleEntry) -> str:
    """``from 10.0.0.1/32 table 100``: the ``ip rule`` words."""
    return _words(
        ("from", rule.from_), ("to", rule.to), ("table", rule.table), ("priority", rule.priority)
    )


def _words(*words: tuple[str, object]) -> str:
    return " ".join(f"{key} {value}" for key, value in words if value is not None)
