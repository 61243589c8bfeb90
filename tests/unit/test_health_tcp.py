"""The tcp prober (``ipvsd.health.tcp``) against loopback listeners: outcomes, deadlines, cancels.

A connect that hangs is made on loopback with a listener whose accept queue
is full (``listen(0)`` and one connection nobody accepts): the kernel drops
further SYNs, so connect() waits as it does for a dead host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.checks import Checker, CheckResult, CheckTarget, run_check, target_for
from ipvsd.health.tcp import TcpProbe

LOCAL = ip_address("127.0.0.1")
SLACK_S = 0.5


def tcp(port: int, timeout: float = 1.0, address: IPv4Address | IPv6Address = LOCAL) -> CheckTarget:
    return target_for(CheckConfig(type=CheckType.TCP, timeout=timeout), address, port)


@contextlib.contextmanager
def listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        sock.listen(64)
        yield sock


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: its listener's accept queue is full."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)  # one connection fills the queue
        port: int = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            yield port


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def start_probe(checker: Checker, target: CheckTarget) -> TcpProbe:
    """`checker.check` of a tcp target: a future (`TcpProbe`), not a coroutine."""
    probe = checker.check(target)
    assert isinstance(probe, TcpProbe)
    return probe


def assert_timed_out(result: CheckResult, timeout: float) -> None:
    assert (result.ok, result.reason) == (False, f"timeout after {timeout} s (connect)")
    assert timeout <= result.duration_s < timeout + SLACK_S


async def test_connected_refused_and_timed_out_side_by_side() -> None:
    checker = Checker()
    with listener() as up, unanswered_port() as hung:
        port = up.getsockname()[1]
        checks = [tcp(port), tcp(closed_port()), tcp(hung, timeout=0.3)] * 20
        results = await asyncio.gather(*(checker.check(t) for t in checks))
    checker.close()
    reasons = {(r.ok, r.reason) for r in results[0::3]}
    assert reasons == {(True, "connected")}
    assert {(r.ok, r.reason) for r in results[1::3]} == {(False, "connection refused")}
    for result in results[2::3]:
        assert_timed_out(result, 0.3)


async def test_the_check_is_a_future_owning_its_socket_until_it_ends() -> None:
    checker = Checker()
    with listener() as up:
        probe = checker.check(tcp(up.getsockname()[1]))
        assert isinstance(probe, TcpProbe)
        assert probe.sock is not None
        result = await probe
    checker.close()
    assert result.ok
    assert probe.sock is None


async def test_a_short_timeout_fires_on_time_behind_a_longer_one() -> None:
    checker = Checker()
    with unanswered_port() as hung:
        slow = start_probe(checker, tcp(hung, timeout=30.0))
        fast = await checker.check(tcp(hung, timeout=0.2))
        assert_timed_out(fast, 0.2)
        assert not slow.done()
        checker.close()
    assert slow.cancelled()


async def test_checks_started_later_time_out_in_turn() -> None:
    checker = Checker()
    with unanswered_port() as hung:
        first = checker.check(tcp(hung, timeout=0.2))
        await asyncio.sleep(0.1)
        second = start_probe(checker, tcp(hung, timeout=0.2))
        assert_timed_out(await first, 0.2)
        assert not second.done()
        assert_timed_out(await second, 0.2)
    checker.close()


async def test_cancelling_a_check_closes_its_socket_at_once() -> None:
    checker = Checker()
    with unanswered_port() as hung:
        probe = start_probe(checker, tcp(hung, timeout=0.2))
        connecting = open_fds()
        assert probe.cancel()
        assert open_fds() == connecting - 1
        assert probe.cancelled()
        await asyncio.sleep(0.3)  # its deadline passes: nothing left to time out
    checker.close()


async def test_cancelling_the_task_that_awaits_run_check_closes_the_socket() -> None:
    with unanswered_port() as hung:
        before = open_fds()
        task = asyncio.create_task(run_check(tcp(hung, timeout=5.0)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_fds() == before  # the socket and the prober's epoll are gone


def test_a_checker_follows_the_running_loop() -> None:
    checker = Checker()
    with listener() as up:
        target = tcp(up.getsockname()[1])

        async def once() -> CheckResult:
            return await checker.check(target)

        assert asyncio.run(once()).ok
        assert asyncio.run(once()).ok  # a new loop: a new prober
    checker.close()


async def test_a_bind_failure_is_named_and_ends_the_check_at_once() -> None:
    cfg = CheckConfig(type=CheckType.TCP, source_address=ip_address("192.0.2.1"))
    checker = Checker()
    probe = start_probe(checker, target_for(cfg, LOCAL, closed_port()))
    assert probe.done()
    result = await probe
    checker.close()
    assert result.reason == "cannot assign requested address (bind to 192.0.2.1)"


async def test_tcp_connects_from_the_source_address() -> None:
    cfg = CheckConfig(type=CheckType.TCP, source_address=ip_address("127.0.0.2"))
    with listener() as up:
        result = await run_check(target_for(cfg, LOCAL, up.getsockname()[1]))
        peer, (source, _) = up.accept()
        peer.close()
    assert source == "127.0.0.2"
    assert result.ok


def has_ipv6_loopback() -> bool:
    try:
        with listener("::1"):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_tcp_over_ipv6() -> None:
    with listener("::1") as up:
        result = await run_check(tcp(up.getsockname()[1], address=ip_address("::1")))
    assert (result.ok, result.reason) == (True, "connected")
