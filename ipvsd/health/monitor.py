"""The health monitor: every real checked on its own grid, rise/fall, transitions out.

Theory of operation
===================

The monitor owns a `Watch` per real (what to check, how often, rise/fall).
While `run()` runs, a dispatcher keeps each real's next slot on its fixed
grid (`tracker.Grid`: a jittered first slot in ``[0, interval)``, then every
``interval``, no drift) in one heap, with one event-loop timer armed for the
earliest. When the timer fires, every check that is due starts at once, so
no check ever waits for another. A check function returns an awaitable: a
future (``ipvsd.health.tcp``'s tcp checks) is watched as it is, with a done
callback, and anything else (a coroutine) is wrapped in a task. When a check
ends, its result goes to the real's `tracker.RiseFall`, ``on_change(real,
health, reason)`` is called at once if the health changed, and the real's
next slot goes back into the heap: the first slot not yet started, so a
check that overran skips the slots it missed instead of running them back to
back; or, after a failure short of ``fall`` with a ``retry_interval``, the
retry's slot (`tracker.retry_slot`; "Retries" in tracker.py).

Each real also keeps its latest check's reason and the wall-clock time at
which its health last changed, or at which its checks began
(`health_record`): ``ipvsd status`` shows why a real is down and since when.
A changed watch keeps both with its health.

Why a dispatcher and not a sleeping task per real: measured with
``bench/health_checks.py`` (10,000 reals every second, a check that does no
I/O), a task per real costs 22 us of CPU per check, the dispatcher 10 us.
Every sleep puts a TimerHandle into asyncio's timer heap, whose entries
compare through a Python ``__lt__`` (some 14 comparisons per push among
10,000 timers), and every wake-up is a pass of the event loop. The
dispatcher's heap holds tuples, which compare in C, and its ``tick`` lets one
wake-up start every check due within a few milliseconds: about 200 wake-ups
a second instead of 3,000. asyncio's own timer heap is left with the
timeouts of the checks in flight, which makes the checkers' timeouts cheaper
too. A check is bounded by its own timeout (the checker enforces it), so at
most one check per real is in flight; ``max_in_flight`` adds a global cap
(file descriptors). A check waiting for a place starts late, and the wait
shows as lateness.

Reloads (`update()`, or `revise()` when the caller knows the difference)
are classified per real, as faucet classifies warm and cold starts: an
unchanged watch keeps its grid and rise/fall state (no re-warm-up, no flap,
no extra check); a changed watch (other check settings) gets a new grid and
new thresholds but keeps its current health; a removed real's queued slot
is dropped and its running check cancelled; a new real starts from
``initial`` (UP when adopted from the kernel) or UNKNOWN.

Errors (style G9): a check function that raises has a bug; the exception is
caught at the per-check boundary, logged (once per run of raising checks)
and counted as a failed check, so the monitor keeps running (keepalived's
isolation). An exception from ``on_change`` is the daemon's own bug: it ends
`run()`.

Each check's lateness (start minus slot) and duration go into constant-size
histograms (`MonitorStats`), for metrics and the benchmark.

At 10,000 checks a second the cyclic garbage collector matters more than the
monitor (``bench/health_checks.py --gc``): objects of checks in flight are
promoted at every young collection and then trigger full collections that
walk the whole config, ~100 ms three times a second, enough to tip the
process into overload. Nothing per check outlives the check here (the heap
holds plain numbers, `last_result` keeps fields, not the result object); the
daemon should still ``gc.freeze()`` after loading a config and raise the
young-generation threshold.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog

from ipvsd.health.tracker import (
    CheckPart,
    Grid,
    Health,
    HealthRecord,
    LogHistogram,
    RiseFall,
    first_offset,
    retry_slot,
)
from ipvsd.model import RealId

log = structlog.get_logger("ipvsd.health")

#: Default `HealthMonitor` tick: checks start at most this late on an idle loop.
DEFAULT_TICK = 0.005

TargetT = TypeVar("TargetT")
"""What the check function takes (``ipvsd.health.checks.CheckTarget`` in the daemon)."""


class CheckOutcome(Protocol):
    """What the monitor reads of a check result (``ipvsd.health.checks.CheckResult``)."""

    @property
    def ok(self) -> bool:
        """Whether the real passed."""

    @property
    def reason(self) -> str:
        """Why it passed or failed, for logs and status."""

    @property
    def duration_s(self) -> float:
        """How long the check took, in seconds."""

    @property
    def weight(self) -> int | None:
        """The weight the check gives the real (exec ``dynamic_weight``); None: the configured."""

    @property
    def parts(self) -> tuple[CheckPart, ...]:
        """Each check's outcome, for a real with several checks; empty for one check."""


