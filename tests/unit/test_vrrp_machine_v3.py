"""VRRPv3 timers in the state machine (RFC 5798 §6.1, §6.4), in centiseconds.

RFC 5798 scales the skew by the master's advertised interval:
Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 and
Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, where a Backup
sets Master_Adver_Interval from each advert it accepts (§6.4.2) and a router
uses its own Advertisement_Interval at start and as Master (§6.4.1, §6.4.3).
keepalived 2.2.7 computes the same in microseconds (``VRRP_TIMER_SKEW``:
``(256 - prio) * centiseconds * 625 / 16`` µs, truncated), so the two agree to
the microsecond (docs/vrrp-v3.md).

The expected values are written in centiseconds (the unit of Max Adver Int)
and compared with `pytest.approx`, since 0.1 s has no exact binary float.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from ipvsd.vrrp.machine import (
    AdvertReceived,
    ConfigChanged,
    MachineConfig,
    SendAdvert,
    Startup,
    TimerFired,
    VrrpMachine,
    VrrpState,
)

OURS = IPv4Address("192.168.1.10")
PEER = IPv4Address("192.168.1.20")
CS = 0.01


def v3(
    priority: int = 100,
    advert_int: float = 0.1,
    *,
    version: int = 3,
    initial_state: VrrpState = VrrpState.BACKUP,
) -> VrrpMachine:
    return VrrpMachine(
        MachineConfig(
            name="VI_1",
            interface="eth1",
            vrid=51,
            priority=priority,
            advert_int=advert_int,
            primary_ip=OURS,
            initial_state=initial_state,
            version=version,
        )
    )


def state_of(machine: VrrpMachine) -> VrrpState:
    """The machine's state, read afresh: mypy would keep ``machine.state`` narrowed by an
    earlier assert across `VrrpMachine.handle`."""
    return machine.state


def cs(seconds: float | None) -> float:
    assert seconds is not None
    return seconds / CS


def test_skew_and_master_down_interval_scale_with_the_interval() -> None:
    machine = v3(priority=100, advert_int=0.1)
    # (256 - 100) * 10 cs / 256 = 6.09375 cs; 3 * 10 cs + that = 36.09375 cs.
    assert cs(machine.skew_time) == pytest.approx(6.09375)
    assert cs(machine.master_down_interval) == pytest.approx(36.09375)
    assert cs(v3(priority=254, advert_int=0.01).master_down_interval) == pytest.approx(3 + 2 / 256)
    assert cs(v3(priority=1, advert_int=40.95).master_down_interval) == pytest.approx(
        3 * 4095 + 255 * 4095 / 256
    )


def test_version_2_skew_is_not_scaled() -> None:
    machine = v3(priority=100, advert_int=2.0, version=2)
    assert machine.skew_time == 156 / 256
    assert machine.master_down_interval == 6 + 156 / 256


def test_startup_waits_master_down_interval_then_advertises_every_interval() -> None:
    machine = v3(priority=100, advert_int=0.1)
    machine.handle(Startup(), 0.0)
    assert cs(machine.next_deadline()) == pytest.approx(36.09375)
    assert machine.handle(TimerFired(), 0.36) == []  # 0.0009375 s early: nothing
    actions = machine.handle(TimerFired(), 0.3609375)
    assert actions[0] == SendAdvert(100)
    assert state_of(machine) is VrrpState.MASTER
    assert cs(machine.next_deadline()) == pytest.approx(36.09375 + 10)


def test_backup_adopts_the_masters_interval() -> None:
    """§6.4.2: Master_Adver_Interval is the advert's Max Adver Int, not ours."""
    machine = v3(priority=100, advert_int=0.1)
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 200, advert_int=1.0), 0.2)
    assert machine.master_adver_int == 1.0
    # 3 * 100 cs + 156 * 100 / 256 cs = 360.9375 cs after the advert.
    assert cs(machine.next_deadline()) == pytest.approx(20 + 360.9375)
    # A priority-0 advert: Skew_Time of the learned interval (60.9375 cs).
    machine.handle(AdvertReceived(PEER, 0, advert_int=1.0), 1.0)
    assert cs(machine.next_deadline()) == pytest.approx(100 + 60.9375)


def test_master_goes_back_to_its_own_interval() -> None:
    """§6.4.3: as Master the router advertises (and times) its configured interval."""
    machine = v3(priority=100, advert_int=0.1)
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 200, advert_int=0.5), 0.1)
    assert machine.master_adver_int == 0.5
    machine.handle(TimerFired(), 0.1 + 3 * 0.5 + 156 * 0.5 / 256)
    assert state_of(machine) is VrrpState.MASTER
    assert machine.master_adver_int == 0.1
    assert machine.next_deadline() == pytest.approx(0.1 + 1.5 + 0.3046875 + 0.1)


def test_master_stepping_down_times_the_new_masters_interval() -> None:
    machine = v3(priority=100, advert_int=0.1, initial_state=VrrpState.BACKUP)
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), 1.0)
    assert state_of(machine) is VrrpState.MASTER
    machine.handle(AdvertReceived(PEER, 150, advert_int=0.25), 2.0)
    assert state_of(machine) is VrrpState.BACKUP
    # 3 * 25 cs + 156 * 25 / 256 cs = 90.234375 cs.
    assert cs(machine.next_deadline()) == pytest.approx(200 + 90.234375)


def test_a_lower_master_does_not_teach_its_interval() -> None:
    """A discarded advert (we preempt it) changes nothing, the interval included."""
    machine = v3(priority=100, advert_int=0.1)
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 50, advert_int=2.0), 0.1)
    assert machine.master_adver_int == 0.1
    assert cs(machine.next_deadline()) == pytest.approx(36.09375)


def test_initial_state_master_waits_one_interval_and_the_smallest_skew() -> None:
    """keepalived ``VRRP_TIMER_SKEW_MIN``: the skew of priority 255, scaled in v3."""
    machine = v3(priority=100, advert_int=0.1, initial_state=VrrpState.MASTER)
    machine.handle(Startup(), 0.0)
    assert cs(machine.next_deadline()) == pytest.approx(10 + 10 / 256)


def test_version_2_ignores_an_advertised_interval() -> None:
    machine = v3(priority=100, advert_int=1.0, version=2)
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 200, advert_int=5.0), 0.5)
    assert machine.master_adver_int == 1.0
    assert machine.next_deadline() == 0.5 + 3 + 156 / 256


def test_version_3_intervals_are_centiseconds() -> None:
    with pytest.raises(ValueError, match="centisecond"):
        v3(advert_int=0.015)
    with pytest.raises(ValueError, match="version"):
        v3(version=4)


def test_a_reload_keeps_a_backups_learned_interval() -> None:
    """Rule 7 with rule 2: a new advert_int changes what we advertise, not how long a
    v3 Backup waits for the master it follows (the master's interval decides)."""
    machine = v3(priority=100, advert_int=0.1)
    machine.handle(Startup(), 0.0)
    machine.handle(AdvertReceived(PEER, 200, advert_int=1.0), 0.5)
    before = machine.next_deadline()
    new = replace(machine.config, advert_int=0.2)
    machine.handle(ConfigChanged(new), 0.6)
    assert machine.next_deadline() == before
    assert machine.master_adver_int == 1.0
    # A new priority moves the timer by the change of the learned interval's skew.
    machine.handle(ConfigChanged(replace(new, priority=50)), 0.7)
    assert cs(machine.next_deadline()) == pytest.approx(cs(before) + 50 * 100 / 256)
