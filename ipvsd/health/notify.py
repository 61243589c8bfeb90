"""Run a real's ``notify_up`` / ``notify_down`` program when its health changes.

keepalived runs a real_server's ``notify_up`` and ``notify_down`` scripts
when the real is put in or taken out of service. ipvsd runs them on the
real's health changes (to UP, to DOWN), with ``ipvsd.process.run_bounded``,
the runner that VRRP's notify hooks and exec checks use, and so with the same
guarantees: the loop never waits for a program, its stdin is /dev/null, its
output tail is logged, and it is killed with its process group after
`NOTIFY_TIMEOUT_S` seconds. Like VRRP's notify (``ipvsd.vrrp.notify``):

* one real's runs go one after another, in the order of its changes, so a
  program sees down, then up, even when the first run is slow (one queue and
  worker task per real that has a program);
* a failure (missing program, non-zero exit, timeout) is logged, never raised;
* at most `MAX_RUNNING` programs run at once across all reals: a start that
  brings 10,000 reals UP queues their programs instead of forking them all.

The program learns which real changed from its environment (IPVSD_SERVICE,
IPVSD_REAL_ADDRESS, IPVSD_REAL_PORT, IPVSD_HEALTH), as exec checks learn their
target: its argv is the operator's, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence

import structlog

from ipvsd.health.changes import RealPrograms
from ipvsd.health.tracker import Health
from ipvsd.model import RealId
from ipvsd.process import log_outcome, run_bounded

__all__ = ["MAX_RUNNING", "NOTIFY_TIMEOUT_S", "RealNotifier", "RealPrograms"]

log = structlog.get_logger("ipvsd.health.notify")

NOTIFY_TIMEOUT_S = 10.0
"""Seconds a notify program may run before its process group is killed (VRRP's default)."""
MAX_RUNNING = 16
"""Programs running at once, at most, across all reals."""
OUTPUT_LIMIT = 4096
"""Bytes of combined stdout/stderr kept (the tail), for the log."""
DRAIN_S = 1.0
"""Seconds to keep reading output after the program has exited."""


class RealNotifier:
    """Runs the reals' notify programs on their health changes (see the module docstring).

    Args:
        timeout_s: seconds before a program's process group is killed.
        max_running: programs running at once, at most.
    """

    def __init__(
        self, *, timeout_s: float = NOTIFY_TIMEOUT_S, max_running: int = MAX_RUNNING
    ) -> None:
        self._timeout_s = timeout_s
        self._programs: Mapping[RealId, RealPrograms] = {}
        self._queues: dict[RealId, asyncio.Queue[tuple[Sequence[str], Health]]] = {}
        self._workers: dict[RealId, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_running)

    def configure(self, programs: Mapping[RealId, RealPrograms]) -> None:
        """The reals that have programs now (a reload replaces them; queued runs go on)."""
        self._programs = programs

    def changed(self, real: RealId, health: Health) -> None:
        """`real`'s health changed: queue its program for `health`, if it has one; never waits."""
        programs = self._programs.get(real)
        if programs is None:
            return
        argv = programs.up if health is Health.UP else programs.down
        if health is Health.UNKNOWN or argv is None:
            return
        queue = self._queues.get(real)
        if queue is None:
            queue = self._queues[real] = asyncio.Queue()
        queue.put_nowait((argv, health))
        worker = self._workers.get(real)
        if worker is None or worker.done():
            loop = asyncio.get_running_loop()
            self._workers[real] = loop.create_task(self._work(real, queue))

    async def close(self, timeout: float = 15) -> None:  # noqa: ASYNC109 - a bound, then cancel
        """Wait up to `timeout` seconds for the queued runs, then stop (running groups killed)."""
        workers, self._workers = list(self._workers.values()), {}
        queues, self._queues = list(self._queues.values()), {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for queue in queues:
                    await queue.join()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, real: RealId, queue: asyncio.Queue[tuple[Sequence[str], Health]]) -> None:
        while True:
            argv, health = await queue.get()
            try:
                async with self._slots:
                    await self._run(real, argv, health)
            except Exception as exc:  # a bug here must not stop this real's later runs
                log.error("health.notify_failed", real=_name(real), error=repr(exc))
            finally:
                queue.task_done()
            if queue.empty():  # done: a later change makes a new worker
                self._workers.pop(real, None)
                self._queues.pop(real, None)
                return

    async def _run(self, real: RealId, argv: Sequence[str], health: Health) -> None:
        service, dest = real
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "IPVSD_SERVICE": str(service),
            "IPVSD_REAL_ADDRESS": str(dest.address),
            "IPVSD_REAL_PORT": str(dest.port),
            "IPVSD_HEALTH": health.value,
        }
        outcome = await run_bounded(
            argv, env=env, timeout_s=self._timeout_s, tail_bytes=OUTPUT_LIMIT, drain_s=DRAIN_S
        )
        log_outcome(
            log,
            "health.notify",
            outcome,
            timeout_s=self._timeout_s,
            real=_name(real),
            health=health.value,
            program=argv[0],
        )


def _name(real: RealId) -> str:
    return f"{real[0]} {real[1]}"
