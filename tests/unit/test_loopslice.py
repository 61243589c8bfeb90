"""`LoopSlice`: a check costs a clock read now and then; the loop gets a turn once per
spent slice.

A fake clock decides when the slice is spent; whether the loop got a turn is
seen by a callback scheduled with ``call_soon``, which runs only then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator

import pytest

from ipvsd.loopslice import MAX_STRIDE, LoopSlice


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def loop_turned(slice_: LoopSlice) -> bool:
    """Whether `slice_.pause()` let the event loop run other callbacks."""
    ran: list[bool] = []
    asyncio.get_running_loop().call_soon(ran.append, True)
    await slice_.pause()
    return bool(ran)


async def test_no_yield_while_the_slice_lasts() -> None:
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    assert [await loop_turned(slice_) for _ in range(100)] == [False] * 100
    clock.now += 0.0019
    assert not await loop_turned(slice_)


async def test_one_yield_when_the_slice_is_spent_then_a_new_slice() -> None:
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    clock.now += 0.002
    assert await loop_turned(slice_)
    assert not await loop_turned(slice_)  # the new slice starts after the yield
    clock.now += 0.0019
    assert not await loop_turned(slice_)
    clock.now += 0.0001
    assert await loop_turned(slice_)


async def test_a_long_wait_costs_one_yield_not_one_per_slice() -> None:
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    clock.now += 60.0  # idle: the next check yields once, then the slice is fresh
    assert [await loop_turned(slice_) for _ in range(3)] == [True, False, False]


@pytest.mark.parametrize("step_s", [0.0, 0.002])
async def test_drain_returns_the_result_and_yields_only_when_steps_spend_the_slice(
    step_s: float,
) -> None:
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    turns = 0

    async def spin() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    def steps() -> Generator[None, None, list[int]]:
        seen = []
        for _ in range(5):
            clock.now += step_s
            seen.append(turns)
            yield
        return seen

    spinner = asyncio.create_task(spin())
    await asyncio.sleep(0)
    try:
        seen = await slice_.drain(steps())
    finally:
        spinner.cancel()
    if step_s:
        assert seen == sorted(set(seen))  # the loop turned between every two steps
    else:
        assert set(seen) == {1}  # never


async def test_cheap_steps_read_the_clock_once_a_stride() -> None:
    """Inside UML a clock read is a ~70 us system call: not one per step (issue 14)."""
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    reads = clock.reads
    for _ in range(10_000):
        await slice_.pause()
    assert clock.reads - reads <= 10_000 // MAX_STRIDE + 8


async def test_expensive_steps_are_soon_checked_at_every_step_again() -> None:
    clock = Clock()
    slice_ = LoopSlice(0.002, clock=clock)
    for _ in range(1_000):  # cheap: the stride grows to its largest
        await slice_.pause()
    turned = []
    for _ in range(4 * MAX_STRIDE):
        clock.now += 0.001  # each step half a slice now
        turned.append(await loop_turned(slice_))
    first = turned.index(True)
    assert first < MAX_STRIDE  # the loop waited a stride of steps at the most
    rest = turned[first:]  # then a turn every other step: the slice is two steps now
    assert rest == [True, False] * (len(rest) // 2) + [True] * (len(rest) % 2)


def test_the_slice_must_be_positive() -> None:
    with pytest.raises(ValueError, match="slice"):
        LoopSlice(0)
