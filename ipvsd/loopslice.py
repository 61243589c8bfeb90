"""Long work on the event loop in bounded slices: yield once a slice of time is spent.

VRRP adverts are timed on the same event loop as the IPVS work, and a
coroutine gives the loop a turn only when it really waits. Reading netlink
replies never waits: the kernel answers a request inside ``sendmsg``, so during
a dump or a batch's acks the socket always has data and ``sock_recv_into``
returns at once. A 10,000-service dump (3.6 s in User-Mode Linux) was
therefore one callback, and adverts were seconds late (issue 11 item 7). The
pure planner over such a table is another long stretch.

Such loops call `LoopSlice.pause` at every step. Until the slice is spent a
step costs one clock read; then the loop gets one turn (``asyncio.sleep(0)``)
and a new slice starts. So the loop stalls for at most a slice plus one step,
and the price is one extra loop turn per slice, never one per message.
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
        self._yield_at = clock() + slice_s

    async def pause(self) -> None:
        """Give the loop a turn if this slice is spent; else return at once."""
        if self._clock() >= self._yield_at:
            await asyncio.sleep(0)
            self._yield_at = self._clock() + self._slice_s

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
            if self._clock() >= self._yield_at:  # `pause`'s test first: steps are small
                await self.pause()
