"""`HealthManager` on a virtual clock: adoption at start, scripted checks, the desired weights.

The manager's `Checker` is replaced by scripted results (one list per real
address, the last result repeating) and the loop is `VirtualTimeLoop`
(``test_health_monitor``), so each check lands on its grid slot without
sleeping. After every check the test records the weight the desired table
gives the real (None: left out of the kernel).
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import ClassVar

import pytest

from ipvsd.config import Config, parse_config
from ipvsd.health import manager as manager_module
from ipvsd.health.checks import CheckTarget
from ipvsd.health.manager import HealthManager, adopted_reals
from ipvsd.health.tracker import CheckPart, Health
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    RealId,
    Service,
    ServiceAttrs,
    ServiceKey,
    Table,
)
from tests.unit.test_health_monitor import run_virtual

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)
REAL = DestKey(ip_address("10.0.1.1"), 80)
REAL_ID: RealId = (WEB, REAL)
RISE, FALL, WEIGHT = 3, 2, 5


def config(on_failure: str, alpha: bool = True) -> Config:
    return parse_config(
        textwrap.dedent(
            f"""\
            ipvs:
              services:
                - address: 10.0.0.1
                  port: 80
                  on_failure: {on_failure}
                  alpha: {"true" if alpha else "false"}
                  check: {{type: tcp, interval: 1, rise: {RISE}, fall: {FALL}}}
                  reals: [{{address: 10.0.1.1, weight: {WEIGHT}}}]
            """
        ),
        "t.yaml",
    )


def kernel(weight: int | None) -> Table:
    """The kernel at start: the real at `weight`, or no table at all (None)."""
    if weight is None:
        return Table.of([])
    dest = Dest(REAL, DestAttrs(ForwardMethod.NAT, weight=weight))
    return Table.of([Service(WEB, ServiceAttrs(scheduler="wlc"), {REAL: dest})])


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    reason: str
    duration_s: float = 0.0
    weight: int | None = None
    parts: tuple[CheckPart, ...] = ()


def weighted(weight: int | None) -> Result:
    """A pass giving the real `weight` (an exec check with dynamic_weight)."""
    return Result(True, "scripted", weight=weight)


class ScriptedChecker:
    """Stands in for `ipvsd.health.checks.Checker`: results from `script`, in order."""

    script: ClassVar[list[bool | Result]] = [True]

    def check(self, target: CheckTarget) -> Awaitable[Result]:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]

        async def result() -> Result:
            return step if isinstance(step, Result) else Result(step, "scripted")

        return result()


def weight_in(table: Table) -> int | None:
    dest = table.services[WEB].dests.get(REAL)
    return None if dest is None else dest.attrs.weight


def run_checks(
    monkeypatch: pytest.MonkeyPatch,
    on_failure: str,
    at_start: int | None,
    results: Sequence[bool | Result],
    alpha: bool = True,
) -> tuple[int | None, list[int | None], list[Health]]:
    """Start a manager over a kernel holding the real at `at_start`, run `results`.

    Returns:
        The weight before any check, the weight after each check, and the
        health changes reported.
    """
    monkeypatch.setattr(manager_module, "Checker", ScriptedChecker)
    monkeypatch.setattr(ScriptedChecker, "script", list(results))
    after: list[int | None] = []
    changes: list[Health] = []
    cfg = config(on_failure, alpha)

    async def main() -> None:
        done = asyncio.Event()

        def checked(duration_s: float) -> None:
            after.append(weight_in(manager.desired()))
            if len(after) == len(results):
                done.set()

        manager = HealthManager(
            lambda: None,
            on_health=lambda real, health: changes.append(health),
            on_check=checked,
        )
        await manager.configure(cfg, adopted=adopted_reals(cfg, kernel(at_start)))
        changes.clear()  # configure reports every real's health once
        before.append(weight_in(manager.desired()))
        task = asyncio.create_task(manager.monitor.run())
        await done.wait()
        manager.monitor.stop()
        await task

    before: list[int | None] = []
    run_virtual(main)
    return before[0], after[: len(results)], changes


FAIL_FAIL_PASS_PASS_PASS = [False, False, True, True, True]


@pytest.mark.parametrize("on_failure", ["drain", "remove"])
def test_a_real_adopted_at_weight_0_stays_0_until_rise_checks_pass(
    monkeypatch: pytest.MonkeyPatch, on_failure: str
) -> None:
    before, after, changes = run_checks(monkeypatch, on_failure, 0, FAIL_FAIL_PASS_PASS_PASS)
    assert before == 0, "weight 0 from the first write, and never taken out"
    assert after == [0, 0, 0, 0, WEIGHT]
    assert changes == [Health.UP]


def test_a_held_real_follows_on_failure_once_it_came_up(monkeypatch: pytest.MonkeyPatch) -> None:
    results = [True, True, True, False, False]
    before, after, changes = run_checks(monkeypatch, "remove", 0, results)
    assert before == 0
    assert after == [0, 0, WEIGHT, WEIGHT, None]
    assert changes == [Health.UP, Health.DOWN]


def test_a_real_adopted_with_traffic_keeps_it_until_fall_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, after, _ = run_checks(monkeypatch, "drain", WEIGHT, FAIL_FAIL_PASS_PASS_PASS)
    assert before == WEIGHT
    assert after == [WEIGHT, 0, 0, 0, WEIGHT]


def test_a_fresh_real_enters_on_its_first_success(monkeypatch: pytest.MonkeyPatch) -> None:
    before, after, _ = run_checks(monkeypatch, "drain", None, [True, True])
    assert before is None
    assert after == [WEIGHT, WEIGHT]


def test_without_alpha_a_fresh_real_is_in_from_the_start_until_fall_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: ``alpha: false`` (keepalived without alpha) starts a new real UP."""
    before, after, changes = run_checks(monkeypatch, "remove", None, [True, False, False], False)
    assert before == WEIGHT
    assert after == [WEIGHT, WEIGHT, None]
    assert changes == [Health.DOWN]


