"""The VRRPv2 state machine (RFC 3768 §6.4) without sockets or sleeping (style G7).

First the §6.4 state table as data, one row per (state, event); then exact
timer arithmetic on one machine; then routers talking over a `FakeSegment`,
with the numbers measured against keepalived in vrrp-notes §3; last a
hypothesis property over random crash/restart/link schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvsd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    Event,
    LinkChanged,
    MachineConfig,
    Notify,
    RemoveVips,
    SendAdvert,
    SendGarp,
    Shutdown,
    SourceChanged,
    Startup,
    SyncForce,
    TimerFired,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from tests.fakes.vrrp import FakeSegment

INIT, BACKUP, MASTER, FAULT = VrrpState.INIT, VrrpState.BACKUP, VrrpState.MASTER, VrrpState.FAULT

OURS = IPv4Address("192.168.1.10")
HIGHER_IP = IPv4Address("192.168.1.20")
LOWER_IP = IPv4Address("192.168.1.5")

# RFC 3768 §6.1 with advert_int 1, exact in binary floating point.
SKEW_90 = 166 / 256  # 0.6484375
MDI_90 = 3 + SKEW_90  # 3.6484375, keepalived measured 3.649 s
MDI_100 = 3 + 156 / 256  # 3.609375, keepalived measured 3.620-3.627 s


def config(
    priority: int = 100, ip: IPv4Address = OURS, name: str = "VI_1", **kwargs: object
) -> MachineConfig:
    fields: dict[str, object] = {"interface": "eth1", "vrid": 51, "advert_int": 1.0}
    fields |= kwargs
    return MachineConfig(name=name, priority=priority, primary_ip=ip, **fields)  # type: ignore[arg-type]


def to_master(reason: str, priority: int = 100, old: VrrpState = BACKUP) -> list[Action]:
    return [
        SendAdvert(priority),
        AddVips(),
        SendGarp(),
        Transitioned(old, MASTER, reason),  # type: ignore[arg-type]
        Notify(MASTER, priority),
    ]


def moved(old: VrrpState, new: VrrpState, reason: str, priority: int = 100) -> list[Action]:
    return [Transitioned(old, new, reason), Notify(new, priority)]  # type: ignore[arg-type]


# --- the RFC 3768 §6.4 state table ----------------------------------------------


def machine_in(state: VrrpState, priority: int) -> tuple[VrrpMachine, float]:
    """A machine brought to `state` the normal way; returns it and the time."""
    machine = VrrpMachine(config(priority))
    if state is INIT:
        return machine, 0.0
    machine.handle(Startup(), 0.0)
    if state is MASTER and machine.state is BACKUP:
        deadline = machine.next_deadline()
        assert deadline is not None
        machine.handle(TimerFired(), deadline)
        return machine, deadline
    if state is FAULT:
        machine.handle(LinkChanged("eth1", up=False), 1.0)
        return machine, 1.0
    return machine, 0.0


DEADLINE = None  # the event arrives exactly at next_deadline()
LINK_DOWN, LINK_UP = LinkChanged("eth1", up=False), LinkChanged("eth1", up=True)


@dataclass(frozen=True)
class Row:
    state: VrrpState
    event: Event
    actions: list[Action]
    next_state: VrrpState
    priority: int = 100
    after: float | None = 0.5  # seconds after reaching `state`; DEADLINE: at the deadline


ROWS = {
    # §6.4.1 Initialize
    "init-startup": Row(INIT, Startup(), [RemoveVips(), *moved(INIT, BACKUP, "startup")], BACKUP),
    "init-startup-owner": Row(
        INIT, Startup(), to_master(reason="startup_owner", priority=255, old=INIT), MASTER, 255
    ),
    "init-shutdown": Row(INIT, Shutdown(), [], INIT),
    "init-advert": Row(INIT, AdvertReceived(HIGHER_IP, 200), [], INIT),
    "init-timer": Row(INIT, TimerFired(), [], INIT),
    "init-link-down-recorded": Row(INIT, LINK_DOWN, [], INIT),
    "init-sync": Row(INIT, SyncForce(MASTER), [], INIT),
    # §6.4.2 Backup
    "backup-advert-prio-0": Row(BACKUP, AdvertReceived(HIGHER_IP, 0), [], BACKUP),
    "backup-advert-higher": Row(BACKUP, AdvertReceived(HIGHER_IP, 110), [], BACKUP),
    "backup-advert-lower": Row(BACKUP, AdvertReceived(HIGHER_IP, 90), [], BACKUP),
    "backup-master-down": Row(
        BACKUP, TimerFired(), to_master(reason="master_down_timer"), MASTER, after=DEADLINE
    ),
    "backup-timer-early": Row(BACKUP, TimerFired(), [], BACKUP),
    "backup-shutdown": Row(BACKUP, Shutdown(), moved(BACKUP, INIT, "shutdown"), INIT),
    "backup-link-down": Row(BACKUP, LINK_DOWN, moved(BACKUP, FAULT, "link_down"), FAULT),
    "backup-other-link": Row(BACKUP, LinkChanged("eth9", up=False), [], BACKUP),
    "backup-startup-again": Row(BACKUP, Startup(), [], BACKUP),
    "backup-sync-master": Row(BACKUP, SyncForce(MASTER), to_master(reason="sync_group"), MASTER),
    "backup-sync-backup": Row(BACKUP, SyncForce(BACKUP), [], BACKUP),
    "backup-sync-fault": Row(BACKUP, SyncForce(FAULT), moved(BACKUP, FAULT, "sync_group"), FAULT),
    # §6.4.3 Master
    "master-adver-timer": Row(
        MASTER, TimerFired(), [SendAdvert(100, periodic=True)], MASTER, after=DEADLINE
    ),
    "master-timer-early": Row(MASTER, TimerFired(), [], MASTER),
    "master-advert-prio-0": Row(MASTER, AdvertReceived(LOWER_IP, 0), [SendAdvert(100)], MASTER),
    "master-advert-higher": Row(
        MASTER,
        AdvertReceived(LOWER_IP, 110),
        [RemoveVips(), *moved(MASTER, BACKUP, "higher_priority_advert")],
        BACKUP,
    ),
    "master-advert-equal-higher-ip": Row(
        MASTER,
        AdvertReceived(HIGHER_IP, 100),
        [RemoveVips(), *moved(MASTER, BACKUP, "equal_priority_higher_ip")],
        BACKUP,
    ),
    "master-advert-equal-lower-ip": Row(
        MASTER, AdvertReceived(LOWER_IP, 100), [SendAdvert(100), SendGarp()], MASTER
    ),
    "master-advert-lower": Row(
        MASTER, AdvertReceived(HIGHER_IP, 90), [SendAdvert(100), SendGarp()], MASTER
    ),
    "master-own-advert-looped": Row(MASTER, AdvertReceived(OURS, 100), [], MASTER),
    "master-shutdown": Row(
        MASTER, Shutdown(), [SendAdvert(0), RemoveVips(), *moved(MASTER, INIT, "shutdown")], INIT
    ),
    "master-link-down": Row(
        MASTER, LINK_DOWN, [SendAdvert(0), RemoveVips(), *moved(MASTER, FAULT, "link_down")], FAULT
    ),
    "master-sync-backup": Row(
        MASTER, SyncForce(BACKUP), [RemoveVips(), *moved(MASTER, BACKUP, "sync_group")], BACKUP
    ),
    "master-sync-fault": Row(
        MASTER,
        SyncForce(FAULT),
        [SendAdvert(0), RemoveVips(), *moved(MASTER, FAULT, "sync_group")],
        FAULT,
    ),
    "master-sync-master": Row(MASTER, SyncForce(MASTER), [], MASTER),
    # RFC 3768 §7.1: the owner discards every advert for its VRID
    "owner-advert-prio-0": Row(MASTER, AdvertReceived(LOWER_IP, 0), [], MASTER, 255),
    "owner-advert-254": Row(MASTER, AdvertReceived(HIGHER_IP, 254), [], MASTER, 255),
    # FAULT (keepalived)
    "fault-advert": Row(FAULT, AdvertReceived(HIGHER_IP, 110), [], FAULT),
    "fault-timer": Row(FAULT, TimerFired(), [], FAULT),
    "fault-link-up": Row(FAULT, LINK_UP, moved(FAULT, BACKUP, "link_up"), BACKUP),
    "fault-link-up-owner": Row(
        FAULT, LINK_UP, to_master(reason="link_up", priority=255, old=FAULT), MASTER, 255
    ),
    "fault-shutdown": Row(FAULT, Shutdown(), moved(FAULT, INIT, "shutdown"), INIT),
    "fault-sync-master-link-down": Row(FAULT, SyncForce(MASTER), [], FAULT),
    "fault-sync-backup-link-down": Row(FAULT, SyncForce(BACKUP), [], FAULT),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_state_table(row: Row) -> None:
    machine, reached = machine_in(row.state, row.priority)
    assert machine.state is row.state
    deadline = machine.next_deadline()
    if row.after is DEADLINE:
        assert deadline is not None
        now = deadline
    else:
        now = reached + row.after
    assert machine.handle(row.event, now) == row.actions
    assert machine.state is row.next_state


# --- timers on one machine: exact arithmetic ------------------------------------


@pytest.mark.parametrize(
    ("priority", "skew", "mdi"),
    [(90, 0.6484375, 3.6484375), (100, 0.609375, 3.609375), (254, 0.0078125, 3.0078125)],
)
def test_skew_time_and_master_down_interval(priority: int, skew: float, mdi: float) -> None:
    # RFC 3768 §6.1: (256 - Priority)/256, not scaled by advert_int in v2.
    machine = VrrpMachine(config(priority))
    assert (machine.skew_time, machine.master_down_interval) == (skew, mdi)
    slow = VrrpMachine(config(priority, advert_int=2.0))
    assert (slow.skew_time, slow.master_down_interval) == (skew, 6 + skew)


def test_a_backup_takes_over_master_down_interval_after_the_last_advert() -> None:
    machine = VrrpMachine(config(90))
    machine.handle(Startup(), 0.0)
    assert machine.next_deadline() == MDI_90
    machine.handle(AdvertReceived(HIGHER_IP, 100), 10.0)
    assert machine.next_deadline() == 13.6484375
    assert machine.handle(TimerFired(), 13.6484374) == []  # early wake-up: nothing
    actions = machine.handle(TimerFired(), 13.6484375)
    assert actions == to_master(reason="master_down_timer", priority=90)
    assert machine.last_transition_reason == "master_down_timer"
    assert machine.next_deadline() == 14.6484375  # Adver_Timer


def test_a_priority_0_advert_leaves_skew_time() -> None:
    machine = VrrpMachine(config(90))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(HIGHER_IP, 0), 10.0)
    assert machine.next_deadline() == 10 + SKEW_90 == 10.6484375


def test_a_lower_advert_does_not_reset_the_timer_of_a_preempting_backup() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(HIGHER_IP, 90), 2.0)
    assert machine.next_deadline() == MDI_100  # RFC 3768 §6.4.2: discarded
    assert machine.handle(TimerFired(), MDI_100)[3] == Transitioned(BACKUP, MASTER, "preempt")


def test_without_preempt_a_lower_advert_resets_the_timer() -> None:
    machine = VrrpMachine(config(100, preempt=False))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(HIGHER_IP, 90), 2.0)
    assert machine.next_deadline() == 2 + MDI_100


def test_the_owner_preempts_whatever_preempt_says() -> None:
    # RFC 3768 §6.1: Preempt_Mode does not apply to the owner. It is only ever
    # a Backup when a sync group holds it there.
    machine = VrrpMachine(config(255, preempt=False))
    machine.handle(Startup(), 0.0)
    machine.handle(SyncForce(BACKUP), 1.0)
    assert machine.next_deadline() == 1 + 3 + 1 / 256
    machine.handle(AdvertReceived(HIGHER_IP, 254), 2.0)
    assert machine.next_deadline() == 1 + 3 + 1 / 256  # discarded, not reset


def test_a_master_answering_a_priority_0_advert_restarts_its_adver_timer() -> None:
    machine, became = machine_in(MASTER, 100)
    machine.handle(AdvertReceived(LOWER_IP, 0), became + 0.5)
    assert machine.next_deadline() == became + 1.5  # RFC 3768 §6.4.3


def test_preempt_delay_spares_a_master_we_no_longer_outrank() -> None:
    machine = VrrpMachine(config(100, preempt_delay=30.0, track_interfaces={"eth2": -20}))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(HIGHER_IP, 90), 29.5)  # lower: spared until 30
    assert machine.next_deadline() == 30.0
    machine.handle(LinkChanged("eth2", up=False), 29.9)  # we drop to 80
    assert machine.handle(TimerFired(), 30.0) == []
    assert machine.state is BACKUP
    assert machine.next_deadline() == 29.5 + 3 + 176 / 256  # MDI(80) after that advert


def test_a_late_timer_acts_and_rearms_from_now() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), 5.0)  # woke 1.39 s late
    assert machine.state is MASTER
    assert machine.handle(TimerFired(), 6.25) == [SendAdvert(100, periodic=True)]
    assert machine.next_deadline() == 7.25


def test_a_link_down_before_startup_starts_in_fault() -> None:
    machine = VrrpMachine(config(100))
    assert machine.handle(LINK_DOWN, 0.0) == []
    assert machine.handle(Startup(), 0.0) == [RemoveVips(), *moved(INIT, FAULT, "link_down")]
    assert machine.next_deadline() is None
    assert machine.handle(LINK_UP, 4.0) == moved(FAULT, BACKUP, "link_up")
    assert machine.next_deadline() == 4 + MDI_100


def test_shutdown_then_startup_again() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    machine.handle(Shutdown(), 1.0)
    assert machine.next_deadline() is None
    assert machine.handle(Startup(), 2.0)[1] == Transitioned(INIT, BACKUP, "startup")
    assert machine.next_deadline() == 2 + MDI_100


@pytest.mark.parametrize(
    "bad",
    [
        {"priority": 0},
        {"priority": 256},
        {"vrid": 0},
        {"advert_int": 0.0},
        {"preempt_delay": -1.0},
        {"garp_delay": -1.0},
        {"track_interfaces": {"eth2": 255}},
    ],
)
def test_config_rejects_out_of_range_values(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "name": "VI_1",
        "interface": "eth1",
        "vrid": 51,
        "priority": 100,
        "advert_int": 1.0,
        "primary_ip": OURS,
    }
    with pytest.raises(ValueError, match="VI_1"):
        MachineConfig(**(fields | bad))  # type: ignore[arg-type]


def test_sync_force_never_forces_init() -> None:
    with pytest.raises(ValueError, match="INIT"):
        SyncForce(INIT)


# --- tracked interfaces (keepalived track_interface) ----------------------------


def test_tracked_interface_weights_move_the_effective_priority() -> None:
    machine = VrrpMachine(config(100, track_interfaces={"eth2": -20, "eth3": 10, "eth4": 0}))
    machine.handle(Startup(), 0.0)
    assert machine.effective_priority == 110  # +10 while eth3 is up
    machine.handle(LinkChanged("eth3", up=False), 1.0)
    assert machine.effective_priority == 100
    machine.handle(LinkChanged("eth2", up=False), 1.0)
    assert machine.effective_priority == 80  # -20 while eth2 is down
    assert machine.state is BACKUP
    # weight 0: down means FAULT
    assert machine.handle(LinkChanged("eth4", up=False), 2.0) == moved(
        BACKUP, FAULT, "track_interface", priority=80
    )
    assert machine.handle(LinkChanged("eth4", up=True), 3.0) == moved(
        FAULT, BACKUP, "link_up", priority=80
    )


@pytest.mark.parametrize(
    ("priority", "weights", "down", "effective"),
    [
        (250, {"eth3": 10}, [], 254),  # clamped below the owner's 255
        (10, {"eth2": -20}, ["eth2"], 1),  # clamped above 0 (resign)
        (255, {"eth2": -20, "eth3": 10}, ["eth2"], 255),  # the owner ignores weights
    ],
)
def test_effective_priority_is_clamped(
    priority: int, weights: dict[str, int], down: list[str], effective: int
) -> None:
    machine = VrrpMachine(config(priority, track_interfaces=weights))
    for iface in down:
        machine.handle(LinkChanged(iface, up=False), 0.0)
    assert machine.effective_priority == effective


def test_a_priority_change_moves_the_running_master_down_timer() -> None:
    # keepalived vrrp_set_effective_priority shifts the timer by the MDI change.
    machine = VrrpMachine(config(100, track_interfaces={"eth2": -10}))
    machine.handle(Startup(), 0.0)
    assert machine.next_deadline() == MDI_100
    machine.handle(LinkChanged("eth2", up=False), 1.0)
    assert machine.next_deadline() == MDI_90


# --- two routers on a segment ---------------------------------------------------


def pair(
    r100: dict[str, object] | None = None, r90: dict[str, object] | None = None
) -> FakeSegment:
    seg = FakeSegment()
    seg.add("r100", config(100, IPv4Address("192.168.1.10"), "VI_1", **(r100 or {})))
    seg.add("r90", config(90, IPv4Address("192.168.1.20"), "VI_1", **(r90 or {})))
    return seg


def elected() -> FakeSegment:
    """r100 MASTER since MDI_100, r90 BACKUP; the clock at 20.0."""
    seg = pair()
    seg.start("r100", "r90")
    seg.run_until(20.0)
    return seg


@pytest.mark.parametrize("order", [("r100", "r90"), ("r90", "r100")])
def test_election_when_both_start_together(order: tuple[str, str]) -> None:
    seg = pair()
    seg.start(*order)
    seg.run_until(30.0)
    assert (seg.state("r100"), seg.state("r90")) == (MASTER, BACKUP)
    # The winner's first advert comes exactly MDI(100) after start, then every second.
    assert seg.adverts("r100")[:3] == [(MDI_100, 100), (MDI_100 + 1, 100), (MDI_100 + 2, 100)]
    assert seg.adverts("r90") == []
    assert [t for at, _, t in seg.transitions("r100") if at > 0] == [
        Transitioned(BACKUP, MASTER, "master_down_timer")
    ]
    # keepalived order (vrrp-notes §1.6): advert, then VIPs, then the GARP burst.
    first = [e.action for e in seg.actions("r100") if e.at == MDI_100]
    assert first[:3] == [SendAdvert(100), AddVips(), SendGarp()]


@pytest.mark.parametrize(("first", "second"), [("r100", "r90"), ("r90", "r100")])
def test_election_when_one_starts_later(first: str, second: str) -> None:
    seg = pair()
    seg.start(first)
    seg.run_until(10.0)
    seg.start(second)
    seg.run_until(30.0)
    assert (seg.state("r100"), seg.state("r90")) == (MASTER, BACKUP)
    if first == "r90":
        # The returning higher priority preempts MDI(100) after its start
        # (keepalived measured 3.612-3.630 s).
        assert seg.transitions("r100")[-1] == (
            10 + MDI_100,
            "r100",
            Transitioned(BACKUP, MASTER, "preempt"),
        )
        assert seg.transitions("r90")[-1] == (
            10 + MDI_100,
            "r90",
            Transitioned(MASTER, BACKUP, "higher_priority_advert"),
        )
    else:
        assert seg.adverts("r90") == []


def tie(latency: float) -> FakeSegment:
    seg = FakeSegment(latency=latency)
    seg.add("low", config(100, IPv4Address("192.168.1.10")))
    seg.add("high", config(100, IPv4Address("192.168.1.20")))
    return seg


@pytest.mark.parametrize("order", [("low", "high"), ("high", "low")])
def test_equal_priority_the_higher_primary_ip_wins(order: tuple[str, str]) -> None:
    # Both time out together and both advertise before hearing the other
    # (1 ms on the wire); RFC 3768 §6.4.3 then keeps the higher address.
    seg = tie(latency=0.001)
    seg.start(*order)
    seg.run_until(20.0)
    assert (seg.state("high"), seg.state("low")) == (MASTER, BACKUP)
    assert seg.transitions("low")[-1][2] == Transitioned(MASTER, BACKUP, "equal_priority_higher_ip")
    assert seg.longest_dual_master() == pytest.approx(0.001)


def test_equal_priority_does_not_preempt_a_running_master() -> None:
    # RFC 3768 §6.4.2: a Backup resets its timer on an advert >= its priority.
    seg = tie(latency=0.0)
    seg.start("low")
    seg.run_until(10.0)
    seg.start("high")
    seg.run_until(40.0)
    assert (seg.state("low"), seg.state("high")) == (MASTER, BACKUP)


def test_master_killed_backup_takes_over_after_its_master_down_interval() -> None:
    seg = elected()
    last = seg.adverts("r100")[-1][0]
    assert last == 19.609375
    seg.kill("r100")
    seg.run_until(30.0)
    # vrrp-notes §3: SIGKILL of master → backup's first advert after 3.649 s.
    assert seg.adverts("r90")[0] == (last + MDI_90, 90)
    assert seg.transitions("r90")[-1][2] == Transitioned(BACKUP, MASTER, "master_down_timer")


def test_master_restarted_after_a_crash_removes_stale_vips_and_preempts() -> None:
    seg = elected()
    seg.kill("r100")
    seg.run_until(30.0)
    seg.restart("r100")
    assert seg.actions("r100")[-3].action == RemoveVips()  # vrrp-notes §1.7
    seg.run_until(40.0)
    assert seg.state("r100") is MASTER
    assert seg.transitions("r100")[-1] == (
        30 + MDI_100,
        "r100",
        Transitioned(BACKUP, MASTER, "preempt"),
    )
    assert seg.longest_dual_master() == 0


def test_graceful_shutdown_hands_over_after_skew_time() -> None:
    seg = elected()
    seg.run_until(20.5)
    seg.stop("r100")
    assert [e.action for e in seg.actions("r100") if e.at == 20.5][:2] == [
        SendAdvert(0),
        RemoveVips(),
    ]
    seg.run_until(30.0)
    # vrrp-notes §3: prio-0 → backup's first advert after 0.649 s.
    assert seg.adverts("r90")[0] == (20.5 + SKEW_90, 90)
    assert seg.state("r100") is INIT


@pytest.mark.parametrize(("preempt", "winner"), [(True, "r100"), (False, "r90")])
def test_preempt(preempt: bool, winner: str) -> None:
    seg = pair(r100={"preempt": preempt})
    seg.start("r90")
    seg.run_until(10.0)
    seg.start("r100")
    seg.run_until(60.0)
    assert seg.masters() == {winner}


def test_preempt_delay_spares_a_lower_master_until_startup_plus_delay() -> None:
    seg = pair(r100={"preempt_delay": 30.0})
    seg.start("r90")
    seg.run_until(10.0)
    seg.start("r100")
    seg.run_until(39.999)
    assert seg.masters() == {"r90"}
    seg.run_until(50.0)
    assert seg.transitions("r100")[-1] == (40.0, "r100", Transitioned(BACKUP, MASTER, "preempt"))
    assert seg.state("r90") is BACKUP


def test_preempt_delay_does_not_delay_taking_over_from_nobody() -> None:
    seg = pair(r100={"preempt_delay": 30.0})
    seg.start("r100")
    seg.run_until(10.0)
    assert seg.adverts("r100")[0] == (MDI_100, 100)


def test_the_owner_takes_over_at_once_and_ignores_adverts() -> None:
    seg = pair()
    seg.add("owner", config(255, IPv4Address("192.168.1.1")))
    seg.start("r90")
    seg.run_until(10.0)
    seg.start("owner")
    assert seg.adverts("owner") == [(10.0, 255)]
    assert seg.masters() == {"owner"}
    seg.send("owner", AdvertReceived(IPv4Address("192.168.1.20"), 0))
    seg.send("owner", AdvertReceived(IPv4Address("192.168.1.20"), 254))
    assert seg.adverts("owner") == [(10.0, 255)]
    assert seg.masters() == {"owner"}


def test_link_down_goes_fault_and_link_up_preempts_after_master_down_interval() -> None:
    seg = elected()
    seg.run_until(20.25)
    seg.set_link("r100", up=False)
    assert [e.action for e in seg.actions("r100") if e.at == 20.25] == [
        SendAdvert(0),  # sent on the dead link, as keepalived does; nobody hears it
        RemoveVips(),
        *moved(MASTER, FAULT, "link_down"),
    ]
    seg.run_until(30.0)
    # vrrp-notes §3: link down on master → backup's first advert after 3.649 s.
    assert seg.adverts("r90")[0] == (19.609375 + MDI_90, 90)
    assert seg.adverts("r100")[-1] == (20.25, 0)  # nothing while in FAULT
    seg.set_link("r100", up=True)
    assert seg.transitions("r100")[-1] == (30.0, "r100", Transitioned(FAULT, BACKUP, "link_up"))
    seg.run_until(40.0)
    assert seg.transitions("r100")[-1] == (
        30 + MDI_100,
        "r100",
        Transitioned(BACKUP, MASTER, "preempt"),
    )
    assert seg.masters() == {"r100"}


def test_a_tracked_interface_hands_mastership_over_and_back() -> None:
    seg = pair(r100={"track_interfaces": {"eth2": -20}})
    seg.start("r100", "r90")
    seg.run_until(20.5)
    seg.send("r100", LinkChanged("eth2", up=False))  # 100 → 80
    seg.run_until(30.0)
    # The master keeps advertising, now with 80; the backup discards that and
    # takes over MDI(90) after the last advert it accepted.
    assert (20.609375, 80) in seg.adverts("r100")
    assert seg.transitions("r90")[-1] == (
        19.609375 + MDI_90,
        "r90",
        Transitioned(BACKUP, MASTER, "preempt"),
    )
    assert seg.masters() == {"r90"}
    seg.send(
        "r100", LinkChanged("eth2", up=True)
    )  # 80 → 100; its timer moves by MDI(100) - MDI(80)
    seg.run_until(40.0)
    last_accepted = 29.2578125  # r90's last advert before 30.0
    assert seg.transitions("r100")[-1] == (
        last_accepted + MDI_100,
        "r100",
        Transitioned(BACKUP, MASTER, "preempt"),
    )


def test_a_master_answers_a_lower_priority_advert_with_an_advert_and_garps() -> None:
    # keepalived vrrp_lower_prio_no_advert=false, garp_lower_prio_repeat/_delay.
    seg = pair()
    seg.drop = lambda src, dst: True  # split brain: both become master
    seg.start("r100", "r90")
    seg.run_until(10.62)
    assert seg.masters() == {"r100", "r90"}
    seg.drop = lambda src, dst: False
    seg.run_until(20.0)
    heal = 10.6484375  # r90's next advert reaches r100
    assert [e.action for e in seg.actions("r100") if e.at == heal] == [SendAdvert(100), SendGarp()]
    assert seg.transitions("r90")[-1] == (
        heal,
        "r90",
        Transitioned(MASTER, BACKUP, "higher_priority_advert"),
    )
    assert [e.at for e in seg.actions("r100") if e.action == SendGarp()] == [
        MDI_100,
        MDI_100 + 5,
        heal,
        heal + 5,
    ]


def test_the_second_garp_burst_comes_garp_delay_after_becoming_master() -> None:
    seg = pair()
    seg.start("r100", "r90")
    seg.run_until(30.0)
    assert [e.at for e in seg.actions("r100") if e.action == SendGarp()] == [MDI_100, MDI_100 + 5]


def test_no_second_garp_burst_once_no_longer_master() -> None:
    seg = pair(r100={"garp_delay": 3.0})
    seg.start("r100")
    seg.run_until(5.0)
    seg.send("r100", AdvertReceived(IPv4Address("192.168.1.30"), 200))  # a stranger wins
    seg.run_until(8.0)  # the second burst was due at MDI_100 + 3
    assert seg.state("r100") is BACKUP
    assert [e.at for e in seg.actions("r100") if e.action == SendGarp()] == [MDI_100]


def test_garp_delay_0_means_one_burst() -> None:
    seg = pair(r100={"garp_delay": 0.0})
    seg.start("r100")
    seg.run_until(30.0)
    assert [e.at for e in seg.actions("r100") if e.action == SendGarp()] == [MDI_100]


# --- property: never two masters for longer than one advert interval -----------

NODE_IPS = [IPv4Address("192.168.1.11"), IPv4Address("192.168.1.12"), IPv4Address("192.168.1.13")]
HAPPENINGS = ["kill", "restart", "stop", "link_down", "link_up"]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[int], list[float], list[tuple[float, str, int]], float]:
    count = draw(st.integers(2, 3))
    priorities = draw(st.lists(st.integers(1, 255), min_size=count, max_size=count, unique=True))
    starts = draw(st.lists(st.floats(0, 5), min_size=count, max_size=count))
    events = draw(
        st.lists(
            st.tuples(st.floats(0, 60), st.sampled_from(HAPPENINGS), st.integers(0, count - 1)),
            max_size=12,
        )
    )
    latency = draw(st.sampled_from([0.0, 0.001]))
    return priorities, starts, sorted(events), latency


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_never_two_masters_for_longer_than_one_advert_interval(
    scenario: tuple[list[int], list[float], list[tuple[float, str, int]], float],
) -> None:
    priorities, starts, events, latency = scenario
    seg = FakeSegment(latency=latency)
    names = [f"r{i}" for i in range(len(priorities))]
    for name, priority, ip in zip(names, priorities, NODE_IPS, strict=False):
        seg.add(name, config(priority, ip))
    plan = sorted([(at, "restart", i) for i, at in enumerate(starts)] + events)
    for at, happening, index in plan:
        seg.run_until(at)
        name = names[index]
        match happening:
            case "kill":
                seg.kill(name)
            case "restart":
                seg.restart(name)
            case "stop":
                seg.stop(name)
            case "link_down" | "link_up":
                seg.set_link(name, up=happening == "link_up")
    seg.run_until(90.0)
    assert seg.longest_dual_master() <= 1.0
    # And it converges: the highest priority among the routers that can run wins.
    runnable = [
        (seg.machine(n).effective_priority, n)
        for n in names
        if seg.nodes[n].alive and seg.nodes[n].link_up and seg.state(n) is not INIT
    ]
    assert seg.masters() == ({max(runnable)[1]} if runnable else set())


def test_a_new_primary_address_takes_part_in_the_equal_priority_tie_break() -> None:
    # The interface came back with a higher address than the peer's (.20): now
    # an equal-priority advert from .20 no longer makes this master step down.
    machine, now = machine_in(MASTER, 100)
    assert machine.handle(SourceChanged(IPv4Address("192.168.1.30")), now) == []
    assert machine.config.primary_ip == IPv4Address("192.168.1.30")
    actions = machine.handle(AdvertReceived(HIGHER_IP, 100), now + 0.1)
    assert machine.state is MASTER
    assert actions == [SendAdvert(100), SendGarp()]
