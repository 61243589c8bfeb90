"""Issue 13: VIPs as strings or mappings, excluded VIPs, virtual routes and rules, vmac.

Each error at its exact line and dotted field, as tests/unit/test_config.py does
for the older fields.
"""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from ipvsd.config import Config, parse_config
from ipvsd.config.schema import config_schema
from ipvsd.errors import ConfigError


def _parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text).removeprefix("\n"), "t.yaml", default_node_name="n1")


def _issues(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    return [(i.line, i.field, i.message) for i in info.value.issues]


def _only(text: str, line: int, field: str, fragment: str) -> None:
    found = _issues(text)
    assert [(where, name) for where, name, _ in found] == [(line, field)], found
    assert fragment in found[0][2], found[0][2]


INSTANCE = """
vrrp:
  instances:
    - name: VI_1
      interface: eth1
      vrid: 51
"""


def _instance(extra: str) -> str:
    return INSTANCE + textwrap.indent(textwrap.dedent(extra).removeprefix("\n"), "      ")


def test_vips_are_strings_or_mappings() -> None:
    config = _parse(
        _instance(
            """
            virtual_ipaddresses:
              - 192.168.1.200/24
              - {address: 10.0.0.1/24, dev: eth2, scope: link, label: "eth2:web",
                 broadcast: 10.0.0.255}
            virtual_ipaddresses_excluded: [192.168.1.201, {address: 192.168.1.202, scope: host}]
            """
        )
    )
    vi = config.vrrp.instances[0]
    plain, full = vi.virtual_ipaddresses
    assert plain.address == IPv4Interface("192.168.1.200/24")
    assert (plain.dev, plain.scope, plain.label, plain.broadcast) == (None, 0, None, None)
    assert full.address == IPv4Interface("10.0.0.1/24")
    assert (full.dev, full.scope, full.label) == ("eth2", 253, "eth2:web")
    assert full.broadcast == IPv4Address("10.0.0.255")
    assert [v.ip for v in vi.virtual_ipaddresses_excluded] == [
        IPv4Address("192.168.1.201"),
        IPv4Address("192.168.1.202"),
    ]
    assert vi.virtual_ipaddresses_excluded[1].scope == 254


def test_a_bad_vip_mapping_field_is_reported_at_its_line() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses:
              - 192.168.1.200/24
              - address: 10.0.0.1
                scope: planet
            """
        ),
        9,
        "vrrp.instances.0.virtual_ipaddresses.1.scope",
        "unknown address scope 'planet' (expected one of: global, site, link, host, nowhere)",
    )


def test_a_vip_mapping_needs_an_address_and_knows_its_keys() -> None:
    found = _issues(_instance("virtual_ipaddresses:\n  - {dev: eth1, colour: red}\n"))
    fields = sorted(field for _, field, _ in found)
    assert fields == [
        "vrrp.instances.0.virtual_ipaddresses.0.address",
        "vrrp.instances.0.virtual_ipaddresses.0.colour",
    ]
    assert {line for line, _, _ in found} == {7}


def test_a_bad_vip_string_keeps_its_message() -> None:
    _only(
        _instance("virtual_ipaddresses: [192.168.1.200, 300.0.0.1]\n"),
        6,
        "vrrp.instances.0.virtual_ipaddresses.1",
        "'300.0.0.1' is not a valid IP address or ADDRESS/PREFIX",
    )


def test_a_label_must_start_with_its_interface() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses:
              - {address: 10.0.0.1, label: "eth2:web"}
            """
        ),
        7,
        "vrrp.instances.0.virtual_ipaddresses.0.label",
        "label 'eth2:web' must be 'eth1' or start with 'eth1:'",
    )


def test_a_label_is_at_most_15_bytes() -> None:
    _only(
        _instance('virtual_ipaddresses: [{address: 10.0.0.1, label: "eth1:0123456789ab"}]\n'),
        6,
        "vrrp.instances.0.virtual_ipaddresses.0.label",
        "is 17 bytes",
    )


