"""Sync groups (keepalived ``vrrp_sync_group``): the pure rules, then two
routers with two instances each over a `FakeSegment`."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ipvsd.vrrp.machine import (
    LinkChanged,
    MachineConfig,
    SendAdvert,
    Startup,
    SyncForce,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from ipvsd.vrrp.sync_group import SyncGroup
from tests.fakes.vrrp import FakeSegment

INIT, BACKUP, MASTER, FAULT = VrrpState.INIT, VrrpState.BACKUP, VrrpState.MASTER, VrrpState.FAULT

SKEW_90 = 166 / 256
MDI_100 = 3 + 156 / 256


def running(*states: VrrpState) -> SyncGroup:
    """A group of members a, b, c... that reported `states` in turn, settled."""
    names = [chr(ord("a") + i) for i in range(len(states))]
    group = SyncGroup(names)
    for name, state in zip(names, states, strict=True):
        group.on_transition(name, state)
    return group


# --- the rules ----------------------------------------------------------------------


@pytest.mark.parametrize("target", [MASTER, BACKUP, FAULT])
def test_one_member_moves_the_others(target: VrrpState) -> None:
    group = SyncGroup(["a", "b", "c"])
    for name in "abc":
        group.on_transition(name, BACKUP if target is not BACKUP else MASTER)
    assert group.on_transition("b", target) == [("a", SyncForce(target)), ("c", SyncForce(target))]


def test_members_already_there_or_not_running_are_left_alone() -> None:
    group = running(BACKUP, BACKUP, BACKUP, INIT)
    assert group.on_transition("b", MASTER) == [("a", SyncForce(MASTER)), ("c", SyncForce(MASTER))]
    # a's echo: b is there already, c has its force, d does not run.
    assert group.on_transition("a", MASTER) == []


def test_the_forced_members_reports_end_the_exchange() -> None:
    group = running(BACKUP, BACKUP)
    assert group.on_transition("a", MASTER) == [("b", SyncForce(MASTER))]
    assert group.on_transition("b", MASTER) == []
    assert group.on_transition("b", BACKUP) == [("a", SyncForce(BACKUP))]
    assert group.on_transition("a", BACKUP) == []
    assert group.on_transition("a", FAULT) == [("b", SyncForce(FAULT))]
    assert group.on_transition("b", FAULT) == []  # the echo of the force


def test_stopping_forces_nothing() -> None:
    group = running(MASTER, MASTER)
    assert group.on_transition("a", INIT) == []
    assert group.state_of("a") is INIT


def test_the_group_stays_in_fault_while_a_member_has_a_fault_of_its_own() -> None:
    group = running(BACKUP, BACKUP, BACKUP)
    group.on_transition("a", FAULT)  # a's link
    group.on_transition("b", FAULT)  # forced
    group.on_transition("c", FAULT)  # forced
    group.on_transition("b", FAULT)  # echo again: still nothing
    # c cannot leave FAULT on its own while a is faulty ...
    assert group.on_transition("c", BACKUP) == [("c", SyncForce(FAULT))]
    assert group.on_transition("c", FAULT) == []
    # ... and a's recovery releases everyone.
    assert group.on_transition("a", BACKUP) == [("b", SyncForce(BACKUP)), ("c", SyncForce(BACKUP))]
    assert group.on_transition("b", BACKUP) == []
    assert group.on_transition("c", BACKUP) == []


def test_a_member_starting_while_another_is_faulty_is_forced_to_fault() -> None:
    group = SyncGroup(["a", "b"])
    assert group.on_transition("a", FAULT) == []  # b not running yet
    assert group.on_transition("b", BACKUP) == [("b", SyncForce(FAULT))]


def test_two_faults_of_their_own() -> None:
    group = running(BACKUP, BACKUP)
    assert group.on_transition("a", FAULT) == [("b", SyncForce(FAULT))]
    assert group.on_transition("b", FAULT) == []  # echo
    group = running(FAULT, FAULT)  # both reported FAULT before anything was forced
    assert group.on_transition("a", BACKUP) == [("a", SyncForce(FAULT))]


def test_members_must_be_distinct_and_known() -> None:
    with pytest.raises(ValueError, match="distinct"):
        SyncGroup(["a", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        SyncGroup([])
    with pytest.raises(KeyError):
        SyncGroup(["a"]).on_transition("z", MASTER)


# --- the rules with real machines -------------------------------------------------------


def machine(name: str, interface: str = "eth1") -> VrrpMachine:
    cfg = MachineConfig(
        name=name,
        interface=interface,
        vrid=51,
        priority=100,
        advert_int=1.0,
        primary_ip=IPv4Address("192.168.1.10"),
    )
    return VrrpMachine(cfg)


def test_a_sync_held_fault_ends_only_when_the_group_releases_it() -> None:
    m = machine("VI_1")
    m.handle(Startup(), 0.0)
    m.handle(SyncForce(FAULT), 1.0)
    assert m.handle(LinkChanged("eth1", up=True), 2.0) == []  # a link event is not a release
    assert m.handle(SyncForce(BACKUP), 3.0)[0] == Transitioned(FAULT, BACKUP, "sync_group")
    assert m.next_deadline() == 3 + MDI_100


def test_an_own_link_fault_outlasts_a_release() -> None:
    m = machine("VI_1")
    m.handle(Startup(), 0.0)
    m.handle(SyncForce(FAULT), 1.0)
    m.handle(LinkChanged("eth1", up=False), 2.0)
    assert m.handle(SyncForce(BACKUP), 3.0) == []
    assert m.handle(LinkChanged("eth1", up=True), 4.0)[0] == Transitioned(FAULT, BACKUP, "link_up")


# --- two routers, two instances each --------------------------------------------------


def config(name: str, vrid: int, interface: str, priority: int, ip: str) -> MachineConfig:
    return MachineConfig(
        name=name,
        interface=interface,
        vrid=vrid,
        priority=priority,
        advert_int=1.0,
        primary_ip=IPv4Address(ip),
    )


def directors() -> FakeSegment:
    """r1 (priority 100) and r2 (90), each with VI_1 (VRID 51, eth1) and
    VI_2 (VRID 52, eth2) in one sync group; r1 MASTER, the clock at 20.25."""
    seg = FakeSegment()
    for router, priority, host in (("r1", 100, 1), ("r2", 90, 2)):
        seg.add(f"{router}/VI_1", config("VI_1", 51, "eth1", priority, f"192.168.1.{host}"))
        seg.add(f"{router}/VI_2", config("VI_2", 52, "eth2", priority, f"10.0.0.{host}"))
        seg.add_sync_group([f"{router}/VI_1", f"{router}/VI_2"])
    seg.start("r1/VI_1", "r1/VI_2", "r2/VI_1", "r2/VI_2")
    seg.run_until(20.25)
    assert seg.masters() == {"r1/VI_1", "r1/VI_2"}
    return seg


def test_one_link_down_moves_the_whole_group() -> None:
    seg = directors()
    seg.set_link("r1/VI_2", up=False)
    # VI_2 goes FAULT on its link; the group takes VI_1 along, which resigns
    # on its live link with a priority-0 advert.
    assert seg.transitions("r1/VI_1")[-1] == (
        20.25,
        "r1/VI_1",
        Transitioned(MASTER, FAULT, "sync_group"),
    )
    assert seg.adverts("r1/VI_1")[-1] == (20.25, 0)
    seg.run_until(30.0)
    # r2/VI_1 takes over after Skew_Time and pulls r2/VI_2 with it at once,
    # instead of r2/VI_2 waiting out its own Master_Down_Interval.
    takeover = 20.25 + SKEW_90
    assert seg.transitions("r2/VI_1")[-1][:2] == (takeover, "r2/VI_1")
    assert seg.transitions("r2/VI_2")[-1] == (
        takeover,
        "r2/VI_2",
        Transitioned(BACKUP, MASTER, "sync_group"),
    )
    assert seg.masters() == {"r2/VI_1", "r2/VI_2"}
    assert (seg.state("r1/VI_1"), seg.state("r1/VI_2")) == (FAULT, FAULT)


def test_link_up_releases_the_group_and_it_preempts_together() -> None:
    seg = directors()
    seg.set_link("r1/VI_2", up=False)
    seg.run_until(30.0)
    seg.set_link("r1/VI_2", up=True)
    assert (seg.state("r1/VI_1"), seg.state("r1/VI_2")) == (BACKUP, BACKUP)
    seg.run_until(40.0)
    assert seg.masters() == {"r1/VI_1", "r1/VI_2"}
    preempted = {at for at, _, t in seg.transitions() if t.new is MASTER and at > 30}
    assert preempted == {30 + MDI_100}
    assert [a for a in seg.adverts("r2/VI_2") if a[0] > 30 + MDI_100] == []


def test_a_forced_master_advertises_at_once() -> None:
    seg = directors()
    seg.set_link("r1/VI_2", up=False)
    seg.run_until(30.0)
    takeover = 20.25 + SKEW_90
    assert (takeover, 90) in seg.adverts("r2/VI_2")
    assert isinstance(seg.actions("r2/VI_2")[-1].action, SendAdvert)


# --- the group's own state: its notify programs run once per group transition ------------


def group_states(group: SyncGroup, reports: list[tuple[str, VrrpState]]) -> list[VrrpState]:
    """Feed `reports` (and the echo of every force, at once); the group's state changes."""
    seen = [group.state]
    queue = list(reports)
    while queue:
        member, state = queue.pop(0)
        forces = group.on_transition(member, state)
        queue[:0] = [(other, force.state) for other, force in forces]  # the forced echo
        if group.state is not seen[-1]:
            seen.append(group.state)
    return seen


