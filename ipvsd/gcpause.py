"""Pause Python's cyclic garbage collector around bulk work that makes no cycles.

Parsing a big config and rendering a big metrics page each allocate millions
of short-lived objects (dicts, tuples) and no reference cycles. With the
collector on, every ~700 allocations start a young collection and every few
hundred thousand a full one that walks the whole heap again and again (a
fifth of the time for 10,000 services), yet nothing is ever found. Pausing it
loses nothing; it is re-enabled afterwards only if it was on, so nesting and a
daemon that keeps it off (``gc.freeze()`` strategies) are left alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THRESHOLDS", "gc_paused"]

#: ipvsd's collector thresholds (`gc.set_threshold`), set by ``python -m
#: ipvsd`` before anything is imported and again by the daemon
#: (`ipvsd.daemon.root.tune_garbage_collector`, which explains the young
#: generation's 50,000). Start-up makes hundreds of thousands of long-lived
#: objects (modules, the config's models): with the default 700, the imports of
#: ``ipvsd run`` ran ~100 young collections that freed nothing (25-35 ms of
#: CPU on the host).
THRESHOLDS = (50_000, 20, 100)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the ``with`` block; restore its state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
