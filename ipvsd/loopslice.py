"""Long work on the event loop in bounded slices: yield once a slice of time is spent.

VRRP adverts are timed on the same event loop as the IPVS work, and a
coroutine gives the loop a turn only when it really waits. Reading netlink
replies never waits: the kernel answers a request inside ``sendmsg``, so during
a dump or a batch's acks the socket always has data and ``sock_recv_into``
returns at once. A 10,000-service dump (3.6 s in User-Mode Linux) was
therefore one callback, and adverts were seconds late (issue 11 item 7). The
pure planner over such a table is another long stretch.

Such loops call `LoopSlice.pause` at every step. Until the slice is spent a
step costs a counter decrement and, every `stride` steps, one clock read;
then the loop gets one turn (``asyncio.sleep(0)``) and a new slice starts. So
the loop stalls for at most a slice plus a stride of steps, and the price is
one extra loop turn per slice, never one per message.

The stride adapts to the steps (`LoopSlice._due`): it doubles, up to
`MAX_STRIDE`, while a stride of steps takes under a quarter of a slice, halves
when it takes more than half, and is 1 again after an idle spell. Inside
User-Mode Linux a clock read is a system call of ~70 us (the host: ~50 ns), and
a start at 10,000 x 4 read the clock once per step: ~130,000 times, ~9 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TypeVar

#: Seconds of work between turns of the loop. Two milliseconds is noise next to
#: the shortest VRRP advert interval (1 s) and to a health check's timeout,
#: while a loop turn (tens of microseconds) costs the work about 1 %.
SLICE_S = 0.002
#: Steps between clock reads at the most (`LoopSlice._due`).
MAX_STRIDE = 32

T = TypeVar("T")


class LoopSlice:
    """Gives the event loop a turn whenever `slice_s` seconds have passed since the last.

    One per long-lived worker (an `IpvsClient`, the `Reconciler`): the slice
    carries over from one call to the next, because a worker's calls may follow
    each other without any real wait (a full dump is one dest dump per
    service). After an idle spell the first check yields once, which is cheap.
    """

    def __init__(
        self, slice_s: float = SLICE_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if slice_s <= 0:
            raise ValueError(f"the slice must be positive, not {slice_s}")
        self._slice_s = slice_s
        self._clock = clock
        self._read_at = clock()
        self._yield_at = self._read_at + slice_s
        self._stride = 1
        self._left = 1
        """Steps until the next clock read."""

    def _due(self) -> bool:
        """Count one step; whether the slice is spent (the clock is read every stride steps)."""
        self._left -= 1
        if self._left > 0:
            return False
        now = self._clock()
        spent = now - self._read_at  # by the last stride of steps (or an idle spell)
        self._read_at = now
        if spent > 2 * self._slice_s:
            self._stride = 1  # idle, or the steps got expensive: read at every step again
        elif spent > self._slice_s / 2:
            self._stride = max(self._stride // 2, 1)
        elif spent < self._slice_s / 4:
            self._stride = min(self._stride * 2, MAX_STRIDE)
        self._left = self._stride
        return now >= self._yield_at

    async def _turn(self) -> None:
        await asyncio.sleep(0)
        self._read_at = self._clock()
        self._yield_at = self._read_at + self._slice_s

    async def pause(self) -> None:
        """Give the loop a turn if this slice is spent; else return at once."""
        if self._due():
            await self._turn()

    async def drain(self, steps: Generator[object, None, T]) -> T:
        """Run a stepwise computation (a pure core's generator) to its return value.

        The generator yields between units of work and returns its result;
        `pause` runs after every step.
        """
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: T = done.value
                return result
            if self._due():
                await self._turn()
