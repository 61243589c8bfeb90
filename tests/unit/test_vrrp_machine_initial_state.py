"""``initial_state`` MASTER (keepalived's ``state MASTER``, machine rule 9): a non-owner
still starts in Backup, but its first Master_Down_Timer is Advertisement_Interval plus
the skew of priority 255 (keepalived ``vrrp_init_state``: ``master_adver_int +
VRRP_TIMER_SKEW_MIN``), not Master_Down_Interval."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ipvsd.vrrp.machine import (
    AdvertReceived,
    ConfigChanged,
    LinkChanged,
    ScriptChanged,
    Shutdown,
    Startup,
    TimerFired,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from tests.fakes.vrrp import FakeSegment
from tests.unit.test_vrrp_machine import (
    BACKUP,
    FAULT,
    INIT,
    MASTER,
    MDI_90,
    MDI_100,
    config,
    pair,
    to_master,
)

FAST = 1 + 1 / 256  # 1.00390625: keepalived measured ~1.004 s
THEM = IPv4Address("192.168.1.20")


def test_a_lone_initial_master_takes_over_after_one_interval_and_the_skew_of_255() -> None:
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(Startup(), 0.0)
    assert machine.state is BACKUP  # RFC 3768 §6.4.1: a non-owner starts in Backup
    assert machine.next_deadline() == FAST
    assert machine.handle(TimerFired(), FAST - 0.001) == []
    assert machine.handle(TimerFired(), FAST) == to_master("master_down_timer")


@pytest.mark.parametrize("advert_int", [1.0, 3.0])
def test_the_first_timer_does_not_depend_on_the_priority(advert_int: float) -> None:
    for priority in (1, 100, 254):
        machine = VrrpMachine(config(priority, initial_state=MASTER, advert_int=advert_int))
        machine.handle(Startup(), 10.0)
        assert machine.next_deadline() == 10.0 + advert_int + 1 / 256


def test_backup_is_the_default_and_waits_master_down_interval() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    assert machine.next_deadline() == MDI_100


def test_the_owner_starts_as_master_either_way() -> None:
    for initial in (BACKUP, MASTER):
        machine = VrrpMachine(config(255, initial_state=initial))
        actions = machine.handle(Startup(), 0.0)
        assert actions == to_master("startup_owner", priority=255, old=INIT)


def test_an_advert_heard_meanwhile_behaves_as_usual() -> None:
    # RFC 3768 §6.4.2: a master at least our priority resets the timer to
    # Master_Down_Interval; the shortened timer is gone for good.
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(Startup(), 0.0)
    assert machine.handle(AdvertReceived(THEM, 150), 0.5) == []
    assert machine.next_deadline() == 0.5 + MDI_100
    assert machine.handle(TimerFired(), FAST) == []
    assert machine.state is BACKUP
    assert machine.master_address == THEM


def test_a_lower_master_is_preempted_when_the_short_timer_fires() -> None:
    # §6.4.2 with preempt: a lower-priority advert is discarded, the timer runs on.
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(THEM, 50), 0.5)
    assert machine.next_deadline() == FAST
    assert machine.handle(TimerFired(), FAST) == to_master("preempt")


def test_a_resigning_master_is_followed_after_skew_time() -> None:
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(THEM, 0), 0.5)
    assert machine.next_deadline() == 0.5 + 156 / 256


def test_a_pair_where_the_lower_priority_says_master() -> None:
    # r90 (state MASTER) takes over at ~1 s; r100 (backup) preempts it at MDI_100,
    # as keepalived does: the initial state does not beat the priority.
    seg = pair(r90={"initial_state": MASTER})
    seg.start("r100", "r90")
    seg.run_until(10.0)
    assert (seg.state("r100"), seg.state("r90")) == (MASTER, BACKUP)
    assert seg.transitions("r90")[-2:] == [
        (FAST, "r90", Transitioned(BACKUP, MASTER, "master_down_timer")),
        (MDI_100, "r90", Transitioned(MASTER, BACKUP, "higher_priority_advert")),
    ]


def test_the_higher_priority_saying_master_is_elected_after_one_interval() -> None:
    seg = pair(r100={"initial_state": MASTER})
    seg.start("r100", "r90")
    seg.run_until(10.0)
    assert (seg.state("r100"), seg.state("r90")) == (MASTER, BACKUP)
    assert seg.adverts("r100")[0] == (FAST, 100)
    assert seg.adverts("r90") == []


def test_only_the_first_timer_after_startup_is_short() -> None:
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), FAST)
    # Stepping down arms the usual interval...
    machine.handle(AdvertReceived(THEM, 150), 5.0)
    assert machine.next_deadline() == 5.0 + MDI_100
    # ...and so does leaving FAULT (keepalived try_up_instance).
    machine.handle(LinkChanged("eth1", up=False), 6.0)
    machine.handle(LinkChanged("eth1", up=True), 7.0)
    assert machine.state is BACKUP
    assert machine.next_deadline() == 7.0 + MDI_100
    # A new Startup after Shutdown is short again.
    machine.handle(Shutdown(), 8.0)
    machine.handle(Startup(), 9.0)
    assert machine.next_deadline() == 9.0 + FAST


def test_a_startup_into_fault_waits_master_down_interval_when_it_clears() -> None:
    machine = VrrpMachine(config(100, initial_state=MASTER))
    machine.handle(LinkChanged("eth1", up=False), 0.0)
    machine.handle(Startup(), 0.0)
    assert machine.state is FAULT
    machine.handle(LinkChanged("eth1", up=True), 0.2)
    assert machine.next_deadline() == 0.2 + MDI_100


def test_a_priority_change_does_not_move_the_short_timer() -> None:
    # A Master_Down_Interval-long timer moves by the change in the skew (rule 7);
    # the short one's length does not depend on the priority.
    machine = VrrpMachine(config(100, initial_state=MASTER, track_scripts={"chk": -10}))
    machine.handle(Startup(), 0.0)
    machine.handle(ScriptChanged("chk", ok=False), 0.3)
    assert machine.next_deadline() == FAST
    normal = VrrpMachine(config(100, track_scripts={"chk": -10}))
    normal.handle(Startup(), 0.0)
    normal.handle(ScriptChanged("chk", ok=False), 0.3)
    assert normal.next_deadline() == MDI_90


def test_a_reload_changing_initial_state_matters_at_the_next_startup_only() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    machine.handle(ConfigChanged(config(100, initial_state=MASTER)), 0.5)
    assert machine.next_deadline() == MDI_100
    fast = VrrpMachine(config(100, initial_state=MASTER))
    fast.handle(Startup(), 0.0)
    fast.handle(ConfigChanged(config(100)), 0.5)
    assert fast.next_deadline() == FAST
    # An advert interval change moves the short timer by the change.
    fast.handle(ConfigChanged(config(100, initial_state=MASTER, advert_int=2.0)), 0.6)
    assert fast.next_deadline() == FAST + 1.0


@pytest.mark.parametrize("state", [INIT, FAULT])
def test_initial_state_is_backup_or_master(state: VrrpState) -> None:
    with pytest.raises(ValueError, match="initial_state"):
        config(100, initial_state=state)


def test_in_a_sync_group_the_first_to_take_over_takes_the_others_along() -> None:
    seg = FakeSegment()
    seg.add("VI_1", config(100, name="VI_1", initial_state=MASTER))
    seg.add("VI_2", config(100, name="VI_2", interface="eth2", vrid=52))
    seg.add_sync_group(["VI_1", "VI_2"])
    seg.start("VI_1", "VI_2")
    seg.run_until(FAST)
    assert seg.masters() == {"VI_1", "VI_2"}
    assert seg.transitions("VI_2")[-1] == (FAST, "VI_2", Transitioned(BACKUP, MASTER, "sync_group"))


def test_a_script_of_weight_0_not_reported_yet_means_the_usual_interval() -> None:
    # keepalived: num_script_init holds the instance in FAULT at start; its first
    # result brings it to BACKUP through try_up_instance, with Master_Down_Interval.
    machine = VrrpMachine(config(100, initial_state=MASTER, track_scripts={"chk": 0}))
    machine.handle(Startup(), 0.0)
    assert machine.state is FAULT
    machine.handle(ScriptChanged("chk", ok=True), 0.4)
    assert (machine.state, machine.next_deadline()) == (BACKUP, 0.4 + MDI_100)
