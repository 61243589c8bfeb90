"""What a new config changes for health checking, found in steps (no I/O, no clock).

A reload hands the health manager a whole new config, but at 10,000
services x 4 reals almost all of it is what already runs, and every real
costs a few microseconds to look at (its key's hash and equality are
Python code). So `change_steps` walks the config once, one service per step
(``ipvsd.loopslice`` gives the event loop a turn between steps), and returns
only the difference: the watches to start or restart, the reals to stop
checking, and the reals whose per-real series appear, disappear or change
meaning. Applying that (`HealthMonitor.revise`, the reports) costs in
proportion to the change, so it can happen in one step, at once.

Rules:

1. A real is identified by (service key, dest key); a changed address or
   port is a real removed and another added.
2. A real's watch is new or changed when it differs from the one it has now
   (`Watch` equality: target, interval, rise, fall, retry_interval); an equal
   watch is left alone, keeping its schedule and its state.
3. A kept real that gains or loses its check is *moved*: its reported health
   changes meaning (unchecked reals are UP).
4. A real with several checks (``checks``) runs them as one round: every
   smallest ``interval``, up after the largest ``rise``, down after the
   smallest ``fall``, retried after the smallest ``retry_interval`` (a check
   without one counts its ``interval``) (as keepalived, a real goes down as
   soon as one of its checkers gives up on it, and is up only when all are).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ipvsd.config.model import CheckConfig, Config, RealConfig
from ipvsd.health.monitor import Watch
from ipvsd.health.policy import effective_checks
from ipvsd.model import DestKey, RealId

TargetT = TypeVar("TargetT")

#: Reals compared per step in the pass over the reals configured before.
REALS_PER_STEP = 64


@dataclass(frozen=True, slots=True)
class RealPrograms:
    """A real's ``notify_up`` and ``notify_down`` programs (None: none for that change)."""

    up: tuple[str, ...] | None = None
    down: tuple[str, ...] | None = None


@dataclass(slots=True)
class ConfigChange(Generic[TargetT]):
    """The difference a new config makes (all of it about the new config but `gone`)."""

    configured: dict[RealId, RealId] = field(default_factory=dict)
    """Every real of the new config, mapped to itself (see `change_steps`)."""
    watches: dict[RealId, Watch[TargetT]] = field(default_factory=dict)
    """Watches to start (new) or restart (changed) (Rule 2)."""
    unwatched: list[RealId] = field(default_factory=list)
    """Reals checked now that the new config does not check (removed, or moved)."""
    fresh: list[RealId] = field(default_factory=list)
    """Reals the config in force does not have."""
    gone: list[RealId] = field(default_factory=list)
    """Reals of the config in force that the new one does not have."""
    moved: list[RealId] = field(default_factory=list)
    """Kept reals that gain or lose their check (Rule 3)."""
    programs: dict[RealId, RealPrograms] = field(default_factory=dict)
    """The reals of the new config that have a notify program."""


def change_steps(
    config: Config,
    configured: Mapping[RealId, RealId],
    watch_of: Callable[[RealId], Watch[TargetT] | None],
    target_of: Callable[[tuple[CheckConfig, ...], RealConfig, DestKey], TargetT],
    shared: Mapping[RealId, RealId] | None = None,
) -> Generator[None, None, ConfigChange[TargetT]]:
    """Find what `config` changes, yielding after each service and every few old reals.

    Nothing may change `configured` or the watches until the generator is done.

    Args:
        config: the new config.
        configured: the reals of the config in force, each mapped to itself:
            a kept real's id is the very tuple `configured` holds, so that
            when the caller drops the old map no key dies with it (freeing
            40,000 keys at once holds the loop ~10 ms on a host).
        watch_of: the watch a real has now (None: not checked).
        target_of: what to check for a real with these checks (called for every
            checked real of `config`).
        shared: reals that share another real's check (``ipvsd.health.shared``):
            they get no watch of their own.
    """
    change: ConfigChange[TargetT] = ConfigChange()
    for service in config.ipvs.services:
        key = service.key
        for real in service.reals:
            dest = service.dest_key(real)
            real_id = (key, dest)
            known = configured.get(real_id)
            kept = known is not None
            if known is None:
                change.fresh.append(real_id)
            else:
                real_id = known
            change.configured[real_id] = real_id
            if real.notify_up is not None or real.notify_down is not None:
                change.programs[real_id] = RealPrograms(real.notify_up, real.notify_down)
            current = watch_of(real_id)
            checks = () if shared and real_id in shared else effective_checks(service, real)
            if not checks:
                if current is not None:
                    change.unwatched.append(real_id)
                    change.moved.append(real_id)
                continue
            if kept and current is None:
                change.moved.append(real_id)
            watch = _watch(real_id, target_of(checks, real, dest), checks)
            if watch != current:
                change.watches[real_id] = watch
        yield
    for index, real_id in enumerate(configured, 1):
        if real_id not in change.configured:
            change.gone.append(real_id)
            if watch_of(real_id) is not None:
                change.unwatched.append(real_id)
        if index % REALS_PER_STEP == 0:
            yield
    return change


def _watch(real_id: RealId, target: TargetT, checks: tuple[CheckConfig, ...]) -> Watch[TargetT]:
    """The watch of a real with `checks` (Rule 4)."""
    if len(checks) == 1:
        check = checks[0]
        return Watch(real_id, target, check.interval, check.rise, check.fall, check.retry_interval)
    retry = None
    if any(check.retry_interval is not None for check in checks):
        retry = min(check.retry_interval or check.interval for check in checks)
    return Watch(
        real_id,
        target,
        min(check.interval for check in checks),
        max(check.rise for check in checks),
        min(check.fall for check in checks),
        retry,
    )
