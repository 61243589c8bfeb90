"""Restart back-off for the VRRP tasks that must not stay dead, sans-IO.

Theory of operation
-------------------
An instance runner, a packet receiver, the link watch and a socket re-open
are restarted when they fail (issue #11, item 4). Restarting at once would
spin on a failure that repeats (an interface the kernel keeps refusing), so
each failure waits `RestartPolicy.first_s`, doubled after every further
failure up to `RestartPolicy.max_s` (1, 2, 4, ... 30 s). A task that ran
`RestartPolicy.healthy_s` or longer before failing is considered to have
recovered: its next wait starts again from `first_s`.

The runner passes in how long the task ran; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Backoff", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How long to wait before restarting a failed task. Durations are seconds.

    Raises:
        ValueError: a non-positive wait, or a cap below the first wait.
    """

    first_s: float = 1.0
    """The wait after the first failure (and after a healthy run)."""
    max_s: float = 30.0
    """The longest wait."""
    healthy_s: float = 60.0
    """A run at least this long resets the wait to `first_s`."""

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.max_s < self.first_s or self.healthy_s <= 0:
            raise ValueError("restart back-off needs 0 < first_s <= max_s and healthy_s > 0")


@dataclass(slots=True)
class Backoff:
    """The waits of one supervised task: `after_failure(ran_s)` gives the next."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    failures: int = 0
    """Failures so far (never reset: the count of restarts)."""
    _next_s: float | None = None

    def after_failure(self, ran_s: float) -> float:
        """Record one failure after a run of `ran_s` seconds.

        Returns:
            Seconds to wait before the restart.
        """
        self.failures += 1
        if self._next_s is None or ran_s >= self.policy.healthy_s:
            self._next_s = self.policy.first_s
        delay = self._next_s
        self._next_s = min(2 * delay, self.policy.max_s)
        return delay