OnChange = Callable[[RealId, Health, str], None]
"""Called as ``on_change(real, new_health, reason)`` on every health change."""

OnWeight = Callable[[RealId, "int | None"], None]
"""Called as ``on_weight(real, weight)`` when a passing check gives another weight than the
real's last one (None: back to the configured weight)."""


@dataclass(frozen=True, slots=True)
class Watch(Generic[TargetT]):
    """What to check for one real, and how its results count.

    Two watches are equal when every setting is: `HealthMonitor.update`
    restarts a real's schedule only when its watch is no longer equal.

    Attributes:
        real: the real server.
        target: passed to the check function as is.
        interval: seconds between the starts of two checks.
        rise: consecutive successes that make a down real up.
        fall: consecutive failures that make an up real down.
        retry_interval: seconds from the start of a failed check to its retry
            while the real is not down yet; None: the grid's next slot
            (``interval``).
    """

    real: RealId
    target: TargetT
    interval: float
    rise: int
    fall: int
    retry_interval: float | None = None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One finished check of a real as the monitor keeps it (`last_result`), and the
    result it records for a check whose function raised."""

    ok: bool
    reason: str
    duration_s: float
    weight: int | None = None
    parts: tuple[CheckPart, ...] = ()


@dataclass(slots=True)
class MonitorStats:
    """Counters since the monitor was made; read them, do not change them.

    Attributes:
        checks: checks completed (including raised ones).
        failed: checks that failed (including raised ones).
        errors: checks whose function raised (bugs).
        skipped_slots: slots skipped because the previous check overran.
        lateness: seconds from each check's slot to its start.
        duration: seconds each check took, as the monitor saw it.
    """

    checks: int = 0
    failed: int = 0
    errors: int = 0
    skipped_slots: int = 0
    lateness: LogHistogram = field(default_factory=LogHistogram)
    duration: LogHistogram = field(default_factory=LogHistogram)


@dataclass(slots=True, eq=False)
class _Real(Generic[TargetT]):
    """The monitor's state of one real (replaced, not changed, when its watch changes)."""

    watch: Watch[TargetT]
    tracker: RiseFall
    name: str
    offset: float
    """Seconds from scheduling the real to its first slot (`first_offset`)."""
    last_ok: bool | None = None
    """The latest result's fields (None: not checked yet); kept apart from the
    result object so that nothing the collector tracks lives for an interval."""
    last_reason: str = ""
    last_duration_s: float = 0.0
    last_parts: tuple[CheckPart, ...] = ()
    """Each check's latest outcome, for a real with several checks (`CheckOutcome.parts`)."""
    weight: int | None = None
    """The weight the latest passing check gave (None: the configured one)."""
    since: float = 0.0
    """Wall-clock time (Unix seconds) of the last health change, or of the start of
    the real's checks: what ``ipvsd status`` shows as ``health_since``."""
    grid: Grid | None = None
    """The real's slots; None until it is scheduled (by `run()` or a later `update()`)."""
    index: int = 0
    """The slot of the check that is due, running or waiting for a place; during
    retries, the slot whose check began them."""
    retry_at: float | None = None
    """The slot of the retry that is due (`tracker.retry_slot`); None: grid slot `index`."""
    alive: bool = True
    """False once the real was removed or replaced: its queued slot is dropped."""
    future: asyncio.Future[CheckOutcome] | None = None
    """The running check, if any."""
    started: float = 0.0
    """When the running check started (monitor clock)."""
    on_done: Callable[[asyncio.Future[CheckOutcome]], None] | None = None
    """The monitor's done callback for this real's checks (made once, not per check)."""
    raising: bool = False
    """The last check raised (that exception was logged; the next ones are not)."""


