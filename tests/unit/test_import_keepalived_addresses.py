"""``ipvsd import keepalived``: VIP options, excluded VIPs, virtual routes and rules (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipvsd.config import load_config, parse_config
from ipvsd.importers.emit import to_yaml
from ipvsd.importers.keepalived import convert
from ipvsd.importers.keepalived_parse import parse
from ipvsd.importers.report import Conversion
from ipvsd.importers.sources import read_keepalived


def instance(body: str) -> str:
    return "vrrp_instance A {\n  interface eth1\n  virtual_router_id 51\n" + body + "}\n"


def convert_text(text: str) -> Conversion:
    return convert(parse(text, "k.conf"))


def only_instance(conversion: Conversion) -> dict[str, Any]:
    [converted] = conversion.data["vrrp"]["instances"]
    result: dict[str, Any] = converted
    return result


def reports(conversion: Conversion) -> list[str]:
    return [str(report) for report in conversion.reports]


def loads(conversion: Conversion, tmp_path: Path) -> None:
    """The output is a config ipvsd accepts (raises ConfigError otherwise)."""
    out = tmp_path / "ipvsd.yaml"
    out.write_text(to_yaml(conversion.data, header=["test"], comments=conversion.comments))
    load_config(out)


VIPS = instance(
    "  virtual_ipaddress {\n"  # line 4
    "    192.168.1.200/24 dev eth1\n"
    "    10.0.0.1/24 brd + dev eth2 scope link label eth2:web\n"
    "    10.0.0.2 scope host label eth1:lo\n"
    "    10.0.0.3/24 brd 10.0.0.255 scope 0 peer 10.0.0.9 -nodad\n"
    "    10.0.0.4 label eth0:bad\n"
    "  }\n"
    "  virtual_ipaddress_excluded {\n"  # line 11
    "    192.168.1.201/24\n"
    "    192.168.1.202 dev eth1 scope universe\n"
    "    fd00::1/64\n"
    "    10.0.0.1\n"
    "  }\n"
)


def test_vip_options_convert_to_mappings(tmp_path: Path) -> None:
    conversion = convert_text(VIPS)
    converted = only_instance(conversion)
    assert converted["virtual_ipaddresses"] == [
        "192.168.1.200/24",
        {
            "address": "10.0.0.1/24",
            "broadcast": "10.0.0.255",
            "dev": "eth2",
            "scope": "link",
            "label": "eth2:web",
        },
        {"address": "10.0.0.2", "scope": "host", "label": "eth1:lo"},
        {"address": "10.0.0.3/24", "broadcast": "10.0.0.255"},
        "10.0.0.4",
    ]
    assert converted["virtual_ipaddresses_excluded"] == ["192.168.1.201/24", "192.168.1.202"]
    assert reports(conversion) == [
        "k.conf:8: 10.0.0.3/24: peer 10.0.0.9, -nodad: not supported: ignored",
        "k.conf:9: 10.0.0.4: label eth0:bad: must start with 'eth1:' in ipvsd: ignored",
        "k.conf:14: fd00::1/64: IPv6, but the instance is IPv4 (its first VIP's family, as "
        "keepalived): not converted",
        "k.conf:15: 10.0.0.1: already a VIP of this instance: converted once",
    ]
    loads(conversion, tmp_path)


def test_an_excluded_vip_of_another_instance_is_left_out() -> None:
    text = instance("  virtual_ipaddress {\n    10.0.0.1\n  }\n") + (
        "vrrp_instance B {\n  interface eth1\n  virtual_router_id 52\n"
        "  virtual_ipaddress {\n    10.0.0.2\n  }\n"
        "  virtual_ipaddress_excluded {\n    10.0.0.1\n    10.0.0.3\n  }\n}\n"
    )
    conversion = convert_text(text)
    second = conversion.data["vrrp"]["instances"][1]
    assert second["virtual_ipaddresses_excluded"] == ["10.0.0.3"]
    assert reports(conversion) == [
        "k.conf:15: 10.0.0.1: already a VIP of instance A: left out here"
    ]


ROUTES = instance(
    "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n"
    "  virtual_routes {\n"  # line 7
    "    src 192.168.1.200 to 10.9.0.0/16 via 192.168.1.1 dev eth1 table 100 metric 10\n"
    "    10.8.0.0/16 gw 192.168.1.1 table main\n"
    "    default via 192.168.1.254 table 200 proto static\n"
    "    192.168.3.7 dev eth1 preference 5\n"
    "    blackhole 10.6.0.0/16\n"
    "    10.5.0.0/16 via 192.168.1.1 table webs\n"
    "    10.4.0.0/16 table 100\n"
    "    to 10.3.0.1/16 via 192.168.1.1\n"
    "  }\n"
)


def test_virtual_routes_convert(tmp_path: Path) -> None:
    conversion = convert_text(ROUTES)
    assert only_instance(conversion)["virtual_routes"] == [
        {
            "to": "10.9.0.0/16",
            "via": "192.168.1.1",
            "dev": "eth1",
            "src": "192.168.1.200",
            "table": 100,
            "metric": 10,
        },
        {"to": "10.8.0.0/16", "via": "192.168.1.1"},
        {"to": "default", "via": "192.168.1.254", "table": 200},
        {"to": "192.168.3.7/32", "dev": "eth1", "metric": 5},
    ]
    assert reports(conversion) == [
        "k.conf:10: default: proto static: not supported: ignored",
        "k.conf:12: blackhole: blackhole routes are not supported: not converted",
        "k.conf:13: 10.5.0.0/16: table 'webs': only numbered tables (and main) convert: "
        "not converted",
        "k.conf:14: 10.4.0.0/16: needs via or dev: not converted",
        "k.conf:15: to: '10.3.0.1/16' is not an IPv4 network: not converted",
    ]
    loads(conversion, tmp_path)


RULES = instance(
    "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n"
    "  virtual_rules {\n"  # line 7
    "    from 192.168.1.200 table 100 priority 1000\n"
    "    from all to 10.9.0.0/16 lookup 100\n"
    "    to 10.8.0.0/16 table main pref 10 no_track\n"
    "    from 10.0.0.0/8 fwmark 3 table 100\n"
    "    from 10.0.0.0/8 goto 100\n"
    "    from all table 100\n"
    "    from 10.0.0.0/8 table webs\n"
    "  }\n"
)


def test_virtual_rules_convert_only_with_all_their_selectors(tmp_path: Path) -> None:
    conversion = convert_text(RULES)
    assert only_instance(conversion)["virtual_rules"] == [
        {"from": "192.168.1.200/32", "table": 100, "priority": 1000},
        {"to": "10.9.0.0/16", "table": 100},
        {"to": "10.8.0.0/16", "table": 254, "priority": 10},
    ]
    assert reports(conversion) == [
        "k.conf:10: to: no_track: not supported: ignored",
        "k.conf:11: from: fwmark: not supported (without it the rule would match other "
        "traffic): not converted",
        "k.conf:12: from: goto: not supported (without it the rule would match other "
        "traffic): not converted",
        "k.conf:13: from: matches all traffic: not converted",
        "k.conf:14: from: table 'webs': only numbered tables (and main) convert: not converted",
    ]
    loads(conversion, tmp_path)


def test_use_vmac_converts(tmp_path: Path) -> None:
    vip = "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n"
    conversion = convert_text(instance(vip + "  use_vmac\n"))
    converted = only_instance(conversion)
    assert (converted["vmac"], "vmac_interface" in converted) == (True, False)
    assert reports(conversion) == []
    loads(conversion, tmp_path)
    named = only_instance(convert_text(instance(vip + "  use_vmac vrrp51\n")))
    assert (named["vmac"], named["vmac_interface"]) == (True, "vrrp51")


def test_use_vmac_variants_and_unicast_are_reported() -> None:
    vip = "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n"
    conversion = convert_text(
        instance(vip + "  use_vmac\n  vmac_xmit_base\n  unicast_peer {\n    192.168.1.20\n  }\n")
    )
    assert "vmac" not in only_instance(conversion)
    assert reports(conversion) == [
        "k.conf:7: use_vmac: ipvsd runs a vmac with multicast adverts only: not converted",
        "k.conf:8: vmac_xmit_base: ipvsd's vmac is a macvlan that adverts leave from "
        "(keepalived's use_vmac): this variant is not supported: ignored",
    ]


def test_the_keepalived_config_converts_to_the_example() -> None:
    data = Path(__file__).resolve().parents[1] / "data" / "keepalived" / "vmac_routes.conf"
    conversion = convert(read_keepalived(str(data)).nodes)
    assert reports(conversion) == []
    example = load_config(Path(__file__).resolve().parents[2] / "examples" / "vmac-routes.yaml")
    converted = parse_config(to_yaml(conversion.data, header=["t"]), "converted")
    assert converted.vrrp == example.vrrp
