"""How much work one event costs the daemon's loop (issue 11 item 7, "adverts never late").

VRRP shares the event loop with everything else, so no single event may walk
the whole table more than once: a burst of health changes rebuilds the
desired table once, and a reload touches only the backend series of the reals
it added, removed or whose health it changed. These tests count the work
(rebuilds, ``labels()`` calls, series read back) instead of timing it; the
in-process daemon runs over the fake kernel (`tests.unit.test_daemon`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.metrics import MetricWrapperBase

from ipvsd.config import Config, parse_config
from ipvsd.health import manager as manager_module
from ipvsd.health.checks import CheckTarget
from ipvsd.health.manager import HealthManager
from ipvsd.health.tracker import Health
from ipvsd.metrics import DaemonMetrics
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey
from tests.unit.test_daemon import WEB, Harness, backend, config_text, running
from tests.unit.test_health_monitor import Result
from tests.unit.test_ipvs_yields import MIN_TICKS, ticks_during

REALS = tuple(f"192.168.2.{i}" for i in range(1, 101))
"""100 reals of the web service."""
WEB_10 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)
KEYS = [DestKey(ip_address(address), 80) for address in REALS]
CHECKED = "check: {type: tcp, interval: 0.1}, "


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "ipvsd.sock"


class GatedChecker:
    """Stands in for `ipvsd.health.checks.Checker`: every check waits for the test."""

    started: ClassVar[list[asyncio.Future[Result]]] = []

    def check(self, target: CheckTarget) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.started.append(future)
        return future


def count_calls(
    monkeypatch: pytest.MonkeyPatch,
    owner: type[Any],
    name: str,
    counted: Callable[[Any], bool] = lambda _: True,
) -> list[object]:
    """Wrap ``owner.name``; the returned list grows by `self` at every (counted) call."""
    calls: list[object] = []
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if counted(self):
            calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (daemon state, which has no event to wait on) for up to 5 s."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 5
    while not condition():
        assert loop.time() < give_up, "the condition never held"
        await asyncio.sleep(0.005)


def desired_weights(h: Harness) -> dict[DestKey, int]:
    reconciler = h.daemon.reconciler
    assert reconciler is not None
    service = reconciler.desired.services[WEB]
    return {key: dest.attrs.weight for key, dest in service.dests.items()}


async def test_a_burst_of_health_changes_rebuilds_the_desired_table_once(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "Checker", GatedChecker)
    monkeypatch.setattr(GatedChecker, "started", [])
    rebuilds = count_calls(monkeypatch, HealthManager, "desired")
    async with running(tmp_path, config_text(sock, reals=REALS, check=CHECKED)) as h:
        assert desired_weights(h) == {}, "no real is in before its first successful check"
        await until(lambda: len(GatedChecker.started) == len(REALS))
        before = len(rebuilds)
        # All 100 results land in one loop iteration, as a start's first checks do.
        for future in GatedChecker.started:
            future.set_result(Result(True, "connected"))
        await until(lambda: len(desired_weights(h)) == len(REALS))
        await asyncio.sleep(0.05)  # anything still queued for the burst runs now
        assert len(rebuilds) - before == 1
        assert set(h.daemon._parts.health.monitor.states().values()) == {Health.UP}
        await h.settle()
        assert h.weights() == dict.fromkeys(KEYS, 1)


async def test_a_drain_is_in_the_desired_table_at_once(tmp_path: Path, sock: Path) -> None:
    """Drains are not coalesced: the control socket's answer means the reconciler has it."""
    async with running(tmp_path, config_text(sock, reals=REALS)) as h:
        h.daemon.view.drain(WEB, KEYS[7])
        assert desired_weights(h)[KEYS[7]] == 0
        h.daemon.view.undrain(WEB, KEYS[7])
        assert desired_weights(h)[KEYS[7]] == 1


def is_backend_up(metric: MetricWrapperBase) -> bool:
    return getattr(metric, "_name", None) == "ipvsd_backend_up"


async def test_a_reload_touches_only_the_backend_series_it_changes(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, config_text(sock, reals=REALS)) as h:
        assert h.metric("ipvsd_backend_up", **backend(KEYS[0])) == 1
        reported = count_calls(monkeypatch, DaemonMetrics, "backend_up")
        labelled = count_calls(monkeypatch, MetricWrapperBase, "labels")
        read_back = count_calls(monkeypatch, MetricWrapperBase, "collect", is_backend_up)

        # 192.168.2.40 gets weight 3: no real's health or series changes.
        h.write(config_text(sock, reals=REALS, weight_40=3))
        assert await h.daemon.reload() == []
        assert desired_weights(h)[DestKey(ip_address("192.168.2.40"), 80)] == 3
        assert reported == []
        assert len(labelled) < 5, "a handful (the reload counter), not one per real"
        assert read_back == []

        # One real out, one in: one series made, one dropped, the other 99 untouched.
        swapped = (*REALS[1:], "192.168.3.1")
        h.write(config_text(sock, reals=swapped))
        assert await h.daemon.reload() == []
        new = DestKey(ip_address("192.168.3.1"), 80)
        assert reported == [h.daemon.metrics]
        assert len(labelled) < 10
        assert read_back == []
        assert h.metric("ipvsd_backend_up", **backend(KEYS[0])) is None
        assert h.metric("ipvsd_backend_up", **backend(new)) == 1
        assert h.metric("ipvsd_backend_up", **backend(KEYS[1])) == 1


