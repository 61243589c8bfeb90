"""FakeHost and FakeWire: the kernel edges of `VrrpRouter` / `VrrpInstance`, simulated.

`FakeHost` is one network namespace as the VRRP ports see it (`VipWriter`
and `LinkSource`): links by name, IPv4 addresses per link (the first
non-VIP one is primary), and a change stream for `watch` fed by the test's
own edits (`add_link`, `add_address`, ...), so the stream follows the state.
`fail_add` makes VIP writes on an interface raise an error no runner expects (a bug, or the
kernel saying something new).

`FakeWire` opens fake advert sockets and GARP senders for an
`InterfaceEndpoint`: each knows its ifindex, records what it sent, and
receives what the test `deliver`s (or raises what it `break_receiver`s).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from ipvsd.errors import KernelError
from ipvsd.netlink.links import AddressChange, LinkInfo
from ipvsd.vrrp.relink import InterfaceEndpoint
from ipvsd.vrrp.transport import ReceivedPacket

Change = LinkInfo | AddressChange


class FakeHost:
    """Links and addresses of one namespace, with their change stream."""

    def __init__(self) -> None:
        self.links: dict[str, LinkInfo] = {}
        self.addresses: dict[str, list[IPv4Interface]] = {}
        self._vips: dict[str, set[IPv4Interface]] = {}
        #: Interface -> the error every VIP add on it raises.
        self.fail_add: dict[str, Exception] = {}
        #: Every VIP write that changed something: ("add" | "remove", interface, vip).
        self.log: list[tuple[str, str, IPv4Interface]] = []
        #: (interface, vip) -> (label, scope, broadcast) of its last add.
        self.labels: dict[tuple[str, IPv4Interface], tuple[str, int, IPv4Address | None]] = {}
        self.watch_starts = 0
        self._changes: asyncio.Queue[Change | Exception] = asyncio.Queue()
        self._next_index = 10

    # --- the test's edits ------------------------------------------------------------

    def add_link(self, name: str, *, up: bool = True, address: str | None = None) -> LinkInfo:
        self._next_index += 1
        info = LinkInfo(self._next_index, name, up=up, mac="02:00:00:00:00:01", admin_up=up)
        self.links[name] = info
        self.addresses.setdefault(name, [])
        self._changes.put_nowait(info)
        if address is not None:
            self.add_address(name, address)
        return info

    def add_address(self, name: str, address: str) -> None:
        ip = IPv4Interface(address)
        self.addresses[name].append(ip)
        self._changes.put_nowait(AddressChange(self.links[name].index, ip))

    def remove_address(self, name: str, address: str) -> None:
        ip = IPv4Interface(address)
        self.addresses[name].remove(ip)
        self._changes.put_nowait(AddressChange(self.links[name].index, ip, deleted=True))

    def break_watch(self, exc: Exception) -> None:
        """The next read of the change stream fails with `exc`."""
        self._changes.put_nowait(exc)

    def vips(self, name: str = "eth1") -> set[IPv4Interface]:
        """Addresses on `name` that carry a VRRP label."""
        return set(self._vips.get(name, ()))

    # --- VipWriter -------------------------------------------------------------------

    async def add(
        self,
        interface: str,
        vip: IPv4Interface,
        label: str,
        *,
        scope: int = 0,
        broadcast: IPv4Address | None = None,
    ) -> bool:
        self._link(interface)
        self.labels[interface, vip] = (label, scope, broadcast)
        if interface in self.fail_add:
            raise self.fail_add[interface]
        held = self._held(interface)
        if vip in held:
            return False
        held.add(vip)
        self.log.append(("add", interface, vip))
        self._changes.put_nowait(AddressChange(self.links[interface].index, vip))
        return True

    async def remove(self, interface: str, vip: IPv4Interface) -> bool:
        self._link(interface)
        held = self._held(interface)
        if vip not in held:
            return False
        held.discard(vip)
        self.log.append(("remove", interface, vip))
        self._changes.put_nowait(AddressChange(self.links[interface].index, vip, deleted=True))
        return True

    async def primary_ipv4(
        self, interface: str, *, exclude: Collection[IPv4Address] = ()
    ) -> IPv4Address | None:
        self._link(interface)
        for address in self.addresses[interface]:
            if address.ip not in exclude:
                return address.ip
        return None

    # --- LinkSource ------------------------------------------------------------------

    async def link(self, interface: str) -> LinkInfo:
        return self._link(interface)

    async def watch(self, known: Collection[LinkInfo] = ()) -> AsyncIterator[Change]:
        self.watch_starts += 1
        for info in self.links.values():
            yield info
        while True:
            change = await self._changes.get()
            if isinstance(change, Exception):
                raise change
            yield change

    # --- machinery -------------------------------------------------------------------

    def _link(self, interface: str) -> LinkInfo:
        if interface not in self.links:
            raise KernelError(f"no interface {interface!r}", errno=errno.ENODEV)
        return self.links[interface]

    def _held(self, interface: str) -> set[IPv4Interface]:
        return self._vips.setdefault(interface, set())


@dataclass(eq=False)
class FakeSocket:
    interface: str
    ifindex: int
    unicast: bool
    closed: bool = False
    source: IPv4Address | None = None
    sent: list[tuple[bytes, IPv4Address]] = field(default_factory=list)
    inbox: asyncio.Queue[ReceivedPacket | Exception] = field(default_factory=asyncio.Queue)

    def bind_source(self, ip: IPv4Address | None) -> None:
        self.source = ip

    def send(self, payload: bytes, dst: IPv4Address) -> bool:
        assert not self.closed, "send on a closed socket"
        self.sent.append((payload, dst))
        return True

    def priorities(self) -> list[int]:
        return [payload[2] for payload, _ in self.sent]

    async def packets(self) -> AsyncIterator[ReceivedPacket]:
        while not self.closed:
            item = await self.inbox.get()
            if isinstance(item, Exception):
                if self.closed:
                    return  # as VrrpSocket.packets: a closed socket just ends
                raise item
            yield item

    def close(self) -> None:
        self.closed = True
        self.inbox.put_nowait(KernelError("closed"))


@dataclass(eq=False)
class FakeGarp:
    interface: str
    ifindex: int
    closed: bool = False
    bursts: list[tuple[list[bytes], int]] = field(default_factory=list)

    def send_burst(self, frames: Sequence[bytes], count: int = 5) -> int:
        assert not self.closed, "send on a closed socket"
        self.bursts.append((list(frames), count))
        return len(frames) * count

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeWire:
    """Opens fake sockets on the host's interfaces (ENODEV for a missing one)."""

    host: FakeHost
    adverts: list[FakeSocket] = field(default_factory=list)
    garps: list[FakeGarp] = field(default_factory=list)

    def endpoint(self, interface: str) -> InterfaceEndpoint:
        return InterfaceEndpoint(
            interface, advert_opener=self.open_advert, garp_opener=self.open_garp
        )

    def open_advert(self, interface: str, *, unicast: bool = False) -> Any:
        sock = FakeSocket(interface, self.host._link(interface).index, unicast)
        self.adverts.append(sock)
        return sock

    def open_garp(self, interface: str) -> Any:
        garp = FakeGarp(interface, self.host._link(interface).index)
        self.garps.append(garp)
        return garp

    def open_sockets(self, interface: str = "eth1") -> list[FakeSocket]:
        return [s for s in self.adverts if s.interface == interface and not s.closed]

    def sent(self, interface: str = "eth1") -> list[int]:
        """Priorities of every advert sent on `interface`, on any socket, in order."""
        return [p for s in self.adverts if s.interface == interface for p in s.priorities()]
