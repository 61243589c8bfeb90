"""Per-service fields of issue 13: quorum, hysteresis, quorum hooks, sorry server inhibit and
forward, alpha, omega, ha_suspend, service groups; each problem at its PATH:LINE."""

from __future__ import annotations

import pytest

from ipvsd.model import ForwardMethod
from tests.unit.test_config import _issues, _only, _parse


def test_quorum_fields_are_read() -> None:
    config = _parse(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              quorum: 3
              hysteresis: 1
              quorum_up: [/usr/local/bin/up, web]
              quorum_down: [/usr/local/bin/down]
              sorry_server: {address: 192.168.1.99, inhibit: true, forward: dr}
              reals: [{address: 192.168.1.30}]
        """
    )
    service = config.ipvs.services[0]
    assert (service.quorum, service.hysteresis) == (3, 1)
    assert service.quorum_up == ("/usr/local/bin/up", "web")
    assert service.quorum_down == ("/usr/local/bin/down",)
    assert service.sorry_server is not None
    assert service.sorry_server.inhibit
    assert service.sorry_server.forward is ForwardMethod.DR


def test_defaults_keep_the_behaviour_before_quorum() -> None:
    service = _parse("ipvs:\n  services:\n    - {address: 192.168.1.200, port: 80}\n")
    only = service.ipvs.services[0]
    assert (only.quorum, only.hysteresis, only.quorum_up, only.quorum_down) == (None, 0, None, None)


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ("quorum: 0", "quorum", "must be between 1 and 4294967295"),
        ("quorum: 2, hysteresis: -1", "hysteresis", "must be between 0 and 4294967295"),
        ("quorum_down: []", "quorum_down", "must not be empty"),
        ("quorum_up: ['']", "quorum_up.0", "must not be empty"),
    ],
)
def test_quorum_ranges(fields: str, field: str, fragment: str) -> None:
    text = f"ipvs:\n  services:\n    - {{address: 192.168.1.200, port: 80, {fields}}}\n"
    _only(text, 3, f"ipvs.services.0.{field}", fragment)


def test_hysteresis_needs_quorum() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              hysteresis: 2
        """,
        5,
        "ipvs.services.0.hysteresis",
        "only with quorum",
    )


def test_sorry_server_forward_is_a_forward_method() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server:
                address: 192.168.1.99
                forward: masq
        """,
        7,
        "ipvs.services.0.sorry_server.forward",
        "unknown forward method 'masq'",
    )


def test_sorry_server_forward_dr_cannot_change_the_port() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server: {address: 192.168.1.99, port: 8080, forward: dr}
        """,
        5,
        "ipvs.services.0.sorry_server.port",
        "forward dr cannot change the port",
    )


def test_sorry_server_cannot_be_a_real() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server: {address: 192.168.1.30}
              reals: [{address: 192.168.1.30}]
        """,
        5,
        "ipvs.services.0.sorry_server",
        "is also a real of the service",
    )


GROUPED = """
ipvs:
  service_groups:
    - name: web
      members: ["192.168.1.200:80", "10.0.0.1-3:8080", "[2001:db8::1]:80", "fwmark:7"]
  services:
    - group: web
      scheduler: rr
      reals: [{address: 10.0.1.1, port: 80, forward: tunnel}]
"""


def test_a_group_service_is_expanded_into_one_service_per_member() -> None:
    config = _parse(GROUPED)
    keys = [str(service.key) for service in config.ipvs.services]
    assert len(keys) == 6
    services = config.ipvs.services
    assert [(str(s.address), s.port) for s in services[:4]] == [
        ("192.168.1.200", 80),
        ("10.0.0.1", 8080),
        ("10.0.0.2", 8080),
        ("10.0.0.3", 8080),
    ]
    assert (str(services[4].address), services[4].port) == ("2001:db8::1", 80)
    assert services[5].fwmark == 7
    assert {s.group for s in services} == {"web"}
    assert {s.scheduler for s in services} == {"rr"}


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        ("10.0.0.1", "is not ADDRESS:PORT, A.B.C.D-E:PORT or fwmark:N"),
        ("10.0.0.5-3:80", "the range's end must be a last octet from 5 to 255"),
        ("10.0.0.1-300:80", "the range's end must be a last octet from 1 to 255"),
        ("fwmark:0", "the fwmark must be 1..4294967295"),
        ("10.0.0.1:0", "the port must be 1..65535"),
    ],
)
def test_a_bad_member_is_reported_at_its_line(member: str, fragment: str) -> None:
    text = f"""
    ipvs:
      service_groups:
        - name: web
          members:
            - 192.168.1.200:80
            - "{member}"
    """
    _only(text, 6, "ipvs.service_groups.0.members.1", fragment)


def test_an_empty_group_is_reported() -> None:
    _only(
        "ipvs:\n  service_groups:\n    - {name: web, members: []}\n",
        3,
        "ipvs.service_groups.0.members",
        "must not be empty",
    )


def test_overlapping_members_are_reported_on_the_second() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - name: web
              members:
                - 10.0.0.1-10:80
                - 10.0.0.5:80
        """,
        6,
        "ipvs.service_groups.0.members.1",
        "overlaps an earlier member: 10.0.0.5 port 80 (line 5)",
    )


