"""The /metrics HTTP endpoint: the daemon's registry, then the IPVS table, streamed.

prometheus-client's own server (``start_http_server``) encodes the whole page
with ``generate_latest`` before sending a byte. That is fine for the daemon's
few dozen series but not for the kernel table (see `ipvsd.metrics.ipvs`), so
this server writes the response with chunked transfer encoding: first the
registry's text, then `IpvsExporter.write`'s chunks as they are made.

Like prometheus-client's server it runs on threads of its own (one per
connection), never on the event loop; a scrape's netlink dump is the only part
that runs on the loop (`IpvsExporter`'s ``read_table``).

Limits (issue 11 item 8), so idle or slow clients cannot hold threads:

- **Connection cap** (`HttpLimits.max_connections`, default 16): at most that
  many connections, hence handler threads, at a time.
- **Idle connections are evicted first.** A connection is *idle* while it
  waits for a request head (a new connection, or keep-alive between scrapes)
  and *busy* from a complete head to the end of its response. When a
  connection arrives at the cap, the acceptor closes the connection that has
  been idle longest, waits (at most a second) for its thread to end, and
  serves the new one; it refuses (closes) the new connection only when every
  slot is busy answering. So a flood of idle or half-sent requests costs the
  flooder its own older connections, never a scrape whose head has arrived,
  and a new scrape always gets a slot within one eviction. A scrape sends its
  head as soon as it connects, so it is busy (not evictable) within
  microseconds; only a flood of more than ``max_connections`` connections in
  that window could evict it, and the scraper retries at its next interval.
- **Head deadline** (`HttpLimits.head_timeout_s`, default 10 s): an idle
  connection is closed once it has been idle that long, counted from the start
  of the wait, not per byte, so a slowloris head dribbling a byte at a time
  is closed on time too. The acceptor thread enforces it between accepts
  (``service_actions``, every half second). Keep-alive connections idle longer
  than this between scrapes are closed too; scrapers reconnect.
- **Write timeout** (`HttpLimits.write_timeout_s`, default 10 s): each write
  of the response must complete within it (the socket timeout while busy), so
  a scraper that stops reading is dropped.

Closing a connection from the acceptor thread is ``shutdown(SHUT_RDWR)`` under
the registry's lock, which wakes the handler blocked in ``recv``; the handler
unregisters (under the same lock) before its socket is closed, so a shutdown
never reaches a closed, reused file descriptor.

The limits are module constants (`DEFAULT_LIMITS`), not configuration.

**gzip.** Prometheus sends ``Accept-Encoding: gzip`` with every scrape; a
scraper that names gzip (with a non-zero weight) gets the page compressed by
one zlib stream per response, fed each chunk as it is written, so the page is
still never held whole (`GZIP_LEVEL` says why level 1). Others get identity.

**No ``_created`` series.** prometheus-client adds a ``*_created`` sample
(the creation time) to every counter and histogram series; Prometheus 2
stores those as series of their own that nothing reads. The endpoint leaves
them out of the registry's text (`registry_text`) rather than calling
``disable_created_metrics()``, which would switch them off for the whole
process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv6Address
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from ipvsd.metrics.ipvs import IpvsExporter
from ipvsd.model import parse_endpoint
from ipvsd.process import lower_this_thread_priority

log = structlog.get_logger("ipvsd.metrics")

_LANDING_PAGE = (
    b"<html><head><title>ipvsd</title></head><body><h1>ipvsd</h1>"
    b'<p><a href="/metrics">Metrics</a></p></body></html>\n'
)

# How long the acceptor waits for an evicted connection's thread to end.
_EVICTION_WAIT_S = 1.0

#: zlib level of gzip'd scrapes. Level 1 (BestSpeed): a 10,000 x 4 page of 63 MB
#: shrinks 20x, to 3.1 MB, for about 4 us of CPU per real on a host core (level
#: 6 compresses 5 % more for 2.5x the CPU, level 9 costs 40 us per real, more
#: than writing the page). bench/metrics_scrape.py times the gzip'd scrape
#: against ``ipvsadm -Ln --stats``.
GZIP_LEVEL = 1

# Families whose samples may include ``_created`` (see the module docstring).
_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


def accepts_gzip(values: Iterable[str]) -> bool:
    """Whether ``Accept-Encoding`` header values name gzip with a non-zero weight.

    Args:
        values: every ``Accept-Encoding`` field of the request.

    Returns:
        True for ``gzip`` / ``x-gzip`` (RFC 9110 §12.5.3) unless its ``q`` is
        0 or unreadable; ``*`` does not count (identity is always acceptable).
    """
    for item in ",".join(values).split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        weight = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(number)
                except ValueError:
                    weight = 0.0
        return weight > 0
    return False


class _WithoutCreated:
    """A registry's families without their ``_created`` samples (for ``generate_latest``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            # collect() builds the families afresh: trimming them changes nothing kept.
            if family.type in _WITH_CREATED:
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def registry_text(registry: CollectorRegistry) -> bytes:
    """The text exposition of `registry`, without ``_created`` samples."""
    return generate_latest(_WithoutCreated(registry))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The endpoint's connection limits (see the module docstring)."""

    max_connections: int = 16
    """Connections (and handler threads) served at once."""
    head_timeout_s: float = 10.0
    """Seconds a connection may wait for a complete request head."""
    write_timeout_s: float = 10.0
    """Seconds each write of a response may take."""

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        for name in ("head_timeout_s", "write_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")


