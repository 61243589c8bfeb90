"""The health monitor on a virtual clock: scripted checks, exact slots, no sleeping.

The tests run the monitor in a `VirtualTimeLoop`: an asyncio event loop whose
``time()`` is a float that jumps to the next timer whenever nothing is ready
to run, so ten minutes of one-second checks take milliseconds and every
assertion can use exact times. Checks are `ScriptedChecks`: per target, a
list of results (True, False, or an exception to raise) and an optional
duration, spent with ``asyncio.sleep`` on the virtual clock.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.health.monitor import CheckRecord, HealthMonitor, Watch
from ipvsd.health.tracker import CheckPart, Health, HealthRecord
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey

UNKNOWN, UP, DOWN = Health.UNKNOWN, Health.UP, Health.DOWN
START = 1000.0
"""Virtual time at which every test loop starts (not 0: nothing may assume that)."""

# --- the virtual clock -----------------------------------------------------------------------


class _VirtualSelector(selectors.EpollSelector):
    """Never blocks: when nothing is ready, the clock jumps by the loop's timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("deadlock: no timer and no I/O to wait for")
            self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(main())


def now() -> float:
    return asyncio.get_running_loop().time()


# --- scripted checks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    reason: str
    duration_s: float = 0.0
    weight: int | None = None
    parts: tuple[CheckPart, ...] = ()


Step = bool | Exception


