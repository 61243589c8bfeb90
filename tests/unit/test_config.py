"""The configuration loader: every error class at its exact line and field, plus the model.

Inline YAML goes through `_parse`, which dedents it and drops the newline after
the opening quotes: line 1 is the first line of the string as written here.
"""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Interface, IPv6Address
from pathlib import Path

import pytest
import yaml

from ipvsd.config import (
    CheckType,
    Config,
    OnFailure,
    desired_table,
    load_config,
    merge_check,
    parse_config,
    yaml_lines,
)
from ipvsd.config.schema import config_schema
from ipvsd.errors import ConfigError, ConfigIssue
from ipvsd.model import (
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    TunnelChecksum,
    TunnelType,
    fwmark_key,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "config"

VIP = IPv4Address("192.168.1.200")
WEB = ServiceKey(Family.INET, Protocol.TCP, VIP, 80)


def _parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text).removeprefix("\n"), "t.yaml", default_node_name="n1")


def _issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    return list(info.value.issues)


def _only(text: str, line: int, field: str, fragment: str) -> None:
    """`text` has exactly one problem, at `line` / `field`, whose message holds `fragment`."""
    found = _issues(text)
    assert [(issue.line, issue.field) for issue in found] == [(line, field)], found
    assert fragment in found[0].message, found[0].message


# --- YAML level -------------------------------------------------------------------------


def test_yaml_syntax_error_has_the_line_of_the_mark() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: [80
        metrics: {}
        """,
        5,
        "(yaml)",
        "YAML syntax",
    )


def test_duplicate_yaml_key_is_reported_on_the_second_key() -> None:
    _only(
        """
        node_name: a
        metrics:
          listen: "127.0.0.1:1"
          listen: "127.0.0.1:2"
        """,
        4,
        "metrics.listen",
        "duplicate key 'listen' (first on line 3)",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not an empty file"),
        ("# nothing\n", "not an empty file"),
        ("- a\n- b\n", "not a list"),
        ("just text\n", "not the string 'just text'"),
    ],
)
def test_top_level_must_be_a_mapping(text: str, fragment: str) -> None:
    _only(text, 1, "(top level)", fragment)


def test_merge_keys_and_anchors_work() -> None:
    config = _parse(
        """
        ipvs:
          services:
            - &web
              address: 192.168.1.200
              port: 80
              scheduler: rr
              reals: [{address: 192.168.1.30}]
            - <<: *web
              port: 443
        """
    )
    second = config.ipvs.services[1]
    assert (second.port, second.scheduler, second.reals[0].address) == (
        443,
        "rr",
        IPv4Address("192.168.1.30"),
    )


def test_an_error_in_a_merged_value_takes_the_line_of_the_anchor() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - &web
              address: 192.168.1.200
              port: 80
              scheduler: nope
            - <<: *web
              port: 443
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (6, "ipvs.services.0.scheduler"),
        (6, "ipvs.services.1.scheduler"),
    ]


def test_keys_are_their_source_text() -> None:
    _only("yes: 1\n", 1, "yes", "unknown key 'yes'")


def test_unreadable_tag_is_reported_once() -> None:
    _only("metrics: {}\nnode_name: !custom director1\n", 2, "node_name", "cannot read value")


def test_non_scalar_key() -> None:
    _only("? [a, b]\n: 1\n", 1, "(top level)", "mapping keys must be plain strings")


def test_recursive_alias_is_an_error_not_a_hang() -> None:
    found = _issues("node_name: &x [*x]\n")
    assert ("node_name.0", "alias refers to itself") in [(i.field, i.message) for i in found]


def test_alias_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_lines, "MAX_NODES", 50)
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    _only(text, 1, "b.4.2", "too many nodes")  # the line of the anchored list


def test_reader_error_has_its_line() -> None:
    _only("node_name: a\nmetrics: \x01\n", 2, "(yaml)", "special characters are not allowed")


# --- unknown keys and types -------------------------------------------------------------


def test_unknown_key_names_the_key_and_suggests_the_right_one() -> None:
    _only(
        """
        vrrp:
          instances:
            - name: VI_1
              interface: eth1
              vrid: 51
              prority: 100
              virtual_ipaddresses: [192.168.1.200/24]
        """,
        6,
        "vrrp.instances.0.prority",
        "unknown key 'prority' (did you mean 'priority'?)",
    )


def test_unknown_key_at_top_level_and_in_a_real_check() -> None:
    found = _issues(
        """
        nodename: x
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              reals:
                - address: 192.168.1.30
                  check: {type: tcp, intervall: 3}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (1, "nodename", "unknown key 'nodename' (did you mean 'node_name'?)"),
        (
            8,
            "ipvs.services.0.reals.0.check.intervall",
            "unknown key 'intervall' (did you mean 'interval'?)",
        ),
    ]


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        (3, "ipvs.services.0.port", "must be an integer, not the string '80'"),
        (4, "ipvs.services.0.persistence_timeout", "must be an integer, not 1.5"),
        (5, "ipvs.services.0.reals", "must be a list, not a mapping"),
        (6, "ipvs.cleanup_on_exit", "must be true or false, not the string 'yes'"),
        (7, "metrics", "must be a mapping, not a list"),
    ],
)
def test_wrong_types(line: int, field: str, fragment: str) -> None:
    found = _issues(
        """
        ipvs:
          services:
            - {address: 192.168.1.200, port: "80",
               persistence_timeout: 1.5,
               reals: {address: 192.168.1.30}}
          cleanup_on_exit: "yes"
        metrics: []
        """
    )
    matching = [issue for issue in found if issue.field == field]
    assert [issue.line for issue in matching] == [line], found
    assert fragment in matching[0].message


def test_missing_required_field_takes_the_line_of_its_mapping() -> None:
    _only(
        """
        vrrp:
          instances:
            - name: VI_1
              interface: eth1
              virtual_ipaddresses: [192.168.1.200/24]
        """,
        3,
        "vrrp.instances.0.vrid",
        "is required",
    )


# --- ranges -----------------------------------------------------------------------------

_INSTANCE = """
vrrp:
  instances:
    - name: VI_1
      interface: eth1
      vrid: {vrid}
      priority: {priority}
      virtual_ipaddresses: [192.168.1.200/24]
"""


