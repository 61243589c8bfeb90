"""The machine's in-place events: a source address that comes and goes, a failed
runner, and a reloaded config (issue #11, items 2 and 4).

Like test_vrrp_machine: no sockets, no sleeping, exact actions.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from ipvsd.vrrp.machine import (
    AddVips,
    AdvertReceived,
    ConfigChanged,
    Failed,
    LinkChanged,
    MachineConfig,
    Notify,
    RemoveVips,
    SendAdvert,
    SendGarp,
    Shutdown,
    SourceChanged,
    Startup,
    TimerFired,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from tests.fakes.vrrp import FakeSegment

INIT, BACKUP, MASTER, FAULT = VrrpState.INIT, VrrpState.BACKUP, VrrpState.MASTER, VrrpState.FAULT
OURS = IPv4Address("192.168.1.10")
PEER = IPv4Address("192.168.1.20")
MDI_100 = 3 + 156 / 256
MDI_110 = 3 + 146 / 256


def config(priority: int = 100, ip: IPv4Address | None = OURS, **kwargs: object) -> MachineConfig:
    fields: dict[str, object] = {"interface": "eth1", "vrid": 51, "advert_int": 1.0}
    fields |= kwargs
    return MachineConfig(name="VI_1", priority=priority, primary_ip=ip, **fields)  # type: ignore[arg-type]


def master(priority: int = 100, **kwargs: object) -> VrrpMachine:
    machine = VrrpMachine(config(priority, OURS, **kwargs))
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), 10.0)
    assert machine.state is MASTER
    return machine


# --- the source address (RFC 3768 §5.2.1) ------------------------------------------------


def test_no_address_at_startup_is_fault_until_one_appears() -> None:
    machine = VrrpMachine(config(ip=None))
    actions = machine.handle(Startup(), 0.0)
    assert actions == [
        RemoveVips(),
        Transitioned(INIT, FAULT, "no_address"),
        Notify(FAULT, 100),
    ]
    assert machine.next_deadline() is None
    assert machine.handle(AdvertReceived(PEER, 90), 1.0) == []  # FAULT does not listen

    actions = machine.handle(SourceChanged(OURS), 2.0)
    assert actions == [Transitioned(FAULT, BACKUP, "address_up"), Notify(BACKUP, 100)]
    assert machine.next_deadline() == 2.0 + MDI_100
    machine.handle(TimerFired(), 2.0 + MDI_100)
    assert machine.state is MASTER


def test_losing_the_address_as_master_resigns() -> None:
    machine = master()
    actions = machine.handle(SourceChanged(None), 11.0)
    assert actions == [
        SendAdvert(0),
        RemoveVips(),
        Transitioned(MASTER, FAULT, "no_address"),
        Notify(FAULT, 100),
    ]


def test_the_remaining_fault_cause_becomes_the_reason() -> None:
    machine = VrrpMachine(config(ip=None))
    machine.handle(LinkChanged("eth1", False), 0.0)
    machine.handle(Startup(), 0.0)
    assert machine.last_transition_reason == "link_down"
    assert machine.handle(LinkChanged("eth1", True), 1.0) == []  # still no address
    assert (machine.state, machine.last_transition_reason) == (FAULT, "no_address")
    machine.handle(SourceChanged(OURS), 2.0)
    assert machine.state is BACKUP


def test_the_owner_takes_over_once_its_address_appears() -> None:
    machine = VrrpMachine(config(255, ip=None))
    machine.handle(Startup(), 0.0)
    assert machine.state is FAULT
    actions = machine.handle(SourceChanged(OURS), 1.0)
    assert actions[:3] == [SendAdvert(255), AddVips(), SendGarp()]
    assert machine.state is MASTER


# --- a failed runner ---------------------------------------------------------------------


def test_failed_master_resigns_releases_and_stays_in_fault() -> None:
    machine = master()
    actions = machine.handle(Failed(), 11.0)
    assert actions == [
        SendAdvert(0),
        RemoveVips(),
        Transitioned(MASTER, FAULT, "instance_failed"),
        Notify(FAULT, 100),
    ]
    assert machine.next_deadline() is None
    # Sticky: no link, address or config event brings it back (a new machine will).
    assert machine.handle(LinkChanged("eth1", True), 12.0) == []
    assert machine.handle(SourceChanged(OURS), 12.0) == []
    assert machine.handle(ConfigChanged(config(110)), 12.0) == []
    assert (machine.state, machine.last_transition_reason) == (FAULT, "instance_failed")
    assert machine.handle(Shutdown(), 13.0) == [
        Transitioned(FAULT, INIT, "shutdown"),
        Notify(INIT, 110),
    ]


@pytest.mark.parametrize("state", [INIT, BACKUP])
def test_failed_elsewhere_releases_the_vips_anyway(state: VrrpState) -> None:
    machine = VrrpMachine(config())
    if state is BACKUP:
        machine.handle(Startup(), 0.0)
    actions = machine.handle(Failed(), 1.0)
    assert actions == [
        RemoveVips(),
        Transitioned(state, FAULT, "instance_failed"),
        Notify(FAULT, 100),
    ]


def test_failed_while_in_fault_changes_only_the_reason() -> None:
    machine = VrrpMachine(config(ip=None))
    machine.handle(Startup(), 0.0)
    assert machine.handle(Failed(), 1.0) == [RemoveVips()]
    assert (machine.state, machine.last_transition_reason) == (FAULT, "instance_failed")


# --- a reloaded config (rule 7) ----------------------------------------------------------


@pytest.mark.parametrize("priority", [110, 50, 1, 254])
def test_a_master_keeps_its_state_and_advertises_a_new_priority(priority: int) -> None:
    # RFC 3768 §6.4.3: a Master leaves only on a higher-priority advert.
    machine = master(100)
    adver_at = machine.next_deadline()
    assert machine.handle(ConfigChanged(config(priority)), 10.5) == []
    assert machine.state is MASTER
    assert machine.next_deadline() == adver_at
    assert machine.handle(TimerFired(), 11.0) == [SendAdvert(priority, periodic=True)]


def test_a_backup_moves_its_master_down_timer_by_the_new_interval() -> None:
    machine = VrrpMachine(config(100))
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 105), 1.0)
    assert machine.next_deadline() == 1.0 + MDI_100
    assert machine.handle(ConfigChanged(config(110)), 1.5) == []
    assert machine.state is BACKUP
    assert machine.next_deadline() == pytest.approx(1.0 + MDI_110)


def test_a_backup_raised_above_the_master_preempts_through_the_normal_rules() -> None:
    # §6.4.2: preempt on, a lower-priority advert is discarded, so the running
    # Master_Down_Timer fires and the backup takes over.
    seg = FakeSegment()
    seg.add("d1", config(100, OURS))
    seg.add("d2", config(90, PEER))
    seg.start("d1", "d2")
    seg.run_until(10.0)
    assert seg.masters() == {"d1"}
    seg.send("d2", ConfigChanged(config(120, PEER)))
    seg.run_until(10.0 + 1 + MDI_100)
    assert seg.masters() == {"d2"}
    assert seg.transitions("d2")[-1][2].reason == "preempt"
    assert seg.longest_dual_master() == 0.0


def test_a_backup_raised_without_preempt_stays_backup() -> None:
    seg = FakeSegment()
    seg.add("d1", config(100, OURS))
    seg.add("d2", config(90, PEER, preempt=False))
    seg.start("d1", "d2")
    seg.run_until(10.0)
    seg.send("d2", ConfigChanged(config(120, PEER, preempt=False)))
    seg.run_until(30.0)
    assert seg.masters() == {"d1"}


def test_master_priority_change_in_a_pair_never_moves_the_vip() -> None:
    seg = FakeSegment()
    seg.add("d1", config(100, OURS))
    seg.add("d2", config(90, PEER))
    seg.start("d1", "d2")
    seg.run_until(10.0)
    before = len(seg.masters_log)
    seg.send("d1", ConfigChanged(config(110, OURS)))
    seg.run_until(30.0)
    assert seg.masters() == {"d1"}
    assert len(seg.masters_log) == before
    assert {p for at, p in seg.adverts("d1") if at > 10.0} == {110}


def test_a_shorter_advert_interval_rearms_the_adver_timer() -> None:
    machine = VrrpMachine(config(advert_int=5.0))
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), 20.0)
    assert machine.next_deadline() == 25.0
    machine.handle(ConfigChanged(config(advert_int=1.0)), 21.0)
    assert machine.next_deadline() == 22.0


def test_preempt_delay_counts_from_startup() -> None:
    machine = VrrpMachine(config(100, preempt_delay=0.0))
    machine.handle(Startup(), 0.0)
    machine.handle(ConfigChanged(config(100, preempt_delay=30.0)), 1.0)
    machine.handle(AdvertReceived(PEER, 90), 2.0)  # a lower master: spared until 30 s
    assert machine.state is BACKUP
    assert machine.next_deadline() == 2.0 + MDI_100
    machine.handle(AdvertReceived(PEER, 90), 5.0)
    machine.handle(TimerFired(), 30.0)
    assert machine.state is MASTER


def test_a_new_tracked_interface_that_is_down_means_fault() -> None:
    machine = master()
    machine.handle(LinkChanged("eth2", False), 10.2)
    actions = machine.handle(ConfigChanged(config(track_interfaces={"eth2": 0})), 10.5)
    assert actions == [
        SendAdvert(0),
        RemoveVips(),
        Transitioned(MASTER, FAULT, "track_interface"),
        Notify(FAULT, 100),
    ]
    actions = machine.handle(ConfigChanged(config()), 11.0)
    assert actions == [Transitioned(FAULT, BACKUP, "config_changed"), Notify(BACKUP, 100)]


def test_the_vrid_or_interface_never_change_in_place() -> None:
    machine = master()
    with pytest.raises(ValueError, match="new virtual router"):
        machine.handle(ConfigChanged(replace(config(), vrid=52)), 11.0)
    with pytest.raises(ValueError, match="new virtual router"):
        machine.handle(ConfigChanged(replace(config(), interface="eth2")), 11.0)


def test_the_source_address_survives_a_config_change() -> None:
    machine = master()
    machine.handle(ConfigChanged(config(ip=IPv4Address("10.0.0.1"))), 10.5)
    assert machine.config.primary_ip == OURS
