"""Issue 13: ``initial_state`` (keepalived's ``state MASTER``/``BACKUP``)."""

from __future__ import annotations

from tests.unit.test_config_vrrp_addresses import _instance, _issues, _only, _parse

VIPS = "virtual_ipaddresses: [192.168.1.200/24]\n"


def test_initial_state_is_backup_by_default_or_master() -> None:
    assert _parse(_instance(VIPS)).vrrp.instances[0].initial_state == "backup"
    master = _parse(_instance(VIPS + "initial_state: master\n")).vrrp.instances[0]
    assert master.initial_state == "master"


def test_an_unknown_initial_state_is_reported_at_its_line() -> None:
    _only(
        _instance(VIPS + "initial_state: MASTER\n"),
        7,
        "vrrp.instances.0.initial_state",
        "unknown initial state 'MASTER' (expected one of: backup, master)",
    )


def test_initial_master_refuses_nopreempt_and_preempt_delay() -> None:
    found = _issues(_instance(VIPS + "initial_state: master\npreempt: false\npreempt_delay: 5\n"))
    assert found == [
        (8, "vrrp.instances.0.preempt", "must be true with initial_state: master"),
        (9, "vrrp.instances.0.preempt_delay", "must be 0 with initial_state: master"),
    ]
    # With the default initial state both are fine.
    _parse(_instance(VIPS + "preempt: false\n"))
    _parse(_instance(VIPS + "preempt_delay: 5\n"))