@pytest.mark.parametrize(
    ("vrid", "priority", "line", "field"),
    [
        (0, 100, 5, "vrrp.instances.0.vrid"),
        (256, 100, 5, "vrrp.instances.0.vrid"),
        (51, 0, 6, "vrrp.instances.0.priority"),
        (51, 256, 6, "vrrp.instances.0.priority"),
    ],
)
def test_vrid_and_priority_ranges(vrid: int, priority: int, line: int, field: str) -> None:
    _only(_INSTANCE.format(vrid=vrid, priority=priority), line, field, "must be between 1 and 255")


@pytest.mark.parametrize(
    ("service", "field", "fragment"),
    [
        ("port: 0", "ipvs.services.0.port", "must be between 1 and 65535"),
        ("port: 65536", "ipvs.services.0.port", "must be between 1 and 65535"),
        ("fwmark: 0", "ipvs.services.0.fwmark", "must be between 1 and 4294967295"),
        ("port: 80, persistence_timeout: -1", "ipvs.services.0.persistence_timeout", "between 0"),
    ],
)
def test_service_ranges(service: str, field: str, fragment: str) -> None:
    address = "" if "fwmark" in service else "address: 192.168.1.200, "
    _only(f"ipvs:\n  services:\n    - {{{address}{service}}}\n", 3, field, fragment)


@pytest.mark.parametrize(
    ("real", "field", "fragment"),
    [
        ("weight: 65536", "weight", "must be between 0 and 65535"),
        ("weight: -1", "weight", "must be between 0 and 65535"),
        ("port: 70000", "port", "must be between 0 and 65535"),
        ("upper_threshold: -5", "upper_threshold", "must be between 0 and 4294967295"),
    ],
)
def test_real_ranges(real: str, field: str, fragment: str) -> None:
    text = f"""
    ipvs:
      services:
        - address: 192.168.1.200
          port: 80
          reals:
            - address: 192.168.1.30
            - {{address: 192.168.1.40, {real}}}
    """
    _only(text, 7, f"ipvs.services.0.reals.1.{field}", fragment)


def test_auth_pass_is_at_most_8_characters() -> None:
    _only(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, auth_pass: "123456789",
               virtual_ipaddresses: [192.168.1.200]}
        """,
        3,
        "vrrp.instances.0.auth_pass",
        "1 to 8 characters",
    )


# --- addresses --------------------------------------------------------------------------


def test_malformed_real_address() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              reals:
                - address: 192.168.1.300
                  port: 80
        """,
        6,
        "ipvs.services.0.reals.0.address",
        "'192.168.1.300' is not a valid IPv4 or IPv6 address",
    )


def test_malformed_vrrp_addresses() -> None:
    found = _issues(
        """
        vrrp:
          instances:
            - name: VI_1
              interface: eth1
              vrid: 51
              unicast_peers: [192.168.1.20, "2001:db8::1::"]
              unicast_src: 192.168.1.1.1
              virtual_ipaddresses:
                - 192.168.1.200/24
                - 192.168.1.201/33
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (6, "vrrp.instances.0.unicast_peers.1"),
        (7, "vrrp.instances.0.unicast_src"),
        (10, "vrrp.instances.0.virtual_ipaddresses.1"),
    ]
    assert "'2001:db8::1::' is not a valid IPv4 or IPv6 address" in found[0].message
    assert "'192.168.1.201/33' is not a valid IP address or ADDRESS/PREFIX" in found[2].message


def test_malformed_ipv6_service_address_and_metrics_listen() -> None:
    found = _issues(
        """
        metrics: {listen: "127.0.0.1"}
        ipvs:
          services:
            - {address: "2001:db8::zz", port: 80}
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (1, "metrics.listen"),
        (4, "ipvs.services.0.address"),
    ]
    assert "is not ADDRESS:PORT" in found[0].message
    assert "'2001:db8::zz' is not a valid IPv4 or IPv6 address" in found[1].message


# --- service shape, duplicates, families --------------------------------------------------


def test_fwmark_with_address_is_reported_on_the_fwmark_line() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              fwmark: 3
        """,
        5,
        "ipvs.services.0.fwmark",
        "cannot be combined with address/port",
    )


def test_service_with_neither_address_nor_fwmark() -> None:
    _only(
        """
        ipvs:
          services:
            - scheduler: rr
        """,
        3,
        "ipvs.services.0",
        "needs address and port, or fwmark",
    )


def test_service_address_without_port() -> None:
    _only(
        "ipvs:\n  services:\n    - address: 192.168.1.200\n",
        3,
        "ipvs.services.0.port",
        "is required with address",
    )


def test_duplicate_service_names_the_first_ones_line() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
            - address: 192.168.1.200
              port: 80
              protocol: udp
            - address: 192.168.1.200
              port: 80
        """,
        8,
        "ipvs.services.2",
        "duplicate service 192.168.1.200:80 (first on line 3)",
    )


def test_duplicate_fwmark_service_whatever_the_protocol() -> None:
    _only(
        """
        ipvs:
          services:
            - {fwmark: 7}
            - {fwmark: 7, family: ipv6}
            - {fwmark: 7, protocol: tcp}
        """,
        5,
        "ipvs.services.2",
        "duplicate service fwmark:7 (first on line 3)",
    )


def test_fwmark_service_rejects_a_non_tcp_protocol() -> None:
    _only(
        "ipvs:\n  services:\n    - fwmark: 7\n      protocol: udp\n",
        4,
        "ipvs.services.0.protocol",
        "does not apply to fwmark services",
    )


def test_family_must_match_the_service_address() -> None:
    _only(
        "ipvs:\n  services:\n    - {address: 192.168.1.200, port: 80, family: ipv6}\n",
        3,
        "ipvs.services.0.family",
        "IPv6 does not match address 192.168.1.200",
    )


def test_duplicate_reals_port_0_is_the_service_port() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              reals:
                - {address: 192.168.1.30, port: 80}
                - {address: 192.168.1.40, port: 80}
                - {address: 192.168.1.30}
        """,
        8,
        "ipvs.services.0.reals.2",
        "duplicate real 192.168.1.30:80 (first on line 6)",
    )


def test_real_family_must_match_unless_tunnel() -> None:
    text = """
    ipvs:
      services:
        - address: 192.168.1.200
          port: 80
          reals:
            - {address: "2001:db8::30", port: 80, forward: FORWARD}
    """
    _only(
        text.replace("FORWARD", "dr"),
        6,
        "ipvs.services.0.reals.0.address",
        "2001:db8::30 is IPv6 but the service is IPv4 (only forward: tunnel",
    )
    config = _parse(text.replace("FORWARD", "tunnel"))
    assert config.ipvs.services[0].reals[0].address == IPv6Address("2001:db8::30")


def test_dr_cannot_change_the_port() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              forward: dr
              reals:
                - {address: 192.168.1.30, port: 80}
                - {address: 192.168.1.40, port: 8080}
                - {address: 192.168.1.50, port: 8080, forward: nat}
        """,
        8,
        "ipvs.services.0.reals.1.port",
        "forward dr cannot change the port",
    )


