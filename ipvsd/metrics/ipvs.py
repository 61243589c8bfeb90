"""Pull-style exporter of the kernel's IPVS table (style G10), written as text.

Contract (design.md, "Prometheus metrics"): node_exporter's IPVS names without
``node_``, its labels (see `ipvsd.metrics.labels`), read from the kernel at
scrape time and never cached from an earlier poll.

Why not a prometheus-client ``Collector``: a scrape exports about nine samples
per real, and at 10,000 services x 4 reals building ``Sample`` tuples and
encoding them with ``generate_latest`` cost 64 µs of CPU per real on a host
core (target: 20), held the whole 63 MB page in memory and pushed the
daemon's RSS from 86 to ~400 MB. `write_table_text` writes the same bytes
(tested byte for byte against ``generate_latest`` over families built the
ordinary way) straight from the dump, 1,024 lines at a time, at about 6 µs
per real. The daemon's own metrics stay ordinary prometheus-client objects
(`ipvsd.metrics.daemon`); `ipvsd.metrics.http` serves both in one response.

No escaping is needed: every label value is an IP address, a decimal number,
a protocol name or a hex mark, none of which can hold ``\\``, ``"`` or a
newline. Labels are written sorted by name, as ``generate_latest`` does.

Threading: the HTTP server calls `IpvsExporter.write` on the request's thread.
The daemon's ``read_table`` bridges to the event loop that owns the netlink
socket::

    def read_table() -> Table:
        future = asyncio.run_coroutine_threadsafe(client.dump(), loop)
        return future.result(timeout=5.0)

One ``read_table`` runs at a time (concurrent scrapes queue on a lock),
because a netlink socket serves one dump at a time (EBUSY otherwise).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields

import structlog
from prometheus_client.utils import floatToGoString

from ipvsd.errors import IpvsdError
from ipvsd.gcpause import gc_paused
from ipvsd.metrics.labels import service_labels
from ipvsd.mh import MH, service_fingerprint
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Service,
    ServiceKey,
    Stats,
    Table,
)

log = structlog.get_logger("ipvsd.metrics")

#: Where the text goes: a chunk of UTF-8 exposition text per call.
Write = Callable[[bytes], object]

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
    ("ipvsd_scrape_error", "1 if the last read of the IPVS table failed, else 0.", "gauge"),
    ("ipvsd_scrape_errors_total", "Reads of the IPVS table that failed.", "counter"),
    ("ipvsd_scrape_duration_seconds", "How long the last read of the IPVS table took.", "gauge"),
)

_MH_TABLE = (
    "ipvsd_service_mh_table_info",
    "An mh service's Maglev table inputs, hashed (label fingerprint): directors behind"
    " ECMP keep moved flows on the same real only while it is equal on all of them.",
)

#: Every family the exporter can emit (exposition names).
METRIC_NAMES = (
    *(name for name, _ in _BACKEND_GAUGES),
    *(f"ipvs_backend_{name}" for name, _ in _TRAFFIC),
    *(f"ipvs_service_{name}" for name, _ in _TRAFFIC),
    _MH_TABLE[0],
    *(name for name, _, _ in _SCRAPE),
)

#: The last non-zero weight of a service's reals, as best known (the mh
#: fingerprint's count of a real at weight 0, `ipvsd.mh.known_last_weights`);
#: empty when unknown.
LastWeights = Callable[[ServiceKey], Mapping[DestKey, int]]

#: Lines per write: big enough that the per-write cost vanishes, small
#: enough that a 10k x 4 page (~63 MB) is never held whole.
CHUNK_LINES = 1024

# Column of each backend family in a backend row (see `_rows`): the gauges in
# `_BACKEND_GAUGES` order, then the traffic counters.
_GAUGE_COLUMNS = (2, 3, 4, 1)
_BACKEND_TRAFFIC_COLUMNS = (5, 6, 7, 8, 9)
_SERVICE_TRAFFIC_COLUMNS = (1, 2, 3, 4, 5)

# A row: the label text (``{...} ``) then the values; None where the kernel
# gave no counters.
_Row = tuple[object, ...]


class IpvsExporter:
    """Reads the IPVS table at every scrape and writes it as node_exporter names it.

    If ``read_table`` raises (netlink error, timeout, anything), the scrape
    still succeeds: it carries no ``ipvs_*`` series, ``ipvsd_scrape_error`` is 1
    and ``ipvsd_scrape_errors_total`` counts the failure. A missing series is
    what an absent kernel table looks like to Prometheus, so alert on
    ``ipvsd_scrape_error == 1``.
    """

    def __init__(
        self,
        read_table: Callable[[], Table],
        *,
        clock: Callable[[], float] = time.perf_counter,
        enabled: Callable[[], bool] = lambda: True,
        last_weights: LastWeights = lambda _key: {},
    ) -> None:
        """Create the exporter.

        Args:
            read_table: returns a fresh kernel dump (with stats); called once per
                scrape, from the HTTP server's thread, never concurrently.
            clock: monotonic seconds, for ``ipvsd_scrape_duration_seconds``.
            enabled: asked at every scrape; False writes nothing at all (a pure
                VRRP daemon has no IPVS metrics, until a reload adds services).
            last_weights: the last weights of a service's reals, for the
                fingerprint of an ``mh`` service (`ipvsd.mh`); called on the HTTP
                server's thread, so it reads only what is swapped whole, never
                changed in place.
        """
        self._enabled = enabled
        self._read_table = read_table
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = 0
        self._last_weights = last_weights

    def write(self, write: Write) -> None:
        """Read the table and write its families, then the scrape's own.

        Never raises for a failed read; exceptions from `write` (a client that
        went away) propagate.
        """
        if not self._enabled():
            return
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
        if table is not None:
            write_table_text(table, write, self._last_weights)
        values = (1 if table is None else 0, errors, duration_s)
        write(
            "".join(
                f"{_header(name, doc, kind)}{name} {_go(value)}\n"
                for (name, doc, kind), value in zip(_SCRAPE, values, strict=True)
            ).encode()
        )

    def text(self) -> bytes:
        """One scrape as a single byte string (for tests and small tables)."""
        chunks: list[bytes] = []
        self.write(chunks.append)
        return b"".join(chunks)


def write_table_text(
    table: Table, write: Write, last_weights: LastWeights = lambda _key: {}
) -> None:
    """Write the ``ipvs_*`` families of a table, `CHUNK_LINES` lines per call.

    The bytes are exactly what ``generate_latest`` makes of the same samples:
    families in the order active, inactive, persistent, weight, the five
    backend counters, the five service counters; ``# HELP`` and ``# TYPE``
    before each; values as Go prints floats. A dest without counters exports
    only its weight; a service without stats exports no service series. Then,
    when the table has ``mh`` services, ``ipvsd_service_mh_table_info``.

    Args:
        table: a kernel dump.
        write: called with each chunk of UTF-8 text.
        last_weights: for the ``mh`` fingerprints (`ipvsd.mh.service_fingerprint`).
    """
    # The rows all live until the page is written, and none is in a cycle.
    with gc_paused():
        exported = _without_label_collisions(table)
        backends, services = _rows(exported)
    for (name, doc), column in zip(_BACKEND_GAUGES, _GAUGE_COLUMNS, strict=True):
        _write_family(write, name, doc, "gauge", backends, column)
    for (name, doc), column in zip(_TRAFFIC, _BACKEND_TRAFFIC_COLUMNS, strict=True):
        family = f"ipvs_backend_{name}"
        _write_family(write, family, f"{doc} by this backend.", "counter", backends, column)
    for (name, doc), column in zip(_TRAFFIC, _SERVICE_TRAFFIC_COLUMNS, strict=True):
        family = f"ipvs_service_{name}"
        _write_family(write, family, f"{doc} by this service.", "counter", services, column)
    mh = [
        (_mh_labels(svc, last_weights(svc.key)), 1) for svc in exported if svc.attrs.scheduler == MH
    ]
    if mh:
        _write_family(write, *_MH_TABLE, "gauge", mh, 1)


def _mh_labels(svc: Service, last_weights: Mapping[DestKey, int]) -> str:
    address, port, proto, mark = service_labels(svc.key)
    fingerprint = service_fingerprint(svc.dests.values(), last_weights)
    return (
        f'{{fingerprint="{fingerprint}",local_address="{address}",local_mark="{mark}",'
        f'local_port="{port}",proto="{proto}"}} '
    )


def _rows(exported: Iterable[Service]) -> tuple[list[_Row], list[_Row]]:
    """One row per backend and per service with stats: label text, then values.

    Backend row: (labels, weight, active, inactive, persistent, conns, inpkts,
    outpkts, inbytes, outbytes). Service row: (labels, conns, inpkts, outpkts,
    inbytes, outbytes). The label text of a backend is built once and shared
    by its nine lines.
    """
    backends: list[_Row] = []
    services: list[_Row] = []
    add_backend = backends.append
    for svc in exported:
        address, port, proto, mark = service_labels(svc.key)
        local = f'local_address="{address}",local_mark="{mark}",local_port="{port}",proto="{proto}"'
        if svc.stats is not None:
            st = svc.stats
            services.append(
                (f"{{{local}}} ", st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes)
            )
        prefix = f'{{{local},remote_address="'
        for dest in svc.dests.values():
            key = dest.key
            labels = f'{prefix}{key.address}",remote_port="{key.port}"}} '
            counters = dest.counters
            if counters is None:
                add_backend((labels, dest.attrs.weight, *(None,) * 8))
                continue
            s = counters.stats
            add_backend(
                (
                    labels,
                    dest.attrs.weight,
                    counters.active_conns,
                    counters.inactive_conns,
                    counters.persistent_conns,
                    s.conns,
                    s.inpkts,
                    s.outpkts,
                    s.inbytes,
                    s.outbytes,
                )
            )
    return backends, services


def _write_family(
    write: Write, name: str, doc: str, kind: str, rows: Sequence[_Row], column: int
) -> None:
    write(_header(name, doc, kind).encode())
    for first in range(0, len(rows), CHUNK_LINES):
        chunk = rows[first : first + CHUNK_LINES]
        text = "".join(
            [f"{name}{row[0]}{_go(row[column])}\n" for row in chunk if row[column] is not None]
        )
        if text:
            write(text.encode())


def _header(name: str, doc: str, kind: str) -> str:
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def _go(value: object) -> str:
    """``floatToGoString`` of a counter, with ints below 2**53 (every counter
    short of 9 PB) done inline: that helper's float/repr round trip was most of
    the page's CPU, since byte counters are past 10**6 where Go switches to
    exponents. The same text: ``1234567`` -> ``1.234567e+06``."""
    if type(value) is int and 0 <= value < _EXACT_INT:
        if value < 1_000_000:
            return f"{value}.0"
        digits = str(value)
        mantissa = f"{digits[0]}.{digits[1:]}".rstrip("0.")
        return f"{mantissa}e+{len(digits) - 1:02d}"
    # prometheus-client's formatter, untyped there; floats, inf and huge ints alike.
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


# Above this a float no longer holds every integer, and the text is the float's.
_EXACT_INT = 2**53


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
