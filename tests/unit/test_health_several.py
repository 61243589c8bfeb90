"""Several checks per real (``checks``): one round runs them all, the real passes when
all pass, and the status keeps each check's outcome. Checks run against loopback."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from ipvsd.config import parse_config
from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.control.render import status_text
from ipvsd.control.status import CheckStatus, RealStatus, StatusDocument, real_status
from ipvsd.control.status_json import from_json, to_json
from ipvsd.health.checks import Checker, target_for
from ipvsd.health.manager import HealthManager
from ipvsd.health.monitor import HealthMonitor, Watch
from ipvsd.health.policy import effective_checks, has_check
from ipvsd.health.tracker import CheckPart
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey
from tests.unit.test_status import web

LOCAL = ip_address("127.0.0.1")
WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def tcp(port: int) -> CheckConfig:
    return CheckConfig(type=CheckType.TCP, port=port, timeout=0.5)


async def test_the_real_passes_when_every_check_passes(listening: int) -> None:
    target = target_for(tcp(listening), LOCAL, listening)
    checker = Checker()
    try:
        result = await checker.check(replace(target, also=(target,)))
    finally:
        checker.close()
    assert (result.ok, result.reason) == (True, "all 2 checks passed")
    assert result.parts == (CheckPart("tcp", True, "connected"),) * 2


async def test_one_failing_check_fails_the_real_and_names_itself(listening: int) -> None:
    closed = closed_port()
    good = target_for(tcp(listening), LOCAL, listening)
    bad = target_for(CheckConfig(type=CheckType.EXEC, command=("false",)), LOCAL, closed)
    refused = target_for(tcp(closed), LOCAL, closed)
    checker = Checker()
    try:
        result = await checker.check(replace(good, also=(bad, refused)))
    finally:
        checker.close()
    assert not result.ok
    assert result.reason == "exec: exit status 1; tcp: connection refused"
    assert [(part.type, part.ok) for part in result.parts] == [
        ("tcp", True),
        ("exec", False),
        ("tcp", False),
    ]


async def test_a_real_with_several_checks_is_one_watch_of_the_quickest_verdicts() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            node_name: lb1
            ipvs:
              services:
                - address: 10.0.0.1
                  port: 25
                  check: {type: tcp, interval: 5, rise: 2, fall: 4, retry_interval: 1.5}
                  checks: [{type: smtp, interval: 3, rise: 3, fall: 5}, {type: ping}]
                  reals: [{address: 10.0.1.1}, {address: 10.0.1.2, checks: []}]
            """
        ),
        "t.yaml",
    )
    manager = HealthManager(lambda: None)
    await manager.configure(config)
    several: RealId = (config.ipvs.services[0].key, DestKey(ip_address("10.0.1.1"), 25))
    one: RealId = (config.ipvs.services[0].key, DestKey(ip_address("10.0.1.2"), 25))
    watch = manager.monitor.watch(several)
    assert watch is not None
    # the smallest interval (ping's default 2), the largest rise, the smallest fall, the
    # smallest retry_interval (smtp and ping have none: their intervals, 3 and 2)
    assert (watch.interval, watch.rise, watch.fall, watch.retry_interval) == (2.0, 3, 3, 1.5)
    assert [t.check.type for t in (watch.target, *watch.target.also)] == [
        CheckType.TCP,
        CheckType.SMTP,
        CheckType.PING,
    ]
    assert watch.target.also[0].helo_name == "lb1"
    single = manager.monitor.watch(one)
    assert single is not None
    assert (single.interval, single.rise, single.fall, single.target.also) == (5.0, 2, 4, ())
    assert single.retry_interval == 1.5


async def test_the_monitor_keeps_each_checks_outcome_for_status(listening: int) -> None:
    real: RealId = (WEB, DestKey(LOCAL, listening))
    good = target_for(tcp(listening), LOCAL, listening)
    refused = target_for(tcp(closed_port()), LOCAL, listening)
    target = replace(good, also=(refused,))
    checker = Checker()
    changed = asyncio.Event()
    monitor = HealthMonitor(checker.check, lambda r, h, why: changed.set(), tick=0.0)
    monitor.update({real: Watch(real, target, 0.1, 1, 1)})

    runner = asyncio.create_task(monitor.run())
    try:
        async with asyncio.timeout(5):
            await changed.wait()
    finally:
        monitor.stop()
        await runner
        checker.close()
    record = monitor.health_record(real)
    assert record is not None
    assert record.reason == "tcp: connection refused"
    assert record.checks == (
        CheckPart("tcp", True, "connected"),
        CheckPart("tcp", False, "connection refused"),
    )


SMTP_DOWN = (
    CheckStatus("tcp", True, "connected"),
    CheckStatus("smtp", False, "HELO answered 554"),
)
SINCE = datetime(2026, 3, 1, 12, 3, 4, tzinfo=UTC)


def smtp_down() -> RealStatus:
    """192.168.1.30:25, down: its tcp check passes, its smtp check fails."""
    return real_status(
        DestKey(ip_address("192.168.1.30"), 25),
        None,
        configured_weight=1,
        health="down",
        health_reason="smtp: HELO answered 554",
        health_since=SINCE,
        health_checks=SMTP_DOWN,
    )


def test_the_status_json_shows_each_checks_outcome_and_reads_it_back() -> None:
    one = smtp_down()
    service = web(port=25, reals=(one, replace(one, health_checks=None)))
    document = StatusDocument(node="lb1", version="1", services=(service,))
    encoded = to_json(document)
    reals = encoded["services"][0]["reals"]
    assert reals[0]["health_checks"] == [
        {"type": "tcp", "ok": True, "reason": "connected"},
        {"type": "smtp", "ok": False, "reason": "HELO answered 554"},
    ]
    assert reals[1]["health_checks"] is None
    assert from_json(encoded) == document


def test_a_real_with_only_listed_checks_is_checked() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            ipvs:
              services:
                - address: 10.0.0.1
                  port: 80
                  checks: [{type: ping}]
                  reals:
                    - {address: 10.0.1.1}
                    - {address: 10.0.1.2, checks: [{type: none}]}
                    - {address: 10.0.1.3, checks: [], check: {type: tcp}}
            """
        ),
        "t.yaml",
        default_node_name="n1",
    )
    service = config.ipvs.services[0]
    checked = [has_check(service, real) for real in service.reals]
    assert checked == [True, False, True]
    assert checked == [bool(effective_checks(service, real)) for real in service.reals]


def test_the_status_text_shows_each_check_under_a_real_that_is_not_up() -> None:
    down = smtp_down()
    text = status_text(StatusDocument(node="lb1", version="1", services=(web(reals=(down,)),)))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  -> 192.168.1.30:25 "))
    assert lines[at + 1 : at + 4] == [
        "       down since 2026-03-01 12:03:04 UTC: smtp: HELO answered 554",
        "         tcp passed: connected",
        "         smtp failed: HELO answered 554",
    ]