@dataclass
class ScriptedChecks:
    """The check function: per target, its results in order (the last one repeats)."""

    scripts: dict[str, list[Step]]
    durations: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[float, str]] = field(default_factory=list)
    done: list[tuple[float, str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, target: str) -> Result:
        self.calls.append((now(), target))
        self.called.set()
        script = self.scripts.get(target, [True])
        step = script.pop(0) if len(script) > 1 else script[0]
        await asyncio.sleep(self.durations.get(target, 0.0))
        self.done.append((now(), target))
        if isinstance(step, Exception):
            raise step
        return Result(step, "scripted pass" if step else "scripted failure")

    def times(self, target: str) -> list[float]:
        return [at for at, name in self.calls if name == target]


@dataclass
class Changes:
    """The on_change callback: records (time, real, health, reason)."""

    seen: list[tuple[float, RealId, Health, str]] = field(default_factory=list)

    def __call__(self, real: RealId, health: Health, reason: str) -> None:
        self.seen.append((now(), real, health, reason))

    def of(self, real: RealId) -> list[tuple[float, Health]]:
        return [(at, health) for at, r, health, _ in self.seen if r == real]


SERVICE = ServiceKey(Family.INET, Protocol.TCP, IPv4Address("192.168.1.200"), 80)


def real(i: int) -> RealId:
    return SERVICE, DestKey(IPv4Address(0x0A000000 + i), 80)


def name(i: int) -> str:
    return f"r{i}"


def watch(i: int, interval: float = 1.0, rise: int = 2, fall: int = 3) -> Watch[str]:
    return Watch(real(i), name(i), interval, rise, fall)


def watches(*items: Watch[str]) -> dict[RealId, Watch[str]]:
    return {w.real: w for w in items}


def monitor(checks: ScriptedChecks, changes: Changes, **kwargs: Any) -> HealthMonitor[str]:
    kwargs.setdefault("tick", 0.0)
    return HealthMonitor(checks, changes, **kwargs)


async def running(mon: HealthMonitor[str], seconds: float) -> None:
    """Run `mon` for `seconds` of virtual time, then stop it."""
    task = asyncio.create_task(mon.run())
    await asyncio.sleep(seconds)
    mon.stop()
    await task


def first_slot(checks: ScriptedChecks, i: int) -> float:
    return checks.times(name(i))[0]


def on_grid(times: Iterable[float], origin: float, interval: float) -> bool:
    return all(abs((t - origin) / interval - round((t - origin) / interval)) < 1e-9 for t in times)


# --- transitions -----------------------------------------------------------------------------


def test_on_change_fires_exactly_at_the_transitions() -> None:
    steps: list[Step] = [True, False, False, False, True, False, True, True, True]
    checks = ScriptedChecks({name(1): steps})
    changes = Changes()

    async def main() -> None:
        mon = monitor(checks, changes)
        mon.update(watches(watch(1, rise=2, fall=3)))
        await running(mon, 10.0)

    run_virtual(main)
    times = checks.times(name(1))
    assert len(times) == 10
    assert times[0] - START < 1.0
    assert times == [pytest.approx(times[0] + k) for k in range(10)]  # the grid, exactly
    assert changes.of(real(1)) == [(times[0], UP), (times[3], DOWN), (times[7], UP)]
    reasons = [reason for *_, reason in changes.seen]
    assert reasons == [
        "scripted pass (1 success in a row)",
        "scripted failure (3 failures in a row)",
        "scripted pass (2 successes in a row)",
    ]


def test_the_health_record_has_the_last_reason_and_the_time_of_the_change() -> None:
    """For ``ipvsd status``: why (the latest check) and since when (the change, wall clock)."""
    checks = ScriptedChecks({name(1): [True, False, False, True]})
    mon = monitor(checks, Changes(), wall_clock=lambda: now() + 1e9)

    async def main() -> None:
        mon.update(watches(watch(1, rise=2, fall=2)))
        # Watched from now on, and not checked yet.
        assert mon.health_record(real(1)) == HealthRecord(UNKNOWN, START + 1e9)
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(3.0)
        down_at = checks.times(name(1))[2] + 1e9
        assert mon.health_record(real(1)) == HealthRecord(DOWN, down_at, "scripted failure")
        await asyncio.sleep(1.0)  # one pass: still down (rise 2), the latest reason shown
        assert mon.health_record(real(1)) == HealthRecord(DOWN, down_at, "scripted pass")
        mon.update(watches(watch(1, interval=2.0, rise=2, fall=2)))  # keeps its health: and since
        assert mon.health_record(real(1)) == HealthRecord(DOWN, down_at, "scripted pass")
        mon.stop()
        await task
        assert mon.health_record(real(2)) is None  # not watched

    run_virtual(main)


def test_states_and_last_result() -> None:
    checks = ScriptedChecks({name(1): [False], name(2): [True]})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1, fall=2), watch(2)))
        assert mon.states() == {real(1): UNKNOWN, real(2): UNKNOWN}
        assert mon.last_result(real(1)) is None
        await running(mon, 3.0)

    run_virtual(main)
    assert mon.states() == {real(1): DOWN, real(2): UP}
    assert mon.last_result(real(1)) == CheckRecord(False, "scripted failure", 0.0)
    assert mon.last_result(real(3)) is None
    assert mon.stats.checks == 6
    assert mon.stats.failed == 3


def test_adopted_real_starts_up_without_an_event() -> None:
    checks = ScriptedChecks({name(1): [True, False, False, False]})
    changes = Changes()

    async def main() -> None:
        mon = monitor(checks, changes)
        mon.update(watches(watch(1, fall=3)), initial={real(1): UP})
        assert mon.states() == {real(1): UP}
        await running(mon, 4.5)

    run_virtual(main)
    assert changes.of(real(1)) == [(checks.times(name(1))[3], DOWN)]


def test_checks_stay_on_their_grid_when_they_take_time() -> None:
    """Each check takes 0.4 s: the next one still starts on the grid (no drift)."""
    checks = ScriptedChecks({name(1): [True]}, durations={name(1): 0.4})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1, interval=1.0)))
        await running(mon, 100.0)

    run_virtual(main)
    times = checks.times(name(1))
    assert len(times) == 100
    assert on_grid(times, times[0], 1.0)
    assert times[-1] == pytest.approx(times[0] + 99)
    assert mon.stats.lateness.max == 0.0
    assert mon.stats.skipped_slots == 0


