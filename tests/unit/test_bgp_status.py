"""BGP mode in status (JSON round trip, text) and metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ipvsd.control.render import status_text
from ipvsd.control.status import BgpPrefixStatus, BgpSession, BgpStatus, StatusDocument
from ipvsd.control.status_json import from_json, to_json
from ipvsd.metrics.bgp import BgpMetrics

BGP = BgpStatus(
    speaker="BIRD 2.0.12 ready.",
    running=True,
    local_as=65001,
    drained=False,
    sessions=(
        BgpSession("10.0.0.1", 65000, "Established", True),
        BgpSession("10.0.0.2", 65000, "Active", False),
    ),
    prefixes=(
        BgpPrefixStatus("10.0.0.100/32", True, "healthy"),
        BgpPrefixStatus("10.0.0.101/32", False, "no quorum: 10.0.0.101:80"),
    ),
)
DOC = StatusDocument(node="d1", version="1.0", bgp=BGP)


def test_json_has_sessions_and_announced_prefixes_and_round_trips() -> None:
    data = to_json(DOC)
    assert data["bgp"]["announced"] == ["10.0.0.100/32"]
    assert data["bgp"]["sessions"][0] == {
        "neighbor": "10.0.0.1",
        "remote_as": 65000,
        "state": "Established",
        "up": True,
    }
    assert from_json(data) == DOC
    assert to_json(StatusDocument("n", "v"))["bgp"] is None


def test_text() -> None:
    text = status_text(DOC)
    assert "BGP: AS 65001, speaker BIRD 2.0.12\n" in text
    assert "10.0.0.2 65000 Active" in text
    assert "10.0.0.101/32 no        no quorum: 10.0.0.101:80" in text


def test_metrics() -> None:
    registry = CollectorRegistry(auto_describe=False)
    metrics = BgpMetrics(registry)
    metrics.sessions([("10.0.0.1", True), ("10.0.0.2", False)])
    a, b = "10.0.0.100/32", "10.0.0.101/32"
    metrics.announced((a, b), {a})
    value = registry.get_sample_value
    assert value("ipvsd_bgp_session_up", {"neighbor": "10.0.0.1"}) == 1
    assert value("ipvsd_bgp_session_up", {"neighbor": "10.0.0.2"}) == 0
    assert value("ipvsd_bgp_prefix_announced", {"prefix": "10.0.0.100/32"}) == 1
    assert value("ipvsd_bgp_prefix_announced", {"prefix": "10.0.0.101/32"}) == 0
    assert value("ipvsd_bgp_announced_prefixes") == 1
    metrics.sessions([("10.0.0.1", True)])
    metrics.announced((a,), set())
    assert value("ipvsd_bgp_session_up", {"neighbor": "10.0.0.2"}) is None
    assert value("ipvsd_bgp_prefix_announced", {"prefix": "10.0.0.101/32"}) is None
    assert value("ipvsd_bgp_announced_prefixes") == 0