DEFAULT_LIMITS = HttpLimits()


class _Connection:
    __slots__ = ("done", "evicted", "idle_since", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.idle_since: float | None = now  # None while busy
        self.evicted = False
        self.done = threading.Event()


class _Connections:
    """The open connections, their idle/busy state, admission and eviction.

    Every method takes the time in (a monotonic float); ``close`` of a socket
    happens only under the lock, so it never races the owner's ``close``.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Connection] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def admit(self, sock: socket.socket, now: Callable[[], float]) -> bool:
        """Register `sock`, evicting the longest-idle connection at the cap.

        Returns:
            False when every slot is busy (or an eviction did not finish in
            time): the caller closes `sock` unserved.
        """
        deadline = now() + _EVICTION_WAIT_S
        while True:
            with self._lock:
                if len(self._open) < self._limits.max_connections:
                    self._open[sock] = _Connection(sock, now())
                    return True
                victim = self._longest_idle()
                if victim is None:
                    return False
                self._close(victim)
            # Outside the lock: the victim's thread unregisters under it.
            if not victim.done.wait(max(0.0, deadline - now())):
                return False

    def idle(self, sock: socket.socket, now: float) -> None:
        with self._lock:
            if (conn := self._open.get(sock)) is not None:
                conn.idle_since = now

    def busy(self, sock: socket.socket) -> bool:
        """Mark `sock` busy; False if it was closed (evicted, expired) already."""
        with self._lock:
            conn = self._open.get(sock)
            if conn is None or conn.evicted:
                return False
            conn.idle_since = None
            return True

    def forget(self, sock: socket.socket) -> None:
        """Unregister `sock`; its owner closes it afterwards."""
        with self._lock:
            if (conn := self._open.pop(sock, None)) is not None:
                conn.done.set()

    def expire(self, now: float) -> int:
        """Close connections idle for longer than the head timeout; count them."""
        with self._lock:
            stale = [
                conn
                for conn in self._open.values()
                if conn.idle_since is not None
                and not conn.evicted
                and now - conn.idle_since >= self._limits.head_timeout_s
            ]
            for conn in stale:
                self._close(conn)
            return len(stale)

    def close_all(self) -> None:
        with self._lock:
            for conn in self._open.values():
                self._close(conn)

    def _longest_idle(self) -> _Connection | None:
        idle = [c for c in self._open.values() if c.idle_since is not None and not c.evicted]
        return min(idle, key=lambda c: c.idle_since or 0.0, default=None)

    @staticmethod
    def _close(conn: _Connection) -> None:
        # Wakes the handler blocked in recv (it reads EOF) or fails its next
        # write; the handler then unregisters and closes the socket itself.
        conn.evicted = True
        with contextlib.suppress(OSError):  # already reset by the peer
            conn.sock.shutdown(socket.SHUT_RDWR)


class MetricsServer:
    """The HTTP server and its thread, as `serve` started them."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the real one when asked for port 0)."""
        return int(self._server.server_address[1])

    def connections(self) -> int:
        """The connections open now (served or waiting for a request)."""
        return len(self._server.connections)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and wait for the thread.

        Safe to call more than once. Idle connections are closed; a scrape in
        progress when it is called finishes on its own daemon thread.
        """
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout_s)
        self._server.server_close()
        self._server.connections.close_all()


def serve(
    registry: CollectorRegistry,
    listen: str,
    *,
    ipvs: IpvsExporter | None = None,
    limits: HttpLimits = DEFAULT_LIMITS,
) -> MetricsServer:
    """Serve `registry` (and the IPVS table) on ``http://LISTEN/metrics``.

    Args:
        registry: the daemon's own metrics.
        listen: ``ADDRESS:PORT``, IPv6 in brackets (``[::1]:9477``); port 0
            picks a free port (see `MetricsServer.port`).
        ipvs: the kernel table's exporter, written after the registry; None
            when there is no table to export.
        limits: connection cap and timeouts (`HttpLimits`).

    Returns:
        The running server; call ``shutdown()`` to stop it.

    Raises:
        ValueError: `listen` is not ``ADDRESS:PORT``.
        OSError: the address cannot be bound, with a message such as
            ``cannot listen on 127.0.0.1:9477: Address already in use`` and
            the original ``errno``.
    """
    address, port = parse_endpoint(listen)
    server_class = _Server6 if isinstance(address, IPv6Address) else _Server
    try:
        server = server_class((str(address), port), _Handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot listen on {listen}: {reason}") from exc
    server.registry = registry
    server.ipvs = ipvs
    server.limits = limits
    server.connections = _Connections(limits)
    thread = threading.Thread(target=server.serve_forever, name="ipvsd-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() must not join handler threads: the connections are
    # closed instead (MetricsServer.shutdown), and a scrape finishes alone.
    block_on_close = False
    # Room in the kernel for a burst of connections while the acceptor evicts
    # idle ones (at 128, a 300-connection burst from one process overflowed
    # it and a scrape waited for a 1 s SYN retransmission).
    request_queue_size = 512
    registry: CollectorRegistry
    ipvs: IpvsExporter | None
    limits: HttpLimits
    connections: _Connections

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.connections.admit(request, time.monotonic):
            super().process_request(request, client_address)
        else:
            log.warning("metrics.connection_refused", reason="all connections busy")
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # A scrape of 10,000 x 4 renders tens of MB: bulk work, never more
        # urgent than the loop or the advert sender (on one CPU it decided
        # whether an advert was 2 or 14 ms late).
        lower_this_thread_priority()
        super().process_request_thread(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.forget(request)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        # serve_forever calls this between accepts (every poll interval).
        if expired := self.connections.expire(time.monotonic()):
            log.debug("metrics.idle_closed", connections=expired)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr. A vanished, evicted or
        # slow client is handled in _Handler; anything reaching here is a bug.
        log.exception("metrics.handler_error", client=str(client_address[0]))


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Gzip:
    """A writer that gzips what it is given into `send`, one stream per response."""

    __slots__ = ("_send", "_zlib")

    def __init__(self, send: Callable[[bytes], object]) -> None:
        self._send = send
        # wbits 16 + 15: the gzip container (header and CRC-32 trailer), 32 kB window.
        self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def __call__(self, data: bytes) -> None:
        # zlib keeps what it cannot emit yet; most calls send nothing.
        if packed := self._zlib.compress(data):
            self._send(packed)

    def close(self) -> None:
        """Send the rest of the stream and the gzip trailer."""
        self._send(self._zlib.flush())


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for chunked responses and keep-alive between scrapes.
    protocol_version = "HTTP/1.1"
    server: _Server

    def handle_one_request(self) -> None:
        # Waiting for a head (first request or keep-alive): idle, evictable.
        self.connection.settimeout(self.server.limits.head_timeout_s)
        self.server.connections.idle(self.connection, time.monotonic())
        try:
            super().handle_one_request()
        except OSError as exc:
            # Evicted, timed out or reset mid-response: routine, not an error.
            self.close_connection = True
            log.debug("metrics.connection_closed", client=self.client_address[0], reason=str(exc))

    def parse_request(self) -> bool:
        # Reads the header lines (still idle: the head deadline runs), then a
        # whole head has arrived: busy until the response is written.
        parsed = super().parse_request()
        if not self.server.connections.busy(self.connection):
            # Closed while its head was read: whatever arrived is cut short
            # and nobody is listening for an answer.
            self.close_connection = True
            return False
        self.connection.settimeout(self.server.limits.write_timeout_s)
        return parsed

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics()
        elif path == "/":
            self._reply(200, "text/html; charset=utf-8", _LANDING_PAGE)
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

    def _metrics(self) -> None:
        # HTTP/1.0 clients (curl -0, simple scrapers) know no chunked encoding:
        # they get the body (gzip'd or not), ended by closing the connection.
        chunked = self.request_version != "HTTP/1.0"
        gzipped = accepts_gzip(self.headers.get_all("Accept-Encoding") or [])
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Vary", "Accept-Encoding")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        send = self._chunk if chunked else self.wfile.write
        write = _Gzip(send) if gzipped else send
        try:
            write(registry_text(self.server.registry))
            if self.server.ipvs is not None:
                self.server.ipvs.write(write)
            if isinstance(write, _Gzip):
                write.close()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            # The scraper gave up (its timeout, a reset) or stopped reading
            # (our write timeout); nothing to answer any more.
            self.close_connection = True
            log.info("metrics.client_gone", client=self.client_address[0])

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Scrapes every few seconds would flood the journal; errors are logged
        # above, and "Request timed out" (log_error) is an ordinary idle close.
        pass