def test_a_group_changes_once_per_transition_not_once_per_member() -> None:
    group = SyncGroup(["a", "b", "c"])
    # Start-up: each member reports BACKUP; then a takes over and forces b and c.
    states = group_states(group, [("a", BACKUP), ("b", BACKUP), ("c", BACKUP), ("a", MASTER)])
    assert states == [INIT, BACKUP, MASTER]
    # A higher-priority advert on c: the group goes BACKUP once, all three follow.
    assert group_states(group, [("c", BACKUP)]) == [MASTER, BACKUP]
    assert [group.state_of(m) for m in "abc"] == [BACKUP, BACKUP, BACKUP]


def test_a_group_is_fault_while_a_member_is_and_stops_when_all_have() -> None:
    group = running(MASTER, MASTER)
    assert group.state is MASTER
    assert group_states(group, [("a", FAULT)]) == [MASTER, FAULT]
    # b leaves the forced FAULT on its own (a link event): forced back, no change.
    assert group_states(group, [("b", BACKUP)]) == [FAULT]
    assert group_states(group, [("a", BACKUP)]) == [FAULT, BACKUP]
    assert group_states(group, [("a", INIT)]) == [BACKUP]  # b still runs
    assert group_states(group, [("b", INIT)]) == [BACKUP, INIT]  # STOP


def test_a_member_that_starts_while_the_group_is_master_is_taken_along() -> None:
    """Rule 5: a (re)started member's BACKUP does not drag a MASTER group down."""
    group = running(MASTER, MASTER)
    group.on_transition("b", INIT)  # b restarts (a reload re-created it)
    assert group.on_transition("b", BACKUP) == [("b", SyncForce(MASTER))]
    assert group.state is MASTER
    assert group.on_transition("b", MASTER) == []  # the echo
    assert [group.state_of(m) for m in "ab"] == [MASTER, MASTER]
