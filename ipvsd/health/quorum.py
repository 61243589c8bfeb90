"""A service's quorum: enough live weight to serve, with hysteresis (pure).

keepalived's rules (check/ipwrapper.c ``update_quorum_state``), per service:

1. The *live weight* is the sum of the weights the live reals have in the
   table: UP reals at their configured or check-given weight, 0 for a drained
   one (it takes no new connections, so it does not count).
2. With ``quorum: Q`` and ``hysteresis: H``, a service that has quorum loses
   it when the live weight falls below ``Q - H``; one that lost it gets it
   back when the live weight reaches ``Q + H``. In between it keeps the state
   it had, so one real flapping at the threshold does not flap the service.
   A live weight of 0 always loses quorum (keepalived: ``!weight_sum``).
3. Without ``quorum`` (null, the default) a service has quorum while any of
   its reals is UP: the rule that decided the sorry server before quorum
   existed, so a config without the field behaves as it did.
4. A service starts *with* quorum (keepalived's ``quorum_state_up``), so that
   losing it at start (no real up yet, with ``alpha``) is a transition that
   runs ``quorum_down`` and brings the sorry server in, as keepalived does.
5. While quorum is lost, the sorry server (if any) takes the traffic: it
   enters the table and the live reals are taken out (drained, or removed
   with ``on_failure: remove``), as keepalived removes them.

`QuorumBook` keeps the state of every service between rebuilds of its part
of the desired table and reports each transition once.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass

from ipvsd.config.model import ServiceConfig
from ipvsd.model import ServiceKey


@dataclass(frozen=True, slots=True)
class QuorumState:
    """A service's quorum as last computed.

    Attributes:
        up: the service has quorum.
        live_weight: the sum of its live reals' weights then (Rule 1).
    """

    up: bool
    live_weight: int


def has_quorum(service: ServiceConfig, live_weight: int, any_up: bool, was_up: bool) -> bool:
    """Whether `service` has quorum now (Rules 2 and 3).

    Args:
        service: its ``quorum`` and ``hysteresis``.
        live_weight: the sum of its live reals' weights.
        any_up: whether any of its reals is UP (the rule without ``quorum``).
        was_up: whether it had quorum before this change.
    """
    quorum = service.quorum
    if quorum is None:
        return any_up
    if live_weight == 0:
        return False
    if was_up:
        return live_weight >= quorum - service.hysteresis
    return live_weight >= quorum + service.hysteresis


OnQuorum = Callable[[ServiceKey, ServiceConfig, QuorumState, bool], None]
"""Called as ``on_quorum(key, service, state, changed)``: when a service is first
computed (``changed`` true if it lost quorum then, Rule 4) and when it gains or loses
quorum (``changed`` true); with `QuorumBook`'s ``on_removed``, when a service leaves the
config (``changed`` false)."""


class QuorumBook:
    """The quorum state of every service, reporting transitions (Rule 4: start up).

    Args:
        on_quorum: told of every transition, after the book records it.
        on_removed: told of every service `forget` drops, with its last state.
    """

    def __init__(
        self, on_quorum: OnQuorum | None = None, on_removed: OnQuorum | None = None
    ) -> None:
        self._states: dict[ServiceKey, tuple[ServiceConfig, QuorumState]] = {}
        self._on_quorum = on_quorum
        self._on_removed = on_removed

    def was_up(self, key: ServiceKey) -> bool:
        """Whether `key` had quorum at its last computation (True for a new service)."""
        entry = self._states.get(key)
        return True if entry is None else entry[1].up

    def state(self, key: ServiceKey) -> QuorumState | None:
        """The last state of `key`; None before its first computation."""
        entry = self._states.get(key)
        return None if entry is None else entry[1]

    def services(self) -> list[tuple[ServiceKey, ServiceConfig, QuorumState]]:
        """Every service the book knows, with its config and last state."""
        return [(key, service, state) for key, (service, state) in self._states.items()]

    def record(self, key: ServiceKey, service: ServiceConfig, state: QuorumState) -> None:
        """Keep `state` for `key`; report it when it is new, or quorum was gained or lost."""
        new = key not in self._states
        changed = state.up != self.was_up(key)
        self._states[key] = (service, state)
        if (new or changed) and self._on_quorum is not None:
            self._on_quorum(key, service, state, changed)

    def forget(self, keep: Set[ServiceKey]) -> None:
        """Drop the services not in `keep` (no longer configured), reporting each."""
        gone = [key for key in self._states if key not in keep]
        for key in gone:
            service, state = self._states.pop(key)
            if self._on_removed is not None:
                self._on_removed(key, service, state, False)
