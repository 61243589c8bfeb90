"""Interface addresses and link state over rtnetlink: the only place VIPs are written.

VRRP needs four things from the kernel's routing netlink, and this adapter
gives them typed (style G5: pyroute2 stays inside ``ipvsd/netlink/``, results
are frozen dataclasses, pyroute2's exceptions become `KernelError`):

* **VIPs** are ordinary interface addresses with a label
  (``ip addr add 10.0.0.100/24 dev eth1 label eth1:vrrp51``), as keepalived
  adds them. `add` and `remove` are idempotent, because the runner re-applies
  them at every transition and at startup (vrrp-notes §1.7: remove stale VIPs
  before entering Backup): EEXIST on add and EADDRNOTAVAIL on delete mean
  "already so".
* **The VRRP source address** is the interface's primary IPv4 address
  (RFC 3768 §5.2.1); the equal-priority tie-break compares it (§6.4.3).
  `primary_ipv4` skips secondary addresses and the caller's VIPs: a VIP in its
  own subnet (a /32, say) is not flagged secondary by the kernel.
* **Link state** for FAULT: `link` reads it and `watch_links` follows it from
  rtnetlink broadcasts (RTNLGRP_LINK), never by polling. A link counts as up
  when it is administratively up *and* RFC 2863 operationally up
  (``IFF_UP | IFF_RUNNING``), keepalived's ``FLAGS_UP``. Carrier
  (``IFF_LOWER_UP``) alone is not enough: right after ``ip link set up`` the
  kernel reports carrier before the link watcher has set the operstate to UP
  and activated the qdisc, and packets sent in between are dropped.

Requests go through pyroute2's ``AsyncIPRoute``. Link events are read from a
plain netlink socket of our own and decoded with pyroute2's parser: its async
socket queues broadcasts in memory without bound and its ``get()`` stops after
each datagram, whereas with our own socket the kernel buffer is the bound, old
events are drained before subscribing, and an overflow (ENOBUFS) is answered
with a fresh dump.

Sockets are created in `AddressManager.open` and stay in the network
namespace that was current *for the calling thread* then. pyroute2 keeps its
socket per thread, so use one manager from one thread (the event loop's).

Label rule: the kernel accepts any label of at most 15 bytes (IFNAMSIZ - 1;
longer ones fail policy validation with ERANGE). The rule that a label starts
with the interface name followed by ``:`` is iproute2's and the legacy alias
ioctls', and `add` enforces it so that ``ifconfig``-era tools and
``ip addr show label eth1:*`` keep working.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import structlog

from ipvsd.errors import KernelError

__all__ = ["IFNAMSIZ", "AddressManager", "LinkInfo", "vip_label"]

log = structlog.get_logger("ipvsd.netlink.addresses")

#: Longest interface name or address label, in bytes (the kernel's IFNAMSIZ minus the NUL).
IFNAMSIZ = 15

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
RTNLGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000
IFA_F_SECONDARY = 0x01
_EVENT_RCVBUF = 1 << 20
_RECV_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One network interface's identity and state.

    Attributes:
        index: the kernel's ifindex.
        name: the interface name.
        up: administratively up and operationally up (IFF_UP and IFF_RUNNING):
            VRRP may run on it. False means FAULT.
        mac: hardware address as ``aa:bb:cc:dd:ee:ff`` ("" when the link has none).
        admin_up: IFF_UP (``ip link set NAME up``).
        carrier: IFF_LOWER_UP (the driver sees a carrier).
        operstate: RFC 2863 state as the kernel names it (``UP``, ``DOWN``,
            ``LOWERLAYERDOWN``, ``UNKNOWN``...), for logs.
        deleted: the link was removed (from an RTM_DELLINK event).
        noarp: IFF_NOARP (``ip link set NAME arp off``): the link does no ARP,
            so VRRP sends it no gratuitous ARP either (the kernel's own
            ``arp_send`` returns early on such a device).
    """

    index: int
    name: str
    up: bool
    mac: str
    admin_up: bool = False
    carrier: bool = False
    operstate: str = ""
    deleted: bool = False
    noarp: bool = False


