"""FakeSegment: VRRP machines on one simulated L2 segment (style G7).

h11's ``ConnectionPair`` and aioquic's ``roundtrip()`` applied to VRRP. Each
node is a `VrrpMachine` under a segment-unique name. The segment:

* delivers every `SendAdvert` of a node to every other live node with the same
  VRID as ``AdvertReceived(src=<sender's primary_ip>, priority)``, after
  `latency` seconds (0: at the same ``now``, before anything else happens);
* drops what `drop(src, dst)` says, and everything to or from a node whose
  link is down (`set_link`) or that was killed (`kill`);
* advances time only to the next deadline of a live machine or the next
  delivery (`run_until`), firing `TimerFired` there; nothing ever sleeps;
* couples machines through `SyncGroup`s, as the runner would;
* records a timeline of ``(now, node, action)`` and every change in the set
  of live masters, for assertions.

It simulates; it does not check. Tests assert on states and the timeline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ipvsd.vrrp.machine import (
    Action,
    AdvertReceived,
    Event,
    LinkChanged,
    MachineConfig,
    SendAdvert,
    Shutdown,
    Startup,
    TimerFired,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from ipvsd.vrrp.sync_group import SyncGroup

MAX_EVENTS_PER_INSTANT = 10_000
"""More events than this at one ``now`` means the machines loop (a bug)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One action a node's machine returned, at `at` seconds."""

    at: float
    node: str
    action: Action


@dataclass(slots=True)
class Node:
    name: str
    config: MachineConfig
    machine: VrrpMachine
    alive: bool = True
    link_up: bool = True


@dataclass(order=True, slots=True)
class _Pending:
    at: float
    seq: int
    node: str = field(compare=False)
    event: Event = field(compare=False)


