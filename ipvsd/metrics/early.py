"""The daemon's metric events from before prometheus-client is loaded.

prometheus-client imports ``http.server``, ``urllib.request`` and ``email``
with its package (its ``exposition`` module): ~0.2 s in User-Mode Linux,
where each imported file costs system calls that take 30-70 us each. Nothing
needs the library before the first reconcile pass has written the IPVS table,
but the health manager, service quorum and the reconciler report events from
their start. `EarlyMetrics` takes those calls with `DaemonMetrics`'s
signatures and keeps what they mean; `bind` replays it into the real metrics
once the daemon has created them, and from then on passes every call
straight through (a callback bound to it before keeps working).

What is kept is what the series would hold, not a log of calls: a gauge
keyed by real or service keeps its last value (40,000 reals at 10,000 x 4
are one dict entry each), counters keep their sums, the health-check
histogram its observations; the rare events (VRRP, reloads, the sync daemon,
the loop-lag probe) are kept as calls, in order, with the time of a reload.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from operator import methodcaller
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipvsd.metrics.daemon import DaemonMetrics
    from ipvsd.model import RealId, ServiceKey


class EarlyMetrics:
    """`DaemonMetrics`' event methods, kept until `bind`, then passed through."""

    def __init__(self) -> None:
        self._metrics: DaemonMetrics | None = None
        self._backends: dict[RealId, bool | None] = {}
        """A real's last health (None: gone)."""
        self._quorum: dict[ServiceKey, bool | None] = {}
        """A service's last quorum (None: gone)."""
        self._check_durations: list[float] = []
        self._operations: dict[str, int] = {}
        self._errors = 0
        self._calls: list[Callable[[DaemonMetrics], object]] = []

    @property
    def bound(self) -> bool:
        return self._metrics is not None

    def bind(self, metrics: DaemonMetrics) -> None:
        """Record what was kept into `metrics`; pass every later call through to it."""
        for real, up in self._backends.items():
            if up is None:
                metrics.backend_gone(real)
            else:
                metrics.backend_up(real, up)
        for service, quorum in self._quorum.items():
            if quorum is None:
                metrics.service_gone(service)
            else:
                metrics.service_quorum(service, quorum)
        for seconds in self._check_durations:
            metrics.health_check_duration(seconds)
        metrics.reconcile_operations(self._operations)
        if self._errors:
            metrics.reconcile_error(self._errors)
        for call in self._calls:
            call(metrics)
        self._metrics = metrics
        self._backends, self._quorum, self._check_durations = {}, {}, []
        self._operations, self._calls = {}, []

    def _keep(self, name: str, *args: object, **kwargs: object) -> None:
        self._calls.append(methodcaller(name, *args, **kwargs))

    def vrrp_state(self, instance: str, interface: str, vrid: int, state_name: str) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_state(instance, interface, vrid, state_name)
        else:
            self._keep("vrrp_state", instance, interface, vrid, state_name)

    def vrrp_instance_info(
        self, instance: str, *, version: int, family: str, advert_int: float
    ) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_instance_info(
                instance, version=version, family=family, advert_int=advert_int
            )
        else:
            self._keep(
                "vrrp_instance_info",
                instance,
                version=version,
                family=family,
                advert_int=advert_int,
            )

    def vrrp_priority(self, instance: str, priority: int) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_priority(instance, priority)
        else:
            self._keep("vrrp_priority", instance, priority)

    def vrrp_transition(self, instance: str, to: str) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_transition(instance, to)
        else:
            self._keep("vrrp_transition", instance, to)

    def vrrp_failure(self, instance: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_failure(instance, reason)
        else:
            self._keep("vrrp_failure", instance, reason)

    def vrrp_route_error(self, instance: str, error: str) -> None:
        if self._metrics is not None:
            self._metrics.vrrp_route_error(instance, error)
        else:
            self._keep("vrrp_route_error", instance, error)

    def invalid_packet(self, interface: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.invalid_packet(interface, reason)
        else:
            self._keep("invalid_packet", interface, reason)

    def backend_up(self, real: RealId, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.backend_up(real, up)
        else:
            self._backends[real] = up

    def backend_gone(self, real: RealId) -> None:
        if self._metrics is not None:
            self._metrics.backend_gone(real)
        else:
            self._backends[real] = None

    def service_quorum(self, service: ServiceKey, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.service_quorum(service, up)
        else:
            self._quorum[service] = up

    def service_gone(self, service: ServiceKey) -> None:
        if self._metrics is not None:
            self._metrics.service_gone(service)
        else:
            self._quorum[service] = None

    def retain(self, instances: Iterable[tuple[str, str, int]]) -> None:
        if self._metrics is not None:
            self._metrics.retain(instances)
        else:
            self._keep("retain", list(instances))

    def health_check_duration(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.health_check_duration(seconds)
        else:
            self._check_durations.append(seconds)

    def reconcile_operations(self, counts: Mapping[str, int]) -> None:
        if self._metrics is not None:
            self._metrics.reconcile_operations(counts)
            return
        for op, count in counts.items():
            if count:
                self._operations[op] = self._operations.get(op, 0) + count

    def reconcile_error(self, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.reconcile_error(n)
        else:
            self._errors += n

    def sync_daemon_pass(self, role: str | None, ok: bool) -> None:
        if self._metrics is not None:
            self._metrics.sync_daemon_pass(role, ok)
        else:
            self._keep("sync_daemon_pass", role, ok)

    def config_reload(self, ok: bool, *, at: float | None = None) -> None:
        if self._metrics is not None:
            self._metrics.config_reload(ok, at=at)
        else:
            self._keep("config_reload", ok, at=time.time() if at is None else at)

    def loop_lag(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.loop_lag(seconds)
        else:
            self._keep("loop_lag", seconds)
