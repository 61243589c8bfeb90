"""Big configurations: the fast reader gives exactly what the line-tracking readers give.

`parse_config` first reads the YAML events without tracking lines
(`ipvsd.config.events`); only a config with problems is read again with the
line of every field, from events or, for unusual YAML, from the node tree
(`ipvsd.config.yaml_lines`). These tests check that all of them agree: same data,
same lines, same `Config`. No timing is asserted here (see bench/).
"""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path

import pytest

from ipvsd import config as config_module
from ipvsd.config import Config, parse_config
from ipvsd.config.events import Read, Unusual, read
from ipvsd.config.yaml_lines import Document, LineMap, compose_document
from ipvsd.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[2] / "ipvsd"


def _service(i: int) -> str:
    """One service, in one of five styles: block, flow, merged, fwmark/IPv6, UDP/exec."""
    vip = f"10.{i // 250 % 250}.{i % 250}.1"
    real = f"172.16.{i // 250 % 250}.{i % 250}"
    other = f"172.20.{i // 250 % 250}.{i % 250}"
    kind = i % 5
    if kind == 0:
        return (
            f"    - address: {vip}  # block style\n"
            f"      port: 80\n"
            f"      scheduler: wrr\n"
            f"      check: {{type: http, path: /health, expected_status: [200, 204]}}\n"
            f"      reals:\n"
            f"        - address: '{real}'\n"
            f"          weight: 3\n"
            f'        - {{address: "{other}", port: 8080, check: {{port: 8081}}}}\n'
        )
    if kind == 1:
        reals = ", ".join(f"{{address: 172.{16 + j}.{i % 250}.9, port: 80}}" for j in range(4))
        return f"    - {{address: {vip}, port: 80, scheduler: rr, forward: dr, reals: [{reals}]}}\n"
    if kind == 2:
        return (
            f"    - <<: *base\n"
            f"      address: {vip}\n"
            f"      reals: [{{address: {real}, upper_threshold: 100, lower_threshold: 50}}]\n"
        )
    if kind == 3:
        return (
            f"    - fwmark: {i + 1}\n"
            f"      family: ipv6\n"
            f"      scheduler_flags: [mh-port, one-packet]\n"
            f"      forward: tunnel\n"
            f"      check: {{type: tcp, port: 443}}\n"
            f'      reals: [{{address: "2001:db8::{i:x}"}}, {{address: {real}}}, *dns_real]\n'
        )
    return (
        f'    - address: "2001:db8:1::{i:x}"\n'
        f"      port: 53\n"
        f"      protocol: udp\n"
        f"      persistence_timeout: {i % 600}\n"
        f"      persistence_engine: sip\n"
        f"      on_failure: remove\n"
        f'      sorry_server: {{address: "2001:db8:2::1", port: 5353}}\n'
        f'      check: {{type: exec, command: [/usr/bin/dig, "@{vip}", +short], interval: 2.5}}\n'
        f"      reals: *dns\n"
    )


def _big_config(services: int, *, comment: str = "") -> str:
    head = f"""# {comment or "a generated director"}
node_name: big
metrics: {{listen: "[::1]:9100"}}
vrrp:
  instances:
    - {{name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}}
    - name: VI_2
      interface: eth2
      vrid: 52
      priority: 150
      unicast_peers: [192.168.2.20]
      virtual_ipaddresses:
        - 192.168.2.200
      track_interfaces: [{{interface: eth0, weight: -20}}]
  sync_groups:
    - {{name: G1, instances: [VI_1, VI_2]}}
ipvs:
  resync_interval: 7.5
  max_deletes: 100
  timeouts: {{tcp: 900, tcpfin: 120, udp: 300}}
  sync_daemon: {{vrrp_instance: VI_1}}
  services:
    - &base
      address: 192.168.1.200
      port: 443
      scheduler: sh
      persistence_timeout: 300
      persistence_netmask: 24
      check: {{type: tcp}}
      reals:
        - {{address: 192.168.1.30, port: 443}}
    - address: "2001:db8:1::ffff"
      port: 53
      protocol: udp
      reals: &dns
        - &dns_real {{address: "2001:db8:3::1", port: 5353, weight: 2}}
        - {{address: "2001:db8:3::2", port: 5353}}
"""
    return head + "".join(_service(i) for i in range(services - 2))


def _config_of(data: object) -> Config:
    assert isinstance(data, dict)
    return Config.model_validate(data)


def _assert_same_lines(
    text: str, events: Read | None = None, nodes: Document | None = None
) -> None:
    """The event reader's lines are the node reader's, for every written path and below."""
    tree = (events or read(text, lines=True)).lines
    lines = (nodes or compose_document(text, "t.yaml")).lines
    assert tree is not None
    assert isinstance(lines, LineMap)
    for path in [(), *lines.lines]:
        for probe in (path, (*path, "missing"), (*path, 0)):
            assert tree.line(probe) == lines.line(probe), probe


