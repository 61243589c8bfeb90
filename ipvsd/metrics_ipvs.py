"""Pull-style collector of the kernel's IPVS table (style G10).

Contract (design.md, "Prometheus metrics"): node_exporter's IPVS names without
``node_``, its labels (see `ipvsd.metrics_labels`), read from the kernel at
scrape time and never cached from an earlier poll.

Threading: prometheus-client serves each HTTP request on its own thread and
calls `IpvsCollector.collect` there. The daemon's ``read_table`` bridges to the
event loop that owns the netlink socket::

    def read_table() -> Table:
        future = asyncio.run_coroutine_threadsafe(client.dump(), loop)
        return future.result(timeout=5.0)

The collector runs one ``read_table`` at a time (concurrent scrapes queue on a
lock), because a netlink socket serves one dump at a time (EBUSY otherwise).

Cost: a scrape builds about nine samples per real. The families are built
directly: one label dict per real, shared by all of its samples, and samples
appended to each family's list without the per-sample ``dict(zip(...))`` of
``add_metric``. The ``_total`` sample names follow ``CounterMetricFamily``
(family name without ``_total``, sample name with it).

The cyclic garbage collector is paused while the families are built. The
samples are tuples that all survive until the scrape is encoded, so with the
collector on, each ~700 of them start a young collection and every few
hundred thousand a full one over the whole heap. Measured with 40,000 reals
(10,000 services of 4): 3 full collections, 17 µs of CPU per real; paused,
4 µs, plus about 2.5 µs for the one young collection after the pause, which
untracks the samples (tuples of untracked values). No cycle is created
there, so nothing is lost by waiting.

Encoding the samples is prometheus-client's work and costs much more: about
60 µs per real for ``generate_latest``, and gzip (level 9, when Prometheus
accepts it) about 28 µs more.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields

import structlog
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from ipvsd.errors import IpvsdError
from ipvsd.metrics_labels import (
    BACKEND_LABELS,
    SERVICE_LABELS,
    backend_label_dict,
    service_label_dict,
    service_labels,
)
from ipvsd.model import Dest, DestAttrs, DestCounters, DestKey, Service, Stats, Table

log = structlog.get_logger("ipvsd.metrics")

# (name, help) of each family; counter names carry ``_total`` as exported.
_BY = "by local and remote address."
_BACKEND_GAUGES = (
    ("ipvs_backend_connections_active", f"The current active connections {_BY}"),
    ("ipvs_backend_connections_inactive", f"The current inactive connections {_BY}"),
    ("ipvs_backend_connections_persistent", f"The current persistent connections {_BY}"),
    ("ipvs_backend_weight", f"The current backend weight {_BY}"),
)
_TRAFFIC = (
    ("connections_total", "The total number of connections made"),
    ("incoming_packets_total", "The total number of incoming packets"),
    ("outgoing_packets_total", "The total number of outgoing packets"),
    ("incoming_bytes_total", "The total amount of incoming data in bytes"),
    ("outgoing_bytes_total", "The total amount of outgoing data in bytes"),
)
_SCRAPE = (
    ("ipvsd_scrape_error", "1 if the last read of the IPVS table failed, else 0."),
    ("ipvsd_scrape_errors_total", "Reads of the IPVS table that failed."),
    ("ipvsd_scrape_duration_seconds", "How long the last read of the IPVS table took."),
)

#: Every family the collector can emit, for `IpvsCollector.describe`.
METRIC_NAMES = (
    *(name for name, _ in _BACKEND_GAUGES),
    *(f"ipvs_backend_{name}" for name, _ in _TRAFFIC),
    *(f"ipvs_service_{name}" for name, _ in _TRAFFIC),
    *(name for name, _ in _SCRAPE),
)


class IpvsCollector(Collector):
    """Reads the IPVS table at every scrape and exports it as node_exporter does.

    If ``read_table`` raises (netlink error, timeout, anything), the scrape
    still succeeds: it carries no ``ipvs_*`` series, ``ipvsd_scrape_error`` is 1
    and ``ipvsd_scrape_errors_total`` counts the failure. A missing series is
    what an absent kernel table looks like to Prometheus, so alert on
    ``ipvsd_scrape_error == 1``.

    Register it on a private ``CollectorRegistry``. `describe` returns the
    names without reading the table, so registering never calls ``read_table``
    (the default registry's ``auto_describe`` would call `collect` otherwise).
    """

    def __init__(
        self, read_table: Callable[[], Table], *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        """Create the collector.

        Args:
            read_table: returns a fresh kernel dump (with stats); called once per
                scrape, from the HTTP server's thread, never concurrently.
            clock: monotonic seconds, for ``ipvsd_scrape_duration_seconds``.
        """
        self._read_table = read_table
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = 0

    def describe(self) -> Iterable[Metric]:
        """The families `collect` emits, without samples and without reading the kernel."""
        return [
            *(GaugeMetricFamily(name, doc, labels=BACKEND_LABELS) for name, doc in _BACKEND_GAUGES),
            *_traffic_families("backend", BACKEND_LABELS),
            *_traffic_families("service", SERVICE_LABELS),
            *_scrape_families(failed=False, errors=0, duration_s=0.0),
        ]

    def collect(self) -> Iterable[Metric]:
        """Read the table and return every family; never raises for a failed read."""
        with self._lock:
            start = self._clock()
            try:
                table: Table | None = self._read_table()
            except Exception as exc:
                table = None
                self._errors += 1
                # Expected failures (kernel errors, timeouts: TimeoutError is an
                # OSError) get one line; anything else may be a bug.
                expected = isinstance(exc, IpvsdError | OSError)
                log.warning(
                    "metrics.scrape_error",
                    error=str(exc) or type(exc).__name__,
                    exc_info=not expected,
                )
            duration_s = self._clock() - start
            errors = self._errors
        families: list[Metric] = []
        if table is not None:
            with _gc_paused():
                families = table_families(table)
        families.extend(_scrape_families(table is None, errors, duration_s))
        return families


def table_families(table: Table) -> list[Metric]:
    """The ``ipvs_*`` families of a table (the collector's work, minus the read).

    Args:
        table: a kernel dump; dests without counters or services without stats
            export only what they have (the weight).
    """
    active, inactive, persistent, weight = (
        GaugeMetricFamily(name, doc, labels=BACKEND_LABELS) for name, doc in _BACKEND_GAUGES
    )
    backend = _traffic_families("backend", BACKEND_LABELS)
    service = _traffic_families("service", SERVICE_LABELS)
    # Bound methods and sample names hoisted out of the loop: this runs per real.
    add_active, add_inactive, add_persistent, add_weight = (
        f.samples.append for f in (active, inactive, persistent, weight)
    )
    add_conns, add_inpkts, add_outpkts, add_inbytes, add_outbytes = (
        f.samples.append for f in backend
    )
    n_active, n_inactive, n_persistent, n_weight = (
        f.name for f in (active, inactive, persistent, weight)
    )
    n_conns, n_inpkts, n_outpkts, n_inbytes, n_outbytes = (f"{f.name}_total" for f in backend)

    for svc in _without_label_collisions(table):
        svc_labels = service_labels(svc.key)
        if svc.stats is not None:
            _add_traffic(service, service_label_dict(svc_labels), svc.stats)
        for dest in svc.dests.values():
            labels = backend_label_dict(svc_labels, dest.key)
            add_weight(Sample(n_weight, labels, dest.attrs.weight))
            counters = dest.counters
            if counters is None:
                continue
            add_active(Sample(n_active, labels, counters.active_conns))
            add_inactive(Sample(n_inactive, labels, counters.inactive_conns))
            add_persistent(Sample(n_persistent, labels, counters.persistent_conns))
            stats = counters.stats
            add_conns(Sample(n_conns, labels, stats.conns))
            add_inpkts(Sample(n_inpkts, labels, stats.inpkts))
            add_outpkts(Sample(n_outpkts, labels, stats.outpkts))
            add_inbytes(Sample(n_inbytes, labels, stats.inbytes))
            add_outbytes(Sample(n_outbytes, labels, stats.outbytes))
    return [active, inactive, persistent, weight, *backend, *service]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, unless something else already did."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _traffic_families(kind: str, labels: Sequence[str]) -> list[CounterMetricFamily]:
    return [
        CounterMetricFamily(f"ipvs_{kind}_{name}", f"{doc} by this {kind}.", labels=labels)
        for name, doc in _TRAFFIC
    ]


def _add_traffic(families: list[CounterMetricFamily], labels: dict[str, str], st: Stats) -> None:
    values = (st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes)
    for family, value in zip(families, values, strict=True):
        family.samples.append(Sample(f"{family.name}_total", labels, value))


def _scrape_families(failed: bool, errors: int, duration_s: float) -> list[Metric]:
    (error_name, error_doc), (total_name, total_doc), (duration_name, duration_doc) = _SCRAPE
    return [
        GaugeMetricFamily(error_name, error_doc, value=1 if failed else 0),
        CounterMetricFamily(total_name, total_doc, value=errors),
        GaugeMetricFamily(duration_name, duration_doc, value=duration_s),
    ]


def _without_label_collisions(table: Table) -> Iterable[Service]:
    """The table's services, with fwmark services whose labels collide merged.

    An IPv4 and an IPv6 fwmark service with the same mark get the same labels
    (node_exporter has no family label), and two series with one label set
    would be rejected by Prometheus as duplicates. node_exporter sums such
    series, and so do we. Address/port services cannot collide: the address
    carries the family.
    """
    services = table.services.values()
    marks = [svc.key.fwmark for svc in services if svc.key.fwmark]
    if len(marks) == len(set(marks)):
        return services
    merged: dict[int, Service] = {}
    out: list[Service] = []
    for svc in services:
        mark = svc.key.fwmark
        if not mark:
            out.append(svc)
        elif mark in merged:
            merged[mark] = _merge_services(merged[mark], svc)
        else:
            merged[mark] = svc
    return [*out, *merged.values()]


def _merge_services(a: Service, b: Service) -> Service:
    dests = dict(a.dests)
    for key, dest in b.dests.items():
        dests[key] = _merge_dests(dests[key], dest) if key in dests else dest
    return Service(a.key, a.attrs, dests, _add_optional_stats(a.stats, b.stats))


def _merge_dests(a: Dest, b: Dest) -> Dest:
    key: DestKey = a.key
    attrs = DestAttrs(a.attrs.forward, a.attrs.weight + b.attrs.weight)
    if a.counters is None or b.counters is None:
        return Dest(key, attrs, a.counters or b.counters)
    ca, cb = a.counters, b.counters
    counters = DestCounters(
        ca.active_conns + cb.active_conns,
        ca.inactive_conns + cb.inactive_conns,
        ca.persistent_conns + cb.persistent_conns,
        _add_stats(ca.stats, cb.stats),
    )
    return Dest(key, attrs, counters)


def _add_optional_stats(a: Stats | None, b: Stats | None) -> Stats | None:
    if a is None or b is None:
        return a or b
    return _add_stats(a, b)


def _add_stats(a: Stats, b: Stats) -> Stats:
    return Stats(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Stats)})