def vip_label(interface: str, vrid: int) -> str:
    """The address label for VRRP instance ``vrid``'s VIPs on ``interface``.

    ``eth1:vrrp51`` when it fits in 15 bytes, then shorter forms
    (``enp0s31f6:v51``, ``:51``), and the bare interface name (the kernel's
    default label) for a 13-15 character interface name.
    """
    for label in (f"{interface}:vrrp{vrid}", f"{interface}:v{vrid}", f"{interface}:{vrid}"):
        if len(label.encode()) <= IFNAMSIZ:
            return label
    return interface


def check_label(interface: str, label: str) -> None:
    """Refuse a label the tools would not show next to ``interface``.

    Raises:
        ValueError: longer than 15 bytes, or not ``interface`` / ``interface:...``.
    """
    if len(label.encode()) > IFNAMSIZ:
        raise ValueError(f"address label {label!r} is longer than {IFNAMSIZ} bytes")
    if label != interface and not label.startswith(f"{interface}:"):
        raise ValueError(
            f"address label {label!r} must be {interface!r} or start with '{interface}:'"
        )


def _kernel_error(exc: BaseException, what: str) -> KernelError:
    """Translate a pyroute2 NetlinkError or a socket OSError (style G5)."""
    code = int(getattr(exc, "code", 0) or getattr(exc, "errno", 0) or 0)
    # NetlinkError.args is (code, message); the message is the kernel's extended
    # ack text when there is one ("ipv4: Address already assigned").
    args: tuple[object, ...] = exc.args
    detail = os.strerror(code) if code else str(exc)
    if len(args) > 1 and args[1]:
        detail = str(args[1])
    if code == errno.EPERM:
        detail += " (needs CAP_NET_ADMIN)"
    return KernelError(f"{what}: {detail} (errno {code})", errno=code, operation=what)


def _link_info(msg: Any, *, deleted: bool = False) -> LinkInfo:
    """A LinkInfo from a pyroute2 ``ifinfmsg`` (RTM_NEWLINK / RTM_DELLINK)."""
    flags = int(msg["flags"])
    admin_up = bool(flags & IFF_UP)
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME") or ""),
        up=not deleted and admin_up and bool(flags & IFF_RUNNING),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        admin_up=admin_up,
        carrier=bool(flags & IFF_LOWER_UP),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or ""),
        deleted=deleted,
        noarp=bool(flags & IFF_NOARP),
    )


def _parse_links(data: bytes) -> Iterator[LinkInfo]:
    """LinkInfo records from one datagram of RTNLGRP_LINK broadcasts."""
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    for msg in MarshalRtnl().parse(data):
        kind = msg["header"]["type"]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            yield _link_info(msg, deleted=kind == RTM_DELLINK)


def _vanished(last: dict[int, LinkInfo], current: list[LinkInfo]) -> list[LinkInfo]:
    """Deletion records for links seen before a resync dump but absent from it."""
    present = {info.index for info in current}
    return [
        LinkInfo(info.index, info.name, up=False, mac=info.mac, deleted=True)
        for index, info in last.items()
        if index not in present
    ]


