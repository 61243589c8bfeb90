"""The pure part of health checking: rise/fall hysteresis, the check grid, lateness.

Theory of operation
===================

A real's health is a three-state machine (`Health`) fed one check result at a
time by `RiseFall.record(ok)`, which returns the new state only when it
changes, so callers act on transitions and never on repeats. The rules are
keepalived's (``rise`` / ``fall`` in a ``real_server`` check) with one change
for a fresh real:

Rule 1 (fresh reals). A real starts UNKNOWN. Its *first* successful check
makes it UP at once: a new real enters the kernel after one good check,
without waiting for ``rise`` of them. ``fall`` consecutive failures make it
DOWN, so a real that never answers leaves UNKNOWN after ``fall`` checks.

Rule 2 (hysteresis). UP becomes DOWN after ``fall`` consecutive failures;
DOWN becomes UP after ``rise`` consecutive successes. A success ends the
failure streak and a failure ends the success streak, so a flapping real
stays where it is until one kind of result repeats often enough.

Rule 3 (adoption). A real found in the kernel at start-up is adopted UP
(``initial=Health.UP``): it keeps serving until its checks say otherwise
(Rule 2), instead of being removed and warmed up again. A real found there
at weight 0 (drained, or down in the last run) is adopted DOWN
(``initial=Health.DOWN``): it gets traffic again only after ``rise``
successes (Rule 2), not after the single one of Rule 1.

The check grid
==============

Each real is checked on a fixed grid ``origin + k * interval`` (k = 0, 1, 2,
...), computed from the integer k so that no error accumulates: a check that
takes long does not push the later ones back ("sleep interval after the
check" drifts by the check's duration every round). ``origin`` is the moment
the real was scheduled plus an offset drawn uniformly from ``[0, interval)``
(`first_offset`), so that 10,000 reals added by one reload do not all fire
in the same millisecond. The offset is a hash of the real's name and a seed:
the same real gets the same phase on every run, which keeps tests and
benchmarks reproducible. When a check overruns its slot the missed slots are
skipped (`Grid.next_index`), never run back to back in a burst.

Retries. A check that fails while the real is not DOWN yet (`RiseFall.retrying`)
may be followed sooner than the grid's next slot: ``retry_slot`` puts the
retry ``retry_interval`` after the failed check's slot (keepalived's
``delay_before_retry``), or at once when that check overran it, so a failing
real goes down ``(fall - 1) x retry_interval`` after its first failed check;
at most ``fall - 1`` retries come in a row, each bounded by the check's
timeout. When the real is DOWN or passes again, it returns to its grid at
the first slot after the last check's (`Grid.resume_index`): the grid's
phase is kept, and so is the 10,000 reals' spread.

Lateness
========

How late a check starts (actual start minus its slot) is how well the
scheduler keeps up. `LogHistogram` counts it in fixed log-spaced buckets
(10 us to about 100 s, each 10% wider than the last), so memory is constant
however long the daemon runs, and any quantile is known to within 10%.

Nothing here does I/O or reads a clock: time is always passed in (style G1/G2).
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import math
from dataclasses import dataclass


class Health(enum.Enum):
    """The health of one real server."""

    #: Not checked enough yet to say: a fresh real before its first success.
    UNKNOWN = "unknown"
    #: Passing its checks: the real gets traffic.
    UP = "up"
    #: Failed ``fall`` checks in a row: the real gets no new connections.
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """A watched real's health as ``ipvsd status`` explains it: what, since when, why.

    Attributes:
        health: the current verdict.
        since: Unix time in seconds at which the real got this verdict: its
            last change, or when its checks began (the start, or the reload
            that added it or put it under a check).
        reason: the latest check's reason, passed or failed (``connected``,
            ``connection refused``, ``HTTP 503 (expected 200)``, ``timeout
            after 1.0 s (connect)``); None until a check has ended.
    """

    health: Health
    since: float
    reason: str | None = None
    checks: tuple[CheckPart, ...] = ()
    """For a real with several checks, each one's latest outcome; empty otherwise."""


@dataclass(frozen=True, slots=True)
class CheckPart:
    """The latest outcome of one of a real's several checks (``checks``).

    Attributes:
        type: the check's type (``tcp``, ``http`` ...).
        ok: it passed.
        reason: why it passed or failed, as a single check's reason.
    """

    type: str
    ok: bool
    reason: str


class RiseFall:
    """Rise/fall hysteresis of one real (Rules 1-3 of the module docstring).

    Args:
        rise: consecutive successes that make a DOWN real UP (>= 1).
        fall: consecutive failures that make an UP or UNKNOWN real DOWN (>= 1).
        initial: the starting state; UP or DOWN for reals adopted from the
            kernel (Rule 3).

    Raises:
        ValueError: rise or fall is below 1.
    """

    __slots__ = ("_failures", "_passes", "_state", "fall", "rise")

    def __init__(self, rise: int, fall: int, initial: Health = Health.UNKNOWN) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self._state = initial
        self._passes = 0
        self._failures = 0

    @property
    def state(self) -> Health:
        """The current state."""
        return self._state

    @property
    def streak(self) -> int:
        """Length of the current run of equal results (successes or failures)."""
        return self._passes or self._failures

    @property
    def retrying(self) -> bool:
        """The last check failed and the real is not DOWN: the next check is a retry."""
        return self._failures > 0 and self._state is not Health.DOWN

    def record(self, ok: bool) -> Health | None:
        """Feed one check result.

        Args:
            ok: whether the check passed.

        Returns:
            The new state if this result changed it, else None.
        """
        if ok:
            self._passes += 1
            self._failures = 0
            if self._state is Health.UP:
                return None
            # Rule 1: UNKNOWN needs one success; Rule 2: DOWN needs `rise`.
            if self._state is Health.UNKNOWN or self._passes >= self.rise:
                self._state = Health.UP
                return Health.UP
            return None
        self._failures += 1
        self._passes = 0
        if self._state is not Health.DOWN and self._failures >= self.fall:
            self._state = Health.DOWN
            return Health.DOWN
        return None