def test_an_excluded_vip_may_not_repeat_an_advertised_one() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_ipaddresses_excluded:
              - 10.0.0.1
              - 192.168.1.200/32
            """
        ),
        9,
        "vrrp.instances.0.virtual_ipaddresses_excluded.1",
        "192.168.1.200 is already a VIP of instance 'VI_1' (line 6)",
    )


def test_excluded_vips_are_not_limited_to_255() -> None:
    many = ", ".join(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(300))
    config = _parse(
        _instance(f"virtual_ipaddresses: [192.168.1.200]\nvirtual_ipaddresses_excluded: [{many}]\n")
    )
    assert len(config.vrrp.instances[0].virtual_ipaddresses_excluded) == 300


def test_virtual_routes_and_rules() -> None:
    config = _parse(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_routes:
              - {to: 10.1.0.0/16, via: 192.168.1.1, src: 192.168.1.200, table: 100, metric: 5}
              - {to: default, dev: eth1}
            virtual_rules:
              - {from: 192.168.1.200/32, table: 100, priority: 1000}
              - {to: 10.2.0.0/16, table: 100}
            """
        )
    )
    vi = config.vrrp.instances[0]
    first, second = vi.virtual_routes
    assert first.to == IPv4Network("10.1.0.0/16")
    assert (first.via, first.src) == (IPv4Address("192.168.1.1"), IPv4Address("192.168.1.200"))
    assert (first.table, first.metric, first.dev) == (100, 5, None)
    assert second.to == IPv4Network("0.0.0.0/0")
    assert (second.dev, second.via, second.table) == ("eth1", None, None)
    rule, rule2 = vi.virtual_rules
    assert (rule.from_, rule.to, rule.table, rule.priority) == (
        IPv4Network("192.168.1.200/32"),
        None,
        100,
        1000,
    )
    assert rule2.to == IPv4Network("10.2.0.0/16")


def test_a_route_destination_has_no_host_bits() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_routes:
              - {to: 10.1.0.1/16, via: 192.168.1.1}
            """
        ),
        8,
        "vrrp.instances.0.virtual_routes.0.to",
        "'10.1.0.1/16' is not a valid IPv4 network",
    )


def test_a_route_needs_a_gateway_or_an_interface() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_routes:
              - {to: 10.1.0.0/16, table: 100}
            """
        ),
        8,
        "vrrp.instances.0.virtual_routes.0",
        "a route needs 'via' (a gateway) or 'dev' (on-link)",
    )


def test_a_rule_needs_from_or_to() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_rules:
              - {table: 100}
            """
        ),
        8,
        "vrrp.instances.0.virtual_rules.0",
        "a rule needs 'from' or 'to'",
    )


def test_a_rule_table_is_required_and_in_range() -> None:
    found = _issues(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            virtual_rules:
              - {from: 10.0.0.0/8}
              - {from: 10.0.0.0/8, table: 0}
            """
        )
    )
    assert [(line, field) for line, field, _ in found] == [
        (8, "vrrp.instances.0.virtual_rules.0.table"),
        (9, "vrrp.instances.0.virtual_rules.1.table"),
    ]
    assert "between 1 and 4294967295" in found[1][2]


def test_the_schema_offers_both_vip_forms_with_descriptions() -> None:
    schema = config_schema()
    instance = schema["$defs"]["VrrpInstanceConfig"]["properties"]
    options = instance["virtual_ipaddresses"]["items"]["anyOf"]
    assert options[0]["type"] == "string"
    assert options[1] == {"$ref": "#/$defs/VirtualAddress"}
    assert instance["virtual_ipaddresses"]["maxItems"] == 255
    assert "maxItems" not in instance["virtual_ipaddresses_excluded"]
    mapping = schema["$defs"]["VirtualAddress"]
    assert mapping["properties"]["scope"]["enum"] == ["global", "site", "link", "host", "nowhere"]
    assert mapping["properties"]["scope"]["default"] == "global"
    assert "label" in mapping["properties"]
    assert "from" in schema["$defs"]["VirtualRule"]["properties"]
    assert schema["$defs"]["VirtualRule"]["required"] == ["table"]


