"""Stepwise computations: generators that yield between units of work and return a result.

A pure core that can take long (planning 10,000 services, the status of
10,000 services) is written as such a generator, so the daemon can run it in
event-loop slices (`ipvsd.loopslice.LoopSlice.drain`); `run_steps` runs one
to its end at once, for callers without a loop (tests, the CLI).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")


def run_steps(steps: Generator[object, None, T]) -> T:
    """Run a stepwise computation to its return value, without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
