"""`EarlyMetrics`: the events before prometheus-client is loaded end up in the series.

The daemon creates its `DaemonMetrics` only after the first reconcile pass
(`ipvsd.daemon.root.Daemon._bind_metrics`); whatever happened before must
read on /metrics as if the metrics had been there from the start.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from ipaddress import ip_address

import pytest
from prometheus_client import CollectorRegistry

from ipvsd.metrics.daemon import DaemonMetrics
from ipvsd.metrics.early import EarlyMetrics
from ipvsd.metrics.http import registry_text
from ipvsd.model import DestKey, Family, Protocol, ServiceKey

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.0.2.10"), 80)
DNS = ServiceKey(Family.INET, Protocol.UDP, ip_address("192.0.2.10"), 53)
R1 = (WEB, DestKey(ip_address("10.1.0.1"), 80))
R2 = (WEB, DestKey(ip_address("10.1.0.2"), 80))
R3 = (DNS, DestKey(ip_address("10.1.0.3"), 53))
LOADED_AT = 1_700_000_000.0
RELOADED_AT = 1_700_000_100.0

Metrics = DaemonMetrics | EarlyMetrics


def events(m: Metrics) -> None:
    """One of each, with the orders that matter: gone then back, retain after a state."""
    m.backend_up(R1, True)
    m.backend_up(R2, True)
    m.backend_up(R3, False)
    m.backend_gone(R2)
    m.backend_up(R1, False)
    m.backend_gone(R3)
    m.backend_up(R3, True)
    m.service_quorum(WEB, True)
    m.service_quorum(DNS, False)
    m.service_gone(DNS)
    m.health_check_duration(0.003)
    m.health_check_duration(0.2)
    m.reconcile_operations({"add_service": 2, "add_dest": 0})
    m.reconcile_operations({"add_dest": 3, "edit_dest": 1})
    m.reconcile_error()
    m.reconcile_error(2)
    m.vrrp_state("VI_1", "eth1", 51, "BACKUP")
    m.vrrp_state("VI_2", "eth1", 52, "BACKUP")
    m.vrrp_instance_info("VI_1", version=2, family="ipv4", advert_int=1.0)
    m.vrrp_priority("VI_1", 100)
    m.vrrp_transition("VI_1", "BACKUP")
    m.vrrp_failure("VI_1", "gone")
    m.vrrp_route_error("VI_1", "EEXIST")
    m.invalid_packet("eth1", "bad_ttl")
    m.retain([("VI_1", "eth1", 51)])
    m.sync_daemon_pass("backup", True)
    m.sync_daemon_pass(None, False)
    m.config_reload(True, at=RELOADED_AT)
    m.config_reload(False)
    m.loop_lag(0.002)


def direct() -> bytes:
    metrics = DaemonMetrics(CollectorRegistry(), version="1", node="d1", loaded_at=LOADED_AT)
    events(metrics)
    return registry_text(metrics.registry)


def test_what_was_kept_reads_as_if_the_metrics_had_been_there() -> None:
    early = EarlyMetrics()
    events(early)
    metrics = DaemonMetrics(CollectorRegistry(), version="1", node="d1", loaded_at=LOADED_AT)
    early.bind(metrics)
    assert registry_text(metrics.registry) == direct()


def test_after_bind_every_call_goes_through() -> None:
    early = EarlyMetrics()
    metrics = DaemonMetrics(CollectorRegistry(), version="1", node="d1", loaded_at=LOADED_AT)
    early.bind(metrics)
    assert early.bound
    events(early)
    assert registry_text(metrics.registry) == direct()


def test_a_refused_reload_before_bind_keeps_its_time() -> None:
    early = EarlyMetrics()
    early.config_reload(True, at=RELOADED_AT)
    metrics = DaemonMetrics(CollectorRegistry(), version="1", node="d1", loaded_at=LOADED_AT)
    early.bind(metrics)
    value = metrics.registry.get_sample_value("ipvsd_config_last_reload_success_timestamp_seconds")
    assert value == RELOADED_AT


def _event_methods() -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(DaemonMetrics, inspect.isfunction)
        if not name.startswith("_")
    ]


@pytest.mark.parametrize("name", _event_methods())
def test_it_takes_every_event_method_with_the_same_signature(name: str) -> None:
    theirs: Callable[..., object] = getattr(DaemonMetrics, name)
    ours: Callable[..., object] = getattr(EarlyMetrics, name)
    assert inspect.signature(ours) == inspect.signature(theirs)