@pytest.mark.parametrize(
    ("service", "fragment"),
    [
        ("address: 192.168.1.200, port: 80, persistence_netmask: 33", "1 and 32 for an IPv4"),
        ("fwmark: 1, family: ipv6, persistence_netmask: 0", "1 and 128 for an IPv6"),
    ],
)
def test_persistence_netmask_range_depends_on_the_family(service: str, fragment: str) -> None:
    text = f"ipvs:\n  services:\n    - {{{service}}}\n"
    _only(text, 3, "ipvs.services.0.persistence_netmask", fragment)


def test_unknown_scheduler_and_forward_method() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              scheduler: roundrobin
              scheduler_flags: [sh-port, sh-prot]
              forward: direct
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (5, "ipvs.services.0.scheduler"),
        (6, "ipvs.services.0.scheduler_flags.1"),
        (7, "ipvs.services.0.forward"),
    ]
    assert "unknown scheduler 'roundrobin' (expected one of: rr, wrr" in found[0].message
    assert "unknown scheduler flag 'sh-prot'" in found[1].message
    assert "unknown forward method 'direct' (expected one of: nat, dr, tunnel)" in found[2].message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("family: 2", "unknown family 2 (expected one of: ipv4, ipv6)"),
        ("protocol: 6", "unknown protocol 6 (expected one of: tcp, udp, sctp)"),
    ],
)
def test_a_number_is_not_a_name_from_a_fixed_set(line: str, expected: str) -> None:
    """The kernel's number of a family or protocol equals its enum member (an IntEnum):
    it was taken for the member itself, and the loader crashed on it (found by comparing
    the pydantic and strict loaders on mutated configs)."""
    _only(
        f"""
        ipvs:
          services:
            - fwmark: 2
              {line}
        """,
        4,
        f"ipvs.services.0.{line.split(':')[0]}",
        expected,
    )


# --- checks -----------------------------------------------------------------------------


def test_exec_check_needs_a_command_reported_once() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              check:
                type: exec
              reals:
                - {address: 192.168.1.30, check: {interval: 5}}
        """,
        5,
        "ipvs.services.0.check.command",
        "is required for type exec",
    )


def test_dynamic_weight_is_only_for_exec_checks() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              scheduler: wlc
              check: {type: http}
              reals:
                - {address: 192.168.1.30, check: {dynamic_weight: true}}
        """,
        8,
        "ipvs.services.0.reals.0.check.dynamic_weight",
        "only for type exec (this check is http)",
    )


def test_udp_fields_are_only_for_udp_checks_and_one_payload() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 53
              protocol: udp
              check: {type: udp, payload: "x", payload_hex: "78"}
              reals:
                - {address: 192.168.1.30, check: {type: tcp, require_reply: true}}
                - {address: 192.168.1.40, check: {payload_hex: "7g"}}
                - {address: 192.168.1.50, check: {type: exec, command: [/bin/true]}}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (6, "ipvs.services.0.check.payload_hex", "cannot be combined with payload (use one)"),
        (8, "ipvs.services.0.reals.0.check.require_reply", "only for type udp (this check is tcp)"),
        (9, "ipvs.services.0.reals.1.check.payload_hex",
         "must be hex digits, two per byte (e.g. 0a1bff)"),
    ]  # fmt: skip


def test_dns_fields_are_checked() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 53
              scheduler: wrr
              protocol: udp
              check: {type: dns, query_name: w.test, query_type: A, expected_answer: 10.0.0.1}
              reals:
                - {address: 192.168.1.30, check: {query_type: MAILA}}
                - {address: 192.168.1.40, check: {type: tcp, expected_answer: "::1"}}
                - {address: 192.168.1.50, check: {query_name: "a..b"}}
                - {address: 192.168.1.60, check: {type: exec, command: [/bin/true]}}
        """
    )
    assert sorted((i.line, i.field, i.message) for i in found) == [
        (9, "ipvs.services.0.reals.0.check.query_type",
         "unknown DNS record type 'MAILA' (expected one of: A, AAAA, NS, CNAME, SOA, PTR, MX, "
         "TXT, SRV)"),
        (10, "ipvs.services.0.reals.1.check.expected_answer",
         "only for type dns (this check is tcp)"),
        (11, "ipvs.services.0.reals.2.check.query_name",
         "must be '.' or a DNS name: ASCII labels of 1 to 63 characters joined by dots, "
         "at most 253 in all"),
    ]  # fmt: skip


def test_a_dns_expected_answer_matches_the_query_type() -> None:
    _only(
        """
        ipvs:
          services:
            - fwmark: 53
              check: {type: dns, query_name: w.test, query_type: AAAA, expected_answer: 10.0.0.1}
              reals: [{address: 192.168.1.30, port: 53}]
        """,
        4,
        "ipvs.services.0.check.expected_answer",
        "an IPv4 address needs query_type A (not AAAA)",
    )


def test_real_check_override_is_merged_and_validated() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              reals:
                - {address: 192.168.1.30, check: {interval: 5}}
                - {address: 192.168.1.40, check: {type: exec}}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (
            6,
            "ipvs.services.0.reals.0.check.type",
            "is required (the service has no check to inherit it from)",
        ),
        (7, "ipvs.services.0.reals.1.check.command", "is required for type exec"),
    ]


def test_port_check_of_a_fwmark_real_needs_a_port() -> None:
    _only(
        """
        ipvs:
          services:
            - fwmark: 1
              check: {type: tcp}
              reals:
                - {address: 192.168.1.30, check: {port: 80}}
                - {address: 192.168.1.40}
        """,
        7,
        "ipvs.services.0.reals.1.port",
        "the tcp check needs check.port",
    )


def test_merge_check() -> None:
    config = _parse(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              check: {type: http, path: /health, interval: 3}
              reals:
                - {address: 192.168.1.30, check: {path: /other, expected_status: [204]}}
                - {address: 192.168.1.40}
        """
    )
    service = config.ipvs.services[0]
    first = service.check_for(service.reals[0])
    assert first is not None
    assert (first.type, first.path, first.interval, first.expected_status) == (
        CheckType.HTTP,
        "/other",
        3.0,
        (204,),
    )
    assert service.check_for(service.reals[1]) == service.check
    assert merge_check(None, None) is None


