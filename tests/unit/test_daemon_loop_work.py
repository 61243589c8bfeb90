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

from ipvsd.health import manager as manager_module
from ipvsd.health.checks import CheckTarget
from ipvsd.health.manager import HealthManager
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey
from tests.unit.test_daemon import WEB, Harness, config_text, running
from tests.unit.test_health_monitor import Result

REALS = tuple(f"192.168.2.{i}" for i in range(1, 101))
"""100 reals of the web service."""
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
