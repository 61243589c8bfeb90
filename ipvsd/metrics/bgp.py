"""BGP mode's series: session state and announced VIPs (only when ``bgp:`` is configured).

- ``ipvsd_bgp_session_up{neighbor}`` — 1 while the session with that router
  is established, else 0.
- ``ipvsd_bgp_prefix_announced{prefix}`` — 1 while this director announces
  the VIP's host route, else 0 (every VIP of the services has a series).
- ``ipvsd_bgp_announced_prefixes`` — how many it announces.

Registered on the daemon's registry when BGP is first configured, so a
director without BGP exports none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from prometheus_client import CollectorRegistry, Gauge


class BgpMetrics:
    """The BGP series on `registry` (created at once)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._session_up = Gauge(
            "ipvsd_bgp_session_up",
            "1 while the BGP session with the neighbor is established, else 0.",
            ["neighbor"],
            registry=registry,
        )
        self._prefix = Gauge(
            "ipvsd_bgp_prefix_announced",
            "1 while this director announces the VIP's host route over BGP, else 0.",
            ["prefix"],
            registry=registry,
        )
        self._announced = Gauge(
            "ipvsd_bgp_announced_prefixes",
            "How many VIP host routes this director announces over BGP.",
            registry=registry,
        )
        self._neighbors: set[str] = set()
        self._prefixes: set[str] = set()

    def sessions(self, sessions: Iterable[tuple[str, bool]]) -> None:
        """Set every neighbor's ``ipvsd_bgp_session_up`` from (neighbor, up); drop the
        series of neighbors no longer given."""
        seen = set()
        for neighbor, up in sessions:
            self._session_up.labels(neighbor).set(1 if up else 0)
            seen.add(neighbor)
        for gone in self._neighbors - seen:
            self._session_up.remove(gone)
        self._neighbors = seen

    def announced(self, prefixes: Iterable[str], announced: Set[str]) -> None:
        """Set every VIP's ``ipvsd_bgp_prefix_announced`` (``10.0.0.100/32``) and the count."""
        seen = set()
        for prefix in prefixes:
            self._prefix.labels(prefix).set(1 if prefix in announced else 0)
            seen.add(prefix)
        for gone in self._prefixes - seen:
            self._prefix.remove(gone)
        self._prefixes = seen
        self._announced.set(len(announced))