def real_name(real: RealId) -> str:
    """``"SERVICE REAL"``, as logs and the jitter hash spell a real."""
    return f"{real[0]} {real[1]}"


class HealthMonitor(Generic[TargetT]):
    """Checks every watched real on its own grid and reports health changes.

    Args:
        check: the check function; it bounds its own run time (the check's
            timeout) and returns a failed result rather than raising. It is
            called in the event loop and returns an awaitable: a future (as
            ``ipvsd.health.checks.Checker.check`` does for tcp) costs no task.
        on_change: called at once, as ``on_change(real, health, reason)``,
            whenever a real's health changes.
        clock: monotonic clock in seconds running at the pace of the event
            loop's; None: the running loop's ``time``.
        seed: changes the jittered phase of every real (tests, benchmarks).
        max_in_flight: most checks running at once; None: no cap (at most
            one per real).
        tick: seconds the dispatcher sleeps at least between two wake-ups,
            so that checks due close together start in one batch; it is
            the most a check starts late by on an idle loop. 0: wake for
            every slot.
        on_result: called with every check's outcome (for metrics), after
            rise/fall has seen it and ``on_change`` has been told of a change.
        wall_clock: Unix time in seconds, for `health_record`'s ``since`` (people
            and logs read wall-clock times; the grid runs on ``clock``).
        on_weight: a passing check changed the weight the checks give a real
            (`OnWeight`), before its health change, if any, is reported.
    """

    def __init__(
        self,
        check: Callable[[TargetT], Awaitable[CheckOutcome]],
        on_change: OnChange,
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        max_in_flight: int | None = None,
        tick: float = DEFAULT_TICK,
        on_result: Callable[[CheckOutcome], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        on_weight: OnWeight | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._check = check
        self._on_change = on_change
        self._clock = clock
        self._seed = seed
        self._max_in_flight = max_in_flight
        self._tick = tick
        self._on_result = on_result
        self._wall_clock = wall_clock
        self._on_weight = on_weight
        self._reals: dict[RealId, _Real[TargetT]] = {}
        self._due: list[tuple[float, int]] = []
        """Heap of (slot, serial): every scheduled real's next slot. Plain numbers,
        which the garbage collector stops tracking, and which compare in C."""
        self._queued: dict[int, _Real[TargetT]] = {}
        """The real of each serial in `_due`."""
        self._serials = itertools.count()
        self._waiting: collections.deque[tuple[float, _Real[TargetT]]] = collections.deque()
        """Due (slot, real) pairs waiting for a place under max_in_flight."""
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = math.inf
        self._last_wake = -math.inf
        self._stopping = asyncio.Event()
        self._error: Exception | None = None
        self.stats = MonitorStats()
        """Check counters and lateness/duration histograms."""
        self.suspended: frozenset[RealId] = frozenset()
        """Reals whose checks are paused (a service's ``ha_suspend``): their slots pass
        without a check and their health stays as it is. The caller sets it."""

    def update(
        self,
        watches: Mapping[RealId, Watch[TargetT]],
        initial: Mapping[RealId, Health] | None = None,
    ) -> None:
        """Make the watched reals `watches`: start new ones, stop gone ones.

        Reals whose watch is unchanged keep their grid and state. Reals whose
        watch changed get a new grid and keep their health.

        Args:
            watches: every real to check, keyed by its id.
            initial: starting health of *new* reals (UP for reals adopted from
                the kernel); absent ones start UNKNOWN.

        Raises:
            ValueError: a watch is filed under another real's id.
        """
        changed: dict[RealId, Watch[TargetT]] = {}
        for real_id, watch in watches.items():
            old = self._reals.get(real_id)
            if old is None or old.watch != watch:
                changed[real_id] = watch
        self.revise(changed, self._reals.keys() - watches.keys(), initial)

    def revise(
        self,
        changed: Mapping[RealId, Watch[TargetT]],
        removed: Iterable[RealId],
        initial: Mapping[RealId, Health] | None = None,
    ) -> None:
        """`update` for a caller that knows the difference: touch only those reals.

        Costs in proportion to the change, not to the number of watched reals
        (a reload of 40,000 reals that edits one check restarts one).

        Args:
            changed: new watches, and changed ones (their reals keep their health).
            removed: reals to stop checking (unknown ones are ignored).
            initial: starting health of *new* reals, as for `update`.

        Raises:
            ValueError: a watch is filed under another real's id.
        """
        initial = initial or {}
        new: list[_Real[TargetT]] = []
        started = self._wall_clock()
        for real_id, watch in changed.items():
            if watch.real != real_id:
                raise ValueError(f"watch for {real_name(watch.real)} filed under {real_id}")
        for real_id in removed:
            gone = self._reals.pop(real_id, None)
            if gone is not None:
                self._retire(gone)
        for real_id, watch in changed.items():
            old = self._reals.get(real_id)
            if old is not None:
                self._retire(old)
                health = old.tracker.state
            else:
                health = initial.get(real_id, Health.UNKNOWN)
            name = real_name(real_id)
            offset = first_offset(name, watch.interval, self._seed)
            real = _Real(watch, RiseFall(watch.rise, watch.fall, health), name, offset)
            real.since = started
            if old is not None:
                real.last_ok = old.last_ok
                real.last_reason = old.last_reason
                real.last_duration_s = old.last_duration_s
                real.last_parts = old.last_parts
                real.since = old.since
                real.weight = old.weight
            self._reals[real_id] = real
            new.append(real)
        if self._loop is not None:
            self._schedule(new)

    def states(self) -> dict[RealId, Health]:
        """The current health of every watched real."""
        return {real_id: real.tracker.state for real_id, real in self._reals.items()}

    def watch(self, real: RealId) -> Watch[TargetT] | None:
        """The watch of `real`; None if it is not watched."""
        entry = self._reals.get(real)
        return None if entry is None else entry.watch

    def health(self, real: RealId) -> Health | None:
        """The current health of `real`; None if it is not watched."""
        entry = self._reals.get(real)
        return None if entry is None else entry.tracker.state

    def weight(self, real: RealId) -> int | None:
        """The weight `real`'s checks gave it; None: the configured one (or not watched)."""
        entry = self._reals.get(real)
        return None if entry is None else entry.weight

    def health_record(self, real: RealId) -> HealthRecord | None:
        """What, since when and why of `real`'s health; None if it is not watched."""
        entry = self._reals.get(real)
        if entry is None:
            return None
        reason = None if entry.last_ok is None else entry.last_reason
        return HealthRecord(entry.tracker.state, entry.since, reason, entry.last_parts)

    def records(self) -> Mapping[RealId, HealthRecord]:
        """`health_record` of every watched real, as a read-only view (built when read)."""
        return _Records(self)

    def last_result(self, real: RealId) -> CheckRecord | None:
        """The latest check result of `real` (a copy); None if not checked yet or not watched."""
        entry = self._reals.get(real)
        if entry is None or entry.last_ok is None:
            return None
        return CheckRecord(
            entry.last_ok, entry.last_reason, entry.last_duration_s, parts=entry.last_parts
        )

    async def run(self) -> None:
        """Check the watched reals until `stop()` (or cancellation); call once.

        Raises:
            Exception: whatever ``on_change`` raised; the monitor stops first.
        """
        loop = asyncio.get_running_loop()
        self._clock = self._clock or loop.time
        self._loop = loop
        try:
            self._schedule(list(self._reals.values()))
            await self._stopping.wait()
        finally:
            self._loop = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._wake_at = math.inf
            self._due.clear()
            self._queued.clear()
            self._waiting.clear()
            running = [real.future for real in self._reals.values() if real.future is not None]
            for future in running:
                future.cancel()
            for real in self._reals.values():
                real.grid = None
            if running:
                await asyncio.wait(running)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Make `run()` cancel the running checks and return."""
        self._stopping.set()

    # --- the dispatcher --------------------------------------------------------------------

    def _schedule(self, reals: list[_Real[TargetT]]) -> None:
        """Give `reals` their grids, starting now, and queue their first slots."""
        assert self._clock is not None
        now = self._clock()  # one "now" for all: 10,000 new reals must not drift apart
        for real in reals:
            real.grid = Grid(now + real.offset, real.watch.interval)
            real.index = 0
            real.retry_at = None
            self._queue(real.grid.origin, real)

    @staticmethod
    def _retire(real: _Real[TargetT]) -> None:
        """Forget `real`: drop its queued slot (lazily) and cancel its running check."""
        real.alive = False
        if real.future is not None:
            real.future.cancel()

    def _queue(self, slot: float, real: _Real[TargetT]) -> None:
        serial = next(self._serials)
        self._queued[serial] = real
        heapq.heappush(self._due, (slot, serial))
        if slot < self._wake_at:
            self._arm(slot)

    def _arm(self, slot: float) -> None:
        """Wake the dispatcher for `slot`, but not sooner than a tick after its last wake-up."""
        assert self._loop is not None
        assert self._clock is not None
        when = max(slot, self._last_wake + self._tick)
        if self._timer is not None:
            self._timer.cancel()
        self._wake_at = when
        self._timer = self._loop.call_later(max(when - self._clock(), 0.0), self._dispatch)

    def _dispatch(self) -> None:
        """Start every check whose slot has come (the timer callback)."""
        assert self._clock is not None
        now = self._clock()
        self._timer = None
        self._wake_at = math.inf
        self._last_wake = now
        due, queued = self._due, self._queued
        while due and due[0][0] <= now:
            slot, serial = heapq.heappop(due)
            real = queued.pop(serial)
            if not real.alive:
                continue
            if self.suspended and real.watch.real in self.suspended:
                self._queue_next(real, now, checked=False)  # paused: keep the grid
                continue
            if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
                self._waiting.append((slot, real))
            else:
                self._start(slot, real)
        if due:
            self._arm(due[0][0])

    def _start(self, slot: float, real: _Real[TargetT]) -> None:
        """Start `real`'s check due at `slot`; `_finished` takes it from there."""
        loop, clock = self._loop, self._clock
        assert loop is not None
        assert clock is not None
        self._in_flight += 1
        real.started = started = clock()
        self.stats.lateness.record(started - slot)
        future: asyncio.Future[CheckOutcome]
        try:
            awaitable = self._check(real.watch.target)
            if isinstance(awaitable, asyncio.Future):
                future = awaitable
            else:
                future = asyncio.ensure_future(awaitable, loop=loop)
        except Exception as exc:  # a bug in the check function: style G9 isolation
            future = loop.create_future()
            future.set_exception(exc)
        real.future = future
        if real.on_done is None:
            real.on_done = functools.partial(self._finished, real)
        future.add_done_callback(real.on_done)

    def _finished(self, real: _Real[TargetT], future: asyncio.Future[CheckOutcome]) -> None:
        """Take the result of `real`'s check and queue its next slot; the per-check boundary."""
        if real.future is future:
            real.future = None
        self._in_flight -= 1
        try:
            if self._loop is not None and real.alive and not future.cancelled():
                clock = self._clock
                assert clock is not None
                exc = future.exception()
                result: CheckOutcome
                if exc is None:
                    result = future.result()
                    real.raising = False
                elif isinstance(exc, Exception):  # a bug in the check function (G9)
                    result = self._raised(real, exc, clock() - real.started)
                else:  # KeyboardInterrupt, SystemExit: the task re-raised it already
                    return
                self._record(real, result)
                self._queue_next(real, clock())
        except Exception as exc:  # a bug of ours or of on_change: stop the monitor
            self._error = self._error or exc
            self._stopping.set()
        finally:
            if self._waiting:
                self._start_waiting()

    def _raised(self, real: _Real[TargetT], exc: Exception, duration_s: float) -> CheckRecord:
        """Count and log (once per run of them) an exception from the check function."""
        self.stats.errors += 1
        if not real.raising:
            log.error("health.check_error", real=real.name, exc_info=exc)
            real.raising = True
        return CheckRecord(False, f"check raised {type(exc).__name__}: {exc}", duration_s)

    def _queue_next(self, real: _Real[TargetT], now: float, *, checked: bool = True) -> None:
        """Queue `real`'s next check after the one due now, which ended (or was skipped,
        `checked` false) at `now`: a retry if it failed short of ``fall`` and the watch
        has a ``retry_interval``, else the first grid slot not passed (tracker.py)."""
        grid = real.grid
        if self._loop is None or not real.alive or grid is None:
            return
        last = grid.slot(real.index) if real.retry_at is None else real.retry_at
        step = real.watch.retry_interval
        if checked and step is not None and real.tracker.retrying:
            real.retry_at = slot = retry_slot(last, step, now)
        elif real.retry_at is not None:  # the retries are over: back on the grid
            real.retry_at = None
            real.index = grid.resume_index(real.index, last, now)
            slot = grid.slot(real.index)
        else:
            real.index, skipped = grid.next_index(real.index, now)
            self.stats.skipped_slots += skipped
            slot = grid.slot(real.index)
        self._queue(slot, real)

    def _start_waiting(self) -> None:
        """Start waiting checks while there is room under max_in_flight."""
        if self._loop is None:  # stopping
            return
        cap = self._max_in_flight
        while self._waiting and (cap is None or self._in_flight < cap):
            slot, real = self._waiting.popleft()
            if real.alive:
                self._start(slot, real)

    def _record(self, real: _Real[TargetT], result: CheckOutcome) -> None:
        """Count `result`, feed it to the tracker, and report a health change."""
        stats = self.stats
        stats.checks += 1
        stats.duration.record(result.duration_s)
        if not result.ok:
            stats.failed += 1
        real.last_ok, real.last_reason = result.ok, result.reason
        real.last_duration_s = result.duration_s
        real.last_parts = result.parts
        if result.ok and result.weight != real.weight:
            real.weight = result.weight
            if self._on_weight is not None:
                self._on_weight(real.watch.real, result.weight)
        old = real.tracker.state
        new = real.tracker.record(result.ok)
        if new is not None:
            real.since = self._wall_clock()
            reason = _reason(result, real.tracker.streak)
            # A fresh real coming up is routine (10,000 of them at start); the rest is news.
            report = log.debug if old is Health.UNKNOWN and new is Health.UP else log.info
            report("health.transition", real=real.name, old=old.value, new=new.value,
                   reason=reason)  # fmt: skip
            self._on_change(real.watch.real, new, reason)
        # After on_change: whoever it told about the change already knows.
        if self._on_result is not None:
            self._on_result(result)


class _Records(Mapping[RealId, HealthRecord]):
    """`HealthMonitor.records`: a record is made only for the reals read (``ipvsd status``
    reads 40,000 of them at a time, so no dict of them all is built first)."""

    __slots__ = ("_monitor",)

    def __init__(self, monitor: HealthMonitor[Any]) -> None:
        self._monitor = monitor

    def __getitem__(self, real: RealId) -> HealthRecord:
        record = self._monitor.health_record(real)
        if record is None:
            raise KeyError(real)
        return record

    def get(self, real: RealId, default: Any = None) -> Any:  # the builder's one call, per real
        entry = self._monitor._reals.get(real)
        if entry is None:
            return default
        reason = None if entry.last_ok is None else entry.last_reason
        return HealthRecord(entry.tracker.state, entry.since, reason, entry.last_parts)

    def __iter__(self) -> Iterator[RealId]:
        return iter(self._monitor.states())

    def __len__(self) -> int:
        return len(self._monitor.states())


def _reason(result: CheckOutcome, streak: int) -> str:
    """``"connection refused (3 failures in a row)"``."""
    if result.ok:
        count = "1 success" if streak == 1 else f"{streak} successes"
    else:
        count = "1 failure" if streak == 1 else f"{streak} failures"
    return f"{result.reason} ({count} in a row)"
