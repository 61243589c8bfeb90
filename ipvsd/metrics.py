"""Prometheus metrics: the kernel's IPVS table (pull) and the daemon's events (push).

Style G10: kernel counters come from `IpvsCollector`, which reads the IPVS
table at scrape time; the daemon's own events go to `DaemonMetrics`, ordinary
counters and gauges on a registry the daemon injects. Both live on one private
``CollectorRegistry`` served by `serve`::

    registry = CollectorRegistry(auto_describe=False)
    metrics = DaemonMetrics(registry, version=__version__, node=config.node_name)
    registry.register(IpvsCollector(read_table))
    server = serve(registry, config.metrics.listen)   # OSError if it cannot bind
    ...
    server.shutdown()

The pieces live in ``metrics_labels`` (label names and values, shared),
``metrics_ipvs`` (the collector) and ``metrics_daemon`` (`DaemonMetrics`,
`EventLoopLag`); import them from here.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from ipvsd.metrics_daemon import (
    HEALTH_CHECK_BUCKETS,
    LOOP_LAG_BUCKETS,
    VRRP_STATE_VALUES,
    DaemonMetrics,
    EventLoopLag,
)
from ipvsd.metrics_ipvs import METRIC_NAMES, IpvsCollector, table_families
from ipvsd.metrics_labels import (
    BACKEND_LABELS,
    SERVICE_LABELS,
    backend_label_dict,
    backend_labels,
    service_labels,
)
from ipvsd.model import parse_endpoint

__all__ = [
    "BACKEND_LABELS",
    "HEALTH_CHECK_BUCKETS",
    "LOOP_LAG_BUCKETS",
    "METRIC_NAMES",
    "SERVICE_LABELS",
    "VRRP_STATE_VALUES",
    "DaemonMetrics",
    "EventLoopLag",
    "IpvsCollector",
    "MetricsServer",
    "backend_label_dict",
    "backend_labels",
    "serve",
    "service_labels",
    "table_families",
]


class MetricsServer:
    """prometheus-client's HTTP server and its thread, as `serve` started them."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
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


def serve(registry: CollectorRegistry, listen: str) -> MetricsServer:
    """Serve `registry` on ``http://LISTEN/metrics`` from prometheus-client's thread.

    Args:
        registry: what to export (the daemon's private registry).
        listen: ``ADDRESS:PORT``, IPv6 in brackets (``[::1]:9477``); port 0
            picks a free port (see `MetricsServer.port`).

    Returns:
        The running server; call ``shutdown()`` to stop it.

    Raises:
        ValueError: `listen` is not ``ADDRESS:PORT``.
        OSError: the address cannot be bound, with a message such as
            ``cannot listen on 127.0.0.1:9477: Address already in use`` and
            the original ``errno``.
    """
    address, port = parse_endpoint(listen)
    try:
        server, thread = start_http_server(port, addr=str(address), registry=registry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot listen on {listen}: {reason}") from exc
    return MetricsServer(server, thread)
