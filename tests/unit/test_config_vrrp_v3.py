"""Issue 14: ``version: 3`` (RFC 5798) per instance: centisecond ``advert_int``, one
address family per instance (IPv6 VIPs need version 3), ``accept_mode``."""

from __future__ import annotations

from ipaddress import IPv6Interface
from pathlib import Path

import pytest

from ipvsd.cli import main
from tests.unit.test_config_vrrp_addresses import _instance, _issues, _only, _parse

VIPS = "virtual_ipaddresses: [192.168.1.200/24]\n"
VIPS6 = "virtual_ipaddresses: ['2001:db8::200/64']\n"


def test_version_2_by_default_and_whole_second_intervals_unchanged() -> None:
    instance = _parse(_instance(VIPS)).vrrp.instances[0]
    assert (instance.version, instance.advert_int, instance.accept_mode) == (2, 1, True)
    assert instance.family == "ipv4"
    assert _parse(_instance(VIPS + "advert_int: 255\n")).vrrp.instances[0].advert_int == 255


def test_version_3_takes_centisecond_intervals() -> None:
    for text, value in (("0.01", 0.01), ("0.1", 0.1), ("1.25", 1.25), ("40.95", 40.95)):
        instance = _parse(_instance(VIPS + f"version: 3\nadvert_int: {text}\n")).vrrp.instances[0]
        assert (instance.version, instance.advert_int) == (3, value)
        assert instance.advert_int_cs == round(value * 100)


def test_a_fraction_under_version_2_is_refused_at_its_line() -> None:
    found = _issues(_instance(VIPS + "advert_int: 0.5\n"))
    assert found == [
        (
            7,
            "vrrp.instances.0.advert_int",
            "advert_int 0.5: VRRPv2 advertises whole seconds; "
            "use version: 3 for sub-second intervals",
        )
    ]
    _only(_instance(VIPS + "advert_int: 1.5\n"), 7, "vrrp.instances.0.advert_int", "whole seconds")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0.015", "centisecond steps"),
        ("0.001", "between 0.01 and 255"),
        ("41", "at most 40.95 s"),
        ("0", "between 0.01 and 255"),
        (".nan", "finite"),
    ],
)
def test_version_3_intervals_out_of_range_or_finer_than_a_centisecond(
    value: str, fragment: str
) -> None:
    _only(
        _instance(VIPS + f"version: 3\nadvert_int: {value}\n"),
        8,
        "vrrp.instances.0.advert_int",
        fragment,
    )


def test_only_versions_2_and_3() -> None:
    _only(_instance(VIPS + "version: 4\n"), 7, "vrrp.instances.0.version", "2 or 3")


def test_ipv6_vips_need_version_3() -> None:
    _only(_instance(VIPS6), 6, "vrrp.instances.0.virtual_ipaddresses.0", "version: 3")
    instance = _parse(_instance(VIPS6 + "version: 3\n")).vrrp.instances[0]
    assert instance.family == "ipv6"
    assert instance.virtual_ipaddresses[0].address == IPv6Interface("2001:db8::200/64")


def test_an_instance_is_one_address_family() -> None:
    found = _issues(
        _instance(
            "version: 3\n"
            "virtual_ipaddresses: [192.168.1.200/24, '2001:db8::200/64']\n"
            "virtual_ipaddresses_excluded: ['2001:db8::201']\n"
        )
    )
    assert found == [
        (
            7,
            "vrrp.instances.0.virtual_ipaddresses.1",
            "2001:db8::200 is IPv6 but the instance is IPv4 (its first VIP, "
            "192.168.1.200); an instance is one address family (RFC 5798 §5.2): "
            "use one instance per family",
        ),
        (
            8,
            "vrrp.instances.0.virtual_ipaddresses_excluded.0",
            "2001:db8::201 is IPv6 but the instance is IPv4 (its first VIP, "
            "192.168.1.200); an instance is one address family (RFC 5798 §5.2): "
            "use one instance per family",
        ),
    ]


def test_ipv6_instance_peers_and_source_are_its_family() -> None:
    found = _issues(
        _instance(
            VIPS6 + "version: 3\nunicast_peers: ['fe80::2', 192.168.1.20]\nunicast_src: 10.0.0.1\n"
        )
    )
    assert [(line, field) for line, field, _ in found] == [
        (8, "vrrp.instances.0.unicast_peers.1"),
        (9, "vrrp.instances.0.unicast_src"),
    ]
    assert "192.168.1.20 is IPv4 but the instance is IPv6" in found[0][2]


def test_ipv6_vip_fields_that_are_ipv4_only() -> None:
    found = _issues(
        _instance(
            "version: 3\n"
            "virtual_ipaddresses: [{address: '2001:db8::200/64', broadcast: 10.0.0.255}]\n"
        )
    )
    assert found == [
        (
            7,
            "vrrp.instances.0.virtual_ipaddresses.0.broadcast",
            "IPv6 has no broadcast address",
        )
    ]


def test_ipv6_vips_are_unicast() -> None:
    _only(
        _instance("version: 3\nvirtual_ipaddresses: ['ff02::1']\n"),
        7,
        "vrrp.instances.0.virtual_ipaddresses.0",
        "multicast",
    )


def test_accept_mode_false_is_taken_for_any_priority_and_version() -> None:
    """RFC 5798 §6.1: enforced by nf_tables rules after IPVS (`ipvsd.netlink.nftables`);
    the owner (255) always accepts, whatever it says."""
    assert _parse(_instance(VIPS + "version: 3\naccept_mode: true\n")).vrrp.instances[0].accept_mode
    for extra in ("version: 3\n", "version: 2\n", "version: 3\npriority: 255\n"):
        config = _parse(_instance(VIPS + extra + "accept_mode: false\n"))
        assert not config.vrrp.instances[0].accept_mode


def test_version_3_has_no_authentication() -> None:
    _only(
        _instance(VIPS + "version: 3\nauth_pass: secret\n"),
        8,
        "vrrp.instances.0.auth_pass",
        "VRRPv3 has no authentication (RFC 5798 §9 removed it)",
    )


def test_check_config_accepts_an_ipv6_v3_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid IPv6 VRRPv3 instance: check-config says so (and refuses it as VRRPv2)."""
    config = tmp_path / "ipvsd.yaml"
    config.write_text(
        _instance(VIPS6 + "version: 3\nadvert_int: 0.05\n").removeprefix("\n")
        + "ipvs: {services: []}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 0
    config.write_text(_instance(VIPS6).removeprefix("\n"))
    assert main(["check-config", "--config", str(config)]) == 1
    assert "virtual_ipaddresses.0: 2001:db8::200 is IPv6" in capsys.readouterr().out


def test_no_vmac_for_an_ipv6_instance_yet() -> None:
    """RFC 5798 §7.3's IPv6 virtual MAC (00:00:5e:00:02:VRID) and the vmac's own
    link-local source are not wired: refused rather than run with the IPv4 one."""
    _only(
        _instance(VIPS6 + "version: 3\nvmac: true\n"),
        8,
        "vrrp.instances.0.vmac",
        "IPv6",
    )
