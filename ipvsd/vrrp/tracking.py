"""VRRP track scripts (keepalived's ``vrrp_script``): rise/fall and the runner.

`RiseFall` is the sans-IO counter; `ScriptRunner` runs one script every
``interval`` seconds with `ipvsd.process.run_bounded` and tells its
subscribers (the instances tracking it, as `ScriptChanged` in their inbox)
each time the counted state changes. One runner per script, however many
instances track it: the script runs once per interval (keepalived runs one
``vrrp_script`` once for all its trackers too).

Counting follows keepalived's ``vrrp_script_child_thread``
(vrrp_scheduler.c): a new script is *unknown*; its first result decides at
once (keepalived starts ``result`` at ``rise - 1``, "one success is
enough", and a first failure is a failure whatever ``fall`` says). After
that ``rise`` consecutive successes make a failing script succeed and
``fall`` consecutive failures make a succeeding one fail. A timed-out,
killed or unstartable script counts as a failure.

The loop never waits for a script: each run is awaited in the runner's own
task, a hung script's whole process group is killed at ``timeout``, and the
next run starts ``interval`` seconds after the previous one started (or at
once if it ran longer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from ipvsd.process import ProcessOutcome, run_bounded

__all__ = ["RiseFall", "ScriptRunner", "ScriptSpec"]

log = structlog.get_logger(__name__)


class RiseFall:
    """keepalived's rise/fall count for one script; `ok` is None until the first result."""

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise, self.fall = rise, fall
        self.ok: bool | None = None
        self._streak = 0  # consecutive results against the current state

    def result(self, success: bool) -> bool:
        """Count one result. Returns: whether `ok` changed."""
        if self.ok is None:
            self.ok, self._streak = success, 0
            return True
        if success == self.ok:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok, self._streak = success, 0
            return True
        return False


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """One ``vrrp.scripts`` entry as the runner needs it (seconds)."""

    name: str
    command: tuple[str, ...]
    interval: float
    timeout: float
    rise: int = 1
    fall: int = 1
    user: str | None = None


Listener = Callable[[str, bool | None], None]


class ScriptRunner:
    """Runs one script forever in its own task; `subscribe` to hear state changes."""

    def __init__(self, spec: ScriptSpec) -> None:
        self.spec = spec
        self.counter = RiseFall(spec.rise, spec.fall)
        self.last: ProcessOutcome | None = None
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool | None:
        return self.counter.ok

    def subscribe(self, listener: Listener) -> None:
        """`listener(name, ok)` on every change; called now with the current state."""
        self._listeners.append(listener)
        listener(self.spec.name, self.ok)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the loop; a running script's process group is killed (run_bounded)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        while True:
            started = loop.time()
            outcome = await run_bounded(
                spec.command,
                timeout_s=spec.timeout,
                user=spec.user,
                kill_group_on_exit=True,  # a check run every interval must not pile up children
            )
            self.last = outcome
            if self.counter.result(outcome.returncode == 0):
                log.info(
                    "vrrp.script_changed",
                    script=spec.name,
                    ok=self.ok,
                    returncode=outcome.returncode,
                    timed_out=outcome.timed_out,
                    error=str(outcome.error) if outcome.error else None,
                )
                for listener in list(self._listeners):
                    listener(spec.name, self.ok)
            await asyncio.sleep(max(0.0, started + spec.interval - loop.time()))


class ScriptPool:
    """The runners of ``vrrp.scripts``, by name; `update` on reload restarts changed ones."""

    def __init__(self) -> None:
        self.runners: dict[str, ScriptRunner] = {}

    async def update(self, specs: Sequence[ScriptSpec]) -> list[str]:
        """Start new scripts, restart changed ones, stop removed ones.

        Returns: the names of restarted scripts, whose subscribers must
        subscribe again (their state starts unknown).
        """
        wanted = {spec.name: spec for spec in specs}
        restarted: list[str] = []
        for name in list(self.runners):
            if wanted.get(name) != self.runners[name].spec:
                await self.runners.pop(name).stop()
                if name in wanted:
                    restarted.append(name)
        for name, spec in wanted.items():
            if name not in self.runners:
                runner = self.runners[name] = ScriptRunner(spec)
                runner.start()
        return restarted

    async def stop(self) -> None:
        for runner in self.runners.values():
            await runner.stop()
        self.runners.clear()
