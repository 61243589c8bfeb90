"""`ipvsd.daemon.early`: which addresses the start-up removes before the config is validated.

The rule is the VRRP machine's Startup (every instance but an address owner
removes its VIPs and excluded VIPs) on the interface the instance adds them
to; anything the minimal read cannot be sure of removes nothing.
"""

from __future__ import annotations

import textwrap
from ipaddress import ip_interface
from pathlib import Path

import pytest

from ipvsd.config import load_config
from ipvsd.daemon.early import (
    ListenTarget,
    StaleVip,
    Unreadable,
    begin,
    configured_vips,
    listen_targets,
)


def _vips(text: str) -> list[tuple[str, str, str]]:
    return [(v.instance, v.interface, str(v.address)) for v in configured_vips(text)]


CONFIG = """\
node_name: d1
vrrp:
  instances:
    - name: VI_1
      interface: eth1
      vrid: 51
      virtual_ipaddresses: [192.168.1.200/24, {address: 10.0.0.1, dev: eth2}]
      virtual_ipaddresses_excluded: [192.168.1.210/24]
    - name: VI_VMAC
      interface: eth1
      vrid: 52
      vmac: true
      virtual_ipaddresses: [192.168.1.201/24]
    - name: VI_NAMED
      interface: eth1
      vrid: 53
      vmac: true
      vmac_interface: vrrp-web
      virtual_ipaddresses: [192.168.1.202/24]
    - name: VI_OWNER
      interface: eth1
      vrid: 54
      priority: 255
      virtual_ipaddresses: [192.168.1.203/24]
ipvs:
  services: []
"""


def test_every_instance_but_the_owner_on_the_interface_it_adds_to() -> None:
    assert _vips(CONFIG) == [
        ("VI_1", "eth1", "192.168.1.200/24"),
        ("VI_1", "eth2", "10.0.0.1/32"),  # no prefix: /32, as the model reads it
        ("VI_1", "eth1", "192.168.1.210/24"),  # excluded VIPs are owned too
        ("VI_VMAC", "vrrp.52", "192.168.1.201/24"),
        ("VI_NAMED", "vrrp-web", "192.168.1.202/24"),
    ]


def test_agrees_with_the_validated_config(tmp_path: Path) -> None:
    path = tmp_path / "ipvsd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    expected = [
        StaleVip(i.name, vip.dev or i.advert_interface, vip.address)
        for i in config.vrrp.instances
        if i.priority != 255
        for vip in (*i.virtual_ipaddresses, *i.virtual_ipaddresses_excluded)
    ]
    assert configured_vips(CONFIG) == expected


def test_anchors_and_merge_keys_inside_vrrp() -> None:
    text = textwrap.dedent(
        """\
        vrrp:
          instances:
            - &base {name: A, interface: eth1, vrid: 1, virtual_ipaddresses: [10.1.0.1/24]}
            - {<<: *base, name: B, vrid: 2, virtual_ipaddresses: [10.2.0.1/24]}
        """
    )
    assert _vips(text) == [("A", "eth1", "10.1.0.1/24"), ("B", "eth1", "10.2.0.1/24")]


def test_vrrp_after_the_services_is_read_too() -> None:
    services = "".join(f"    - {{address: 10.9.0.{i}, port: 80, reals: []}}\n" for i in range(50))
    text = f"ipvs:\n  services:\n{services}vrrp:\n  instances: [{{name: A, interface: e, vrid: 1, virtual_ipaddresses: [10.1.0.1/24]}}]\n"  # noqa: E501
    assert _vips(text) == [("A", "e", "10.1.0.1/24")]


def test_stops_after_vrrp_when_the_rest_cannot_hold_it() -> None:
    # The services are not parsed (a 10,000 x 4 config is not read twice):
    # even broken YAML there does not matter (the daemon's load reports it).
    text = CONFIG.replace("  services: []", "  services: [unclosed")
    assert len(_vips(text)) == 5


def test_no_vrrp_no_vips() -> None:
    assert _vips("ipvs: {services: []}\n") == []
    assert _vips("vrrp: {instances: []}\n") == []


@pytest.mark.parametrize(
    "text",
    [
        "vrrp: {instances: []}\nvrrp: {instances: []}\n",  # invalid: which one would run?
        "- vrrp\n",
        "vrrp: {instances: [{name: A, interface: 3, virtual_ipaddresses: [10.0.0.1]}]}\n",
        "vrrp: {instances: [{name: A, interface: e, priority: true, virtual_ipaddresses: []}]}\n",
        "vrrp: {instances: [{name: A, interface: e, virtual_ipaddresses: [not-an-ip]}]}\n",
        "vrrp: {instances: [{name: A, interface: e, virtual_ipaddresses: [{dev: e}]}]}\n",
        "vrrp: {instances: [{name: A, virtual_ipaddresses: [10.0.0.1]}]}\n",
        "x: &a [10.0.0.1]\nvrrp: {instances: [{name: A, interface: e, virtual_ipaddresses: *a}]}\n",
        "vrrp: [unclosed\n",
    ],
)
def test_what_the_minimal_read_is_not_sure_of_removes_nothing(text: str) -> None:
    with pytest.raises(Unreadable):
        configured_vips(text)


