"""``ipvsd import keepalived`` of VRRPv3 (issue 14): ``vrrp_version 3`` and ``version``,
fractional ``advert_int``, IPv6 ``virtual_ipaddress``, ``accept``/``no_accept`` and the
checksum switches."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_import_keepalived_addresses import (
    convert_text,
    instance,
    loads,
    only_instance,
    reports,
)

VIP = "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n"
VIP6 = "  virtual_ipaddress {\n    2001:db8::200/64\n  }\n"


def test_global_vrrp_version_3_and_centisecond_intervals(tmp_path: Path) -> None:
    conversion = convert_text(
        "global_defs {\n  vrrp_version 3\n}\n" + instance("  advert_int 0.1\n" + VIP)
    )
    converted = only_instance(conversion)
    assert (converted["version"], converted["advert_int"]) == (3, 0.1)
    assert reports(conversion) == []
    loads(conversion, tmp_path)


def test_the_instance_version_wins_over_the_global_one(tmp_path: Path) -> None:
    conversion = convert_text(
        "global_defs {\n  vrrp_version 3\n}\n" + instance("  version 2\n  advert_int 2\n" + VIP)
    )
    converted = only_instance(conversion)
    assert "version" not in converted  # 2 is ipvsd's default
    assert converted["advert_int"] == 2
    assert reports(conversion) == []
    loads(conversion, tmp_path)


def test_v3_intervals_round_to_the_centisecond_as_keepalived(tmp_path: Path) -> None:
    conversion = convert_text(instance("  version 3\n  advert_int 0.015\n" + VIP))
    assert only_instance(conversion)["advert_int"] == 0.02
    assert reports(conversion) == [
        "k.conf:5: advert_int: VRRPv3 adverts are in centiseconds: advert_int 0.02 "
        "(was 0.015), as keepalived rounds it"
    ]
    loads(conversion, tmp_path)
    conversion = convert_text(instance("  advert_int 60\n  version 3\n" + VIP))
    assert only_instance(conversion)["advert_int"] == 40.95
    assert reports(conversion) == [
        "k.conf:4: advert_int: VRRPv3 adverts at most 40.95 s: advert_int 40.95 (was 60), "
        "as keepalived sets it"
    ]


def test_v2_fractions_still_round_up_to_whole_seconds() -> None:
    conversion = convert_text(instance("  advert_int 0.5\n" + VIP))
    assert only_instance(conversion)["advert_int"] == 1
    assert reports(conversion) == [
        "k.conf:4: advert_int: VRRPv2 adverts are in whole seconds: advert_int 1 (was 0.5)"
    ]


def test_an_ipv6_instance_is_vrrpv3(tmp_path: Path) -> None:
    """keepalived gives an IPv6 instance version 3 whatever vrrp_version says."""
    conversion = convert_text(
        instance(
            "  advert_int 0.5\n  unicast_src_ip fe80::1\n"
            "  unicast_peer {\n    fe80::2\n  }\n" + VIP6
        )
    )
    converted = only_instance(conversion)
    assert converted["version"] == 3
    assert converted["advert_int"] == 0.5
    assert converted["virtual_ipaddresses"] == ["2001:db8::200/64"]
    assert (converted["unicast_src"], converted["unicast_peers"]) == ("fe80::1", ["fe80::2"])
    assert reports(conversion) == []
    loads(conversion, tmp_path)


def test_vips_of_the_other_family_are_left_out() -> None:
    conversion = convert_text(
        instance("  virtual_ipaddress {\n    192.168.1.200/24\n    fd00::1/64\n  }\n")
    )
    assert only_instance(conversion)["virtual_ipaddresses"] == ["192.168.1.200/24"]
    assert reports(conversion) == [
        "k.conf:6: fd00::1/64: IPv6, but the instance is IPv4 (its first VIP's family, as "
        "keepalived): not converted"
    ]


def test_an_explicit_version_2_for_ipv6_becomes_3() -> None:
    conversion = convert_text(instance("  version 2\n" + VIP6))
    assert only_instance(conversion)["version"] == 3
    assert reports(conversion) == [
        "k.conf:4: version: VRRPv2 is IPv4 only (RFC 3768); this IPv6 instance speaks "
        "VRRPv3, as keepalived's does with vrrp_strict"
    ]


def test_accept_and_no_accept() -> None:
    conversion = convert_text(instance("  version 3\n  accept\n" + VIP))
    assert "accept_mode" not in only_instance(conversion)  # true is ipvsd's default
    assert reports(conversion) == []
    conversion = convert_text(instance("  version 3\n  no_accept\n" + VIP))
    assert only_instance(conversion)["accept_mode"] is False
    assert reports(conversion) == []  # enforced after IPVS: the VIP's services still flow
    conversion = convert_text(instance("  version 2\n  no_accept\n" + VIP))
    assert only_instance(conversion)["accept_mode"] is False


def test_the_checksum_switches_are_reported() -> None:
    conversion = convert_text(
        "global_defs {\n  v3_checksum_as_v2\n}\n"
        + instance("  version 3\n  old_unicast_checksum\n  v3_checksum_as_v2\n" + VIP)
    )
    assert only_instance(conversion)["version"] == 3
    assert reports(conversion) == [
        "k.conf:2: v3_checksum_as_v2: ipvsd's IPv4 VRRPv3 checksum always covers the "
        "pseudo-header (keepalived's default): peers with v3_checksum_as_v2 are refused "
        "as 'checksum': ignored",
        "k.conf:8: old_unicast_checksum: ipvsd checksums unicast VRRPv3 adverts with the "
        "real destination, not keepalived < 1.3.6's multicast group: ignored",
        "k.conf:9: v3_checksum_as_v2: ipvsd's IPv4 VRRPv3 checksum always covers the "
        "pseudo-header (keepalived's default): peers with v3_checksum_as_v2 are refused "
        "as 'checksum': ignored",
    ]
