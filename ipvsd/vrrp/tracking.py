"""VRRP track scripts and track files (keepalived's ``vrrp_script``, ``track_file``).

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

`FileWatcher` reads a tracked file every ``FILE_POLL_S`` seconds (one
watcher per path, whatever number of instances track it) and tells its
subscribers its integer value when it changes. `read_track_file` reads as
keepalived's ``process_track_file`` does: non-blocking open, at most 127
bytes, ``strtol(buf, NULL, 0)`` (leading blanks, a sign, ``0x`` hex and
``0`` octal; what follows the number is ignored); a missing, unreadable or
empty file, or one without a number, is 0; a number outside the 32-bit
range is ignored (the previous value stays). keepalived uses inotify and
sees a change at once; a poll is simpler, and reading a small file does
not hold the loop up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from ipvsd.process import ProcessOutcome, run_bounded

__all__ = [
    "FilePool",
    "FileWatcher",
    "RiseFall",
    "ScriptPool",
    "ScriptRunner",
    "ScriptSpec",
    "read_track_file",
]

log = structlog.get_logger(__name__)

#: Seconds between two reads of a tracked file.
FILE_POLL_S = 0.5
_INT32 = range(-(2**31), 2**31 + 1)  # keepalived accepts INT32_MAX + 1 too
_STRTOL = re.compile(rb"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


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


T = TypeVar("T")


class _Tracked(Generic[T]):
    """A value watched in its own task; subscribers hear (key, value) on each change."""

    def __init__(self, key: str, value: T) -> None:
        self.key = key
        self.value = value
        self._listeners: list[Callable[[str, T], None]] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: Callable[[str, T], None]) -> None:
        """`listener(key, value)` on every change; called now with the current value."""
        self._listeners.append(listener)
        listener(self.key, self.value)

    def unsubscribe(self, listener: Callable[[str, T], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _publish(self, value: T) -> None:
        self.value = value
        for listener in list(self._listeners):
            listener(self.key, value)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the loop (a running script's process group is killed by run_bounded)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        raise NotImplementedError


Listener = Callable[[str, bool | None], None]


class ScriptRunner(_Tracked[bool | None]):
    """Runs one script forever in its own task; `subscribe` to hear state changes."""

    def __init__(self, spec: ScriptSpec) -> None:
        super().__init__(spec.name, None)
        self.spec = spec
        self.counter = RiseFall(spec.rise, spec.fall)
        self.last: ProcessOutcome | None = None

    @property
    def ok(self) -> bool | None:
        return self.counter.ok

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
                self._publish(self.ok)
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


def read_track_file(path: str) -> int | None:
    """The file's value as keepalived reads it (see the module doc); None: ignore it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        data = os.read(fd, 127)
    except OSError:
        return 0
    finally:
        os.close(fd)
    match = _STRTOL.match(data)
    if match is None:
        return 0
    sign, digits = match.groups()
    if digits[:2] in (b"0x", b"0X"):
        value = int(digits, 16)
    else:
        value = int(digits, 8 if digits.startswith(b"0") else 10)
    value = -value if sign == b"-" else value
    return value if value in _INT32 else None


class FileWatcher(_Tracked[int]):
    """Reads one tracked file every `interval` seconds; subscribers hear its value."""

    def __init__(self, path: str, interval: float = FILE_POLL_S) -> None:
        super().__init__(path, read_track_file(path) or 0)
        self.interval = interval

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            value = read_track_file(self.key)
            if value is None:
                log.warning("vrrp.track_file_ignored", path=self.key, reason="out of range")
            elif value != self.value:
                log.info("vrrp.track_file_changed", path=self.key, value=value, old=self.value)
                self._publish(value)


class FilePool:
    """The watchers of every tracked file, by path; `update` keeps those still tracked."""

    def __init__(self, interval: float = FILE_POLL_S) -> None:
        self.interval = interval
        self.watchers: dict[str, FileWatcher] = {}

    async def update(self, paths: Sequence[str]) -> None:
        for path in set(self.watchers) - set(paths):
            await self.watchers.pop(path).stop()
        for path in paths:
            if path not in self.watchers:
                watcher = self.watchers[path] = FileWatcher(path, self.interval)
                watcher.start()

    async def stop(self) -> None:
        await self.update([])