# --- VRRP -------------------------------------------------------------------------------


def test_duplicate_instance_names() -> None:
    _only(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]}
            - {name: VI_1, interface: eth1, vrid: 52, virtual_ipaddresses: [192.168.1.201]}
        """,
        4,
        "vrrp.instances.1.name",
        "duplicate instance name 'VI_1' (first on line 3)",
    )


def test_same_vrid_on_the_same_interface() -> None:
    _only(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]}
            - {name: VI_2, interface: eth2, vrid: 51, virtual_ipaddresses: [192.168.2.200]}
            - name: VI_3
              interface: eth1
              vrid: 51
              virtual_ipaddresses: [192.168.1.201]
        """,
        7,
        "vrrp.instances.2.vrid",
        "vrid 51 on eth1 is already IPv4 instance 'VI_1' (line 3)",
    )


def test_the_same_vrid_in_each_family_is_two_virtual_routers() -> None:
    """RFC 5798 §5.2.3: IPv4 and IPv6 VRIDs are separate spaces (keepalived too)."""
    text = """
        vrrp:
          instances:
            - {name: V4, interface: eth1, vrid: 51, version: 3, virtual_ipaddresses: [192.0.2.1]}
            - {name: V6, interface: eth1, vrid: 51, version: 3, virtual_ipaddresses: ["fe80::1"]}
            - name: V6_AGAIN
              interface: eth1
              vrid: 51
              version: 3
              virtual_ipaddresses: ["fe80::2"]
        """
    _only(
        text, 7, "vrrp.instances.2.vrid", "vrid 51 on eth1 is already IPv6 instance 'V6' (line 4)"
    )


def test_a_vip_belongs_to_one_instance() -> None:
    _only(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}
            - name: VI_2
              interface: eth1
              vrid: 52
              virtual_ipaddresses:
                - 192.168.1.254/24
                - 192.168.1.200/32
        """,
        9,
        "vrrp.instances.1.virtual_ipaddresses.1",
        "192.168.1.200 is already a VIP of instance 'VI_1' (line 3)",
    )


def test_instance_needs_a_vip() -> None:
    _only(
        "vrrp:\n  instances:\n    - {name: A, interface: eth1, vrid: 1, virtual_ipaddresses: []}\n",
        3,
        "vrrp.instances.0.virtual_ipaddresses",
        "must not be empty",
    )


def test_sync_group_and_sync_daemon_name_known_instances() -> None:
    found = _issues(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]}
            - {name: VI_2, interface: eth2, vrid: 52, virtual_ipaddresses: [10.0.0.254]}
          sync_groups:
            - name: G1
              instances: [VI_1, VI_3]
            - name: G2
              instances:
                - VI_1
        ipvs:
          sync_daemon: {vrrp_instance: VI_9}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (7, "vrrp.sync_groups.0.instances.1", "unknown VRRP instance 'VI_3' (known: VI_1, VI_2)"),
        (
            10,
            "vrrp.sync_groups.1.instances.0",
            "instance 'VI_1' is already in sync group 'G1' (line 7)",
        ),
        (12, "ipvs.sync_daemon.vrrp_instance", "unknown VRRP instance 'VI_9' (known: VI_1, VI_2)"),
    ]


def test_instance_with_an_unrelated_error_is_still_a_known_name() -> None:
    _only(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200],
               priority: 300}
          sync_groups:
            - {name: G1, instances: [VI_1]}
        """,
        4,
        "vrrp.instances.0.priority",
        "must be between 1 and 255",
    )


# --- values the kernel, the wire or the OS would refuse at run time ------------------------


def _vips(count: int) -> str:
    return ", ".join(f"10.{i // 250}.{i % 250}.1" for i in range(count))


def test_an_instance_has_at_most_255_vips() -> None:
    text = """
    vrrp:
      instances:
        - name: VI_1
          interface: eth1
          vrid: 51
          virtual_ipaddresses: [VIPS]
    """
    (instance,) = _parse(text.replace("VIPS", _vips(255))).vrrp.instances
    assert len(instance.virtual_ipaddresses) == 255
    _only(
        text.replace("VIPS", _vips(256)),
        6,
        "vrrp.instances.0.virtual_ipaddresses",
        "256 addresses: VRRPv2 carries at most 255 (count_ip is 8 bits); put the others in "
        "virtual_ipaddresses_excluded",
    )


_HTTP_CHECK = """
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      check:
        type: http
        FIELD: VALUE
"""


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"/a b"', "' ' cannot be sent in a request target: percent-encode it as %20"),
        ('"/café"', "'é' cannot be sent in a request target: percent-encode it as %C3%A9"),
        ('"/a\\tb"', "'\\t' cannot be sent in a request target: percent-encode it as %09"),
        ('"/a\\r\\nHost: evil"', "'\\r' cannot be sent in a request target"),
        ('"/a\\x7f"', "'\\x7f' cannot be sent in a request target"),
        ('"/a{b}"', "'{' cannot be sent in a request target: percent-encode it as %7B"),
        ('"/a#top"', "a fragment ('#top') is never sent to the server"),
        ('"/100%"', "'%' must start a percent-escape of two hex digits (%25 for '%' itself)"),
        ('"/%zz"', "'%' must start a percent-escape"),
        ("health", "must start with '/'"),
    ],
)
def test_http_path_must_be_a_request_target_h11_can_send(value: str, fragment: str) -> None:
    field = "ipvs.services.0.check.path"
    _only(_HTTP_CHECK.replace("FIELD", "path").replace("VALUE", value), 7, field, fragment)


@pytest.mark.parametrize(
    "path", ["/", "/healthz?full=1", "/a%20b", "/~u/x;v=1", "/a:b@c!$&'()*+,=", "/q?x=/y?z"]
)
def test_http_paths_that_are_fine(path: str) -> None:
    text = _HTTP_CHECK.replace("FIELD", "path").replace("VALUE", f'"{path}"')
    check = _parse(text).ipvs.services[0].check
    assert check is not None
    assert check.path == path


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"www example"', "'www example' is not a host name or IP address"),
        ('"a\\r\\nX-Evil: 1"', "'a\\r\\nX-Evil: 1' is not a host name or IP address"),
        ('"www.example.test:8080"', "no port: the check's port is added"),
        ('"[2001:db8::1]"', "write an IPv6 address without brackets"),
        ('"a..b"', "labels of 1-63 characters"),
        ('"bücher.example"', "is not ASCII: write it as 'xn--bcher-kva.example'"),
        ('"' + "a" * 64 + '.example"', "labels of 1-63 characters"),
    ],
)
def test_http_host_must_be_a_host_name_or_address(value: str, fragment: str) -> None:
    field = "ipvs.services.0.check.host"
    _only(_HTTP_CHECK.replace("FIELD", "host").replace("VALUE", value), 7, field, fragment)


