"""FakeHost and FakeWire: the kernel edges of `VrrpRouter` / `VrrpInstance`, simulated.

`FakeHost` is one network namespace as the VRRP ports see it (`VipWriter`
and `LinkSource`): links by name, addresses of both families per link (the
first non-VIP IPv4 one is primary; the first link-local IPv6 one that is not
`tentative` is the IPv6 source), and a change stream for `watch` fed by the test's
own edits (`add_link`, `add_address`, ...), so the stream follows the state.
`fail_add` makes VIP writes on an interface raise an error no runner expects (a bug, or the
kernel saying something new).

`FakeWire` opens fake advert sockets and GARP senders for an
`InterfaceEndpoint` of either family: each knows its ifindex, records what it sent, and
receives what the test `deliver`s (or raises what it `break_receiver`s).
"""

from __future__ import annotations

import asyncio
import errno
import functools
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from typing import Any

from ipvsd.errors import KernelError
from ipvsd.netlink.links import AddressChange, LinkInfo
from ipvsd.vrrp.relink import Family, InterfaceEndpoint
from ipvsd.vrrp.transport import ReceivedPacket
from ipvsd.vrrp.transport6 import ReceivedPacket6

Change = LinkInfo | AddressChange
Vip = IPv4Interface | IPv6Interface


class FakeHost:
    """Links and addresses of one namespace, with their change stream."""

    def __init__(self) -> None:
        self.links: dict[str, LinkInfo] = {}
        self.addresses: dict[str, list[Vip]] = {}
        #: IPv6 addresses still in duplicate address detection (not a source yet).
        self.tentative: set[IPv6Interface] = set()
        self._vips: dict[str, set[Vip]] = {}
        #: Interface -> the error every VIP add on it raises.
        self.fail_add: dict[str, Exception] = {}
        #: Every VIP write that changed something: ("add" | "remove", interface, vip).
        self.log: list[tuple[str, str, Vip]] = []
        #: (interface, vip) -> (label, scope, broadcast) of its last add.
        self.labels: dict[tuple[str, Vip], tuple[str, int, IPv4Address | None]] = {}
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

    def delete_link(self, name: str) -> None:
        """The interface goes, with its addresses and VIPs (``ip link del``)."""
        info = self.links.pop(name)
        self.addresses.pop(name, None)
        self._vips.pop(name, None)
        self._changes.put_nowait(replace(info, up=False, admin_up=False, deleted=True))

    def add_address(self, name: str, address: str, *, tentative: bool = False) -> None:
        """Add an address; `tentative`: an IPv6 one still in DAD (`dad_done` ends it)."""
        ip = ip_interface(address)
        self.addresses[name].append(ip)
        if tentative and isinstance(ip, IPv6Interface):
            self.tentative.add(ip)
        self._changes.put_nowait(AddressChange(self.links[name].index, ip))

    def dad_done(self, name: str, address: str) -> None:
        """DAD of a tentative address finished: the kernel reports it again (RTM_NEWADDR)."""
        ip = IPv6Interface(address)
        self.tentative.discard(ip)
        self._changes.put_nowait(AddressChange(self.links[name].index, ip))

    def remove_address(self, name: str, address: str) -> None:
        ip = ip_interface(address)
        self.addresses[name].remove(ip)
        self._changes.put_nowait(AddressChange(self.links[name].index, ip, deleted=True))

    def break_watch(self, exc: Exception) -> None:
        """The next read of the change stream fails with `exc`."""
        self._changes.put_nowait(exc)

    def vips(self, name: str = "eth1") -> set[Vip]:
        """Addresses on `name` that carry a VRRP label."""
        return set(self._vips.get(name, ()))

    # --- VipWriter -------------------------------------------------------------------

    async def add(
        self,
        interface: str,
        vip: Vip,
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

    async def remove(self, interface: str, vip: Vip) -> bool:
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
            if isinstance(address, IPv4Interface) and address.ip not in exclude:
                return address.ip
        return None

    async def link_local_ipv6(self, interface: str) -> IPv6Address | None:
        self._link(interface)
        for address in self.addresses[interface]:
            if (
                isinstance(address, IPv6Interface)
                and address.ip.is_link_local
                and address not in self.tentative
            ):
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

    def _held(self, interface: str) -> set[Vip]:
        return self._vips.setdefault(interface, set())


@dataclass(eq=False)
class FakeSocket:
    interface: str
    ifindex: int
    unicast: bool
    closed: bool = False
    family: Family = "ipv4"
    source: IPv4Address | IPv6Address | None = None
    sent: list[tuple[bytes, IPv4Address | IPv6Address]] = field(default_factory=list)
    inbox: asyncio.Queue[ReceivedPacket | ReceivedPacket6 | Exception] = field(
        default_factory=asyncio.Queue
    )

    def bind_source(self, ip: IPv4Address | IPv6Address | None) -> None:
        self.source = ip

    def send(self, payload: bytes, dst: IPv4Address | IPv6Address) -> bool:
        assert not self.closed, "send on a closed socket"
        self.sent.append((payload, dst))
        return True

    def priorities(self) -> list[int]:
        return [payload[2] for payload, _ in self.sent]

    async def packets(self) -> AsyncIterator[ReceivedPacket | ReceivedPacket6]:
        while not self.closed:
            item = await self.inbox.get()
            if isinstance(item, Exception):
                if self.closed:
                    return  # as VrrpSocket.packets: a closed socket just ends
                raise item
            yield item

    def pending(self) -> list[ReceivedPacket | ReceivedPacket6]:
        """As `AdvertSocket.pending`: what is queued, without waiting."""
        queued: list[ReceivedPacket | ReceivedPacket6] = []
        while not self.closed and not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, Exception):
                break
            queued.append(item)
        return queued

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

    def endpoint(self, interface: str, *, family: Family = "ipv4") -> InterfaceEndpoint:
        return InterfaceEndpoint(
            interface,
            family=family,
            advert_opener=functools.partial(self.open_advert, family=family),
            garp_opener=self.open_garp,
        )

    def open_advert(self, interface: str, *, unicast: bool = False, family: Family = "ipv4") -> Any:
        sock = FakeSocket(interface, self.host._link(interface).index, unicast, family=family)
        self.adverts.append(sock)
        return sock

    def open_garp(self, interface: str) -> Any:
        garp = FakeGarp(interface, self.host._link(interface).index)
        self.garps.append(garp)
        return garp

    def open_sockets(self, interface: str = "eth1", family: Family = "ipv4") -> list[FakeSocket]:
        return [
            s
            for s in self.adverts
            if s.interface == interface and s.family == family and not s.closed
        ]

    def sent(self, interface: str = "eth1") -> list[int]:
        """Priorities of every advert sent on `interface`, on any socket, in order."""
        return [p for s in self.adverts if s.interface == interface for p in s.priorities()]
