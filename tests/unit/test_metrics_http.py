"""The /metrics endpoint under idle and slow clients (issue 11 item 8).

Real loopback sockets against `serve` on 127.0.0.1 port 0; every loop is
bounded and every socket is closed by the test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from ipvsd.metrics import DaemonMetrics, MetricsServer, serve
from ipvsd.metrics.http import HttpLimits, _Connections

IDLE_CONNECTIONS = 300


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    DaemonMetrics(registry, version="1", node="n")
    return registry


@contextlib.contextmanager
def _server(limits: HttpLimits | None = None) -> Iterator[MetricsServer]:
    server = (
        serve(_registry(), "127.0.0.1:0")
        if limits is None
        else serve(_registry(), "127.0.0.1:0", limits=limits)
    )
    try:
        yield server
    finally:
        server.shutdown()


@contextlib.contextmanager
def _idle_clients(port: int, count: int, head: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections that send `head` (a partial request) and then nothing."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if head:
                sock.sendall(head)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _scrape(port: int) -> tuple[int, str, float]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
        return response.status, body, time.monotonic() - started


def _closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _settled_threads(before: int, limit: int, within_s: float = 2.0) -> int:
    """Threads started since `before`, once at most `limit` (or at the deadline).

    An evicted connection's handler unregisters, then returns: for a moment
    it is still alive beside its successor, so a sample can be one over the
    cap; without the cap there would be hundreds, for good.
    """
    deadline = time.monotonic() + within_s
    while (count := threading.active_count() - before) > limit and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_a_scrape_is_answered_while_300_idle_connections_are_open() -> None:
    before = threading.active_count()
    limit = HttpLimits().max_connections + 1  # the handlers and the acceptor
    with _server() as server, _idle_clients(server.port, IDLE_CONNECTIONS, b"GET /metr"):
        time.sleep(0.2)  # let the server accept them all
        threads_while_idle = _settled_threads(before, limit)
        status, body, elapsed = _scrape(server.port)
        threads_after_scrape = _settled_threads(before, limit)
    assert status == 200
    assert "ipvsd_info" in body
    assert elapsed < 2.0
    assert threads_while_idle <= limit, threads_while_idle
    assert threads_after_scrape <= limit, threads_after_scrape


def test_a_scrape_is_answered_while_idle_connections_sent_nothing() -> None:
    with _server() as server, _idle_clients(server.port, IDLE_CONNECTIONS):
        status, _, elapsed = _scrape(server.port)
    assert status == 200
    assert elapsed < 2.0


def test_idle_connections_are_closed_after_the_head_timeout() -> None:
    limits = HttpLimits(max_connections=8, head_timeout_s=0.3, write_timeout_s=5.0)
    with _server(limits) as server, _idle_clients(server.port, 3, b"GET / HTTP/1.1\r\n") as socks:
        started = time.monotonic()
        assert all(_closed_by_peer(sock, within_s=3.0) for sock in socks)
        assert time.monotonic() - started < 2.5


def test_a_slowloris_head_is_closed_at_the_head_deadline_not_per_byte() -> None:
    # One byte every 0.1 s never trips a per-recv timeout; the head deadline
    # counts from the first byte's wait, not from the last byte.
    limits = HttpLimits(max_connections=8, head_timeout_s=0.5, write_timeout_s=5.0)
    with _server(limits) as server, _idle_clients(server.port, 1) as (sock,):
        started = time.monotonic()
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 40:  # bounded: 63 bytes
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_peer(sock, within_s=0.1):
                closed = True
                break
        assert closed
        assert time.monotonic() - started < 3.0


def test_keep_alive_between_scrapes_still_works() -> None:
    with _server() as server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"</html>" not in data:
                chunk = s.recv(4096)
                assert chunk
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")


def test_a_client_that_does_not_read_is_dropped_at_the_write_timeout() -> None:
    # An 8 MB page (one long HELP text: cheap to make) cannot fit in the
    # socket buffers (tcp_wmem's maximum is 4 MB, the client's window 4 KB),
    # so the server's write blocks until the write timeout; the head timeout
    # is far longer and cannot be what closes it.
    registry = CollectorRegistry(auto_describe=False)
    Gauge("big", "x" * 8_000_000, registry=registry)
    limits = HttpLimits(max_connections=4, head_timeout_s=30.0, write_timeout_s=0.3)
    server = serve(registry, "127.0.0.1:0", limits=limits)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
            sock.settimeout(5)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"  # being served, then never read again
            deadline = time.monotonic() + 5.0
            while server.connections() > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.connections() == 0
    finally:
        server.shutdown()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        HttpLimits(max_connections=0)
    with pytest.raises(ValueError, match="head_timeout_s"):
        HttpLimits(head_timeout_s=0)


def test_at_the_cap_the_longest_idle_is_evicted_and_busy_ones_never() -> None:
    conns = _Connections(HttpLimits(max_connections=2))
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        (busy, _), (idle, idle_peer), (new, _) = pairs
        clock = iter([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]).__next__
        assert conns.admit(busy, clock)
        assert conns.admit(idle, clock)
        assert conns.busy(busy)

        # The evicted connection's handler sees EOF and unregisters.
        def handler() -> None:
            idle_peer.settimeout(5)
            idle.settimeout(5)
            assert idle.recv(1) == b""
            conns.forget(idle)

        thread = threading.Thread(target=handler)
        thread.start()
        assert conns.admit(new, lambda: 3.0)
        thread.join(5)
        assert not conns.busy(idle)  # gone
        assert len(conns) == 2
        # Now both are busy: a third is refused at once, nobody evicted.
        assert conns.busy(new)
        with socket.socket() as extra:
            assert not conns.admit(extra, lambda: 4.0)
        assert len(conns) == 2
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_scrape_is_rendered_at_background_priority() -> None:
    """The handler thread runs at nice +10: on a busy CPU the advert sender and
    the loop go first (issue 11 item 7)."""
    seen: list[int] = []

    class NiceProbe:
        def collect(self) -> list[object]:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return []

    registry = _registry()
    registry.register(NiceProbe())  # type: ignore[arg-type]
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    server = serve(registry, "127.0.0.1:0")
    try:
        status, _, _ = _scrape(server.port)
    finally:
        server.shutdown()
    assert status == 200
    assert seen == [min(19, own + 10)]