@pytest.mark.parametrize(
    "host", ["www.example.test", "localhost", "_acme.example", "192.0.2.1", '"2001:db8::1"']
)
def test_http_hosts_that_are_fine(host: str) -> None:
    check = (
        _parse(_HTTP_CHECK.replace("FIELD", "host").replace("VALUE", host)).ipvs.services[0].check
    )
    assert check is not None
    assert check.host == host.strip('"')


def test_a_real_check_override_gets_the_same_http_rules() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              check: {type: http}
              reals:
                - {address: 192.168.1.30, check: {path: "/a b", host: "x y"}}
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (7, "ipvs.services.0.reals.0.check.path"),
        (7, "ipvs.services.0.reals.0.check.host"),
    ]


_DURATIONS = """
vrrp:
  instances:
    - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200],
       INSTANCE}
ipvs:
  IPVS
  services:
    - address: 192.168.1.200
      port: 80
      check: {type: tcp, CHECK}
      reals:
        - {address: 192.168.1.30, check: {REAL}}
"""


def _durations(instance: str = "", ipvs: str = "", check: str = "", real: str = "") -> str:
    text = _DURATIONS.replace("INSTANCE", instance or "priority: 100")
    text = text.replace("IPVS", ipvs or "cleanup_on_exit: false")
    return text.replace("CHECK", check or "rise: 2").replace("REAL", real or "fall: 3")


@pytest.mark.parametrize(
    ("where", "value", "line", "field", "fragment"),
    [
        ("check", "interval: 1.0e-9", 10, "ipvs.services.0.check.interval", "at least 0.1 seconds"),
        ("check", "interval: 0.05", 10, "ipvs.services.0.check.interval", "at least 0.1 seconds"),
        ("check", "timeout: 0.001", 10, "ipvs.services.0.check.timeout", "at least 0.01 seconds"),
        ("check", "retry_interval: 0", 10, "ipvs.services.0.check.retry_interval", "at least 0.1"),
        (
            "check",
            "interval: 2, retry_interval: 2.5",
            10,
            "ipvs.services.0.check.retry_interval",
            "2.5 s must not be above interval (2 s)",
        ),
        (
            "real",
            "retry_interval: 2.5",
            12,
            "ipvs.services.0.reals.0.check.retry_interval",
            "2.5 s must not be above interval (2 s)",
        ),
        ("check", "interval: .nan", 10, "ipvs.services.0.check.interval", "a finite number"),
        ("check", "timeout: .inf", 10, "ipvs.services.0.check.timeout", "a finite number"),
        (
            "real",
            "interval: 0.001",
            12,
            "ipvs.services.0.reals.0.check.interval",
            "at least 0.1 seconds",
        ),
        ("ipvs", "resync_interval: 1.0e-9", 6, "ipvs.resync_interval", "at least 1 second"),
        ("ipvs", "resync_interval: 0.5", 6, "ipvs.resync_interval", "at least 1 second"),
        ("ipvs", "resync_interval: .inf", 6, "ipvs.resync_interval", "a finite number"),
        ("instance", "preempt_delay: .nan", 4, "vrrp.instances.0.preempt_delay", "finite"),
        ("instance", "garp_delay: -1.0e-9", 4, "vrrp.instances.0.garp_delay", "at least 0"),
        ("instance", "garp_delay: .inf", 4, "vrrp.instances.0.garp_delay", "finite"),
        ("instance", "advert_int: 0", 4, "vrrp.instances.0.advert_int", "between 1 and 255"),
        ("instance", "garp_refresh: 0.5", 4, "vrrp.instances.0.garp_refresh", "0 (off) or"),
        ("instance", "garp_refresh: .nan", 4, "vrrp.instances.0.garp_refresh", "0 (off) or"),
        ("instance", "garp_refresh: 86401", 4, "vrrp.instances.0.garp_refresh", "and 86400"),
        ("instance", "dont_track_primary: 1", 4, "vrrp.instances.0.dont_track_primary", "true or"),
        ("instance", "notify_master: []", 4, "vrrp.instances.0.notify_master", "not be empty"),
        ("instance", "notify_stop: /bin/x", 4, "vrrp.instances.0.notify_stop", "list"),
    ],
)
def test_durations_have_floors_and_must_be_finite(
    where: str, value: str, line: int, field: str, fragment: str
) -> None:
    _only(_durations(**{where: value}), line, field, fragment)


def test_a_real_that_shortens_its_interval_below_the_service_retry_interval() -> None:
    """The rule holds for the merged check: the message names the inherited value."""
    _only(
        _durations(check="interval: 10, retry_interval: 5", real="interval: 2"),
        12,
        "ipvs.services.0.reals.0.check.retry_interval",
        "5 s must not be above interval (2 s)",
    )


def test_retry_interval_up_to_interval_is_accepted() -> None:
    config = _parse(_durations(check="interval: 2, retry_interval: 2", real="retry_interval: 0.1"))
    service = config.ipvs.services[0]
    assert service.check is not None
    assert service.check.retry_interval == 2
    merged = service.check_for(service.reals[0])
    assert merged is not None
    assert merged.retry_interval == 0.1


def test_smallest_durations_are_accepted() -> None:
    config = _parse(
        _durations(
            instance="preempt_delay: 0, garp_delay: 0",
            ipvs="resync_interval: 1",
            check="interval: 0.1, timeout: 0.01",
        )
    )
    check = config.ipvs.services[0].check
    assert check is not None
    assert (check.interval, check.timeout, config.ipvs.resync_interval) == (0.1, 0.01, 1)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/run/" + "s" * 103, "is 108 bytes; a unix socket path has at most 107"),
        ("/run/" + "é" * 52, "is 109 bytes; a unix socket path has at most 107"),
        ('"/run/a\\0b"', "must not contain a NUL character"),
    ],
)
def test_control_socket_fits_sun_path(path: str, fragment: str) -> None:
    _only(f"control:\n  socket: {path}\n", 2, "control.socket", fragment)