def test_default_tick_bounds_lateness() -> None:
    checks = ScriptedChecks({})
    changes = Changes()
    mon = HealthMonitor(checks, changes, tick=0.005)

    async def main() -> None:
        mon.update(watches(*(watch(i, interval=1.0) for i in range(200))))
        await running(mon, 10.0)

    run_virtual(main)
    assert mon.stats.checks >= 1800
    assert 0.0 < mon.stats.lateness.max <= 0.005 + 1e-9


# --- retries (retry_interval, keepalived's delay_before_retry) -------------------------------


def run_retrying(
    steps: list[Step],
    seconds: float,
    *,
    interval: float = 10.0,
    retry: float | None = 1.0,
    fall: int = 3,
    duration: float = 0.0,
) -> tuple[list[float], list[tuple[float, Health]], HealthMonitor[str]]:
    """Run real 1 with `steps`: its checks' and changes' times after its first check."""
    checks = ScriptedChecks({name(1): steps}, durations={name(1): duration})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(Watch(real(1), name(1), interval, 2, fall, retry_interval=retry)))
        await running(mon, seconds)

    run_virtual(main)
    first = first_slot(checks, 1)
    times = [round(t - first, 9) for t in checks.times(name(1))]
    return times, [(round(t - first, 9), h) for t, h in changes.of(real(1))], mon


def test_a_failing_real_goes_down_after_interval_plus_its_retries() -> None:
    """Up at 0; fails at 10 and is retried a second apart: down at 10 + (3 - 1) x 1."""
    times, seen, _ = run_retrying([True, False], 55.0)
    # A down real is checked every interval again, on its grid, with no retries.
    assert times[:7] == [0, 10, 11, 12, 20, 30, 40]
    assert seen == [(0, UP), (12, DOWN)]


def test_without_retry_interval_a_failing_real_goes_down_after_fall_intervals() -> None:
    times, seen, _ = run_retrying([True, False], 45.0, retry=None)
    assert times[:4] == [0, 10, 20, 30]
    assert seen == [(0, UP), (30, DOWN)]


def test_a_success_ends_the_retries_and_the_real_goes_back_to_its_grid() -> None:
    steps: list[Step] = [True, False, True, False, False, True, False, False, False]
    times, seen, _ = run_retrying(steps, 55.0)
    # 10 fails, 11 passes: back at 20; 20 and 21 fail, 22 passes: back at 30; 30, 31 and 32
    # fail: down at 32, then checked at 40.
    assert times[:10] == [0, 10, 11, 20, 21, 22, 30, 31, 32, 40]
    assert seen == [(0, UP), (32, DOWN)]


def test_a_fresh_real_that_never_answers_is_retried_too() -> None:
    times, seen, _ = run_retrying([False], 35.0, retry=0.5)
    assert times[:5] == [0, 0.5, 1, 10, 20]
    assert seen == [(1, DOWN)]


def test_a_retry_after_a_check_that_overran_it_starts_at_once() -> None:
    """Checks take 2.5 s, retries are due 1 s after a start: each starts as the last ends."""
    times, seen, mon = run_retrying([True, False], 35.0, duration=2.5)
    assert times[:5] == [0, 10, 12.5, 15, 20]
    assert seen == [(2.5, UP), (17.5, DOWN)]
    assert mon.stats.skipped_slots == 0
    assert mon.stats.lateness.max == 0.0


def test_retries_that_pass_the_next_slot_resume_after_it() -> None:
    """retry_interval equal to interval, fall 4: the grid, with no slot checked twice."""
    times, _, mon = run_retrying([True, False], 17.0, interval=2.0, retry=2.0, fall=4)
    assert times[:8] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert mon.stats.skipped_slots == 0


def test_a_paused_real_skips_its_retry_and_resumes_on_its_grid() -> None:
    """ha_suspend pauses a real between its failure at 10 and the retry due at 11: it is
    next checked at 20 (its streak kept), retried at 21 and down then."""
    checks = ScriptedChecks({name(1): [True, False]})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(Watch(real(1), name(1), 10.0, 2, 3, retry_interval=1.0)))
        task = asyncio.create_task(mon.run())
        await checks.called.wait()
        first = now()
        await asyncio.sleep(10.5)
        mon.suspended = frozenset({real(1)})
        await asyncio.sleep(5.0)
        mon.suspended = frozenset()
        await asyncio.sleep(first + 35.0 - now())
        mon.stop()
        await task

    run_virtual(main)
    first = first_slot(checks, 1)
    assert [round(t - first, 9) for t in checks.times(name(1))] == [0, 10, 20, 21, 30]
    at, health = changes.of(real(1))[-1]
    assert at == pytest.approx(first + 21)
    assert health == DOWN