@pytest.mark.parametrize(
    ("services", "comment"),
    [
        (2_000, "libyaml when PyYAML has it"),
        (300, "a tab\tmakes the pure-Python parser read it"),
    ],
)
def test_a_big_config_reads_the_same_fast_and_with_lines(services: int, comment: str) -> None:
    text = _big_config(services, comment=comment)
    fast = config_module._parse_fast(text, None)  # no line tracked to get this Config
    assert fast is not None
    assert len(fast.ipvs.services) == services
    assert parse_config(text, "big.yaml") == fast
    # The line-tracking path, from events, then from the node tree (the reference).
    assert config_module._parse_with_lines(text, "big.yaml", None) == fast
    nodes = compose_document(text, "big.yaml")
    assert nodes.issues == ()
    assert _config_of(nodes.data) == fast
    # The same plain data all three ways, and the same line for every field.
    assert read(text).data == nodes.data
    events = read(text, lines=True)
    assert (events.data, events.issues) == (nodes.data, ())
    _assert_same_lines(text, events, nodes)


def test_errors_in_a_big_config_are_found_on_their_lines() -> None:
    text = _big_config(2_000).replace("weight: 3", "weight: 70000", 2)
    text += "    - {address: 10.255.255.1, port: 80, scheduler: rx}\n"
    lines = text.splitlines()
    weights = [number for number, line in enumerate(lines, 1) if "weight: 70000" in line]
    with pytest.raises(ConfigError) as info:
        parse_config(text, "big.yaml")
    assert [(issue.line, issue.field) for issue in info.value.issues] == [
        (weights[0], "ipvs.services.2.reals.0.weight"),
        (weights[1], "ipvs.services.7.reals.0.weight"),
        (len(lines), "ipvs.services.2000.scheduler"),
    ]
    assert gc.isenabled()


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [1, 2, {c: 3}]\n",
        "- - a\n  - b\n-\n- {k: [1, {m: n}]}\n- []\n",
        "x: &x {a: 1, b: {c: 2}}\ny: {<<: *x, a: 3}\nz:\n  <<: [*x, {d: 4}]\n  e: 5\n",
        "base: &b\n  x: 1\n  y: [1, 2]\nd:\n  <<: *b\n  y: [3]\n  z: *b\n",
        "a: &a [1, {b: 2}]\nc: [*a, *a, &s x, *s]\n",
        "m:\n  k: 1\n  k: 2\n  j: {x: 1, x: [2]}\n  k: 3\n",
        "k: [1,\n  2, 3\n  ]\n'q': {a: 1,\n  b: 2}\n? c\n: d\n",
        "a: |\n  lit\n  eral\nb: >-\n  folded\n\n  text\nc: end\n",
        "just text\n",
        "- a\n-\n- c\n",
    ],
)
def test_event_lines_are_the_node_lines(text: str) -> None:
    nodes = compose_document(text, "t.yaml")
    events = read(text, lines=True)
    assert events.data == nodes.data
    issues = [(".".join(map(str, field)), line, msg) for field, line, msg in events.issues]
    assert issues == [(i.field, i.line, i.message) for i in nodes.issues]
    _assert_same_lines(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",  # an alias to its own ancestor
        "a: *nowhere\n",
        "a: &x 1\nb: &x 2\n",  # a duplicate anchor
        "a: !custom 1\n",
        "? [a, b]\n: 1\n",  # a key that is not a scalar
        "a: 1\n---\nb: 2\n",
        "a: &x {k: 1, k: 2}\n",  # reported once per expansion: yaml_lines does that
        "a: {<<: 1}\n",
        "a: \x01\n",
        "",
        "a: [1\n",
    ],
)
def test_what_the_event_reader_leaves_to_the_node_reader(text: str) -> None:
    with pytest.raises(Unusual):
        read(text, lines=True)


def test_duplicate_keys_are_unusual_without_lines() -> None:
    with pytest.raises(Unusual):
        read("a: 1\na: 2\n")


def test_alias_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipvsd.config.yaml_lines.MAX_NODES", 50)
    with pytest.raises(Unusual):
        read("a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n")


_SCALARS = """\
nulls: [~, null, Null, NULL, '', !!null x]
bools: [y, Yes, NO, true, False, on, OFF, !!bool "true"]
ints: [0, -0, +5, 80, 0b101, 0x_1F, 017, 1_000, 190:20:30, 08, !!int "7", ! 9, ! "10"]
floats: [1.5, -.5, .5e3, 1e3, 6.8523015e+5, 190:20:30.15, .inf, -.Inf, .NaN, !!float 3]
strs: [a b, "80", '1.5', "yes", 1.2.3.4, 2001:db8::1, x:y, -, !!str 12, "\\t\\u00e9"]
times: [2001-12-14, 2001-12-14t21:59:43.10-05:00]
binary: !!binary aGVsbG8=
block: |
  line
"""


