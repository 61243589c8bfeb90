"""What the daemon is given to reach the kernel: Protocols and the real factories.

`Daemon` opens every kernel connection through a `KernelPorts` value. In
production that is `real_ports()` (raw rtnetlink, pyroute2 for routes and
vmacs, and our IPVS codec); in-process tests pass fakes — an in-memory IPVS table with the
kernel's semantics, an address manager that only records — so reload, drains,
``max_deletes`` and ``cleanup_on_exit`` are tested in milliseconds without
User-Mode Linux, and the kernel tier proves the real adapters.

The Protocols name only what the daemon and its components call, so a fake
needs nothing more (style G8: a `typing.Protocol` for every injected edge).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ipvsd.config import Config
from ipvsd.config.model import VirtualRoute, VirtualRule
from ipvsd.ipvs.plan import ApplyResult, Operation
from ipvsd.ipvs.sync_daemon import SyncDaemonBackend
from ipvsd.model import Table
from ipvsd.netlink import nftables, routes
from ipvsd.netlink.addresses import AddressManager
from ipvsd.netlink.links import LinkWatcher
from ipvsd.netlink.virtual_routes import RouteManager
from ipvsd.netlink.vmac import VmacManager
from ipvsd.vrrp.ports import LinkSource, RouteWriter, VipWriter, VmacWriter

if TYPE_CHECKING:
    from ipvsd.netlink.ipvs import Timeouts


class IpvsKernel(SyncDaemonBackend, Protocol):
    """The IPVS side of the kernel: what the reconciler, the sync controller,
    the status view and the scrape use (`ipvsd.netlink.ipvs.IpvsClient`)."""

    async def dump(self, *, with_stats: bool = True) -> Table:
        """Every service and dest, with counters unless `with_stats` is False."""
        ...

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        """Send the operations in order; report which ones the kernel refused."""
        ...

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """Set the tcp / tcpfin / udp connection timeouts (0 keeps one as it is)."""
        ...


class TableReader(Protocol):
    """A blocking read of the IPVS table for the /metrics thread
    (`ipvsd.netlink.table_reader.BlockingTableReader`)."""

    def dump(self) -> Table:
        """Every service and dest, with counters; blocks the calling thread."""
        ...

    def close(self) -> None:
        """Release the netlink socket."""
        ...


class Addresses(VipWriter, Protocol):
    """VIP writes as the daemon holds them: the VRRP side's needs, plus `close`."""

    def close(self) -> None:
        """Release the netlink socket."""
        ...


class Routes(RouteWriter, Protocol):
    """The instances' ``virtual_routes`` / ``virtual_rules`` writer, plus `close`."""

    def close(self) -> None:
        """Release the netlink socket."""
        ...


async def open_routes() -> Routes:
    """The production route writer (rtnetlink), opened at its first use."""
    return _LazyRoutes(RouteManager.open)


class Vmacs(VmacWriter, Protocol):
    """The vmac interfaces' writer, plus `close`."""

    def close(self) -> None:
        """Release the netlink socket."""
        ...


async def open_vmacs() -> Vmacs:
    """The production vmac writer (rtnetlink and /proc/sys), opened at its first use."""
    return _LazyVmacs(VmacManager.open)


_Writer = TypeVar("_Writer", Routes, Vmacs)


class _OnFirstUse(Generic[_Writer]):
    """Opens its writer at the first call: most instances have no ``virtual_routes``
    and no vmac, and the writers' pyroute2 import is ~100 ms of a VRRP start
    (issue 14: BACKUP within 150 ms of exec)."""

    def __init__(self, opener: Callable[[], Awaitable[_Writer]]) -> None:
        self._opener: Callable[[], Awaitable[_Writer]] = opener
        self._writer: _Writer | None = None
        self._opening = asyncio.Lock()  # two first calls at once open one writer
        self._closed = False

    async def writer(self) -> _Writer:
        async with self._opening:
            if self._writer is None:
                self._writer = await self._opener()
                if self._closed:  # closed while it was being opened
                    self._writer.close()
        return self._writer

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()