def test_begin_without_a_config_file_takes_the_lock_and_removes_nothing(tmp_path: Path) -> None:
    start = begin(tmp_path / "missing.yaml", runtime_dir=tmp_path / "run")
    try:
        assert start.error is None
        assert start.removed == []
        assert start.skipped == ""  # the daemon's load reports the missing file
        second = begin(tmp_path / "missing.yaml", runtime_dir=tmp_path / "run")
        assert second.error is not None  # the lock is held: nothing else happens
        assert "already running" in str(second.error)
    finally:
        start.lock.release()


def test_stale_vip_keeps_the_prefix_written() -> None:
    (vip,) = configured_vips(
        "vrrp: {instances: [{name: A, interface: e, virtual_ipaddresses: [10.0.0.1/16]}]}\n"
    )
    assert vip.address == ip_interface("10.0.0.1/16")


def test_a_config_without_vrrp_is_not_parsed() -> None:
    assert _vips("ipvs: {services: [unclosed\n") == []


def test_vrrp_after_a_long_section_is_left_to_startup() -> None:
    # Parsing 10,000 services twice would cost more than the early removal saves.
    services = "".join(
        f"    - {{address: 10.9.{i // 250}.{i % 250}, port: 80}}\n" for i in range(4000)
    )
    text = f"ipvs:\n  services:\n{services}vrrp:\n  instances: []\n"
    with pytest.raises(Unreadable, match="after the services"):
        configured_vips(text)


def test_the_word_vrrp_further_down_is_not_a_second_key() -> None:
    text = CONFIG.replace("  services: []", "  services: []  # see the vrrp section above")
    assert len(_vips(text)) == 5


# --- the advert sockets opened early (ipvsd.vrrp.prelisten) ----------------------------------

LISTEN = """\
vrrp:
  instances:
    - {name: A, interface: eth1, vrid: 1, virtual_ipaddresses: [192.168.1.200/24]}
    - {name: B, interface: eth1, vrid: 2, virtual_ipaddresses: [192.168.1.201/24]}
    - name: C
      interface: eth1
      vrid: 3
      version: 3
      virtual_ipaddresses: ["fe80::1/64", "2001:db8::1"]
    - name: D
      interface: eth2
      vrid: 4
      unicast_peers: [10.0.0.2]
      virtual_ipaddresses: [{address: 10.0.0.100/24, dev: eth3}]
    - {name: E, interface: eth1, vrid: 5, vmac: true, virtual_ipaddresses: [192.168.1.205/24]}
    - {name: F, interface: eth4, vrid: 6, priority: 255, virtual_ipaddresses: [10.4.0.1/24]}
"""


def test_one_socket_per_interface_family_and_mode_neither_owner_nor_vmac(
    tmp_path: Path,
) -> None:
    expected = [
        ListenTarget("eth1", "ipv4", False),  # A and B share it
        ListenTarget("eth1", "ipv6", False),  # the family is the first VIP's
        ListenTarget("eth2", "ipv4", True),  # on the instance's interface, not the VIP's dev
    ]
    assert listen_targets(LISTEN) == expected
    path = tmp_path / "ipvsd.yaml"
    path.write_text(LISTEN)
    config = load_config(path)
    assert expected == list(
        dict.fromkeys(
            ListenTarget(i.advert_interface, i.family, bool(i.unicast_peers))
            for i in config.vrrp.instances
            if i.priority != 255 and not i.vmac
        )
    )


def test_begin_opens_nothing_on_interfaces_that_do_not_exist(tmp_path: Path) -> None:
    """(The sockets themselves: tests/netns/test_vrrp_prelisten.py.)"""
    path = tmp_path / "ipvsd.yaml"
    path.write_text(LISTEN.replace("eth", "nosuch"))
    start = begin(path, runtime_dir=tmp_path / "run")
    try:
        assert start.error is None
        assert start.listening == []
    finally:
        start.lock.release()


def test_an_instance_it_cannot_read_opens_nothing_early() -> None:
    with pytest.raises(Unreadable):
        listen_targets("vrrp:\n  instances:\n    - {interface: eth1, virtual_ipaddresses: [x]}\n")