def web_service(reals: dict[str, int | None]) -> Config:
    """Service 10.0.0.1:80 with these reals: address -> tcp check interval (None: unchecked)."""
    items = [
        f"{{address: {address}, check: {{type: tcp, interval: {interval}}}}}"
        if interval
        else f"{{address: {address}}}"
        for address, interval in reals.items()
    ]
    return parse_config(
        f"ipvs: {{services: [{{address: 10.0.0.1, port: 80, reals: [{', '.join(items)}]}}]}}"
    )


def real_id(address: str) -> RealId:
    return (WEB_10, DestKey(ip_address(address), 80))


async def test_a_reload_reports_only_the_reals_whose_series_changes() -> None:
    health: dict[RealId, Health] = {}
    gone: list[RealId] = []
    manager = HealthManager(lambda: None, on_health=health.__setitem__, on_gone=gone.append)
    before = {"10.0.1.1": None, "10.0.1.2": 1, "10.0.1.3": 1, "10.0.1.4": None, "10.0.1.5": None}
    await manager.configure(web_service(before))
    assert health == {
        real_id("10.0.1.1"): Health.UP,
        real_id("10.0.1.2"): Health.UNKNOWN,
        real_id("10.0.1.3"): Health.UNKNOWN,
        real_id("10.0.1.4"): Health.UP,
        real_id("10.0.1.5"): Health.UP,
    }
    health.clear()
    # .1 unchanged, .2's check changes (it keeps its health), .3 loses its
    # check, .4 gets one, .5 is removed, .6 is added.
    after = {"10.0.1.1": None, "10.0.1.2": 2, "10.0.1.3": None, "10.0.1.4": 1, "10.0.1.6": None}
    await manager.configure(web_service(after))
    assert health == {
        real_id("10.0.1.3"): Health.UP,
        real_id("10.0.1.4"): Health.UNKNOWN,
        real_id("10.0.1.6"): Health.UP,
    }
    assert gone == [real_id("10.0.1.5")]


def services(count: int, *, slower: int | None = None) -> Config:
    """`count` services of 4 reals, every other one tcp-checked (`slower` every 7 s)."""
    lines = ["ipvs:", "  services:"]
    for s in range(count):
        interval = 7 if s == slower else 2
        check = f"check: {{type: tcp, interval: {interval}}}, " if s % 2 else ""
        reals = ", ".join(f"{{address: 10.{1 + r}.{s // 250}.{s % 250 + 1}}}" for r in range(4))
        lines.append(
            f"    - {{address: 10.0.{s // 250}.{s % 250 + 1}, port: 80, {check}reals: [{reals}]}}"
        )
    return parse_config("\n".join(lines) + "\n")


async def test_a_reload_of_a_big_config_lets_the_loop_run_and_switches_at_once() -> None:
    manager = HealthManager(lambda: None)
    await manager.configure(services(1))

    _, seen = await ticks_during(
        lambda: manager.configure(services(2_000)), lambda: len(manager.desired().services)
    )

    assert len(seen) >= MIN_TICKS
    assert set(seen) == {1}, "the config in force answers until the new one is complete"
    assert len(manager.desired().services) == 2_000
    assert len(manager.monitor.states()) == 1_000 * 4


async def test_reporting_the_reals_of_a_big_config_lets_the_loop_run() -> None:
    reported: list[RealId] = []
    manager = HealthManager(lambda: None, on_health=lambda real, _: reported.append(real))

    _, seen = await ticks_during(lambda: manager.configure(services(2_000)), lambda: len(reported))

    assert len(reported) == 2_000 * 4
    assert any(0 < count < len(reported) for count in seen), "no tick while reporting"


async def test_a_reload_restarts_only_the_checks_it_changes() -> None:
    manager = HealthManager(lambda: None)
    await manager.configure(services(100))
    watches = {real: manager.monitor.watch(real) for real in manager.monitor.states()}

    await manager.configure(services(100, slower=11))

    restarted = [r for r, watch in watches.items() if manager.monitor.watch(r) is not watch]
    assert len(restarted) == 4
    service_11 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.12"), 80)
    assert {service for service, _ in restarted} == {service_11}
