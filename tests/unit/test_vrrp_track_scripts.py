"""VRRP track scripts: the machine's priority arithmetic and FAULT, and the rise/fall count.

keepalived references: vrrp_track.c ``process_script_update_priority`` and
``initialise_track_script_state``, vrrp_scheduler.c ``vrrp_script_child_thread``.
"""

from __future__ import annotations

import pytest

from ipvsd.vrrp.machine import (
    AdvertReceived,
    ConfigChanged,
    MachineConfig,
    ScriptChanged,
    SendAdvert,
    Startup,
    TimerFired,
    VrrpMachine,
    VrrpState,
)
from ipvsd.vrrp.tracking import RiseFall
from tests.unit.test_vrrp_machine import HIGHER_IP, MDI_90, MDI_100, config, moved, to_master

BACKUP, MASTER, FAULT = VrrpState.BACKUP, VrrpState.MASTER, VrrpState.FAULT


def test_positive_weight_is_added_while_the_script_succeeds() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": 10}))
    machine.handle(Startup(), 0.0)
    assert machine.effective_priority == 100  # not reported yet: neither weight
    machine.handle(ScriptChanged("chk", ok=True), 0.1)
    assert machine.effective_priority == 110
    machine.handle(ScriptChanged("chk", ok=False), 0.2)
    assert machine.effective_priority == 100


def test_negative_weight_is_added_while_the_script_fails() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": -20}))
    machine.handle(Startup(), 0.0)
    machine.handle(ScriptChanged("chk", ok=True), 0.1)
    assert machine.effective_priority == 100
    machine.handle(ScriptChanged("chk", ok=False), 0.2)
    assert machine.effective_priority == 80
    machine.handle(ScriptChanged("chk", ok=True), 0.3)
    assert machine.effective_priority == 100


def test_weights_of_scripts_and_interfaces_add_up() -> None:
    machine = VrrpMachine(
        config(100, track_scripts={"a": 10, "b": -30}, track_interfaces={"eth2": 5})
    )
    machine.handle(ScriptChanged("a", ok=True), 0.0)
    machine.handle(ScriptChanged("b", ok=False), 0.0)
    assert machine.effective_priority == 100 + 10 - 30 + 5


@pytest.mark.parametrize(
    ("priority", "weights", "ok", "effective"),
    [
        (250, {"a": 10}, True, 254),  # clamped below the owner's 255
        (10, {"a": -20}, False, 1),  # clamped above 0 (resign)
        (255, {"a": -20}, False, 255),  # the owner ignores weights
    ],
)
def test_effective_priority_is_clamped(
    priority: int, weights: dict[str, int], ok: bool, effective: int
) -> None:
    machine = VrrpMachine(config(priority, track_scripts=weights))
    machine.handle(ScriptChanged("a", ok=ok), 0.0)
    assert machine.effective_priority == effective


def test_weight_0_failure_means_fault_and_success_leaves_it() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": 0}))
    machine.handle(ScriptChanged("chk", ok=True), 0.0)
    machine.handle(Startup(), 0.0)
    assert machine.state is BACKUP
    assert machine.handle(ScriptChanged("chk", ok=False), 1.0) == moved(
        BACKUP, FAULT, "track_script"
    )
    assert machine.handle(ScriptChanged("chk", ok=True), 2.0) == moved(
        FAULT, BACKUP, "track_script"
    )
    assert machine.next_deadline() == 2.0 + MDI_100


def test_a_weight_0_script_not_reported_yet_holds_the_instance_in_fault() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": 0}))
    machine.handle(Startup(), 0.0)
    assert machine.state is FAULT
    assert machine.last_transition_reason == "track_script"
    machine.handle(ScriptChanged("chk", ok=True), 0.1)
    assert machine.state is BACKUP


def test_a_master_with_a_failing_weight_0_script_resigns() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": 0}))
    machine.handle(ScriptChanged("chk", ok=True), 0.0)
    machine.handle(Startup(), 0.0)
    machine.handle(TimerFired(), MDI_100)
    assert machine.state is MASTER
    actions = machine.handle(ScriptChanged("chk", ok=False), 5.0)
    assert actions[0] == SendAdvert(0)
    assert machine.state is FAULT


def test_a_failing_script_lets_a_lower_backup_preempt_and_recovery_takes_back() -> None:
    # The MASTER at 100 (-20 while its script fails) and a BACKUP at 90 with preempt.
    master = VrrpMachine(config(100, track_scripts={"chk": -20}))
    master.handle(ScriptChanged("chk", ok=True), 0.0)
    master.handle(Startup(), 0.0)
    master.handle(TimerFired(), MDI_100)
    assert master.state is MASTER
    master.handle(ScriptChanged("chk", ok=False), 10.0)
    assert master.effective_priority == 80
    assert master.handle(TimerFired(), MDI_100 + 1) == [SendAdvert(80, periodic=True)]
    # The backup at 90 discards the advert of 80 and preempts at Master_Down_Interval.
    backup = VrrpMachine(config(90, ip=HIGHER_IP))
    backup.handle(Startup(), 0.0)
    backup.handle(AdvertReceived(HIGHER_IP, 80), 11.0)
    assert backup.handle(TimerFired(), MDI_90) == to_master("preempt", priority=90)
    # Recovered, the old master (100) preempts the one at 90 in turn.
    master.handle(AdvertReceived(HIGHER_IP, 90), 12.0)
    assert master.state is BACKUP
    master.handle(ScriptChanged("chk", ok=True), 13.0)
    master.handle(AdvertReceived(HIGHER_IP, 90), 13.5)  # discarded: we outrank it
    assert master.handle(TimerFired(), 12.0 + MDI_100) == to_master("preempt")


def test_a_priority_change_moves_the_running_master_down_timer() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": -10}))
    machine.handle(Startup(), 0.0)
    machine.handle(ScriptChanged("chk", ok=False), 1.0)
    assert machine.next_deadline() == MDI_90


def test_config_rejects_script_weights_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"-254\.\.254"):
        config(track_scripts={"chk": 255})


def test_a_reload_dropping_the_weight_0_script_leaves_fault() -> None:
    machine = VrrpMachine(config(100, track_scripts={"chk": 0}))
    machine.handle(Startup(), 0.0)
    assert machine.state is FAULT
    new: MachineConfig = config(100)
    assert machine.handle(ConfigChanged(new), 1.0) == moved(FAULT, BACKUP, "config_changed")


# --- rise and fall --------------------------------------------------------------


def test_the_first_result_decides_at_once() -> None:
    # keepalived starts result at rise - 1: one success is enough, and a first
    # failure is a failure whatever fall says.
    up = RiseFall(rise=3, fall=3)
    assert up.ok is None
    assert up.result(True)
    assert up.ok is True
    down = RiseFall(rise=3, fall=3)
    assert down.result(False)
    assert down.ok is False


def test_fall_consecutive_failures_make_it_fail_and_a_success_resets_the_count() -> None:
    counter = RiseFall(rise=2, fall=3)
    counter.result(True)
    assert [counter.result(False) for _ in range(2)] == [False, False]
    assert not counter.result(True)  # resets the failure streak
    assert [counter.result(False) for _ in range(3)] == [False, False, True]
    assert counter.ok is False


def test_rise_consecutive_successes_make_it_succeed() -> None:
    counter = RiseFall(rise=2, fall=1)
    counter.result(False)
    assert not counter.result(True)
    assert not counter.result(False)  # resets the success streak
    assert [counter.result(True) for _ in range(2)] == [False, True]
    assert counter.ok is True


def test_rise_and_fall_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RiseFall(rise=0, fall=1)
