"""Kernel ports for running `Daemon` in-process (``ipvsd.daemon.ports``).

`FakeKernel` is the IPVS connection the daemon opens, over one shared
`FakeIpvs` table (so several opens — reconciler, scrape, sync controller —
see the same kernel, as on a real host). `FakePorts` counts the opens and can
be told that the kernel has no IPVS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipvsd.config import Config
from ipvsd.daemon.ports import IpvsKernel, KernelPorts, TableReader
from ipvsd.errors import IpvsUnavailable, NotFound
from ipvsd.ipvs.plan import ApplyResult, Operation
from ipvsd.model import Table
from ipvsd.netlink.ipvs import Timeouts
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState
from tests.fakes.ipvs import FakeIpvs


class FakeKernel:
    """One IPVS connection to the fake kernel."""

    def __init__(self, ipvs: FakeIpvs, shared: FakePorts) -> None:
        self._ipvs = ipvs
        self._shared = shared
        self.closed = False

    async def dump(self, *, with_stats: bool = True) -> Table:
        self._shared.connection_dumps += 1
        return await self._ipvs.dump()

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        return await self._ipvs.apply(operations)

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        self._shared.timeouts = timeouts

    async def sync_daemons(self) -> list[SyncDaemon]:
        return list(self._shared.sync_daemons.values())

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        self._shared.sync_daemons[daemon.state] = daemon

    async def stop_sync_daemon(self, state: SyncState) -> None:
        if self._shared.sync_daemons.pop(state, None) is None:
            raise NotFound(f"no {state.name.lower()} sync daemon", errno=3)

    def close(self) -> None:
        self.closed = True


class FakeTableReader:
    """The scrape's blocking reader. It reads the shared table on the loop that
    changes it: the fake's snapshot is not safe against a change from another thread."""

    def __init__(self, ipvs: FakeIpvs, loop: asyncio.AbstractEventLoop) -> None:
        self._ipvs = ipvs
        self._loop = loop
        self.closed = False

    def dump(self) -> Table:
        return asyncio.run_coroutine_threadsafe(self._ipvs.dump(), self._loop).result(timeout=10)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakePorts:
    """The daemon's kernel: one `FakeIpvs` table, opened as often as the daemon likes.

    Attributes:
        ipvs: the table every connection reads and writes.
        ipvs_available: False: every open raises `IpvsUnavailable` (a kernel without IPVS).
        opens_left: when set, that many more opens succeed, then IPVS is "unloaded".
    """

    ipvs: FakeIpvs = field(default_factory=FakeIpvs)
    ipvs_available: bool = True
    opens_left: int | None = None
    opened: list[FakeKernel] = field(default_factory=list)
    readers: list[FakeTableReader] = field(default_factory=list)
    connection_dumps: int = 0  # dumps through `open_ipvs` connections (not the readers')
    timeouts: Timeouts | None = None
    sync_daemons: dict[SyncState, SyncDaemon] = field(default_factory=dict)
    route_checks: list[Config] = field(default_factory=list)
    interfaces: set[str] = field(default_factory=lambda: {"lo", "eth1"})

    async def open_ipvs(self) -> IpvsKernel:
        if self.opens_left is not None:
            if self.opens_left == 0:
                self.ipvs_available = False
            self.opens_left -= 1
        if not self.ipvs_available:
            raise IpvsUnavailable()
        kernel = FakeKernel(self.ipvs, self)
        self.opened.append(kernel)
        return kernel

    async def open_table_reader(self) -> TableReader:
        if not self.ipvs_available:
            raise IpvsUnavailable()
        reader = FakeTableReader(self.ipvs, asyncio.get_running_loop())
        self.readers.append(reader)
        return reader

    def check_routes(self, config: Config) -> Coroutine[Any, Any, None]:
        async def check() -> None:
            self.route_checks.append(config)

        return check()

    async def no_vrrp(self) -> Any:
        # VRRP needs raw sockets on real interfaces: the netns tier runs it.
        raise AssertionError("in-process daemon tests configure no VRRP instance")

    async def interface_exists(self, name: str) -> bool:
        return name in self.interfaces

    def ports(self) -> KernelPorts:
        return KernelPorts(
            open_ipvs=self.open_ipvs,
            open_table_reader=self.open_table_reader,
            check_routes=self.check_routes,
            open_addresses=self.no_vrrp,
            open_links=self.no_vrrp,
            interface_exists=self.interface_exists,
        )
