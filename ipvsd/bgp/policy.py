"""Which VIPs this director announces (pure: events in, actions out).

Rules
=====

1. A VIP is announced only while the daemon is ready (``Ready``: the first
   reconcile is done), is not stopping (``Stopping``) and the director is not
   drained as a whole (``DirectorDrained``, ``ipvsd drain --all``).
2. A VIP is announced while its services have quorum
   (`ipvsd.health.quorum`: at least one real up, or ``quorum`` live weight):
   ``require: all`` — every service on the VIP; ``any`` — one of them. A
   service whose quorum is not computed yet counts as without it.
3. Only services with an address have a VIP; a fwmark service selects its
   packets by mark and has none to announce.
4. ``Stopping`` is final: nothing is announced after it, whatever comes next.

`BgpPolicy.handle` returns what changed: `Withdraw` actions first (a
director that must stop attracting traffic does so before anything else),
then `Announce`, each list sorted so that tests and logs are stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, assert_never

from ipvsd.bgp.birdconf import Prefix, host_prefix
from ipvsd.model import ServiceKey


@dataclass(frozen=True, slots=True)
class Ready:
    """The daemon finished its first reconcile (READY=1)."""


@dataclass(frozen=True, slots=True)
class Stopping:
    """A graceful stop began: withdraw everything, for good."""


@dataclass(frozen=True, slots=True)
class DirectorDrained:
    """The operator drained (True) or undrained (False) the whole director."""

    drained: bool


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    """A service's quorum was computed or changed; None: the service is gone."""

    service: ServiceKey
    up: bool | None


@dataclass(frozen=True, slots=True)
class ServicesConfigured:
    """A config (start or reload) gave these services; others are forgotten."""

    services: tuple[ServiceKey, ...]


Event = Ready | Stopping | DirectorDrained | QuorumChanged | ServicesConfigured


@dataclass(frozen=True, slots=True)
class Announce:
    """Start announcing `prefix`."""

    prefix: Prefix


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Stop announcing `prefix`."""

    prefix: Prefix


Action = Announce | Withdraw

Require = Literal["all", "any"]


def service_prefixes(services: Iterable[ServiceKey]) -> dict[Prefix, tuple[ServiceKey, ...]]:
    """Each VIP (host route) and the services on it (Rule 3: fwmark services have none)."""
    found: dict[Prefix, list[ServiceKey]] = {}
    for key in services:
        if key.address is not None:
            found.setdefault(host_prefix(key.address), []).append(key)
    return {prefix: tuple(keys) for prefix, keys in found.items()}


class BgpPolicy:
    """The announcement state of one director (module docstring, Rules 1-4).

    Args:
        require: ``all`` or ``any`` (Rule 2).
    """

    def __init__(self, require: Require = "all") -> None:
        self.require: Require = require
        self.ready = False
        self.stopping = False
        self.drained = False
        self._quorum: dict[ServiceKey, bool] = {}
        self._prefixes: Mapping[Prefix, tuple[ServiceKey, ...]] = {}
        self._services: tuple[ServiceKey, ...] = ()
        self.announced: frozenset[Prefix] = frozenset()
        """What the last `handle` left announced."""

    @property
    def services(self) -> tuple[ServiceKey, ...]:
        """The services of the last `ServicesConfigured`."""
        return self._services

    @property
    def prefixes(self) -> tuple[Prefix, ...]:
        """Every VIP of the configured services, announced or not."""
        return tuple(self._prefixes)

    def handle(self, event: Event) -> list[Action]:
        """Take `event`; return the announcements and withdrawals it causes."""
        match event:
            case Ready():
                self.ready = True
            case Stopping():
                self.stopping = True
            case DirectorDrained(drained=drained):
                self.drained = drained
            case QuorumChanged(service=service, up=up):
                if up is None:
                    self._quorum.pop(service, None)
                else:
                    self._quorum[service] = up
            case ServicesConfigured(services=services):
                self._services = services
                self._prefixes = service_prefixes(services)
                kept = set(services)
                self._quorum = {k: up for k, up in self._quorum.items() if k in kept}
            case _:
                assert_never(event)
        return self._update()

    def reason(self, prefix: Prefix) -> str:
        """Why `prefix` is announced or not, in a few words (status)."""
        if self.stopping:
            return "stopping"
        if not self.ready:
            return "starting"
        if self.drained:
            return "director drained"
        services = self._prefixes.get(prefix, ())
        down = [str(key) for key in services if not self._quorum.get(key, False)]
        if self._healthy(services):
            return "healthy"
        return "no quorum: " + ", ".join(down)

    def _healthy(self, services: tuple[ServiceKey, ...]) -> bool:
        up = [self._quorum.get(key, False) for key in services]
        return bool(up) and (all(up) if self.require == "all" else any(up))

    def _wanted(self) -> frozenset[Prefix]:
        if self.stopping or not self.ready or self.drained:
            return frozenset()
        return frozenset(p for p, keys in self._prefixes.items() if self._healthy(keys))

    def _update(self) -> list[Action]:
        wanted = self._wanted()
        withdraw = sorted(self.announced - wanted, key=_order)
        announce = sorted(wanted - self.announced, key=_order)
        self.announced = wanted
        return [*(Withdraw(p) for p in withdraw), *(Announce(p) for p in announce)]


def _order(prefix: Prefix) -> tuple[int, Prefix]:
    return (prefix.version, prefix)
