"""The pure part of health checking: rise/fall, the check grid, lateness histograms.

Rise/fall first as tables (one row per scenario of the tracker's docstring
rules), then a hypothesis property against a reference model that states the
rules by looking back over the whole result history; then the grid's slot
arithmetic and the jitter's spread; then the histogram.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvsd.health.tracker import (
    Grid,
    Health,
    LogHistogram,
    RiseFall,
    first_offset,
    retry_slot,
)

UNKNOWN, UP, DOWN = Health.UNKNOWN, Health.UP, Health.DOWN


def test_health_values_are_the_status_contract() -> None:
    assert [h.value for h in Health] == ["unknown", "up", "down"]


def feed(tracker: RiseFall, results: str) -> list[tuple[int, Health]]:
    """Feed ``"+"`` (pass) / ``"-"`` (fail) results; the (1-based check, new state) changes."""
    changes = []
    for number, char in enumerate(results, start=1):
        new = tracker.record(char == "+")
        if new is not None:
            changes.append((number, new))
    return changes


# (rise, fall, initial, results, expected changes, final state)
TABLE = [
    pytest.param(2, 3, UNKNOWN, "+", [(1, UP)], UP, id="fresh: first success is UP"),
    pytest.param(5, 3, UNKNOWN, "+", [(1, UP)], UP, id="fresh: rise does not apply"),
    pytest.param(2, 3, UNKNOWN, "--", [], UNKNOWN, id="fresh: fewer than fall failures"),
    pytest.param(2, 3, UNKNOWN, "---", [(3, DOWN)], DOWN, id="fresh: never answers"),
    pytest.param(2, 3, UNKNOWN, "--+", [(3, UP)], UP, id="fresh: late first success"),
    pytest.param(2, 3, UNKNOWN, "---+", [(3, DOWN)], DOWN, id="fresh: down needs rise"),
    pytest.param(2, 3, UNKNOWN, "---++", [(3, DOWN), (5, UP)], UP, id="fresh: down then rise"),
    pytest.param(2, 3, UP, "--", [], UP, id="up: fewer than fall failures"),
    pytest.param(2, 3, UP, "---", [(3, DOWN)], DOWN, id="up: fall failures"),
    pytest.param(2, 3, UP, "--+--+--", [], UP, id="up: a success ends the failure streak"),
    pytest.param(2, 3, UP, "+++", [], UP, id="up: successes change nothing"),
    pytest.param(2, 3, DOWN, "+", [], DOWN, id="down: fewer than rise successes"),
    pytest.param(2, 3, DOWN, "++", [(2, UP)], UP, id="down: rise successes"),
    pytest.param(2, 3, DOWN, "+-+-+-", [], DOWN, id="down: a failure ends the success streak"),
    pytest.param(2, 3, DOWN, "---", [], DOWN, id="down: failures change nothing"),
    pytest.param(1, 1, UP, "-+-+", [(1, DOWN), (2, UP), (3, DOWN), (4, UP)], UP, id="1/1"),
    pytest.param(2, 3, UP, "---+-++---", [(3, DOWN), (7, UP), (10, DOWN)], DOWN, id="flapping 2/3"),
    pytest.param(2, 3, UP, "+-+--+--+-+-", [], UP, id="flapping below fall stays up"),
    pytest.param(
        2, 3, DOWN, "+-+-++--+---", [(6, UP), (12, DOWN)], DOWN, id="flapping down then up"
    ),
]


@pytest.mark.parametrize(("rise", "fall", "initial", "results", "changes", "final"), TABLE)
def test_rise_fall_table(
    rise: int,
    fall: int,
    initial: Health,
    results: str,
    changes: list[tuple[int, Health]],
    final: Health,
) -> None:
    tracker = RiseFall(rise, fall, initial)
    assert feed(tracker, results) == changes
    assert tracker.state is final


def test_adopted_real_starts_up_and_keeps_serving_until_fall() -> None:
    tracker = RiseFall(rise=2, fall=3, initial=UP)
    assert tracker.state is UP
    assert tracker.record(True) is None  # no "UP" event: the kernel already has it
    assert feed(tracker, "--") == []
    assert tracker.state is UP


def test_streak_counts_the_current_run() -> None:
    tracker = RiseFall(2, 3)
    assert tracker.streak == 0
    feed(tracker, "++-")
    assert tracker.streak == 1
    feed(tracker, "--")
    assert tracker.streak == 3


@pytest.mark.parametrize(("rise", "fall"), [(0, 3), (2, 0), (-1, -1)])
def test_thresholds_must_be_positive(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="rise and fall"):
        RiseFall(rise, fall)


def reference_states(rise: int, fall: int, initial: Health, results: list[bool]) -> list[Health]:
    """The rules stated over the history: the state after each result.

    A result changes the state only if the run of equal results it ends is
    long enough: one success leaves UNKNOWN, ``rise`` leave DOWN, ``fall``
    failures leave UP or UNKNOWN.
    """
    states = []
    state = initial
    for i, ok in enumerate(results):
        run = 0
        while run <= i and results[i - run] == ok:
            run += 1
        if ok and (state is UNKNOWN or (state is DOWN and run >= rise)):
            state = UP
        elif not ok and state is not DOWN and run >= fall:
            state = DOWN
        states.append(state)
    return states


@given(
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
    initial=st.sampled_from(Health),
    results=st.lists(st.booleans(), max_size=60),
)
def test_rise_fall_matches_the_reference_model(
    rise: int, fall: int, initial: Health, results: list[bool]
) -> None:
    tracker = RiseFall(rise, fall, initial)
    expected = reference_states(rise, fall, initial, results)
    previous = initial
    for ok, state in zip(results, expected, strict=True):
        change = tracker.record(ok)
        assert tracker.state is state
        # record() returns the new state exactly when it differs from the old one
        assert change == (state if state is not previous else None)
        previous = state


@given(results=st.lists(st.booleans(), max_size=80))
def test_flapping_real_changes_only_at_thresholds(results: list[bool]) -> None:
    """rise 2 / fall 3: every DOWN follows 3 failures, every UP (from DOWN) 2 successes."""
    tracker = RiseFall(rise=2, fall=3, initial=UP)
    for i, ok in enumerate(results):
        change = tracker.record(ok)
        if change is DOWN:
            assert results[i - 2 : i + 1] == [False] * 3
        elif change is UP:
            assert results[i - 1 : i + 1] == [True] * 2


# --- jitter ----------------------------------------------------------------------------------


def test_first_offset_is_deterministic_and_seeded() -> None:
    assert first_offset("a", 2.0) == first_offset("a", 2.0)
    assert first_offset("a", 2.0, seed=1) != first_offset("a", 2.0, seed=2)
    assert first_offset("a", 2.0) != first_offset("b", 2.0)


@given(name=st.text(), interval=st.floats(1e-3, 3600), seed=st.integers())
def test_first_offset_is_within_one_interval(name: str, interval: float, seed: int) -> None:
    assert 0.0 <= first_offset(name, interval, seed) < interval


def test_first_offsets_spread_uniformly() -> None:
    offsets = [first_offset(f"10.0.0.1:80 10.0.{i // 250}.{i % 250}:80", 1.0) for i in range(1000)]
    bins = [0] * 10
    for offset in offsets:
        bins[int(offset * 10)] += 1
    # 100 expected per bin; +-40 is over 4 standard deviations (sd ~ 9.5)
    assert all(60 <= n <= 140 for n in bins), bins
    assert min(offsets) < 0.01
    assert max(offsets) > 0.99


# --- the grid --------------------------------------------------------------------------------


def test_slots_are_on_a_fixed_grid() -> None:
    grid = Grid(origin=100.25, interval=0.5)
    assert [grid.slot(k) for k in range(4)] == [100.25, 100.75, 101.25, 101.75]
    # k * interval, not repeated additions: no accumulated error after a day of 0.1 s
    assert Grid(0.0, 0.1).slot(864_000) == pytest.approx(86_400.0, abs=1e-9)


@pytest.mark.parametrize(
    ("index", "now", "expected"),
    [
        pytest.param(0, 100.30, (1, 0), id="check ended within its interval"),
        pytest.param(0, 100.75, (1, 0), id="ended exactly at the next slot"),
        pytest.param(0, 100.76, (2, 1), id="overran one slot"),
        pytest.param(0, 101.25, (2, 1), id="ended exactly on a later slot"),
        pytest.param(3, 104.0, (8, 4), id="overran four slots"),
        pytest.param(2, 100.0, (3, 0), id="clock before the slot (early wake)"),
    ],
)
def test_next_index_skips_missed_slots(index: int, now: float, expected: tuple[int, int]) -> None:
    assert Grid(100.25, 0.5).next_index(index, now) == expected


@given(
    origin=st.floats(0, 1e6),
    interval=st.floats(1e-3, 1e3),
    index=st.integers(0, 10_000),
    late=st.floats(0, 1e5),
)
def test_next_index_is_the_first_slot_not_started(
    origin: float, interval: float, index: int, late: float
) -> None:
    grid = Grid(origin, interval)
    now = grid.slot(index) + late
    k, skipped = grid.next_index(index, now)
    assert k > index
    assert skipped == k - index - 1
    assert grid.slot(k) >= now
    assert k == index + 1 or grid.slot(k - 1) < now


# --- retries ---------------------------------------------------------------------------------


def test_retrying_while_failing_short_of_down() -> None:
    tracker = RiseFall(rise=2, fall=3, initial=UP)
    assert not tracker.retrying
    tracker.record(False)
    assert tracker.retrying
    tracker.record(True)
    assert not tracker.retrying  # a success ends the retries
    feed(tracker, "---")
    assert tracker.state is DOWN
    assert not tracker.retrying  # a down real is not retried
    fresh = RiseFall(rise=2, fall=3)
    fresh.record(False)
    assert fresh.retrying  # UNKNOWN is not down yet


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(10.2, 11.0, id="retry_interval after the failed check's slot"),
        pytest.param(11.0, 11.0, id="ended exactly then"),
        pytest.param(12.5, 12.5, id="overran it: at once"),
    ],
)
def test_retry_slot(now: float, expected: float) -> None:
    assert retry_slot(10.0, 1.0, now) == expected


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        pytest.param(102.0, 102.1, 1, id="retries within the interval: the next slot"),
        pytest.param(110.0, 110.0, 2, id="a retry on slot 1: the slot after it"),
        pytest.param(115.0, 120.0, 2, id="ended on slot 2"),
        pytest.param(118.0, 120.5, 3, id="ended after slot 2"),
    ],
)
def test_resume_index_is_after_the_last_retry(last: float, now: float, expected: int) -> None:
    assert Grid(100.0, 10.0).resume_index(0, last, now) == expected


# --- the histogram ---------------------------------------------------------------------------


def test_empty_histogram() -> None:
    histogram = LogHistogram()
    assert histogram.count == 0
    assert histogram.quantile(0.99) == 0.0
    assert histogram.max == 0.0


def test_histogram_quantiles_within_ten_percent() -> None:
    histogram = LogHistogram()
    values = [i / 10_000 for i in range(1, 10_001)]  # 0.1 ms .. 1 s, uniform
    for value in values:
        histogram.record(value)
    assert histogram.count == 10_000
    assert histogram.max == 1.0
    assert histogram.total == pytest.approx(sum(values))
    for q in (0.5, 0.9, 0.99):
        exact = values[math.ceil(q * len(values)) - 1]
        assert exact <= histogram.quantile(q) <= exact * 1.1


def test_histogram_edges() -> None:
    histogram = LogHistogram()
    for value in (-0.001, 0.0, 1e-6, 1e6):  # early timers count as on time; huge goes last
        histogram.record(value)
    assert histogram.quantile(0.75) == LogHistogram.LOW
    assert histogram.quantile(1.0) == 1e6
    assert histogram.max == 1e6
    buckets = histogram.buckets()
    assert len(buckets) == LogHistogram.BUCKETS
    assert buckets[0] == (LogHistogram.LOW, 3)
    assert buckets[-1] == (math.inf, 4)
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)