# --- reloads ---------------------------------------------------------------------------------


def test_update_keeps_unchanged_reals_as_they_are() -> None:
    """Two failures before the reload and one after make three in a row: DOWN."""
    checks = ScriptedChecks({name(1): [True, False, False, False], name(2): [True]})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1), watch(2)))
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(1.0)  # every real had its first check
        await asyncio.sleep(first_slot(checks, 1) + 2.5 - now())  # two failures so far
        before = len(checks.calls)
        mon.update(watches(watch(1), watch(2)))  # equal watches: a no-op
        await asyncio.sleep(2.0)
        mon.stop()
        await task
        assert len(checks.calls) - before == 4  # two reals, two intervals: no extra burst

    run_virtual(main)
    times = checks.times(name(1))
    assert on_grid(times, times[0], 1.0)
    assert [health for _, health in changes.of(real(1))] == [UP, DOWN]
    assert changes.of(real(1))[1][0] == times[3]
    assert [health for _, health in changes.of(real(2))] == [UP]


def test_update_drops_removed_reals() -> None:
    checks = ScriptedChecks({})
    changes = Changes()
    mon = monitor(checks, changes)
    removed_at: list[float] = []

    async def main() -> None:
        mon.update(watches(watch(1), watch(2)))
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(3.0)
        mon.update(watches(watch(1)))
        removed_at.append(now())
        await asyncio.sleep(3.0)
        mon.stop()
        await task

    run_virtual(main)
    assert all(at < removed_at[0] for at in checks.times(name(2)))
    assert len(checks.times(name(1))) == 6
    assert mon.states() == {real(1): UP}
    assert mon.last_result(real(2)) is None


def test_update_restarts_a_changed_watch_with_its_health() -> None:
    checks = ScriptedChecks({name(1): [True, True, True, False, False, False]})
    changes = Changes()
    mon = monitor(checks, changes)
    changed_at: list[float] = []

    async def main() -> None:
        mon.update(watches(watch(1, interval=1.0)))
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(3.0)
        assert mon.states() == {real(1): UP}
        mon.update(watches(watch(1, interval=2.0, fall=2)))  # other settings
        changed_at.append(now())
        assert mon.states() == {real(1): UP}  # health kept: no re-warm-up
        await asyncio.sleep(10.0)
        mon.stop()
        await task

    run_virtual(main)
    after = [t for t in checks.times(name(1)) if t >= changed_at[0]]
    assert after[0] - changed_at[0] < 2.0  # a new jittered first slot in [0, 2)
    assert on_grid(after, after[0], 2.0)
    # no UP event again; DOWN after the new fall (2) failures
    assert changes.of(real(1)) == [(checks.times(name(1))[0], UP), (after[1], DOWN)]


def test_new_reals_start_on_update_while_running() -> None:
    checks = ScriptedChecks({})
    changes = Changes()
    mon = monitor(checks, changes)
    added_at: list[float] = []

    async def main() -> None:
        mon.update(watches(watch(1)))
        task = asyncio.create_task(mon.run())
        await asyncio.sleep(2.0)
        added_at.append(now())
        mon.update(watches(watch(1), watch(2)), initial={real(2): UP})
        await asyncio.sleep(2.0)
        mon.stop()
        await task

    run_virtual(main)
    assert added_at[0] <= first_slot(checks, 2) < added_at[0] + 1.0
    assert changes.of(real(2)) == []  # adopted UP, passing: nothing to report


