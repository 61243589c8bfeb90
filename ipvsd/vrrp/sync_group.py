"""Sync groups: VRRP instances that change state together (pure).

Theory of operation
-------------------
keepalived's ``vrrp_sync_group`` (``keepalived/vrrp/vrrp_sync.c``) couples
instances that must move as one, e.g. the outside VIP and the inside gateway
address of a NAT director: a node that is MASTER on one side only would
black-hole traffic.

The runner reports each member's `Transitioned` to `SyncGroup.on_transition`
and delivers the returned `SyncForce` events to the named machines, at the
same ``now``. The machines' own transitions caused by those events are
reported back too; they produce nothing more, so the exchange ends.

Rules:

1. A member goes MASTER → every other member is forced MASTER
   (``vrrp_sync_master``); BACKUP → BACKUP (``vrrp_sync_backup``); FAULT →
   FAULT (``vrrp_sync_fault``). A member already in the target state, not
   running (INIT), or already sent that force and yet to report back, is
   left alone, so nothing loops.
2. The group stays in FAULT while any member is in a FAULT of its own
   (keepalived's ``num_member_fault``): a member that leaves FAULT while
   another member is still faulty is forced straight back. When the last
   member of its own recovers, its BACKUP releases the members held in FAULT.
3. The group tells a member's own FAULT from one it forced by remembering
   which members it forced into FAULT. A forced member's report of FAULT is
   the echo of the force, not news.

4. The group has a state of its own, for its notify programs, which run
   once per group transition, not once per member (keepalived's
   ``notify_group_exec``): a member's own transition to BACKUP, MASTER or
   FAULT sets it, the echo of a force does not; it stays FAULT while rule 2
   holds the group there; it goes back to INIT (notify STOP) when every
   member has stopped.

5. A member that starts (INIT → BACKUP) while the group is MASTER, because a
   reload re-created it or its start came late, is forced MASTER: it joins
   the group rather than taking the others down to BACKUP with it.

Limitation: a link that fails on a member already held in FAULT changes no
state, so the group cannot see it. When the group releases that member, its
machine refuses (it stays FAULT because of its own link) and the other
members go on without it. keepalived counts such faults per member and
would keep the whole group in FAULT.

This module is pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from ipvsd.vrrp.machine import SyncForce, VrrpState


class SyncGroup:
    """The coupling between the instances named `members` on one node.

    Raises:
        ValueError: no members, or a member named twice.
    """

    def __init__(self, members: Sequence[str]) -> None:
        if not members or len(set(members)) != len(members):
            raise ValueError(f"sync group members must be distinct and non-empty: {members}")
        self._states = dict.fromkeys(members, VrrpState.INIT)
        self._held: set[str] = set()  # members this group forced into FAULT
        self._pending: dict[str, VrrpState] = {}  # forces not yet answered by a report
        self._state = VrrpState.INIT

    @property
    def state(self) -> VrrpState:
        """The group's own state (rule 4): it changes once per group transition."""
        return self._state

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._states)

    def state_of(self, member: str) -> VrrpState:
        """The last state `member` reported (INIT before its first report)."""
        return self._states[member]

    def on_transition(
        self, member: str, new: VrrpState, old: VrrpState | None = None
    ) -> list[tuple[str, SyncForce]]:
        """Record that `member` moved to `new`; return the events to force.

        Args:
            member: the instance that transitioned.
            new: its new state (`Transitioned.new`).
            old: the state it left (`Transitioned.old`); None: the one it last
                reported. INIT while the group knows it in another state: a new
                instance under that name (a reload re-created it) that started.

        Returns:
            ``(member, SyncForce(state))`` pairs, in membership order, to
            deliver to those members' machines.

        Raises:
            KeyError: `member` is not in the group.
        """
        if member not in self._states:
            raise KeyError(member)
        previous = self._states[member] if old is None else old
        self._states[member] = new
        forced = self._pending.pop(member, None) is new
        if new is VrrpState.FAULT and member in self._held:
            return []  # the echo of our own force
        self._held.discard(member)
        match new:
            case VrrpState.INIT:
                if all(state is VrrpState.INIT for state in self._states.values()):
                    self._state = VrrpState.INIT  # rule 4: every member stopped
                return []
            case VrrpState.FAULT:
                self._state = VrrpState.FAULT
                return self._force_others(member, VrrpState.FAULT)
            case VrrpState.BACKUP | VrrpState.MASTER:
                if any(self._faulty(other) for other in self._states if other != member):
                    # Rule 2: the group is FAULT while a member is faulty.
                    self._held.add(member)
                    self._pending[member] = VrrpState.FAULT
                    return [(member, SyncForce(VrrpState.FAULT))]
                if previous is VrrpState.INIT and self._state is VrrpState.MASTER:
                    # Rule 5: a member that starts joins the MASTER group.
                    if new is VrrpState.BACKUP:
                        self._pending[member] = VrrpState.MASTER
                        return [(member, SyncForce(VrrpState.MASTER))]
                    return []
                if not forced:  # rule 4: news, not the echo of our force
                    self._state = new
                return self._force_others(member, new)
            case _:
                assert_never(new)

    def _faulty(self, member: str) -> bool:
        """In a FAULT of its own, as opposed to one this group forced."""
        return self._states[member] is VrrpState.FAULT and member not in self._held

    def _force_others(self, member: str, target: VrrpState) -> list[tuple[str, SyncForce]]:
        forced = [
            other
            for other, state in self._states.items()
            if other != member
            and state not in (VrrpState.INIT, target)
            and self._pending.get(other) is not target
        ]
        if target is VrrpState.FAULT:
            self._held.update(forced)
        self._pending.update(dict.fromkeys(forced, target))
        return [(other, SyncForce(target)) for other in forced]