def test_control_socket_of_107_bytes_is_accepted() -> None:
    path = "/run/" + "s" * 102
    assert _parse(f"control:\n  socket: {path}\n").control.socket == path


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("eth0123456789abc", "'eth0123456789abc' is 16 bytes; an interface name has at most 15"),
        ("ééééééé.", "'ééééééé.' is 15 bytes"),  # fits: 7 x 2 bytes + 1
        ("éééééééé", "'éééééééé' is 16 bytes; an interface name has at most 15"),
        ('"eth 1"', "'eth 1' is not a valid interface name (no '/', ':' or whitespace"),
        ("eth1:0", "'eth1:0' is not a valid interface name"),
        ('".."', "'..' is not a valid interface name"),
    ],
)
def test_interface_names_are_at_most_15_bytes_everywhere(name: str, fragment: str) -> None:
    text = f"""
    vrrp:
      instances:
        - name: VI_1
          interface: {name}
          vrid: 51
          virtual_ipaddresses: [192.168.1.200]
          track_interfaces: [{{interface: {name}}}]
    ipvs:
      sync_daemon: {{vrrp_instance: VI_1, interface: {name}}}
    """
    if name == "ééééééé.":
        config = _parse(text)
        assert config.vrrp.instances[0].interface == name
        return
    found = _issues(text)
    assert [(i.line, i.field) for i in found] == [
        (4, "vrrp.instances.0.interface"),
        (7, "vrrp.instances.0.track_interfaces.0.interface"),
        (9, "ipvs.sync_daemon.interface"),
    ]
    assert all(fragment in issue.message for issue in found), found


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("0.1.2.3", "0.1.2.3 is in 0.0.0.0/8"),
        ('"::"', ":: is the unspecified address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ('"ff02::1"', "ff02::1 is a multicast address"),
        ("255.255.255.255", "255.255.255.255 is the broadcast address"),
        ("127.0.0.1", "127.0.0.1 is a loopback address: IPVS does not forward to loopback"),
        ('"::1"', "::1 is a loopback address"),
        ('"fe80::1"', "fe80::1 is an IPv6 link-local address: the kernel refuses it as a real"),
    ],
)
def test_real_and_sorry_server_addresses_must_be_unicast(address: str, fragment: str) -> None:
    found = _issues(
        f"""
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              forward: tunnel
              sorry_server: {{address: {address}}}
              reals:
                - {{address: {address}}}
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (6, "ipvs.services.0.sorry_server.address"),
        (8, "ipvs.services.0.reals.0.address"),
    ]
    assert all(fragment in issue.message for issue in found), found


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("224.0.0.18", "224.0.0.18 is a multicast address"),
        ("255.255.255.255", "255.255.255.255 is the broadcast address"),
        ("127.0.0.2", "127.0.0.2 is a loopback address"),
    ],
)
def test_vips_and_service_addresses_must_be_unicast(address: str, fragment: str) -> None:
    found = _issues(
        f"""
        vrrp:
          instances:
            - {{name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [{address}/24]}}
        ipvs:
          services:
            - {{address: {address}, port: 80}}
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (3, "vrrp.instances.0.virtual_ipaddresses.0"),
        (6, "ipvs.services.0.address"),
    ]
    assert all(fragment in issue.message for issue in found), found


@pytest.mark.parametrize(
    ("setting", "line", "field", "fragment"),
    [
        (
            "persistence_timeout: 2678401",
            6,
            "ipvs.services.0.persistence_timeout",
            "must be between 0 and 2678400 (31 days",
        ),
        ("timeouts: {tcp: 2147484}", 2, "ipvs.timeouts.tcp", "between 0 and 2147483 (INT_MAX / HZ"),
        ("timeouts: {tcpfin: 4294967295}", 2, "ipvs.timeouts.tcpfin", "between 0 and 2147483 ("),
        ("timeouts: {udp: 2147484}", 2, "ipvs.timeouts.udp", "between 0 and 2147483"),
        (
            "persistence_engine: sip-with-a-long-name",
            6,
            "ipvs.services.0.persistence_engine",
            "is 20 bytes; the kernel takes at most 15 (IP_VS_PENAME_MAXLEN)",
        ),
        (
            "reals: [{address: 192.168.1.30, lower_threshold: 10}]",
            6,
            "ipvs.services.0.reals.0.lower_threshold",
            "must not be above upper_threshold (0): the kernel refuses it (ERANGE)",
        ),
    ],
)
def test_kernel_limits(setting: str, line: int, field: str, fragment: str) -> None:
    where = "service" if not setting.startswith("timeouts") else "ipvs"
    text = f"""
    ipvs:
      {setting if where == "ipvs" else "cleanup_on_exit: false"}
      services:
        - address: 192.168.1.200
          port: 80
          {setting if where == "service" else "scheduler: rr"}
    """
    _only(text, line, field, fragment)


def test_kernel_limits_themselves_are_accepted() -> None:
    config = _parse(
        """
        ipvs:
          timeouts: {tcp: 2147483, tcpfin: 2147483, udp: 2147483}
          services:
            - address: 192.168.1.200
              port: 80
              persistence_timeout: 2678400
              reals: [{address: 192.168.1.30, lower_threshold: 10, upper_threshold: 10}]
        """
    )
    assert config.ipvs.services[0].persistence_timeout == 2678400


def test_names_and_commands_refuse_nul() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              check: {type: exec, command: [/bin/check, "a\\0b"]}
        """,
        5,
        "ipvs.services.0.check.command.1",
        "must not contain a NUL character",
    )


def test_json_schema_shows_the_bounds() -> None:
    defs = config_schema()["$defs"]
    instance = defs["VrrpInstanceConfig"]["properties"]
    assert (instance["vrid"]["minimum"], instance["vrid"]["maximum"]) == (1, 255)
    assert instance["virtual_ipaddresses"]["maxItems"] == 255
    assert instance["interface"]["maxLength"] == 15
    check = defs["CheckConfig"]["properties"]
    assert check["interval"]["minimum"] == 0.1
    assert check["timeout"]["minimum"] == 0.01
    assert defs["IpvsConfig"]["properties"]["resync_interval"]["minimum"] == 1
    assert defs["ServiceConfig"]["properties"]["persistence_timeout"]["maximum"] == 2678400
    assert defs["TimeoutsConfig"]["properties"]["tcp"]["maximum"] == 2147483
    assert defs["ControlConfig"]["properties"]["socket"]["maxLength"] == 107
    assert defs["RealConfig"]["properties"]["weight"]["maximum"] == 65535


# --- collecting everything ----------------------------------------------------------------


def test_all_problems_are_collected_and_sorted_by_line() -> None:
    found = _issues(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]}
            - {name: VI_1, interface: eth1, vrid: 52, virtual_ipaddresses: [192.168.1.201],
               advert_int: 0}
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              reals:
                - {address: 192.168.1.30, weight: -1}
                - {address: 192.168.1.30}
            - {address: 192.168.1.200, port: 80, scheduler: x}
            - {address: 192.168.1.200, port: 80}
        """
    )
    assert [(i.line, i.field) for i in found] == [
        (4, "vrrp.instances.1.name"),
        (5, "vrrp.instances.1.advert_int"),
        (11, "ipvs.services.0.reals.0.weight"),
        (12, "ipvs.services.0.reals.1"),
        (13, "ipvs.services.1.scheduler"),
        (13, "ipvs.services.1"),
        (14, "ipvs.services.2"),
    ]