def test_watch_must_be_filed_under_its_real() -> None:
    mon = monitor(ScriptedChecks({}), Changes())
    with pytest.raises(ValueError, match="filed under"):
        mon.update({real(2): watch(1)})


# --- jitter ----------------------------------------------------------------------------------


def test_first_checks_spread_over_the_interval() -> None:
    checks = ScriptedChecks({})
    mon = monitor(checks, Changes(), seed=7)

    async def main() -> None:
        mon.update(watches(*(watch(i, interval=2.0) for i in range(1000))))
        await running(mon, 1.999)

    run_virtual(main)
    offsets = [at - START for at, _ in checks.calls]
    assert len(offsets) >= 990  # all but those in the last millisecond
    assert len({target for _, target in checks.calls}) == len(offsets)  # one each
    bins = [0] * 8
    for offset in offsets:
        assert 0.0 <= offset < 2.0
        bins[int(offset * 4)] += 1
    assert all(80 <= n <= 170 for n in bins), bins  # 125 expected per bin, sd ~10.5


def test_jitter_is_deterministic_per_seed() -> None:
    def first_calls(seed: int) -> list[tuple[float, str]]:
        checks = ScriptedChecks({})

        async def main() -> None:
            mon = monitor(checks, Changes(), seed=seed)
            mon.update(watches(*(watch(i) for i in range(20))))
            await running(mon, 0.999)

        run_virtual(main)
        return checks.calls

    assert first_calls(1) == first_calls(1)
    assert first_calls(1) != first_calls(2)


# --- isolation -------------------------------------------------------------------------------


def test_a_raising_check_counts_as_a_failure_and_the_monitor_goes_on() -> None:
    boom = RuntimeError("bug in checker")
    checks = ScriptedChecks({name(1): [boom], name(2): [True]})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1, fall=3), watch(2)))
        with capture_logs() as logs:
            await running(mon, 10.0)
        errors = [entry for entry in logs if entry["event"] == "health.check_error"]
        assert len(errors) == 1  # logged once, not every interval
        assert errors[0]["real"] == f"{SERVICE} {real(1)[1]}"

    run_virtual(main)
    assert mon.stats.errors == 10
    assert len(checks.times(name(2))) == 10
    [(_, _, health, reason)] = [c for c in changes.seen if c[1] == real(1)]
    assert health is DOWN
    assert reason == "check raised RuntimeError: bug in checker (3 failures in a row)"
    last = mon.last_result(real(1))
    assert last is not None
    assert not last.ok


def test_a_slow_check_does_not_delay_others_and_skips_its_missed_slots() -> None:
    checks = ScriptedChecks({name(1): [True], name(2): [True]}, durations={name(1): 2.5})
    mon = monitor(checks, Changes())

    async def main() -> None:
        mon.update(watches(watch(1), watch(2)))
        await running(mon, 20.0)

    run_virtual(main)
    slow, fast = checks.times(name(1)), checks.times(name(2))
    assert len(fast) == 20
    assert on_grid(fast, fast[0], 1.0)
    assert on_grid(slow, slow[0], 1.0)  # restarts on a grid slot, not 2.5 s after
    assert [b - a for a, b in itertools.pairwise(slow)] == pytest.approx([3.0] * 6)
    assert mon.stats.skipped_slots == 2 * 6
    assert mon.stats.lateness.max == 0.0


def test_max_in_flight_queues_checks_and_counts_the_wait_as_lateness() -> None:
    # Three checks of 6 s every 10 s: two of them overlap, whatever their offsets.
    checks = ScriptedChecks({}, durations={name(i): 6.0 for i in range(3)})
    mon = monitor(checks, Changes(), max_in_flight=1)

    async def main() -> None:
        mon.update(watches(*(watch(i, interval=10.0) for i in range(3))))
        await running(mon, 30.0)

    run_virtual(main)
    assert len(checks.done) >= 3
    spans = sorted(zip((at for at, _ in checks.calls), (at for at, _ in checks.done), strict=False))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1e-9  # never two at once
    assert mon.stats.lateness.max > 0.0