class _LazyRoutes(_OnFirstUse[Routes]):
    async def add_route(self, route: VirtualRoute) -> bool:
        return await (await self.writer()).add_route(route)

    async def remove_route(self, route: VirtualRoute) -> bool:
        return await (await self.writer()).remove_route(route)

    async def add_rule(self, rule: VirtualRule) -> bool:
        return await (await self.writer()).add_rule(rule)

    async def remove_rule(self, rule: VirtualRule) -> bool:
        return await (await self.writer()).remove_rule(rule)


class _LazyVmacs(_OnFirstUse[Vmacs]):
    async def ensure(self, parent: str, name: str, mac: str) -> bool:
        return await (await self.writer()).ensure(parent, name, mac)

    async def remove(self, parent: str, name: str) -> bool:
        return await (await self.writer()).remove(parent, name)


class Links(LinkSource, Protocol):
    """The link watch as the daemon holds it: the VRRP side's needs, plus `close`."""

    def close(self) -> None:
        """Release the netlink sockets (ends the watch)."""
        ...


@dataclass(frozen=True, slots=True)
class KernelPorts:
    """The factories the daemon opens its kernel connections with.

    Attributes:
        open_ipvs: a new IPVS connection; raises `IpvsUnavailable` when the
            kernel has no IPVS. Called for the reconciler and the sync
            controller (one connection each, so none waits behind another).
        open_table_reader: the scrape's own blocking IPVS connection, read
            from the /metrics thread; raises `IpvsUnavailable` like `open_ipvs`.
        check_routes: warns about reals reached only through a VIP (reads the
            routing table); called at start and after every reload.
        open_addresses: the VIP writer the VRRP instances share.
        open_links: the link watcher the VRRP instances share.
        interface_exists: whether this network namespace has an interface of
            that name (the reload policy's preflight).
        open_routes: the route and rule writer the VRRP instances share.
        open_vmacs: the vmac writer of the VRRP instances.
        write_accept: makes the kernel drop what is addressed to these VIPs
            (``accept_mode: false``, `ipvsd.netlink.nftables.apply`).
    """

    open_ipvs: Callable[[], Awaitable[IpvsKernel]]
    open_table_reader: Callable[[], Coroutine[Any, Any, TableReader]]
    check_routes: Callable[[Config], Coroutine[Any, Any, None]]
    open_addresses: Callable[[], Awaitable[Addresses]]
    open_links: Callable[[], Awaitable[Links]]
    interface_exists: Callable[[str], Awaitable[bool]]
    open_routes: Callable[[], Awaitable[Routes]] = open_routes
    open_vmacs: Callable[[], Awaitable[Vmacs]] = open_vmacs
    write_accept: Callable[[frozenset[IPv4Address | IPv6Address]], None] = nftables.apply


def real_ports() -> KernelPorts:
    """The production ports: netlink to this host's kernel."""

    # The IPVS client is imported when first opened: a pure VRRP daemon never needs it.
    async def open_ipvs() -> IpvsKernel:
        from ipvsd.netlink.ipvs import IpvsClient

        return await IpvsClient.open()

    async def open_table_reader() -> TableReader:
        from ipvsd.netlink.table_reader import DUMP_TIMEOUT_S, BlockingTableReader

        return await BlockingTableReader.open(timeout_s=DUMP_TIMEOUT_S)

    async def open_addresses() -> Addresses:
        return await AddressManager.open()

    async def open_links() -> Links:
        return await LinkWatcher.open()

    return KernelPorts(
        open_ipvs=open_ipvs,
        open_table_reader=open_table_reader,
        check_routes=warn_reals_behind_vips,
        open_addresses=open_addresses,
        open_links=open_links,
        interface_exists=interface_exists,
    )


async def interface_exists(name: str) -> bool:
    """Whether this network namespace has an interface called `name` (one ioctl)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


async def warn_reals_behind_vips(config: Config) -> None:
    """design.md's pitfall: a real this director reaches only through a VRRP address."""
    reals = [real.address for service in config.ipvs.services for real in service.reals]
    vips = {
        vip.ip
        for i in config.vrrp.instances
        for vip in (*i.virtual_ipaddresses, *i.virtual_ipaddresses_excluded)
    }
    await routes.warn_reals_behind_vips(reals, vips)
