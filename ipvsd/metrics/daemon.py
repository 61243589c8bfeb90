"""Push-style metrics of the daemon's own events, and the event-loop lag probe.

`DaemonMetrics` holds ordinary prometheus-client ``Counter`` / ``Gauge`` /
``Histogram`` objects on a registry the daemon injects (faucet's
``FaucetMetrics(reg=...)``, style G10); never the global ``REGISTRY``, so
tests and several daemons in one process do not share series. Its methods are
small and typed, so call sites read as events (``metrics.config_reload(ok)``)
and label spelling lives here.

Series follow the config. `DaemonMetrics.retain`, called after a reload is
applied, drops the series of VRRP instances the config no longer has;
`DaemonMetrics.backend_gone` drops a real server's, and the health manager
calls it for exactly the reals a reload removed (at 10,000 services x 4
reals, reading back or relabelling every backend series on each reload held
the event loop for seconds). Without them a removed instance would read INIT,
and a removed real up or down, until the daemon restarts, and every rename
would leave one more stale series behind.

`EventLoopLag` measures how late the event loop runs a timer. VRRP depends on
it: a master whose loop stalls for Master_Down_Interval (3 advert_int plus
skew) lets the backup take over. The daemon passes a quarter of the smallest
``advert_int`` as the warning threshold.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from ipvsd.metrics.labels import BACKEND_LABELS, SERVICE_LABELS, backend_labels, service_labels
from ipvsd.model import RealId, ServiceKey

log = structlog.get_logger("ipvsd.metrics")

K = TypeVar("K")

#: ``ipvsd_vrrp_state`` values (design contract), keyed by ``VrrpState.value``.
VRRP_STATE_VALUES: Mapping[str, int] = types.MappingProxyType(
    {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}
)

#: Labels of the per-instance VRRP series. ``vrrp_instance``, not ``instance``:
#: Prometheus sets ``instance`` to the scraped target (design contract).
VRRP_STATE_LABELS = ("vrrp_instance", "interface", "vrid")
VRRP_PRIORITY_LABELS = ("vrrp_instance",)
VRRP_TRANSITION_LABELS = ("vrrp_instance", "to")
VRRP_INFO_LABELS = ("vrrp_instance", "version", "family", "advert_int")

#: Health checks take from about a millisecond (TCP connect on a LAN) to their
#: timeout (seconds).
HEALTH_CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: Loop lag: anything above a few ms is worth seeing; 1 s (the default
#: advert_int) and beyond threatens VRRP.
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class DaemonMetrics:
    """The daemon's counters and gauges on an injected registry.

    Series (design contract, plus the ones marked *extra*):

    - ``ipvsd_vrrp_state{vrrp_instance,interface,vrid}``: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT
    - ``ipvsd_vrrp_priority{vrrp_instance}``: current (tracked) priority
    - ``ipvsd_vrrp_transitions_total{vrrp_instance,to}``
    - ``ipvsd_vrrp_invalid_packets_total{interface,reason}``
    - *extra* ``ipvsd_vrrp_instance_info{vrrp_instance,version,family,advert_int}`` = 1:
      the VRRP version (2, 3), the family (``ipv4``, ``ipv6``) and the configured
      interval in seconds to the centisecond (``1.00``, ``0.10``); an info series of
      its own so that the contract's state, priority and transition series keep their
      labels (issue 14)
    - *extra* ``ipvsd_vrrp_instance_failures_total{vrrp_instance}``: instances
      that failed, released their VIPs and were restarted (issue #11)
    - ``ipvsd_backend_up{local_address,local_port,remote_address,remote_port,proto,local_mark}``
    - *extra* ``ipvsd_service_quorum{local_address,local_port,proto,local_mark}``: 1 while
      the service has quorum, 0 while its sorry server (if any) serves (issue 13)
    - ``ipvsd_health_check_duration_seconds`` (histogram)
    - ``ipvsd_reconcile_operations_total{op}``, ``ipvsd_reconcile_errors_total``
    - ``ipvsd_config_reloads_total{result}``: result is ``success`` or ``failure``
    - ``ipvsd_config_last_reload_successful`` (1/0) and
      ``ipvsd_config_last_reload_success_timestamp_seconds``, as Prometheus and
      Alertmanager name theirs (1 and the start time until the first reload:
      the config the daemon started with was valid)
    - ``ipvsd_build_info{version}`` = 1
    - *extra* ``ipvsd_event_loop_lag_seconds``: lag of the latest probe (gauge)
    - *extra* ``ipvsd_event_loop_wakeup_lag_seconds``: every probe (histogram), so
      stalls between two scrapes are not lost
    - *extra* ``ipvsd_info{version,node}`` = 1

    prometheus-client's ``*_created`` samples of counters and histograms stay in
    the registry; /metrics leaves them out (`ipvsd.metrics.http.registry_text`).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        node: str,
        loaded_at: float | None = None,
    ) -> None:
        """Create every series on `registry`.

        Args:
            registry: the daemon's private registry (never the global one).
            version: ipvsd's version, for ``ipvsd_info``.
            node: this director's node name, for ``ipvsd_info``.
            loaded_at: when the config in force was loaded (Unix time); None: now.
        """
        self.registry = registry
        self._vrrp_state = Gauge(
            "ipvsd_vrrp_state",
            "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.",
            VRRP_STATE_LABELS,
            registry=registry,
        )
        self._vrrp_priority = Gauge(
            "ipvsd_vrrp_priority",
            "Current VRRP priority.",
            VRRP_PRIORITY_LABELS,
            registry=registry,
        )
        self._vrrp_info = Gauge(
            "ipvsd_vrrp_instance_info",
            "A VRRP instance's version, address family and advert interval (always 1).",
            list(VRRP_INFO_LABELS),
            registry=registry,
        )
        self._vrrp_failures = Counter(
            "ipvsd_vrrp_instance_failures_total",
            "VRRP instances that failed (released their VIPs, went FAULT, restarted).",
            ["vrrp_instance"],
            registry=registry,
        )
        self._vrrp_route_errors = Counter(
            "ipvsd_vrrp_route_errors_total",
            "virtual_routes / virtual_rules the kernel refused to add or remove.",
            ["vrrp_instance"],
            registry=registry,
        )
        self._vrrp_transitions = Counter(
            "ipvsd_vrrp_transitions_total",
            "VRRP state transitions, by new state.",
            VRRP_TRANSITION_LABELS,
            registry=registry,
        )
        self._invalid_packets = Counter(
            "ipvsd_vrrp_invalid_packets_total",
            "Received VRRP packets dropped as invalid, by reason.",
            ["interface", "reason"],
            registry=registry,
        )
        self._backend_up = KeyedGauge[RealId](
            "ipvsd_backend_up",
            "1 if the real server passes its health checks, else 0.",
            BACKEND_LABELS,
            lambda key: backend_labels(*key),
        )
        registry.register(self._backend_up)
        self._service_quorum = KeyedGauge[ServiceKey](
            "ipvsd_service_quorum",
            "1 while the service has quorum (enough live real weight), else 0.",
            SERVICE_LABELS,
            service_labels,
        )
        registry.register(self._service_quorum)
        self._health_duration = Histogram(
            "ipvsd_health_check_duration_seconds",
            "How long health checks took, failed ones included.",
            buckets=HEALTH_CHECK_BUCKETS,
            registry=registry,
        )
        self._reconcile_ops = Counter(
            "ipvsd_reconcile_operations_total",
            "IPVS operations applied by the reconciler, by kind.",
            ["op"],
            registry=registry,
        )
        self._reconcile_errors = Counter(
            "ipvsd_reconcile_errors_total",
            "IPVS operations or passes of the reconciler that failed.",
            registry=registry,
        )
        self._sync_running = Gauge(
            "ipvsd_sync_daemon_running",
            "1 while ipvsd keeps the IPVS connection-sync daemon in this role (master or "
            "backup) in the kernel, as of its last successful pass.",
            ["role"],
            registry=registry,
        )
        self._sync_errors = Counter(
            "ipvsd_sync_daemon_errors_total",
            "Passes that failed to read, start or stop the IPVS connection-sync daemon.",
            registry=registry,
        )
        self._config_reloads = Counter(
            "ipvsd_config_reloads_total",
            "Configuration reloads, by result (success or failure).",
            ["result"],
            registry=registry,
        )
        for result in ("success", "failure"):
            self._config_reloads.labels(result)  # export 0 before the first reload
        self._last_reload_ok = Gauge(
            "ipvsd_config_last_reload_successful",
            "Whether the last configuration reload was applied (1) or refused (0).",
            registry=registry,
        )
        self._last_reload_ok.set(1)
        self._last_reload_time = Gauge(
            "ipvsd_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (Unix time).",
            registry=registry,
        )
        self._last_reload_time.set(time.time() if loaded_at is None else loaded_at)
        self._loop_lag = Gauge(
            "ipvsd_event_loop_lag_seconds",
            "How late the event loop ran the latest lag probe's timer.",
            registry=registry,
        )
        self._loop_lag_histogram = Histogram(
            "ipvsd_event_loop_wakeup_lag_seconds",
            "How late the event loop ran each lag probe's timer.",
            buckets=LOOP_LAG_BUCKETS,
            registry=registry,
        )
        info = Gauge(
            "ipvsd_info", "ipvsd's version and node name.", ["version", "node"], registry=registry
        )
        info.labels(version, node).set(1)
        build = Gauge(
            "ipvsd_build_info", "ipvsd's version (always 1).", ["version"], registry=registry
        )
        build.labels(version).set(1)

    def vrrp_state(self, instance: str, interface: str, vrid: int, state_name: str) -> None:
        """Record an instance's current state.

        A reload may move an instance to another interface or vrid: its series
        under the old labels is dropped here, so the instance has one state.

        Args:
            instance: the instance name.
            interface: its interface.
            vrid: its virtual router id.
            state_name: ``VrrpState.value``: INIT, BACKUP, MASTER or FAULT.

        Raises:
            ValueError: `state_name` is not one of those.
        """
        value = VRRP_STATE_VALUES.get(state_name)
        if value is None:
            raise ValueError(f"unknown VRRP state {state_name!r}")
        current = (instance, interface, str(vrid))
        _drop_series(
            self._vrrp_state,
            VRRP_STATE_LABELS,
            keep=lambda labels: labels[0] != instance or labels == current,
        )
        self._vrrp_state.labels(*current).set(value)

    def vrrp_instance_info(
        self, instance: str, *, version: int, family: str, advert_int: float
    ) -> None:
        """Set ``ipvsd_vrrp_instance_info`` of `instance`, dropping its series with other
        labels (a reload changed the interval)."""
        current = (instance, str(version), family, f"{advert_int:.2f}")
        _drop_series(
            self._vrrp_info,
            VRRP_INFO_LABELS,
            keep=lambda labels: labels[0] != instance or labels == current,
        )
        self._vrrp_info.labels(*current).set(1)

    def vrrp_priority(self, instance: str, priority: int) -> None:
        """Record an instance's current priority (after interface tracking)."""
        self._vrrp_priority.labels(instance).set(priority)

    def vrrp_transition(self, instance: str, to: str) -> None:
        """Count a transition of `instance` into state `to` (``VrrpState.value``)."""
        self._vrrp_transitions.labels(instance, to).inc()

    def vrrp_failure(self, instance: str, reason: str) -> None:
        """Count a failure of `instance` (`reason` goes to the log, not to a label)."""
        self._vrrp_failures.labels(instance).inc()

    def vrrp_route_error(self, instance: str, error: str) -> None:
        """Count a route or rule of `instance` the kernel refused (`error` goes to the log)."""
        self._vrrp_route_errors.labels(instance).inc()

    def invalid_packet(self, interface: str, reason: str) -> None:
        """Count a dropped VRRP packet; `reason` is a ``RejectReason`` value."""
        self._invalid_packets.labels(interface, reason).inc()

    def backend_up(self, real: RealId, up: bool) -> None:
        """Record a real server's health: 1 up, 0 down.

        `real` is kept as the series' key: pass the health manager's own tuple.
        """
        self._backend_up.values[real] = 1 if up else 0

    def backend_gone(self, real: RealId) -> None:
        """Drop a real server's ``ipvsd_backend_up`` (it left the config); no error if absent.

        Call it once the real is no longer checked: a late `backend_up` would
        bring the series back.
        """
        self._backend_up.values.pop(real, None)

    def service_quorum(self, service: ServiceKey, up: bool) -> None:
        """Set a service's ``ipvsd_service_quorum``."""
        self._service_quorum.values[service] = 1 if up else 0

    def service_gone(self, service: ServiceKey) -> None:
        """Drop a service's ``ipvsd_service_quorum`` (it left the config); no error if absent."""
        self._service_quorum.values.pop(service, None)

    def retain(self, instances: Iterable[tuple[str, str, int]]) -> None:
        """Drop every per-instance series the config no longer has.

        Call it once a reload is applied, after the removed instances have
        stopped: a late `vrrp_state` for them would bring their series back.

        ``ipvsd_vrrp_transitions_total`` of a removed instance goes too. A
        counter series that disappears is what Prometheus sees when a target
        restarts: ``rate()`` and ``increase()`` stop at its last sample, and if
        the name comes back its counter restarts from 0, which they read as a
        counter reset. Keeping it instead would leak one series per renamed
        instance for the life of the daemon.

        Args:
            instances: ``(name, interface, vrid)`` of every configured VRRP
                instance. A kept name under another interface or vrid loses
                its old state series.
        """
        states = {(name, interface, str(vrid)) for name, interface, vrid in instances}
        names = {name for name, _, _ in states}
        _drop_series(self._vrrp_state, VRRP_STATE_LABELS, keep=states.__contains__)
        _drop_series(
            self._vrrp_priority, VRRP_PRIORITY_LABELS, keep=lambda labels: labels[0] in names
        )
        _drop_series(
            self._vrrp_transitions, VRRP_TRANSITION_LABELS, keep=lambda labels: labels[0] in names
        )
        _drop_series(self._vrrp_info, VRRP_INFO_LABELS, keep=lambda labels: labels[0] in names)
        for per_instance in (self._vrrp_failures, self._vrrp_route_errors):
            _drop_series(per_instance, ("vrrp_instance",), keep=lambda labels: labels[0] in names)

    def health_check_duration(self, seconds: float) -> None:
        """Observe how long one health check took."""
        self._health_duration.observe(seconds)

    def reconcile_operations(self, counts: Mapping[str, int]) -> None:
        """Count the operations of a reconcile pass, e.g. ``{"add_dest": 3}``."""
        for op, count in counts.items():
            if count:
                self._reconcile_ops.labels(op).inc(count)

    def reconcile_error(self, n: int = 1) -> None:
        """Count `n` reconcile failures."""
        self._reconcile_errors.inc(n)

    def sync_daemon_pass(self, role: str | None, ok: bool) -> None:
        """A pass of the sync-daemon controller: `role` (master, backup or None) applied if `ok`."""
        if not ok:
            self._sync_errors.inc()
            return
        for each in ("master", "backup"):
            self._sync_running.labels(each).set(1 if each == role else 0)

    def config_reload(self, ok: bool, *, at: float | None = None) -> None:
        """Count a reload, applied (`ok`) or refused; `at`: when (Unix time), None: now."""
        self._config_reloads.labels("success" if ok else "failure").inc()
        self._last_reload_ok.set(1 if ok else 0)
        if ok:
            self._last_reload_time.set(time.time() if at is None else at)

    def loop_lag(self, seconds: float) -> None:
        """Record one lag probe (see `EventLoopLag`)."""
        self._loop_lag.set(seconds)
        self._loop_lag_histogram.observe(seconds)