def test_cancelling_run_cancels_running_checks() -> None:
    checks = ScriptedChecks({}, durations={name(1): 3600.0})

    async def main() -> None:
        mon = monitor(checks, Changes())
        mon.update(watches(watch(1)))
        task = asyncio.create_task(mon.run())
        await checks.called.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main)
    assert checks.done == []


def test_stop_cancels_running_checks() -> None:
    checks = ScriptedChecks({name(1): [True]}, durations={name(1): 3600.0})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1)))
        await running(mon, 5.0)
        assert now() == pytest.approx(START + 5.0)

    run_virtual(main)
    assert len(checks.calls) == 1
    assert checks.done == []
    assert changes.seen == []


def test_a_real_removed_mid_check_reports_nothing() -> None:
    checks = ScriptedChecks({name(1): [True]}, durations={name(1): 0.5})
    changes = Changes()
    mon = monitor(checks, changes)

    async def main() -> None:
        mon.update(watches(watch(1)))
        task = asyncio.create_task(mon.run())
        await checks.called.wait()
        mon.update({})
        await asyncio.sleep(3.0)
        mon.stop()
        await task

    run_virtual(main)
    assert len(checks.calls) == 1
    assert changes.seen == []
    assert mon.states() == {}


def test_an_on_change_bug_ends_run() -> None:
    def on_change(real: RealId, health: Health, reason: str) -> None:
        raise KeyError("daemon bug")

    async def main() -> None:
        mon = HealthMonitor(ScriptedChecks({}), on_change, tick=0.0)
        mon.update(watches(watch(1)))
        with pytest.raises(KeyError, match="daemon bug"):
            await mon.run()

    run_virtual(main)


# --- checks that return futures ----------------------------------------------------------------


@dataclass
class FutureChecks:
    """A check function that returns a future (as the tcp prober does), resolved `delay` later."""

    delay: float
    started: list[float] = field(default_factory=list)
    tasks_seen: list[int] = field(default_factory=list)

    def __call__(self, target: str) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        self.tasks_seen.append(len(asyncio.all_tasks()))
        future: asyncio.Future[Result] = loop.create_future()
        loop.call_later(self.delay, future.set_result, Result(True, "future pass", self.delay))
        return future


def test_a_future_from_the_check_is_watched_without_a_task() -> None:
    checks = FutureChecks(delay=0.25)
    changes = Changes()
    results: list[bool] = []
    mon = HealthMonitor(checks, changes, tick=0.0, on_result=lambda r: results.append(r.ok))

    async def main() -> None:
        mon.update(watches(watch(1), watch(2)))
        await running(mon, 5.0)

    run_virtual(main)
    assert len(checks.started) == 10
    assert set(checks.tasks_seen) == {2}  # main and run(): no task per check
    assert mon.stats.checks == 10
    assert results == [True] * 10
    assert mon.stats.duration.max == 0.25
    assert [health for _, _, health, _ in changes.seen] == [UP, UP]


def test_stop_cancels_a_check_future() -> None:
    checks = FutureChecks(delay=3600.0)
    futures: list[asyncio.Future[Result]] = []

    def check(target: str) -> asyncio.Future[Result]:
        futures.append(checks(target))
        return futures[-1]

    async def main() -> None:
        mon = HealthMonitor(check, Changes(), tick=0.0)
        mon.update(watches(watch(1)))
        await running(mon, 2.0)

    run_virtual(main)
    assert len(futures) == 1
    assert futures[0].cancelled()


def test_a_check_function_that_raises_when_called_counts_as_a_failure() -> None:
    def check(target: str) -> asyncio.Future[Result]:
        raise RuntimeError("bug before the first await")

    changes = Changes()
    mon = HealthMonitor(check, changes, tick=0.0)

    async def main() -> None:
        mon.update(watches(watch(1, fall=2)))
        with capture_logs() as logs:
            await running(mon, 3.0)
        assert [entry["event"] for entry in logs].count("health.check_error") == 1

    run_virtual(main)
    assert mon.stats.errors == 3
    assert [health for _, _, health, _ in changes.seen] == [DOWN]