@pytest.mark.parametrize("lines", [False, True])
def test_scalars_resolve_as_in_safe_loader(lines: bool) -> None:
    data = read(_SCALARS, lines=lines).data
    expected = compose_document(_SCALARS, "t.yaml").data
    assert repr(data) == repr(expected)  # repr: nan != nan
    assert isinstance(data, dict)
    assert math.isnan(data["floats"][8])
    assert data["ints"][-2:] == (9, 10)  # "!" resolves even a quoted scalar


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        # libyaml reads these; the pure-Python parser, the reference, does not.
        ("ipvs:\n  services: [{address: 10.0.0.1, port: 80, sched?uler: rr}]\n", 2, "(yaml)"),
        ("node_name: a\nmetrics: {listen: null}\nx: >#\n  text\n", 3, "(yaml)"),
        ("node_name: a\nmetrics:\t{listen: null}\n", 2, "(yaml)"),
    ],
)
def test_what_libyaml_reads_more_leniently_is_a_yaml_error(
    text: str, line: int, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml")
    assert [(issue.line, issue.field) for issue in info.value.issues] == [(line, field)]


def test_models_share_equal_fields_sets_but_copies_do_not() -> None:
    config = parse_config(
        "node_name: a\nipvs:\n  services:\n"
        "    - {address: 10.0.0.1, port: 80, check: {type: tcp},\n"
        "       reals: [{address: 10.0.0.2, port: 80}, {address: 10.0.0.3, port: 80}]}\n"
    )
    service = config.ipvs.services[0]
    first, second = service.reals
    assert first.model_fields_set is second.model_fields_set
    assert first.model_fields_set == {"address", "port"}
    copied = first.model_copy(update={"weight": 5})
    assert copied.model_fields_set == {"address", "port", "weight"}
    assert second.model_fields_set == {"address", "port"}
    assert service.check is not None
    merged = service.check.model_copy(update={"port": 81})
    assert "port" not in service.check.model_fields_set
    assert merged.port == 81


def test_models_keep_their_fields_in_slots() -> None:
    """A real is one object of ~100 bytes: no dict of fields (issue 14: 40,000 reals'
    dicts were 19 MB of a 10,000 x 4 daemon's 110 MB), and instances given the same
    fields share one ``model_fields_set``."""
    services = "".join(
        f"    - {{address: 10.0.0.{i}, port: 80, check: {{type: tcp}},\n"
        f"       reals: [{{address: 10.1.0.{i}, port: 80}}, "
        f"{{address: 10.2.0.{i}, port: 8080, weight: 3}}]}}\n"
        for i in range(1, 41)
    )
    text = f"node_name: a\nipvs:\n  services:\n{services}"
    config = parse_config(text)
    service = config.ipvs.services[-1]  # CPython sizes the first few a class has larger
    first, second = service.reals
    for model in (first, second, service, config, config.ipvs):
        assert not hasattr(model, "__dict__")
    # A pointer per field and one for model_fields_set, the object's and the GC's headers.
    assert sys.getsizeof(first) <= 8 * (len(type(first).model_fields) + 1) + 32
    assert first.model_fields_set is config.ipvs.services[0].reals[0].model_fields_set
    assert first.model_fields_set == {"address", "port"}
    assert (second.port, second.weight, first.weight) == (8080, 3, 1)
    # Equality, hashing and copies are as before.
    again = parse_config(text)
    assert again == config
    assert hash(again) == hash(config)
    copied = second.model_copy(update={"weight": 5})
    assert (copied.weight, copied.port, second.weight) == (5, 8080, 3)
    assert copied.model_dump() == {**second.model_dump(), "weight": 5}


def test_parsing_leaves_the_garbage_collector_as_it_found_it() -> None:
    parse_config("node_name: a\n")
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ConfigError):
            parse_config("node_name: 1\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- found by comparing the readers on mutated configs: errors, not crashes -------------


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("node_name: !!bool maybe\n", 1, "node_name", "cannot read value"),
        ('node_name: "\\UFFFFFFFF"\n', 0, "(yaml)", "YAML"),
        (
            "ipvs:\n  services:\n    - {address: 10.0.0.1, port: 80, scheduler_flags: [a: b]}\n",
            3,
            "ipvs.services.0.scheduler_flags.0",
            "unknown scheduler flag {'a': 'b'}",
        ),
    ],
)
def test_odd_values_are_errors_not_crashes(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml")
    assert [(issue.line, issue.field) for issue in info.value.issues] == [(line, field)]
    assert fragment in info.value.issues[0].message