def test_an_unknown_group_is_reported() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1:80"]}
          services:
            - group: wbe
        """,
        5,
        "ipvs.services.0.group",
        "unknown service group 'wbe' (web)",
    )


def test_group_and_address_cannot_both_be_set() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1:80"]}
          services:
            - address: 10.0.0.9
              port: 80
              group: web
        """,
        7,
        "ipvs.services.0.group",
        "cannot be combined with address/port/fwmark",
    )


def test_a_member_that_is_also_a_service_is_a_duplicate() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1-2:80"]}
          services:
            - {address: 10.0.0.2, port: 80}
            - group: web
        """,
        6,
        "ipvs.services.1.group",
        "duplicate service",
    )


def test_duplicate_group_names() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1:80"]}
            - {name: web, members: ["10.0.0.2:80"]}
        """,
        4,
        "ipvs.service_groups.1.name",
        "duplicate service group name 'web' (first on line 3)",
    )


def test_the_reals_of_a_group_are_checked_once_against_its_first_member() -> None:
    _only(
        """
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1:80", "10.0.0.2:80"]}
          services:
            - group: web
              reals: [{address: "2001:db8::5"}]
        """,
        6,
        "ipvs.services.0.reals.0.address",
        "2001:db8::5 is IPv6 but the service is IPv4",
    )


TRACKING = """
vrrp:
  instances:
    - name: VI_1
      interface: eth1
      vrid: 51
      virtual_ipaddresses: [192.168.1.200/24]
      track_services:
        - {{service: "{service}", weight: -20}}
        - {{service: "udp/192.168.1.200:53"}}
ipvs:
  services:
    - {{address: 192.168.1.200, port: 80}}
    - {{address: 192.168.1.200, port: 53, protocol: udp}}
"""


def test_track_services_are_read() -> None:
    instance = _parse(TRACKING.format(service="192.168.1.200:80")).vrrp.instances[0]
    assert [(t.service, t.weight) for t in instance.track_services] == [
        ("192.168.1.200:80", -20),
        ("udp/192.168.1.200:53", 0),
    ]


@pytest.mark.parametrize(
    ("service", "fragment"),
    [
        ("192.168.1.200:81", "no service 192.168.1.200:81 in ipvs.services"),
        ("udp/192.168.1.200:53", "udp/192.168.1.200:53 is already tracked (line 8)"),
        ("web", "'web' is not ADDRESS:PORT, udp/ADDRESS:PORT"),
    ],
)
def test_a_tracked_service_must_be_configured_once(service: str, fragment: str) -> None:
    found = _issues(TRACKING.format(service=service))
    assert [(i.line, i.field) for i in found] == [
        (8 if service != "udp/192.168.1.200:53" else 9, found[0].field)
    ], found
    assert found[0].field.startswith("vrrp.instances.0.track_services.")
    assert fragment in found[0].message


SUSPENDED = """
vrrp:
  instances:
    - {{name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}}
ipvs:
  services:
    - {{{service}, ha_suspend: true}}
"""


def test_ha_suspend_follows_the_instance_of_the_service_address() -> None:
    config = _parse(SUSPENDED.format(service="address: 192.168.1.200, port: 80"))
    assert config.ipvs.services[0].ha_suspend


@pytest.mark.parametrize(
    ("service", "fragment"),
    [
        ("address: 192.168.1.201, port: 80", "192.168.1.201 is no VIP of vrrp.instances"),
        ("fwmark: 7", "a fwmark service has no address whose VRRP instance to follow"),
    ],
)
def test_ha_suspend_needs_a_vip(service: str, fragment: str) -> None:
    _only(SUSPENDED.format(service=service), 6, "ipvs.services.0.ha_suspend", fragment)


def test_ha_suspend_with_a_weight_0_track_of_its_own_instance_is_a_deadlock() -> None:
    _only(
        """
        vrrp:
          instances:
            - name: VI_1
              interface: eth1
              vrid: 51
              virtual_ipaddresses: [192.168.1.200/24]
              track_services: [{service: "192.168.1.200:80"}]
        ipvs:
          services:
            - {address: 192.168.1.200, port: 80, ha_suspend: true}
        """,
        7,
        "vrrp.instances.0.track_services.0.weight",
        "it would never leave FAULT",
    )