class FakeSegment:
    """A broadcast segment of VRRP machines driven by a float clock."""

    def __init__(self, *, latency: float = 0.0, start: float = 0.0) -> None:
        self.now = start
        self.latency = latency
        self.drop: Callable[[str, str], bool] = lambda src, dst: False
        self.timeline: list[Entry] = []
        self.masters_log: list[tuple[float, frozenset[str]]] = [(start, frozenset())]
        self.nodes: dict[str, Node] = {}
        self._groups: dict[str, SyncGroup] = {}
        self._pending: list[_Pending] = []
        self._seq = itertools.count()
        self._burst_at, self._burst = start, 0

    # --- building ------------------------------------------------------------------

    def add(self, name: str, config: MachineConfig) -> VrrpMachine:
        self.nodes[name] = Node(name, config, VrrpMachine(config))
        return self.nodes[name].machine

    def add_sync_group(self, members: Iterable[str]) -> SyncGroup:
        group = SyncGroup(list(members))
        for member in group.members:
            self._groups[member] = group
        return group

    def machine(self, name: str) -> VrrpMachine:
        return self.nodes[name].machine

    # --- driving -------------------------------------------------------------------

    def send(self, name: str, event: Event) -> None:
        """Deliver `event` to `name` at `now`, then settle everything due."""
        self._handle(name, event)
        self._settle()

    def start(self, *names: str) -> None:
        for name in names:
            self.send(name, Startup())

    def stop(self, name: str) -> None:
        """Graceful shutdown (SIGTERM): the machine resigns if master."""
        self.send(name, Shutdown())

    def kill(self, name: str) -> None:
        """A crash (SIGKILL): no more adverts, no more events; VIPs left stale."""
        self.nodes[name].alive = False
        self._log_masters()

    def restart(self, name: str) -> None:
        """A fresh machine with the same config, started now."""
        node = self.nodes[name]
        node.machine, node.alive = VrrpMachine(node.config), True
        if not node.link_up:
            node.machine.handle(LinkChanged(node.config.interface, False), self.now)
        self.send(name, Startup())

    def set_link(self, name: str, up: bool) -> None:
        """The node's own interface goes down or up (carrier lost / back)."""
        node = self.nodes[name]
        node.link_up = up
        self.send(name, LinkChanged(node.config.interface, up))

    def run_until(self, until: float) -> None:
        """Advance to `until`, firing every delivery and deadline on the way."""
        while (at := self._next_time()) is not None and at <= until:
            self.now = max(self.now, at)
            self._settle()
        self.now = max(self.now, until)

    def step(self) -> float | None:
        """Advance to the next delivery or deadline and settle it."""
        at = self._next_time()
        if at is not None:
            self.now = max(self.now, at)
            self._settle()
        return at

    # --- looking -------------------------------------------------------------------

    def state(self, name: str) -> VrrpState:
        return self.nodes[name].machine.state

    def masters(self) -> frozenset[str]:
        return frozenset(
            n.name for n in self.nodes.values() if n.alive and n.machine.state is VrrpState.MASTER
        )

    def actions(self, name: str | None = None) -> list[Entry]:
        return [e for e in self.timeline if name is None or e.node == name]

    def adverts(self, name: str) -> list[tuple[float, int]]:
        """``(time, priority)`` of every advert `name` sent."""
        return [
            (e.at, e.action.priority)
            for e in self.actions(name)
            if isinstance(e.action, SendAdvert)
        ]

    def transitions(self, name: str | None = None) -> list[tuple[float, str, Transitioned]]:
        return [
            (e.at, e.node, e.action)
            for e in self.actions(name)
            if isinstance(e.action, Transitioned)
        ]

    def longest_dual_master(self) -> float:
        """The longest time (so far) with two or more live masters."""
        longest, since = 0.0, None
        for at, masters in [*self.masters_log, (self.now, frozenset())]:
            if len(masters) >= 2 and since is None:
                since = at
            elif len(masters) < 2 and since is not None:
                longest, since = max(longest, at - since), None
        return longest

    # --- machinery -----------------------------------------------------------------

    def _next_time(self) -> float | None:
        times = [p.at for p in self._pending[:1]]
        for node in self.nodes.values():
            deadline = node.machine.next_deadline() if node.alive else None
            if deadline is not None:
                times.append(deadline)
        return min(times, default=None)

    def _settle(self) -> None:
        """Run everything due at or before `now`: deliveries first, then timers."""
        while True:
            if self._pending and self._pending[0].at <= self.now:
                item = heapq.heappop(self._pending)
                self._handle(item.node, item.event)
                continue
            due = sorted(
                (deadline, n.name)
                for n in self.nodes.values()
                if n.alive and (deadline := n.machine.next_deadline()) is not None
                if deadline <= self.now
            )
            if not due:
                return
            deadline, name = due[0]
            self._handle(name, TimerFired())
            machine = self.nodes[name].machine
            if self.nodes[name].alive and machine.next_deadline() == deadline:
                raise AssertionError(f"{name}: TimerFired at {self.now} did not move {deadline}")

    def _handle(self, name: str, event: Event) -> None:
        self._burst = self._burst + 1 if self._burst_at == self.now else 0
        self._burst_at = self.now
        if self._burst > MAX_EVENTS_PER_INSTANT:
            raise AssertionError(f"packet storm at {self.now}: machines answer each other forever")
        node = self.nodes[name]
        if not node.alive:
            return
        if isinstance(event, AdvertReceived) and not node.link_up:
            return
        for action in node.machine.handle(event, self.now):
            self.timeline.append(Entry(self.now, name, action))
            if isinstance(action, SendAdvert):
                self._transmit(node, action)
            elif isinstance(action, Transitioned) and name in self._groups:
                for member, force in self._groups[name].on_transition(name, action.new):
                    self._queue(member, force, self.now)
        self._log_masters()

    def _transmit(self, sender: Node, advert: SendAdvert) -> None:
        if not sender.link_up:
            return  # keepalived "sends" the FAULT priority-0 advert on a dead link
        assert sender.config.primary_ip is not None, "a machine without a source sends nothing"
        event = AdvertReceived(sender.config.primary_ip, advert.priority)
        for node in self.nodes.values():
            if (
                node is not sender
                and node.config.vrid == sender.config.vrid
                and not self.drop(sender.name, node.name)
            ):
                self._queue(node.name, event, self.now + self.latency)

    def _queue(self, name: str, event: Event, at: float) -> None:
        heapq.heappush(self._pending, _Pending(at, next(self._seq), name, event))

    def _log_masters(self) -> None:
        masters = self.masters()
        if masters != self.masters_log[-1][1]:
            self.masters_log.append((self.now, masters))
