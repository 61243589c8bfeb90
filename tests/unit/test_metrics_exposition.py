"""What Prometheus receives from /metrics: no ``_created`` series, gzip when asked, lint-clean.

Prometheus sends ``Accept-Encoding: gzip`` with every scrape; the endpoint
then compresses the streamed page with one zlib stream per response (the
page is never held whole). ``_created`` samples (prometheus-client's
per-counter creation timestamps) are dropped: Prometheus 2 stores them as
ordinary series, one more per counter and histogram, that no dashboard reads.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from ipvsd.metrics import DaemonMetrics, IpvsExporter, MetricsServer, serve
from ipvsd.metrics.http import GZIP_LEVEL, accepts_gzip
from lab.contrib import promtool
from tests.unit.test_metrics import FIXTURE, big_table


def daemon_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    metrics = DaemonMetrics(registry, version="1.2.3", node="director1")
    metrics.vrrp_transition("VI_1", "MASTER")
    metrics.config_reload(ok=True)
    metrics.loop_lag(0.001)
    return registry


@contextlib.contextmanager
def running() -> Iterator[MetricsServer]:
    server = serve(daemon_registry(), "127.0.0.1:0", ipvs=IpvsExporter(lambda: FIXTURE))
    try:
        yield server
    finally:
        server.shutdown()


def get(port: int, *headers: str, version: str = "HTTP/1.1") -> tuple[dict[str, str], bytes]:
    """One GET /metrics on a fresh connection: (headers lower-cased, body de-chunked)."""
    request = f"GET /metrics {version}\r\nHost: x\r\nConnection: close\r\n"
    request += "".join(f"{h}\r\n" for h in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == "200", lines[0]
    fields = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    if fields.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return fields, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        assert size > 0
        out, data = out + data[:size], data[size + 2 :]


def without_timings(page: bytes) -> list[bytes]:
    """The page's lines, minus the ones that change between two scrapes."""
    return [
        line
        for line in page.splitlines()
        if not line.startswith((b"ipvsd_scrape_duration_seconds", b"ipvsd_scrape_errors_total"))
    ]


def test_no_created_series_are_exported() -> None:
    with running() as server:
        _, page = get(server.port)
    assert b"ipvsd_vrrp_transitions_total{" in page
    assert b"ipvsd_health_check_duration_seconds_count" in page
    assert b"_created" not in page


def test_the_build_info_series_is_exported() -> None:
    with running() as server:
        _, page = get(server.port)
    assert b'ipvsd_build_info{version="1.2.3"} 1.0\n' in page


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_gzip_when_the_scraper_accepts_it(version: str) -> None:
    """Prometheus's header; HTTP/1.0 gets a gzip body ended by the close."""
    with running() as server:
        plain_headers, plain = get(server.port, version=version)
        headers, body = get(server.port, "Accept-Encoding: gzip", version=version)
    assert headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain_headers
    assert headers["vary"] == plain_headers["vary"] == "Accept-Encoding"
    assert without_timings(gzip.decompress(body)) == without_timings(plain)
    assert len(body) < len(plain) / 4


def test_a_page_of_many_writes_is_one_gzip_stream() -> None:
    """5,000 services: dozens of chunked writes, each compressed as it comes."""
    big = big_table()
    server = serve(daemon_registry(), "127.0.0.1:0", ipvs=IpvsExporter(lambda: big))
    try:
        _, plain = get(server.port)
        headers, body = get(server.port, "Accept-Encoding: gzip")
    finally:
        server.shutdown()
    assert headers["transfer-encoding"] == "chunked"
    assert without_timings(gzip.decompress(body)) == without_timings(plain)
    assert plain.count(b"ipvs_backend_weight{") == 5000


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["gzip"], True),
        (["deflate, gzip"], True),
        (["gzip;q=0.5, identity"], True),
        (["GZIP"], True),
        (["x-gzip"], True),
        (["br", "gzip"], True),
        (["gzip;q=0"], False),
        (["gzip; q=0.000"], False),
        (["deflate"], False),
        (["identity"], False),
        (["*"], False),  # identity is always acceptable; we only compress when named
        ([], False),
        (["gzip;q=nonsense"], False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(values: list[str], expected: bool) -> None:
    assert accepts_gzip(values) is expected


def test_gzip_level_is_a_fast_one() -> None:
    """Speed over size: see the level's comment in ipvsd/metrics/http.py and bench/README.md."""
    assert 1 <= GZIP_LEVEL <= 6


def test_promtool_finds_nothing_to_lint_in_a_scrape() -> None:
    with running() as server:
        _, page = get(server.port)
    assert promtool("check", "metrics", stdin=page) == (0, "")