class KeyedGauge(Collector, Generic[K]):
    """A labelled gauge whose series are rendered at scrape time from `values`.

    Not prometheus-client's labelled ``Gauge``: its children cost ~1 kB each
    (the child, its value and lock, the label strings): 38 MB for
    ``ipvsd_backend_up`` at 10,000 x 4 reals, most of a big daemon's memory
    after its config. Here a series is one dict entry, keyed by the keys the
    daemon holds anyway; its label values are made only while a scrape writes
    them. Series in the order they were first set, as a Gauge's children.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        values_of: Callable[[K], Sequence[str]],
    ) -> None:
        self.values: dict[K, int] = {}
        self._family = (name, documentation, list(labels))
        self._label_values = values_of

    def describe(self) -> Iterator[Metric]:
        name, documentation, labels = self._family
        yield GaugeMetricFamily(name, documentation, labels=labels)

    def collect(self) -> Iterator[Metric]:
        name, documentation, labels = self._family
        family = GaugeMetricFamily(name, documentation, labels=labels)
        # A copy made in one C call: the scrape's thread never sees the dict change.
        for key, value in list(self.values.items()):
            family.add_metric(self._label_values(key), value)
        yield family


def _drop_series(
    metric: MetricWrapperBase,
    label_names: tuple[str, ...],
    keep: Callable[[tuple[str, ...]], bool],
) -> None:
    """Remove every labelled series of `metric` whose label values `keep` refuses.

    The series are read back through ``collect()`` (the public side of
    prometheus-client) rather than mirrored here, so nothing can drift.

    Args:
        metric: a labelled Gauge or Counter.
        label_names: its label names, in declaration order (``remove()`` takes
            the values positionally).
        keep: whether to keep the series with these label values.
    """
    present = {
        tuple(sample.labels[name] for name in label_names)
        for family in metric.collect()
        # A counter also has a ``_created`` sample per series: same labels.
        for sample in family.samples
    }
    for labels in present:
        if not keep(labels):
            metric.remove(*labels)


class EventLoopLag:
    """Probes how late the event loop wakes a sleeping task.

    Every `interval_s` it sleeps and measures, with ``loop.time()``, how much
    later than asked it woke up. That delay is what every timer suffers,
    VRRP's advert and Master_Down timers included. Each probe goes to
    `DaemonMetrics.loop_lag`; a lag above `threshold_s` logs a ``loop.lag``
    warning, at most once per `warn_every_s` (with the number suppressed
    since the last one), so a stalled host does not also flood the journal.

    Run `run` as a task of the daemon; cancel it to stop.
    """

    def __init__(
        self,
        metrics: DaemonMetrics,
        *,
        threshold_s: float,
        interval_s: float = 0.25,
        warn_every_s: float = 10.0,
    ) -> None:
        """Create the probe.

        Args:
            metrics: where each probe is recorded.
            threshold_s: lag above which to warn (the daemon: a quarter of the
                smallest VRRP advert_int).
            interval_s: time between probes.
            warn_every_s: minimum time between two ``loop.lag`` warnings.
        """
        if interval_s <= 0 or threshold_s < 0 or warn_every_s < 0:
            raise ValueError("interval_s must be > 0, threshold_s and warn_every_s >= 0")
        self._metrics = metrics
        self._threshold_s = threshold_s
        self._interval_s = interval_s
        self._warn_every_s = warn_every_s
        self._last_warning: float | None = None
        self._suppressed = 0
        self.max_lag_s = 0.0
        """The largest lag seen since the probe started, in seconds."""

    async def run(self) -> None:
        """Probe forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            now = loop.time()
            # asyncio may run a timer up to one clock resolution early.
            lag = max(0.0, now - due)
            self._metrics.loop_lag(lag)
            self.max_lag_s = max(self.max_lag_s, lag)
            if lag > self._threshold_s:
                self._warn(lag, now)

    def _warn(self, lag: float, now: float) -> None:
        if self._last_warning is not None and now - self._last_warning < self._warn_every_s:
            self._suppressed += 1
            return
        log.warning(
            "loop.lag",
            lag_s=round(lag, 4),
            threshold_s=self._threshold_s,
            suppressed=self._suppressed,
        )
        self._last_warning = now
        self._suppressed = 0