class AddressManager:
    """VIPs, primary addresses and link state of one network namespace. Use `open()`.

    Requests are serialised on one rtnetlink socket; link events arrive on a
    second socket, subscribed only while `watch_links` runs.
    """

    def __init__(self, ipr: Any, events: socket.socket) -> None:
        self._ipr = ipr
        self._events = events
        self._lock = asyncio.Lock()
        self._watching = False
        self._closed = False
        # While watch_links() waits: the loop holding our reader, and the waiter.
        self._reader: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    @classmethod
    async def open(cls) -> AddressManager:
        """Open the sockets in the calling thread's current network namespace.

        Raises:
            KernelError: the sockets could not be opened.
        """
        from pyroute2 import AsyncIPRoute

        events = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE
        )
        ipr = None
        try:
            events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _EVENT_RCVBUF)
            events.bind((0, 0))
            # groups=0: this socket only carries our requests, no broadcasts.
            ipr = AsyncIPRoute(groups=0, ext_ack=True)
            # pyroute2 creates its socket lazily; bind() creates it here, now.
            await ipr.bind(groups=0)
        except Exception as exc:
            events.close()
            if ipr is not None:
                ipr.close()
            raise _kernel_error(exc, "open rtnetlink sockets") from exc
        return cls(ipr, events)

    def close(self) -> None:
        """Close both sockets; a running `watch_links` iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        self._events.close()
        self._ipr.close()

    async def __aenter__(self) -> AddressManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- links ------------------------------------------------------------------------

    async def link(self, interface: str) -> LinkInfo:
        """The current state of ``interface``.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or netlink failed.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        async with self._lock:
            try:
                replies = await self._ipr.link("get", ifname=interface)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    raise KernelError(
                        f"no interface {interface!r}", errno=errno.ENODEV, operation="get link"
                    ) from None
                raise _kernel_error(exc, f"get link {interface!r}") from exc
            except OSError as exc:
                raise _kernel_error(exc, f"get link {interface!r}") from exc
        if not replies:
            raise KernelError(f"no interface {interface!r}", errno=errno.ENODEV)
        return _link_info(replies[0])

    async def links(self) -> list[LinkInfo]:
        """Every interface of the namespace."""
        async with self._lock:
            try:
                return [_link_info(msg) async for msg in await self._ipr.link("dump")]
            except Exception as exc:
                raise _kernel_error(exc, "dump links") from exc

    async def watch_links(self) -> AsyncIterator[LinkInfo]:
        """Follow link state: every link's current state first, then each change.

        Subscribing happens before the initial dump, so no change falls between
        the two. Records equal to the last one yielded for that ifindex are
        skipped (the kernel re-announces links for MTU, master or statistics
        changes). If the kernel drops events because the socket buffer
        overflowed (ENOBUFS), the current state is dumped again and the
        differences yielded, so the stream stays level-correct.

        The iteration ends when the manager is closed. One iteration at a time.

        Raises:
            RuntimeError: another `watch_links` iteration is running.
            KernelError: netlink failed.
        """
        if self._watching:
            raise RuntimeError("watch_links() is already running on this AddressManager")
        if self._closed:
            return
        self._watching = True
        last: dict[int, LinkInfo] = {}
        try:
            self._drain_events()
            self._membership(NETLINK_ADD_MEMBERSHIP)
            try:
                for info in await self.links():
                    last[info.index] = info
                    yield info
                while True:
                    received = await self._recv_links()
                    if received is None:
                        return
                    batch, resync = received
                    if resync:
                        batch = batch + _vanished(last, batch)
                    for info in batch:
                        if info.deleted:
                            last.pop(info.index, None)
                        elif last.get(info.index) == info:
                            continue
                        else:
                            last[info.index] = info
                        log.debug(
                            "netlink.link_changed",
                            interface=info.name,
                            up=info.up,
                            operstate=info.operstate,
                            deleted=info.deleted,
                        )
                        yield info
            finally:
                if not self._closed:
                    self._membership(NETLINK_DROP_MEMBERSHIP)
        finally:
            self._watching = False

    def _membership(self, option: int) -> None:
        try:
            self._events.setsockopt(SOL_NETLINK, option, RTNLGRP_LINK)
        except OSError as exc:
            raise _kernel_error(exc, "subscribe to link events") from exc

    def _drain_events(self) -> None:
        """Discard events queued by an earlier subscription."""
        while True:
            try:
                self._events.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise _kernel_error(exc, "read link events") from exc

    async def _recv_links(self) -> tuple[list[LinkInfo], bool] | None:
        """The next datagram's link records, or a full dump (flagged True) after
        lost events; None once closed."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                data = self._events.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                await self._readable(loop)
                continue
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise _kernel_error(exc, "read link events") from exc
                log.warning("netlink.link_events_lost", error="receive buffer overflow")
                return await self.links(), True
            return list(_parse_links(data)), False
        return None

    async def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the event socket is readable (or the manager is closed)."""
        waiter: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(self._events.fileno(), ready)
        self._reader = (loop, waiter)
        try:
            await waiter
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        # Unregister before the socket closes: a stale registration would make
        # the loop's selector refuse the next socket that reuses the fd number.
        if self._reader is None:
            return
        loop, waiter = self._reader
        self._reader = None
        loop.remove_reader(self._events.fileno())
        if not waiter.done():
            waiter.set_result(None)

    # --- addresses ----------------------------------------------------------------------

    async def _index(self, interface: str) -> int:
        return (await self.link(interface)).index

    async def _ipv4(self, index: int, interface: str) -> list[tuple[IPv4Interface, int, str]]:
        """(address/prefix, IFA flags, label) of each IPv4 address, in kernel order."""
        result = []
        async with self._lock:
            try:
                async for msg in await self._ipr.addr("dump", family=socket.AF_INET, index=index):
                    if msg["index"] != index:
                        continue
                    address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                    flags = msg.get_attr("IFA_FLAGS")
                    result.append(
                        (
                            IPv4Interface(f"{address}/{msg['prefixlen']}"),
                            int(msg["flags"] if flags is None else flags),
                            str(msg.get_attr("IFA_LABEL") or ""),
                        )
                    )
            except Exception as exc:
                raise _kernel_error(exc, f"dump addresses of {interface!r}") from exc
        return result

    async def add(self, interface: str, vip: IPv4Interface, label: str) -> bool:
        """Add ``vip`` to ``interface`` with ``label``; nothing if it is already there.

        Args:
            interface: e.g. ``eth1``.
            vip: address and prefix length, e.g. ``10.0.0.100/24``.
            label: e.g. ``eth1:vrrp51`` (see `vip_label`).

        Returns:
            True if the address was added, False if it was already present.

        Raises:
            ValueError: a label that is too long or not prefixed by ``interface``.
            KernelError: no such interface, or the kernel refused.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        check_label(interface, label)
        index = await self._index(interface)
        what = f"add {vip} to {interface!r}"
        async with self._lock:
            try:
                await self._ipr.addr(
                    "add",
                    index=index,
                    address=str(vip.ip),
                    prefixlen=vip.network.prefixlen,
                    label=label,
                )
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    return False
                raise _kernel_error(exc, what) from exc
            except OSError as exc:
                raise _kernel_error(exc, what) from exc
        log.info("netlink.vip_added", interface=interface, vip=str(vip), label=label)
        return True

    async def remove(self, interface: str, vip: IPv4Interface) -> bool:
        """Remove ``vip`` (address and prefix length) from ``interface``; nothing if absent.

        Returns:
            True if the address was removed, False if it was not there.

        Raises:
            KernelError: no such interface, or the kernel refused.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        index = await self._index(interface)
        what = f"remove {vip} from {interface!r}"
        async with self._lock:
            try:
                await self._ipr.addr(
                    "del", index=index, address=str(vip.ip), prefixlen=vip.network.prefixlen
                )
            except NetlinkError as exc:
                if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                    return False
                raise _kernel_error(exc, what) from exc
            except OSError as exc:
                raise _kernel_error(exc, what) from exc
        log.info("netlink.vip_removed", interface=interface, vip=str(vip))
        return True

    async def has(self, interface: str, vip: IPv4Interface) -> bool:
        """Whether ``interface`` carries ``vip`` with the same prefix length.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        return any(address == vip for address, _, _ in await self._ipv4(index, interface))

    async def primary_ipv4(
        self, interface: str, *, exclude: Collection[IPv4Address] = ()
    ) -> IPv4Address | None:
        """The interface's primary IPv4 address: the VRRP source (RFC 3768 §5.2.1).

        The first address the kernel lists that is not flagged secondary and is
        not in ``exclude``.

        Args:
            interface: e.g. ``eth1``.
            exclude: addresses never to pick; pass every VIP configured on the
                interface (a VIP in a subnet of its own is a kernel "primary").

        Returns:
            The address, or None when the interface has no suitable IPv4 address.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        skip = set(exclude)
        for address, flags, _ in await self._ipv4(index, interface):
            if not flags & IFA_F_SECONDARY and address.ip not in skip:
                return address.ip
        return None
