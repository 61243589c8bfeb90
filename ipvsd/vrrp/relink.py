"""One interface's VRRP sockets, followed across deletion and re-creation.

Theory of operation
-------------------
The advert socket (`VrrpSocket`, `VrrpSocket6`) and the GARP sender
(`GarpSender`) belong to an *ifindex*, not to a name: SO_BINDTODEVICE, the
224.0.0.18 or ff02::12 membership and the AF_PACKET bind all resolve the name
once, when the socket is opened. When the interface is deleted and created
again under the same name (a VLAN or bond rebuilt by the network
configuration, ``ip link del eth1; ip link add eth1 ...``), the new link has a
new ifindex and the old sockets are dead: sends fail, nothing is received.
keepalived handles this in its netlink link filter (``vrrp_netlink.c``):
RTM_DELLINK updates the interface's flags to 0 (down, so its instances go to
FAULT); a new link carrying the name of a known interface is logged "Interface
%s added" and ``update_added_interface`` (``vrrp_if.c``) sets each instance on
it up again (``setup_interface``); the interface is marked down until the
kernel reports it up.

`InterfaceEndpoint` holds one interface's sockets of one family (one advert
socket per mode, multicast or unicast, plus the GARP sender), counts the
instances using each mode, and knows the ifindex they are bound to; an
interface with IPv4 and IPv6 instances has two endpoints, each followed alike.
`plan_relink` is the pure decision, taken for every link event of the
rtnetlink watcher:

* the bound ifindex was deleted, renamed away, or another ifindex now carries
  the name (we missed the deletion): **close** the sockets. The instances go
  to FAULT (the runner tells them the link is down while the sockets are
  closed), which resigns (the priority-0 advert is skipped: there is no
  socket) and removes the VIPs (gone with the interface anyway);
* a link of our name, with an ifindex we are not bound to, is up: **open**
  new sockets on it. Then the instances see the link up and leave FAULT as the
  machine says: BACKUP, and the election decides (keepalived does the same).

Opening can fail (the interface vanished again, a transient error): the
runner logs it, keeps the instances in FAULT and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ipvsd.netlink.links import LinkInfo
from ipvsd.vrrp.transport import GarpSender, VrrpSocket
from ipvsd.vrrp.transport6 import VrrpSocket6

__all__ = ["AnySocket", "EndpointKey", "Family", "InterfaceEndpoint", "RelinkPlan", "plan_relink"]

Family = Literal["ipv4", "ipv6"]
#: An advert socket of either family (an endpoint holds one family's).
AnySocket = VrrpSocket | VrrpSocket6
#: What names an endpoint: (interface, family). An IPv4 and an IPv6 virtual
#: router on one interface have sockets of their own (RFC 5798 §7.1 receives
#: them apart), and the GARP sender of each sends its family's frames.
EndpointKey = tuple[str, Family]
AdvertOpener = Callable[..., AnySocket]
GarpOpener = Callable[[str], GarpSender]
_OPENERS: dict[Family, AdvertOpener] = {"ipv4": VrrpSocket.open, "ipv6": VrrpSocket6.open}


@dataclass(frozen=True, slots=True)
class RelinkPlan:
    """What a link event means for one interface's sockets (`plan_relink`).

    Attributes:
        close: the ifindex the sockets are bound to is no longer our interface.
        open: our interface exists, up, at an ifindex we have no sockets on.
    """

    close: bool = False
    open: bool = False


def plan_relink(interface: str, bound: int | None, link: LinkInfo) -> RelinkPlan:
    """Decide from one link record whether ``interface``'s sockets must close or (re)open.

    Args:
        interface: the name the VRRP instances are configured with.
        bound: the ifindex the open sockets are bound to; None while closed.
        link: one record from `LinkWatcher.watch_links`.
    """
    ours = bound is not None and link.index == bound
    named = link.name == interface and not link.deleted
    # Our ifindex deleted or renamed away, or the name now on another ifindex.
    close = (ours and (link.deleted or link.name != interface)) or (
        bound is not None and named and not ours
    )
    return RelinkPlan(close=close, open=named and not ours and link.up)


class InterfaceEndpoint:
    """The VRRP sockets of one interface and family, shared by the instances running
    on it (`VrrpSocket` for IPv4, `VrrpSocket6` for IPv6).

    Sockets open at the first `acquire` of a mode and close at its last
    `release`. After `close_gone` (the interface disappeared) `advert` and
    `garp` return None until `reopen` succeeds; instances check for that and
    skip their sends.
    """

    def __init__(
        self,
        interface: str,
        *,
        family: Family = "ipv4",
        advert_opener: AdvertOpener | None = None,
        garp_opener: GarpOpener = GarpSender.open,
    ) -> None:
        self.interface = interface
        self.family: Family = family
        self._open_advert = advert_opener or _OPENERS[family]
        self._open_garp = garp_opener
        self._users: dict[bool, int] = {}
        self._adverts: dict[bool, AnySocket] = {}
        self._garp: GarpSender | None = None
        self._gone = False
        #: The ifindex the sockets are bound to; None while none are open.
        self.ifindex: int | None = None
        #: The ifindex the sockets had when the interface went away (for logs).
        self.last_ifindex: int | None = None

    @property
    def key(self) -> EndpointKey:
        return (self.interface, self.family)

    @property
    def gone(self) -> bool:
        """The interface disappeared and no sockets are open on its successor yet."""
        return self._gone

    @property
    def users(self) -> int:
        return sum(self._users.values())

    def sockets(self) -> list[AnySocket]:
        """The open advert sockets (each needs one reader task)."""
        return list(self._adverts.values())

    def advert(self, unicast: bool) -> AnySocket | None:
        """The advert socket for the mode, or None while the interface is gone."""
        return self._adverts.get(unicast)

    @property
    def garp(self) -> GarpSender | None:
        return self._garp

    def open_garp_on(self, interface: str) -> GarpSender:
        """A GARP sender of its own on another interface (the caller closes it), opened
        as this endpoint opens its own: for VIPs an instance adds to another ``dev``.

        Raises:
            KernelError: no such interface, or no CAP_NET_RAW.
        """
        return self._open_garp(interface)

    def acquire(self, unicast: bool) -> None:
        """Count one more instance of that mode, opening its socket if needed.

        While the interface is gone nothing is opened: `reopen` will.

        Raises:
            KernelError: opening a socket failed (the count is not taken).
        """
        if not self._gone:
            try:
                self._open_mode(unicast)
            except BaseException:
                orphan = None if self._users.get(unicast) else self._adverts.pop(unicast, None)
                if orphan is not None:
                    orphan.close()
                if not self._users:
                    self._close_all()
                raise
        self._users[unicast] = self._users.get(unicast, 0) + 1

    def adopt(self, unicast: bool, sock: AnySocket) -> None:
        """Use `sock`, opened already on this interface, as the mode's advert socket
        (`ipvsd.vrrp.prelisten`); the next `acquire` of the mode counts its user."""
        if unicast in self._adverts:
            raise RuntimeError(f"{self.interface}: an advert socket is open already")
        self._adverts[unicast] = sock
        self.ifindex = sock.ifindex

    def release(self, unicast: bool) -> None:
        """One instance of that mode less; the last one closes the mode's socket,
        and the last of all the GARP sender too."""
        left = self._users.get(unicast, 0) - 1
        if left > 0:
            self._users[unicast] = left
            return
        self._users.pop(unicast, None)
        sock = self._adverts.pop(unicast, None)
        if sock is not None:
            sock.close()
        if not self._users:
            self._close_all()

    def close_gone(self) -> None:
        """The interface went away: close every socket until `reopen`."""
        self.last_ifindex = self.ifindex
        self._gone = True
        self._close_all()

    def reopen(self) -> list[AnySocket]:
        """Open every used mode's socket on the interface as it is now.

        Returns:
            The new advert sockets (the runner starts a reader for each).

        Raises:
            KernelError: opening failed; nothing stays open, `gone` stays True.
        """
        self._close_all()
        self._gone = True
        try:
            for unicast in sorted(self._users):
                self._open_mode(unicast)
        except BaseException:
            self._close_all()
            raise
        self._gone = False
        return self.sockets()

    def close(self) -> None:
        """Close everything (daemon stop)."""
        self._users.clear()
        self._close_all()

    def _open_mode(self, unicast: bool) -> None:
        if unicast not in self._adverts:
            sock = self._open_advert(self.interface, unicast=unicast)
            self._adverts[unicast] = sock
            self.ifindex = sock.ifindex
        if self._garp is None:
            self._garp = self._open_garp(self.interface)

    def _close_all(self) -> None:
        for sock in self._adverts.values():
            sock.close()
        self._adverts.clear()
        if self._garp is not None:
            self._garp.close()
            self._garp = None
        self.ifindex = None
