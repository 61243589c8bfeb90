"""Prometheus metrics: the kernel's IPVS table (pull) and the daemon's events (push).

Style G10: kernel counters come from `IpvsExporter`, which reads the IPVS
table at scrape time; the daemon's own events go to `DaemonMetrics`, ordinary
counters and gauges on a registry the daemon injects. `serve` puts both in one
response::

    registry = CollectorRegistry(auto_describe=False)
    metrics = DaemonMetrics(registry, version=__version__, node=config.node_name)
    server = serve(registry, config.metrics.listen, ipvs=IpvsExporter(read_table))
    ...
    server.shutdown()                                # serve: OSError if it cannot bind

The pieces live in ``labels`` (label names and values, shared),
``ipvs`` (the table's exporter), ``daemon`` (`DaemonMetrics`,
`EventLoopLag`) and ``http`` (the endpoint); import them from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipvsd.metrics.daemon import (
        HEALTH_CHECK_BUCKETS,
        LOOP_LAG_BUCKETS,
        VRRP_STATE_VALUES,
        DaemonMetrics,
        EventLoopLag,
    )
    from ipvsd.metrics.http import MetricsServer, serve
    from ipvsd.metrics.ipvs import METRIC_NAMES, IpvsExporter, write_table_text
    from ipvsd.metrics.labels import (
        BACKEND_LABELS,
        SERVICE_LABELS,
        backend_labels,
        service_labels,
    )

__all__ = [
    "BACKEND_LABELS",
    "HEALTH_CHECK_BUCKETS",
    "LOOP_LAG_BUCKETS",
    "METRIC_NAMES",
    "SERVICE_LABELS",
    "VRRP_STATE_VALUES",
    "DaemonMetrics",
    "EventLoopLag",
    "IpvsExporter",
    "MetricsServer",
    "backend_labels",
    "serve",
    "service_labels",
    "write_table_text",
]

#: Where each name lives: imported when first asked for, so that the daemon
#: loads the endpoint (``http``) and the table's exporter (``ipvs``) only when
#: /metrics is served, after VRRP has started (`ipvsd.daemon.root`).
_HOME = {
    **dict.fromkeys(
        (
            "HEALTH_CHECK_BUCKETS",
            "LOOP_LAG_BUCKETS",
            "VRRP_STATE_VALUES",
            "DaemonMetrics",
            "EventLoopLag",
        ),
        "daemon",
    ),
    **dict.fromkeys(("MetricsServer", "serve"), "http"),
    **dict.fromkeys(("METRIC_NAMES", "IpvsExporter", "write_table_text"), "ipvs"),
    **dict.fromkeys(
        ("BACKEND_LABELS", "SERVICE_LABELS", "backend_labels", "service_labels"), "labels"
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
