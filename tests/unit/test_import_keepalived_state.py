"""``state MASTER`` / ``state BACKUP`` → ``initial_state``, with keepalived's rules
(``vrrp_complete_init``): no priority means 255, nopreempt and preempt_delay are
cleared, AH authentication and sync groups with a non-owner keep BACKUP."""

from __future__ import annotations

import textwrap
from typing import Any

from ipvsd.config import parse_config
from ipvsd.importers.emit import to_yaml
from tests.unit.test_import_keepalived import convert_text, reports


def instance(body: str, extra: str = "") -> tuple[list[dict[str, Any]], list[str]]:
    text = textwrap.dedent(
        """\
        vrrp_instance VI_1 {
            interface eth1
            virtual_router_id 51
            virtual_ipaddress {
                192.168.1.200/24
            }
        """
    )
    text += textwrap.indent(textwrap.dedent(body), "    ") + "}\n" + textwrap.dedent(extra)
    conversion = convert_text(text)
    parse_config(to_yaml(conversion.data), "out.yaml", default_node_name="n1")  # it loads
    return conversion.data["vrrp"]["instances"], reports(conversion)


def test_state_master_becomes_initial_state_master_without_a_report() -> None:
    [vi], lines = instance("state MASTER\npriority 100\n")
    assert vi["initial_state"] == "master"
    assert vi["priority"] == 100
    assert lines == []


def test_state_backup_is_the_default() -> None:
    [vi], lines = instance("state BACKUP\npriority 90\n")
    assert "initial_state" not in vi
    assert lines == []


def test_state_master_without_a_priority_is_the_owner() -> None:
    # keepalived: "If no priority has been set, derive it from the initial state".
    [vi], lines = instance("state MASTER\n")
    assert (vi["priority"], vi["initial_state"]) == (255, "master")
    [backup], _ = instance("state BACKUP\n")
    assert backup["priority"] == 100
    assert lines == []


def test_nopreempt_and_preempt_delay_are_dropped_with_state_master() -> None:
    [vi], lines = instance("state MASTER\npriority 100\nnopreempt\npreempt_delay 5\n")
    assert vi["initial_state"] == "master"
    assert "preempt" not in vi
    assert "preempt_delay" not in vi
    assert lines == [
        "k.conf:9: nopreempt: keepalived ignores it with state MASTER: not converted",
        "k.conf:10: preempt_delay: keepalived ignores it with state MASTER: not converted",
    ]
    [backup], _ = instance("state BACKUP\npriority 100\nnopreempt\npreempt_delay 5\n")
    assert (backup["preempt"], backup["preempt_delay"]) == (False, 5)


def test_backup_after_master_is_ignored_as_keepalived_does() -> None:
    [vi], lines = instance("state MASTER\nstate BACKUP\npriority 100\n")
    assert vi["initial_state"] == "master"
    assert lines == ["k.conf:8: state: after state MASTER, which keepalived keeps: ignored"]


def test_an_owner_saying_backup_is_reported() -> None:
    [vi], lines = instance("state BACKUP\npriority 255\n")
    assert "initial_state" not in vi
    assert [line.split(": ", 2)[:2] for line in lines] == [["k.conf:7", "state"]]
    assert "starts as MASTER at once" in lines[0]


def test_ah_authentication_clears_state_master_for_a_non_owner() -> None:
    [vi], lines = instance(
        "state MASTER\npriority 100\nauthentication {\n    auth_type AH\n    auth_pass x\n}\n"
    )
    assert "initial_state" not in vi
    assert any("k.conf:7: state: keepalived starts a non-owner with AH" in line for line in lines)


SYNC = """\
vrrp_instance VI_2 {
    interface eth1
    virtual_router_id 52
    state MASTER
    %s
    virtual_ipaddress {
        192.168.1.201/24
    }
}
vrrp_sync_group G {
    group {
        VI_1
        VI_2
    }
}
"""


def test_a_sync_group_with_a_non_owner_starts_every_member_as_backup() -> None:
    vis, lines = instance("state MASTER\npriority 100\n", SYNC % "priority 100")
    assert ["initial_state" in vi for vi in vis] == [False, False]
    assert lines == [
        f"k.conf:{line}: state: keepalived starts the members of sync group 'G' as BACKUP: "
        "only owners (priority 255) that all say state MASTER keep it: not converted"
        for line in (7, 13)
    ]


def test_a_sync_group_of_owners_saying_master_keeps_it() -> None:
    vis, lines = instance("state MASTER\npriority 255\n", SYNC % "priority 255")
    assert [vi["initial_state"] for vi in vis] == ["master", "master"]
    assert lines == []