def first_offset(name: str, interval: float, seed: int = 0) -> float:
    """The phase of a real's check grid: uniform in ``[0, interval)``, fixed per name.

    Args:
        name: a stable name of the real (e.g. ``"10.0.0.1:80 10.0.1.7:80"``).
        interval: seconds between two checks (> 0).
        seed: changes every real's phase at once (for tests and benchmarks).

    Returns:
        Seconds from the moment the real is scheduled to its first check.
    """
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    fraction = int.from_bytes(digest, "big") / 2.0**64  # in [0, 1)
    return min(fraction * interval, math.nextafter(interval, 0.0))


@dataclass(frozen=True, slots=True)
class Grid:
    """The check slots of one real: ``origin + k * interval`` for k >= 0.

    Attributes:
        origin: monotonic time of slot 0, in seconds.
        interval: seconds between two slots (> 0).
    """

    origin: float
    interval: float

    def slot(self, index: int) -> float:
        """Monotonic time of slot `index`."""
        return self.origin + index * self.interval

    def next_index(self, index: int, now: float) -> tuple[int, int]:
        """The slot to check after slot `index`, when that check ended at `now`.

        It is the first slot after `index` that has not started yet; slots
        that passed while the check ran are skipped, not made up for.

        Args:
            index: the slot that was just checked.
            now: monotonic time at which its check ended.

        Returns:
            ``(next_index, skipped)``: the next slot and how many were skipped.
        """
        following = index + 1
        if now <= self.slot(following):
            return following, 0
        # Smallest k with slot(k) >= now; the float division may be off by one.
        k = max(following, math.ceil((now - self.origin) / self.interval))
        while self.slot(k) < now:
            k += 1
        while k - 1 >= following and self.slot(k - 1) >= now:
            k -= 1
        return k, k - following

    def resume_index(self, index: int, last: float, now: float) -> int:
        """The slot to check after a run of retries begun at slot `index`.

        Args:
            index: the grid slot whose check began the retries.
            last: the slot of the last retry (so the next slot is after it).
            now: monotonic time at which the last retry ended.

        Returns:
            The first slot after `index` that is after `last` and not before `now`.
        """
        following, _ = self.next_index(index, max(now, math.nextafter(last, math.inf)))
        return following


def retry_slot(failed: float, retry_interval: float, now: float) -> float:
    """When the retry of a check due at `failed` that ended at `now` is due.

    Args:
        failed: the slot of the check that failed.
        retry_interval: seconds between the starts of a check and its retry.
        now: monotonic time at which the failed check ended.

    Returns:
        ``failed + retry_interval``, or `now` if that has passed (the check overran).
    """
    return max(failed + retry_interval, now)


class LogHistogram:
    """Counts of durations (seconds: check lateness, check duration) in log-spaced buckets.

    Memory is constant however many values are recorded.

    Bucket i holds values in ``(LOW * RATIO**(i-1), LOW * RATIO**i]``; bucket 0
    holds everything up to LOW (including negative lateness: a timer that
    fired a hair early is on time); the last one holds everything above the
    highest bound.
    """

    LOW = 1e-5
    """Upper bound of the first bucket (10 us)."""
    RATIO = 1.1
    """Each bucket's upper bound over the previous one: quantiles are within 10%."""
    BUCKETS = 172
    """LOW * RATIO**170 is about 110 s; the last bucket takes the rest."""

    __slots__ = ("_bounds", "_counts", "count", "max", "total")

    def __init__(self) -> None:
        self._counts = [0] * self.BUCKETS
        self._bounds = [self.LOW * self.RATIO**i for i in range(self.BUCKETS - 1)]
        self.count = 0
        """Number of values recorded."""
        self.total = 0.0
        """Sum of the values recorded (negative ones as 0)."""
        self.max = 0.0
        """Largest value recorded (exact)."""

    def record(self, seconds: float) -> None:
        """Count one value, in seconds."""
        self.count += 1
        if seconds > 0.0:
            self.total += seconds
            if seconds > self.max:
                self.max = seconds
        # The first bound >= seconds; past the last one: the last (open) bucket.
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1

    def upper_bound(self, index: int) -> float:
        """Upper bound of bucket `index` (infinity for the last)."""
        if index >= self.BUCKETS - 1:
            return math.inf
        return self._bounds[index]

    def quantile(self, q: float) -> float:
        """An upper estimate of quantile `q` (0..1): the bound of its bucket, capped at max.

        Returns:
            0.0 when nothing was recorded.
        """
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(self.upper_bound(index), self.max)
        return self.max

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper_bound, count)`` pairs, as a Prometheus histogram has them."""
        pairs: list[tuple[float, int]] = []
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            pairs.append((self.upper_bound(index), seen))
        return pairs