def test_vmac_names_its_interface() -> None:
    config = _parse(_instance("virtual_ipaddresses: [192.168.1.200/24]\nvmac: true\n"))
    vi = config.vrrp.instances[0]
    assert (vi.vmac, vi.advert_interface) == (True, "vrrp.51")
    named = _parse(
        _instance("virtual_ipaddresses: [192.168.1.200/24]\nvmac: true\nvmac_interface: vip51\n")
    )
    assert named.vrrp.instances[0].advert_interface == "vip51"
    plain = _parse(_instance("virtual_ipaddresses: [192.168.1.200/24]\n"))
    assert plain.vrrp.instances[0].advert_interface == "eth1"


def test_vmac_is_not_for_unicast_peers() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            unicast_peers: [192.168.1.20]
            vmac: true
            """
        ),
        8,
        "vrrp.instances.0.vmac",
        "not with unicast_peers: unicast adverts arrive on eth1, not on the vmac",
    )


def test_the_vmac_needs_a_name_of_its_own() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses: [192.168.1.200/24]
            vmac: true
            vmac_interface: eth1
            """
        ),
        8,
        "vrrp.instances.0.vmac_interface",
        "must not be the instance's interface",
    )


def test_with_vmac_a_label_starts_with_the_vmac_name() -> None:
    _only(
        _instance(
            """
            virtual_ipaddresses:
              - {address: 192.168.1.200/24, label: "eth1:web"}
            vmac: true
            """
        ),
        7,
        "vrrp.instances.0.virtual_ipaddresses.0.label",
        "label 'eth1:web' must be 'vrrp.51' or start with 'vrrp.51:'",
    )


async def test_excluded_vips_count_for_the_real_behind_a_vip_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ipvsd.daemon import ports
    from ipvsd.netlink import routes

    seen: list[set[IPv4Address]] = []

    async def warn(reals: object, vips: set[IPv4Address]) -> int:
        seen.append(set(vips))
        return 0

    monkeypatch.setattr(routes, "warn_reals_behind_vips", warn)
    config = _parse(
        _instance(
            "virtual_ipaddresses: [192.168.1.200]\nvirtual_ipaddresses_excluded: [10.0.0.254]\n"
        )
    )
    await ports.warn_reals_behind_vips(config)
    assert seen == [{IPv4Address("192.168.1.200"), IPv4Address("10.0.0.254")}]


async def test_a_reload_naming_a_missing_vip_or_route_dev_is_refused(tmp_path: Path) -> None:
    from tests.unit.test_daemon import config_text
    from tests.unit.test_daemon_reload import refusal, with_vrrp

    base = config_text(tmp_path / "ipvsd.sock", services=False)
    running = with_vrrp(base)
    vip = running.replace(
        "virtual_ipaddresses: [192.168.1.200/24]",
        "virtual_ipaddresses: [192.168.1.200/24, {address: 10.0.0.1, dev: eth7}]",
    )
    reason = await refusal(running, vip)
    assert reason == (
        "vrrp.instances.0.virtual_ipaddresses.1.dev: no interface 'eth7' on this host "
        "(instance VI_1); nothing was changed"
    )
    route = running.replace(
        "virtual_ipaddresses: [192.168.1.200/24]",
        "virtual_ipaddresses: [192.168.1.200/24],\n"
        "       virtual_routes: [{to: 10.9.0.0/16, dev: eth8}]",
    )
    reason = await refusal(running, route)
    assert reason is not None
    assert reason.startswith("vrrp.instances.0.virtual_routes.0.dev: no interface 'eth8'")
    on_eth1 = vip.replace("dev: eth7", "dev: eth1")
    assert await refusal(running, on_eth1) is None
