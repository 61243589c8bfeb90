"""The ``bgp:`` section: defaults, and PATH:LINE errors for bad values."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv6Address

import pytest

from ipvsd.config import Config, parse_config
from ipvsd.errors import ConfigError
from ipvsd.model import ServiceFlag

ONE = "  neighbors: [{address: 10.0.0.1, remote_as: 1}]\n"
GOOD = """\
bgp:
  local_as: 65001
  neighbors:
    - {address: 10.0.0.1, remote_as: 65000}
    - {address: "2001:db8::1", remote_as: 4200000000, password: s3cret, multihop: 2}
"""


def _parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.yaml", default_node_name="n1")


def test_defaults() -> None:
    bgp = _parse(GOOD).bgp
    assert bgp is not None
    assert (bgp.hold_time, bgp.bfd, bgp.bfd_interval, bgp.bfd_multiplier) == (9, False, 0.1, 3)
    assert (bgp.require, bgp.bird, bgp.run_dir) == ("all", "bird", "/run/ipvsd/bird")
    assert bgp.router_id is None
    assert bgp.next_hop is None
    assert bgp.neighbors[0].address == IPv4Address("10.0.0.1")
    assert bgp.neighbors[1].address == IPv6Address("2001:db8::1")
    assert bgp.neighbors[1].password == "s3cret"
    assert _parse("node_name: x\n").bgp is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "bgp: {local_as: 0, neighbors: [{address: 10.0.0.1, remote_as: 1}]}\n",
            "t.yaml:1: bgp.local_as: must be between 1 and 4294967295",
        ),
        (
            "bgp:\n  local_as: 1\n  neighbors: []\n",
            "t.yaml:3: bgp.neighbors: must not be empty",
        ),
        (
            "bgp:\n  local_as: 1\n  hold_time: 2\n" + ONE,
            "t.yaml:3: bgp.hold_time: must be between 3 and 65535",
        ),
        (
            "bgp:\n  local_as: 1\n  neighbors:\n    - {address: 10.0.0.1, remote_as: 1,"
            ' password: "a\\"b"}\n',
            "t.yaml:4: bgp.neighbors.0.password: must be printable ASCII without a double "
            "quote or a backslash",
        ),
        (
            "bgp:\n  local_as: 1\n  neighbors:\n    - {address: 10.0.0.300, remote_as: 1}\n",
            "t.yaml:4: bgp.neighbors.0.address: '10.0.0.300' is not a valid IPv4 or IPv6 address",
        ),
        (
            "bgp:\n  local_as: 1\n  require: most\n" + ONE,
            "t.yaml:3: bgp.require: ",
        ),
        (
            "bgp:\n  local_as: 1\n  bfd_interval: 0\n" + ONE,
            "t.yaml:3: bgp.bfd_interval: must be between 0.01 and 10 seconds",
        ),
        (
            "bgp:\n  local_as: 1\n  peers: []\n  neighbors: [{address: 10.0.0.1, remote_as: 1}]\n",
            "t.yaml:3: bgp.peers: ",
        ),
    ],
)
def test_bad_values_are_path_line_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    lines = [str(issue) for issue in caught.value.issues]
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines


def test_cross_checks() -> None:
    text = """\
bgp:
  local_as: 1
  bfd: true
  neighbors:
    - {address: 10.0.0.1, remote_as: 2}
    - {address: 10.0.0.2, remote_as: 2, multihop: 2}
    - {address: 10.0.0.1, remote_as: 3}
    - {address: 10.0.0.3, remote_as: 2, local_address: "2001:db8::1"}
"""
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert [str(issue) for issue in caught.value.issues] == [
        "t.yaml:6: bgp.neighbors.1.multihop: a multihop session with bfd needs local_address "
        "(BIRD requires it)",
        "t.yaml:7: bgp.neighbors.2.address: neighbor 10.0.0.1 is listed at line 5",
        "t.yaml:8: bgp.neighbors.3.local_address: 2001:db8::1 is not of the neighbor's family",
    ]


def test_in_bgp_mode_services_default_to_mh() -> None:
    services = """\
ipvs:
  services:
    - {address: 10.0.0.100, port: 80, reals: [{address: 10.0.1.1, port: 80}]}
    - {address: 10.0.0.100, port: 443, scheduler: rr, reals: [{address: 10.0.1.1, port: 443}]}
"""
    bgp_mode = _parse(services + GOOD)
    assert [s.scheduler for s in bgp_mode.ipvs.services] == ["mh", "rr"]
    assert [s.scheduler for s in _parse(services).ipvs.services] == ["wlc", "rr"]


def test_the_bgp_default_mh_falls_back_from_a_drained_real() -> None:
    # Without mh-fallback the kernel refuses the new connections that hash to a
    # real at weight 0 (tests/kernel/test_mh_table.py): a health drain would
    # black-hole a share of the clients.
    services = """\
ipvs:
  services:
    - {address: 10.0.0.100, port: 80, reals: [{address: 10.0.1.1, port: 80}]}
    - {address: 10.0.0.100, port: 81, scheduler_flags: [mh-port], reals: [{address: 10.0.1.1}]}
    - {address: 10.0.0.100, port: 82, scheduler: mh, reals: [{address: 10.0.1.1}]}
"""
    default, own_flags, own_scheduler = _parse(services + GOOD).ipvs.services
    assert default.scheduler_flags == ("mh-fallback",)
    assert ServiceFlag.SCHED1 in default.flags
    assert own_flags.scheduler == "mh"
    assert own_flags.scheduler_flags == ("mh-port", "mh-fallback")
    assert own_scheduler.scheduler_flags == ()  # named by the operator: left alone
