"""What the VRRP runners need from the kernel's addresses and links, as Protocols.

`VrrpRouter` and `VrrpInstance` are typed by these, not by the rtnetlink
adapters, so that tests can hand them fakes (httpx's ``Transport``, style G6).
The daemon passes `ipvsd.netlink.addresses.AddressManager` and
`ipvsd.netlink.links.LinkWatcher`. Only the calls VRRP makes are listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Protocol

from ipvsd.config.model import VirtualRoute, VirtualRule
from ipvsd.netlink.links import AddressChange, LinkInfo

__all__ = ["AddressChange", "LinkInfo", "LinkSource", "RouteWriter", "VipWriter", "VmacWriter"]


class VipWriter(Protocol):
    """Adds and removes VIPs of both families, and finds the VRRP source address."""

    async def add(
        self,
        interface: str,
        vip: IPv4Interface | IPv6Interface,
        label: str,
        *,
        scope: int = 0,
        broadcast: IPv4Address | None = None,
    ) -> bool:
        """Add ``vip`` with ``label``, ``scope`` (RT_SCOPE_*) and ``broadcast``; False if
        it was there already. An IPv6 VIP is added without DAD (``nodad``), and
        without label or broadcast.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or the kernel refused.
        """
        ...

    async def remove(self, interface: str, vip: IPv4Interface | IPv6Interface) -> bool:
        """Remove ``vip``; False if it was not there.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or the kernel refused.
        """
        ...

    async def primary_ipv4(
        self, interface: str, *, exclude: Collection[IPv4Address] = ()
    ) -> IPv4Address | None:
        """The interface's primary IPv4 address not in ``exclude`` (RFC 3768 §5.2.1).

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        ...

    async def link_local_ipv6(self, interface: str) -> IPv6Address | None:
        """The interface's link-local IPv6 address that has finished DAD (RFC 5798
        §5.1.2.1); None while there is none.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        ...


class RouteWriter(Protocol):
    """Adds and removes an instance's ``virtual_routes`` and ``virtual_rules``.

    Each call returns False when there was nothing to do (already there, already
    gone) and raises `KernelError` when the kernel refused.
    """

    async def add_route(self, route: VirtualRoute) -> bool: ...

    async def remove_route(self, route: VirtualRoute) -> bool: ...

    async def add_rule(self, rule: VirtualRule) -> bool: ...

    async def remove_rule(self, rule: VirtualRule) -> bool: ...


class VmacWriter(Protocol):
    """Makes and removes the vmac interfaces of ``vmac: true`` instances."""

    async def ensure(self, parent: str, name: str, mac: str) -> bool:
        """Make (or adopt) `name`, a macvlan of `parent` with address `mac`, up.

        Raises:
            KernelError: no `parent`, another interface called `name`, or the kernel refused.
        """
        ...

    async def remove(self, parent: str, name: str) -> bool:
        """Delete `name` (False: it was not there).

        Raises:
            KernelError: the kernel refused.
        """
        ...


class LinkSource(Protocol):
    """Reads and follows link state and addresses (FAULT, the advert source, and
    sockets re-bound on a new ifindex)."""

    async def link(self, interface: str) -> LinkInfo:
        """The current state of ``interface``.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or netlink failed.
        """
        ...

    def watch(self, known: Collection[LinkInfo] = ()) -> AsyncIterator[LinkInfo | AddressChange]:
        """Every link's state, then each change of a link or of an address (IPv4 or
        IPv6; an IPv6 address finishing DAD is reported again), until the source is
        closed.

        Args:
            known: the links as the caller last saw them (a restarted watch):
                those gone are reported deleted, and an `AddressChange` with
                address None per link says addresses may have changed meanwhile.

        Raises:
            KernelError: netlink failed (the caller restarts the watch).
        """
        ...
