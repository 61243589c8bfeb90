"""The /metrics HTTP endpoint: the daemon's registry, then the IPVS table, streamed.

prometheus-client's own server (``start_http_server``) encodes the whole page
with ``generate_latest`` before sending a byte. That is fine for the daemon's
few dozen series but not for the kernel table (see `ipvsd.metrics.ipvs`), so
this server writes the response with chunked transfer encoding: first the
registry's text, then `IpvsExporter.write`'s chunks as they are made.

Like prometheus-client's server it runs on threads of its own (one per
request), never on the event loop; a scrape's netlink dump is the only part
that runs on the loop (`IpvsExporter`'s ``read_table``).

Not done: gzip. Prometheus asks for it, but identity is always acceptable and
compressing a 10k x 4 page costs about 28 µs of CPU per real, more than
writing it.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv6Address
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from ipvsd.metrics.ipvs import IpvsExporter
from ipvsd.model import parse_endpoint

log = structlog.get_logger("ipvsd.metrics")

_LANDING_PAGE = (
    b"<html><head><title>ipvsd</title></head><body><h1>ipvsd</h1>"
    b'<p><a href="/metrics">Metrics</a></p></body></html>\n'
)


class MetricsServer:
    """The HTTP server and its thread, as `serve` started them."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the real one when asked for port 0)."""
        return int(self._server.server_address[1])

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and wait for the thread.

        Safe to call more than once. A scrape in progress when it is called
        finishes on its own daemon thread.
        """
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout_s)
        self._server.server_close()


def serve(
    registry: CollectorRegistry, listen: str, *, ipvs: IpvsExporter | None = None
) -> MetricsServer:
    """Serve `registry` (and the IPVS table) on ``http://LISTEN/metrics``.

    Args:
        registry: the daemon's own metrics.
        listen: ``ADDRESS:PORT``, IPv6 in brackets (``[::1]:9477``); port 0
            picks a free port (see `MetricsServer.port`).
        ipvs: the kernel table's exporter, written after the registry; None
            when there is no table to export.

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
    thread = threading.Thread(target=server.serve_forever, name="ipvsd-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    ipvs: IpvsExporter | None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for chunked responses and keep-alive between scrapes.
    protocol_version = "HTTP/1.1"
    server: _Server

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
        # they get the plain body, ended by closing the connection.
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        write = self._chunk if chunked else self.wfile.write
        try:
            write(generate_latest(self.server.registry))
            if self.server.ipvs is not None:
                self.server.ipvs.write(write)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The scraper gave up (its timeout); nothing to answer any more.
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
        # Scrapes every few seconds would flood the journal; errors are logged above.
        pass