def test_without_alpha_a_real_adopted_at_weight_0_is_still_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, after, _ = run_checks(monkeypatch, "drain", 0, [True, True, True], False)
    assert before == 0
    assert after == [0, 0, WEIGHT]


def test_adopted_reals_start_up_with_traffic_and_down_at_weight_0() -> None:
    cfg = config("drain")
    assert adopted_reals(cfg, kernel(WEIGHT)) == {REAL_ID: Health.UP}
    assert adopted_reals(cfg, kernel(0)) == {REAL_ID: Health.DOWN}
    assert adopted_reals(cfg, kernel(None)) == {}


async def test_a_reload_keeps_a_held_real_held_and_a_removed_one_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manager_module, "Checker", ScriptedChecker)
    cfg = config("remove")
    manager = HealthManager(lambda: None)
    await manager.configure(cfg, adopted=adopted_reals(cfg, kernel(0)))
    await manager.configure(config("remove"))  # a reload: same real, same check
    assert weight_in(manager.desired()) == 0
    empty = parse_config("ipvs: {services: [{address: 10.0.0.1, port: 80, reals: []}]}", "t")
    await manager.configure(empty)
    await manager.configure(cfg)  # back, as a fresh real: out until its first success
    assert weight_in(manager.desired()) is None


def test_a_dynamic_weight_reaches_the_desired_table_once_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results: list[bool | Result] = [
        weighted(7), weighted(7), False, False, weighted(3), weighted(3), weighted(3), True,
    ]  # fmt: skip
    _, after, changes = run_checks(monkeypatch, "drain", None, results)
    assert after == [7, 7, 7, 0, 0, 0, 3, WEIGHT], (
        "in at the check's weight; drained while DOWN, up again at the new one; "
        "exit 0: the configured one"
    )
    assert changes == [Health.UP, Health.DOWN, Health.UP]


def test_a_drain_wins_over_a_dynamic_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "Checker", ScriptedChecker)
    monkeypatch.setattr(ScriptedChecker, "script", [weighted(9)])
    cfg = config("drain")
    seen: list[int | None] = []

    async def main() -> None:
        manager = HealthManager(lambda: None)
        await manager.configure(cfg, adopted=adopted_reals(cfg, kernel(WEIGHT)))
        task = asyncio.create_task(manager.monitor.run())
        await asyncio.sleep(2.5)
        seen.append(weight_in(manager.desired()))
        manager.drained.add(REAL_ID)
        seen.append(weight_in(manager.desired()))
        manager.drained.discard(REAL_ID)
        seen.append(weight_in(manager.desired()))
        manager.monitor.stop()
        await task

    run_virtual(main)
    assert seen == [9, 0, 9]


async def test_the_desired_table_and_health_share_each_reals_keys() -> None:
    """One ServiceKey per service and one DestKey per real, not a copy for the table
    (issue 14: the copies were ~4 MB of a 10,000 x 4 daemon)."""

    def two_services(weight: int) -> Config:
        return parse_config(
            "ipvs:\n  services:\n"
            "    - {address: 10.0.0.1, port: 80, reals: [{address: 10.0.1.1}, "
            f"{{address: 10.0.1.2, weight: {weight}}}]}}\n"
            "    - {address: 10.0.0.2, port: 53, protocol: udp, check: {type: none},\n"
            "       reals: [{address: 10.0.2.1, port: 5353}]}\n",
            "t.yaml",
        )

    reported: dict[RealId, RealId] = {}

    def report(real: RealId, _: Health) -> None:
        reported.setdefault(real, real)

    manager = HealthManager(lambda: None, on_health=report)

    def assert_shared() -> None:
        table = manager.desired()
        assert len(reported) == table.dest_count() == 3
        for service in table:
            for dest_key, dest in service.dests.items():
                real_id = reported[service.key, dest_key]
                assert real_id[0] is service.key
                assert real_id[1] is dest_key is dest.key

    await manager.configure(two_services(1))
    assert_shared()
    await manager.configure(two_services(2))  # a reload: the service is rebuilt
    assert_shared()
    manager.drained.add(next(iter(reported)))  # a drain: rebuilt again
    assert_shared()