def test_issue_rendering() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("ipvs:\n  services:\n    - {address: 10.0.0.1, port: 0}\n", "/etc/x.yaml")
    assert str(info.value) == "/etc/x.yaml:3: ipvs.services.0.port: must be between 1 and 65535"


# --- the model --------------------------------------------------------------------------


def test_defaults() -> None:
    config = _parse(
        """
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]}
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              check: {type: tcp}
              reals: [{address: 192.168.1.30}]
        """
    )
    assert config.node_name == "n1"
    assert config.control.socket == "/run/ipvsd/ipvsd.sock"
    assert config.control.group is None
    assert config.metrics.listen == "127.0.0.1:9477"
    instance = config.vrrp.instances[0]
    assert (instance.priority, instance.advert_int, instance.preempt) == (100, 1, True)
    assert (instance.garp_repeat, instance.garp_delay, instance.auth_pass) == (5, 5.0, None)
    vips = tuple(v.address for v in instance.virtual_ipaddresses)
    assert vips == (IPv4Interface("192.168.1.200/32"),)
    assert (config.ipvs.resync_interval, config.ipvs.cleanup_on_exit) == (30.0, False)
    assert (config.ipvs.max_deletes, config.ipvs.timeouts, config.ipvs.sync_daemon) == (
        None,
        None,
        None,
    )
    service = config.ipvs.services[0]
    assert (service.protocol, service.scheduler, service.forward) == (
        Protocol.TCP,
        "wlc",
        ForwardMethod.NAT,
    )
    assert (service.on_failure, service.persistence_timeout, service.netmask) == (
        OnFailure.DRAIN,
        0,
        32,
    )
    check = service.check
    assert check is not None
    assert (check.interval, check.timeout, check.rise, check.fall) == (2.0, 1.0, 2, 3)
    assert (check.path, check.expected_status, check.verify_tls) == ("/", (200,), False)
    real = service.reals[0]
    assert (real.port, real.weight, real.forward) == (0, 1, None)
    assert (real.upper_threshold, real.lower_threshold) == (0, 0)


def test_metrics_can_be_disabled_and_node_name_given() -> None:
    config = _parse("node_name: director9\nmetrics: {listen: null}\n")
    assert (config.node_name, config.metrics.listen) == ("director9", None)


def test_full_config_loads_every_field() -> None:
    config = load_config(DATA / "full.yaml")
    assert config.node_name == "lb-test"
    assert (config.control.socket, config.control.group) == ("/tmp/ipvsd-test.sock", "ipvsd")
    assert config.metrics.listen == "[::1]:9100"
    vi1, gw = config.vrrp.instances
    assert (vi1.priority, vi1.advert_int, vi1.preempt, vi1.preempt_delay) == (150, 2, False, 12.5)
    assert vi1.auth_pass == "secret"
    assert vi1.unicast_peers == (IPv4Address("192.168.1.20"), IPv4Address("192.168.1.21"))
    assert vi1.unicast_src == IPv4Address("192.168.1.10")
    assert vi1.virtual_ipaddresses[1].address == IPv4Interface("192.168.1.201/32")
    assert [(t.interface, t.weight) for t in vi1.track_interfaces] == [("eth0", -20), ("eth2", 0)]
    assert (vi1.notify, vi1.garp_repeat, vi1.garp_delay) == ("/usr/local/bin/notify-vrrp", 3, 0.0)
    assert gw.name == "VI_GW"
    assert config.vrrp.sync_groups[0].instances == ("VI_1", "VI_GW")
    ipvs = config.ipvs
    assert (ipvs.resync_interval, ipvs.cleanup_on_exit, ipvs.max_deletes) == (7.5, True, 10)
    assert ipvs.timeouts is not None
    assert (ipvs.timeouts.tcp, ipvs.timeouts.tcpfin, ipvs.timeouts.udp) == (900, 120, 300)
    assert ipvs.sync_daemon is not None
    assert (ipvs.sync_daemon.interface, ipvs.sync_daemon.sync_id) == ("eth2", 9)
    https, dns, mark = ipvs.services
    assert https.check is not None
    assert (https.check.type, https.check.port, https.check.expected_status) == (
        CheckType.HTTPS,
        8443,
        (200, 204),
    )
    assert (https.check.body_regex, https.check.verify_tls) == ("^ok", True)
    assert https.on_failure is OnFailure.REMOVE
    assert https.sorry_server is not None
    assert https.sorry_server.port == 443
    override = https.check_for(https.reals[1])
    assert override is not None
    assert (override.type, override.port, override.interval) == (CheckType.TCP, 443, 5.0)
    assert dns.check is not None
    assert dns.check.command == ("/usr/lib/ipvsd/check-dns", "--quick")
    assert (dns.protocol, dns.netmask) == (Protocol.UDP, 128)
    assert mark.key == fwmark_key(Family.INET6, 4242)


def test_round_trip_through_yaml() -> None:
    config = load_config(DATA / "full.yaml")
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    assert parse_config(text, "dumped.yaml") == config


def test_config_is_immutable() -> None:
    config = _parse("node_name: a\n")
    with pytest.raises(AttributeError, match="frozen"):
        config.node_name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        config.ipvs.services = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.anything = 1


