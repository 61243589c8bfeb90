"""Which router is master, as one VRRP machine knows it: `VrrpMachine.master_address`.

MASTER: our own primary address. BACKUP: the source of the last advert that
the machine accepted as its master's, the ones that reset Master_Down_Timer
(RFC 3768 §6.4.2: priority at least ours, or any priority with preempt
off), until that master resigns (priority 0). Before any such advert, and in
INIT and FAULT, it is not known (None).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ipvsd.vrrp.machine import (
    AdvertReceived,
    LinkChanged,
    Shutdown,
    Startup,
    TimerFired,
    VrrpMachine,
    VrrpState,
)
from tests.unit.test_vrrp_machine import HIGHER_IP, LOWER_IP, MDI_100, OURS, config

BACKUP, MASTER = VrrpState.BACKUP, VrrpState.MASTER


def started(**kwargs: object) -> VrrpMachine:
    machine = VrrpMachine(config(**kwargs))  # type: ignore[arg-type]
    machine.handle(Startup(), 0.0)
    assert machine.state is BACKUP
    return machine


def test_a_fresh_backup_knows_no_master() -> None:
    assert started().master_address is None


@pytest.mark.parametrize(
    ("priority", "src", "preempt", "master"),
    [
        (200, HIGHER_IP, True, HIGHER_IP),  # §6.4.2: a higher priority is followed
        (100, LOWER_IP, True, LOWER_IP),  # an equal one too, whatever its address
        (50, LOWER_IP, False, LOWER_IP),  # preempt off: any live master is followed
        (50, LOWER_IP, True, None),  # discarded: we preempt it (Master_Down_Timer runs on)
    ],
)
def test_a_backup_names_the_master_it_follows(
    priority: int, src: IPv4Address, preempt: bool, master: IPv4Address | None
) -> None:
    machine = started(preempt=preempt)
    machine.handle(AdvertReceived(src, priority), 1.0)
    assert machine.master_address == master


def test_a_discarded_advert_does_not_replace_the_master_followed() -> None:
    machine = started()
    machine.handle(AdvertReceived(HIGHER_IP, 200), 1.0)
    machine.handle(AdvertReceived(LOWER_IP, 50), 1.5)
    assert machine.master_address == HIGHER_IP


def test_a_master_held_by_preempt_delay_is_named() -> None:
    machine = started(preempt_delay=30.0)
    machine.handle(AdvertReceived(LOWER_IP, 50), 1.0)
    assert machine.master_address == LOWER_IP


def test_a_resigning_master_is_no_longer_named() -> None:
    machine = started()
    machine.handle(AdvertReceived(HIGHER_IP, 200), 1.0)
    machine.handle(AdvertReceived(HIGHER_IP, 0), 2.0)  # §6.4.2: priority 0, the master left
    assert machine.master_address is None


def test_a_master_names_itself_and_then_the_router_that_took_over() -> None:
    machine = started()
    machine.handle(TimerFired(), MDI_100)
    assert machine.state is MASTER
    assert machine.master_address == OURS
    machine.handle(AdvertReceived(HIGHER_IP, 200), MDI_100 + 1)  # §6.4.3: it steps down
    assert (machine.state, machine.master_address) == (BACKUP, HIGHER_IP)


def test_an_owner_is_master_at_once() -> None:
    machine = VrrpMachine(config(255))
    machine.handle(Startup(), 0.0)
    assert (machine.state, machine.master_address) == (MASTER, OURS)


def test_fault_and_init_know_no_master() -> None:
    machine = started()
    machine.handle(AdvertReceived(HIGHER_IP, 200), 1.0)
    machine.handle(LinkChanged("eth1", False), 2.0)
    assert (machine.state, machine.master_address) == (VrrpState.FAULT, None)
    machine.handle(LinkChanged("eth1", True), 3.0)
    assert (machine.state, machine.master_address) == (BACKUP, None)  # until an advert
    machine.handle(Shutdown(), 4.0)
    assert (machine.state, machine.master_address) == (VrrpState.INIT, None)
