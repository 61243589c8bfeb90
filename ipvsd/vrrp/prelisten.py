"""Advert sockets opened before the daemon loads: a starting Backup listens from then.

Theory of operation
-------------------
RFC 3768 §6.4.1 / RFC 5798 §6.4.1: at Startup a router that is not the
address owner becomes Backup and starts its Master_Down_Timer; it takes over
if no advert arrives before the timer fires. ipvsd's VRRP runtime is ready
only after the config is validated and the daemon's modules are imported
(~0.3 s on the host, seconds in UML), while keepalived is Backup ~25 ms after
its exec. Two directors booted together with ``preempt: false`` elect the one
whose timer fires first, so the later start loses an election it should win
(issue 14).

What a Backup does until its timer fires is listen. The kernel can do that
for it: `ipvsd.daemon.early`, right after it removed the stale VIPs and before
the heavy imports, opens the advert sockets the runtime would open
(`ipvsd.vrrp.sockets`: the same options and group memberships as
`VrrpSocket.open` / `VrrpSocket6.open`, since those open theirs with it too).
Adverts arriving meanwhile wait in the sockets' receive queues. `adopt_early`
wraps the sockets in the runtime's types; when the runtime starts
(`VrrpRouter.start`):

1. each instance's endpoint adopts the early socket of its interface, family
   and mode (`InterfaceEndpoint.adopt`) instead of opening a new one;
2. the queues are read (`AdvertSocket.pending`) and each advert goes to its
   instance's inbox before any instance runs;
3. each instance handles Startup *as of the moment its socket opened*: its
   Master_Down_Timer runs from then, and then it handles the queued adverts.

Why that is safe. Nothing is sent and no VIP is added before the runtime
runs: the early phase only listens. A queued advert is handled as if it
arrived when the runtime reads it, which resets the Master_Down_Timer later
than its real arrival would have: a Backup that heard a Master while loading
never takes over sooner than it would have live. A Backup that heard nothing
takes over `Master_Down_Interval` after its socket opened, as keepalived's
does after its own start. Should a queue overflow (the kernel drops new
packets, keeps the old), what is queued still proves the Master was there.
The backdating is for the first start only, and only on a socket that is
still the endpoint's after the start (one whose interface went away meanwhile
is closed with its queue): an instance added by a reload, or restarted after
a failure, starts from then, since no queue kept its adverts.

Not covered, and opened by the runtime as before: a config the minimal read
cannot understand (`ipvsd.daemon.early`), instances in ``include`` fragments,
``vmac`` instances (the runtime makes that interface), the address owner
(Master at once), interfaces missing at exec. A socket no instance takes (the
validated config disagrees with the minimal read) is closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ipvsd.vrrp.relink import AnySocket, EndpointKey, Family, InterfaceEndpoint
from ipvsd.vrrp.transport import VrrpSocket
from ipvsd.vrrp.transport6 import VrrpSocket6

if TYPE_CHECKING:
    from ipvsd.daemon.early import EarlySocket

__all__ = ["EarlyListeners", "adopt_early"]

_Key = tuple[str, Family, bool]  # interface, family, unicast


class EarlyListeners:
    """The advert sockets `open_early` opened, each with the moment it began to listen."""

    def __init__(self, opened: dict[_Key, tuple[AnySocket, float]]) -> None:
        self._opened = opened
        self._taken: dict[_Key, AnySocket] = {}

    def __len__(self) -> int:
        return len(self._opened)

    def adopt(self, endpoint: InterfaceEndpoint, unicast: bool) -> None:
        """Give `endpoint` the early socket of that mode, if there is one and the
        endpoint has no socket of that mode yet (call before it is acquired)."""
        key = (*endpoint.key, unicast)
        entry = self._opened.get(key)
        if entry is not None and key not in self._taken and endpoint.advert(unicast) is None:
            endpoint.adopt(unicast, entry[0])
            self._taken[key] = entry[0]

    def since(self, endpoint: InterfaceEndpoint, unicast: bool) -> float | None:
        """When the endpoint's socket of that mode began to listen (the loop's clock),
        if it is an early one; None if it is not (any more): then an instance on it
        starts from now, since no queue kept its adverts."""
        entry = self._opened.get((*endpoint.key, unicast))
        if entry is None or endpoint.advert(unicast) is not entry[0]:
            return None
        return entry[1]

    def taken(self) -> list[tuple[EndpointKey, AnySocket]]:
        """Every adopted socket with its endpoint's key: their queues are read next."""
        return [((interface, family), sock) for (interface, family, _), sock in self._taken.items()]

    def close(self) -> None:
        """Close the sockets no endpoint adopted (the adopted ones are their endpoints');
        `adopt` and `since` know none after this."""
        for key, (sock, _) in self._opened.items():
            if key not in self._taken:
                sock.close()
        self._opened.clear()


def adopt_early(opened: Iterable[EarlySocket]) -> EarlyListeners:
    """The advert sockets `ipvsd.daemon.early` opened, as the runtime's socket types."""
    sockets: dict[_Key, tuple[AnySocket, float]] = {}
    for early in opened:
        target = early.target
        family: Family = "ipv6" if target.family == "ipv6" else "ipv4"
        kind = VrrpSocket6 if family == "ipv6" else VrrpSocket
        sock = kind(early.sock, target.interface, early.ifindex, target.unicast)
        sockets[(target.interface, family, target.unicast)] = (sock, early.opened_at)
    return EarlyListeners(sockets)