def test_example_config_loads() -> None:
    config = load_config(ROOT / "etc" / "ipvsd.yaml")
    assert config.node_name == "director1"
    (instance,) = config.vrrp.instances
    assert (instance.name, instance.interface, instance.vrid, instance.priority) == (
        "VI_1",
        "eth1",
        51,
        100,
    )
    vips = tuple(v.address for v in instance.virtual_ipaddresses)
    assert vips == (IPv4Interface("192.168.1.200/24"),)
    table = desired_table(config)
    service = table.services[WEB]
    assert service.attrs == ServiceAttrs(scheduler="rr")
    assert sorted(service.dests) == [
        DestKey(IPv4Address("192.168.1.30"), 80),
        DestKey(IPv4Address("192.168.1.40"), 80),
    ]
    assert all(d.attrs == DestAttrs(ForwardMethod.NAT, 1) for d in service.dests.values())


def test_load_config_reports_the_file_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "bad.yaml")
    assert [str(issue) for issue in info.value.issues] == [
        f"{DATA / 'bad.yaml'}:6: vrrp.instances.0.vrid: must be between 1 and 255",
        f"{DATA / 'bad.yaml'}:13: ipvs.services.0.reals.0.address: "
        "'192.168.1.300' is not a valid IPv4 or IPv6 address",
        f"{DATA / 'bad.yaml'}:14: ipvs.services.1: duplicate service 192.168.1.200:80 "
        "(first on line 10)",
    ]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"node_name: a\nmetrics: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert [(i.line, i.message) for i in info.value.issues] == [(2, "not valid UTF-8")]
    with pytest.raises(OSError, match="No such file"):
        load_config(tmp_path / "missing.yaml")


# --- desired_table ----------------------------------------------------------------------

_TABLE = """
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      scheduler: sh
      scheduler_flags: [sh-fallback, sh-port]
      persistence_timeout: 600
      persistence_netmask: 24
      persistence_engine: sip
      reals:
        - {address: 192.168.1.30, weight: 2, upper_threshold: 100, lower_threshold: 50}
        - {address: 192.168.1.40, port: 8080, forward: nat}
    - fwmark: 5
      forward: dr
      scheduler_flags: [one-packet]
      reals:
        - {address: 192.168.1.30}
        - {address: "2001:db8::30", forward: tunnel}
"""


def test_desired_table() -> None:
    table = desired_table(_parse(_TABLE))
    web = table.services[WEB]
    assert web.attrs == ServiceAttrs(
        scheduler="sh",
        flags=ServiceFlag.PERSISTENT | ServiceFlag.SCHED1 | ServiceFlag.SCHED2,
        timeout=600,
        netmask=24,
        pe_name="sip",
    )
    real30 = DestKey(IPv4Address("192.168.1.30"), 80)
    real40 = DestKey(IPv4Address("192.168.1.40"), 8080)
    assert web.dests[real30].attrs == DestAttrs(ForwardMethod.NAT, 2, 100, 50)
    assert web.dests[real40].attrs == DestAttrs(ForwardMethod.NAT, 1)
    mark = table.services[fwmark_key(Family.INET, 5)]
    assert mark.attrs == ServiceAttrs(flags=ServiceFlag.ONEPACKET)
    assert {key: dest.attrs.forward for key, dest in mark.dests.items()} == {
        DestKey(IPv4Address("192.168.1.30"), 0): ForwardMethod.DR,
        DestKey(IPv6Address("2001:db8::30"), 0): ForwardMethod.TUNNEL,
    }
    assert table.dest_count() == 4


def test_desired_table_overrides_and_exclusions() -> None:
    config = _parse(_TABLE)
    real30 = DestKey(IPv4Address("192.168.1.30"), 80)
    real40 = DestKey(IPv4Address("192.168.1.40"), 8080)
    table = desired_table(config, weight_overrides={(WEB, real30): 0}, excluded={(WEB, real40)})
    web = table.services[WEB]
    assert list(web.dests) == [real30]
    assert web.dests[real30].attrs.weight == 0
    assert desired_table(config) == desired_table(config)
    assert desired_table(_parse("node_name: x\n")).services == {}


TUNNEL_SERVICE = """
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      forward: tunnel
      SERVICE_TUNNEL
      reals:
        - address: 10.0.0.1
          REAL_TUNNEL
        - {address: 10.0.0.2, forward: dr}
"""


def _tunnel_text(service: str = "", real: str = "") -> str:
    return TUNNEL_SERVICE.replace("SERVICE_TUNNEL", service).replace("REAL_TUNNEL", real)


def test_tunnel_settings_default_from_the_service_and_reach_only_tunnel_reals() -> None:
    config = _parse(_tunnel_text("tunnel: {type: gue, port: 6080, checksum: csum}"))
    service = config.ipvs.services[0]
    tunnel = service.tunnel_of(service.reals[0])
    assert tunnel is not None
    assert (tunnel.type, tunnel.port, tunnel.checksum) == (
        TunnelType.GUE,
        6080,
        TunnelChecksum.CSUM,
    )
    table = desired_table(config)
    dests = {d.key.address: d.attrs for d in table.services[service.key].dests.values()}
    assert dests[IPv4Address("10.0.0.1")] == DestAttrs(
        ForwardMethod.TUNNEL, 1, 0, 0, TunnelType.GUE, 6080, TunnelChecksum.CSUM
    )
    # The DR real ignores the service's tunnel settings.
    assert dests[IPv4Address("10.0.0.2")] == DestAttrs(ForwardMethod.DR, 1)


@pytest.mark.parametrize(
    ("service", "real", "line", "field", "fragment"),
    [
        ("tunnel: {type: gue}", "", 6, "ipvs.services.0.tunnel.type", "gue needs the real's GUE"),
        (
            "",
            "tunnel: {type: gre, port: 5}",
            9,
            "ipvs.services.0.reals.0.tunnel.port",
            "only for type gue (this tunnel is gre)",
        ),
        (
            "",
            "tunnel: {checksum: csum}",
            9,
            "ipvs.services.0.reals.0.tunnel.checksum",
            "ipip has no checksum option",
        ),
        (
            "",
            "forward: nat\n          tunnel: {type: gre}",
            10,
            "ipvs.services.0.reals.0.tunnel",
            "only for forward: tunnel (this real is forward: nat)",
        ),
        (
            "tunnel: {type: sit}",
            "",
            6,
            "ipvs.services.0.tunnel.type",
            "unknown tunnel type 'sit' (expected one of: ipip, gue, gre)",
        ),
    ],
)
def test_tunnel_settings_errors(
    service: str, real: str, line: int, field: str, fragment: str
) -> None:
    _only(_tunnel_text(service, real), line, field, fragment)
