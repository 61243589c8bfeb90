"""Which reals a director reaches only through a VRRP address (pure matching)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from ipvsd.netlink.routes import Route, reals_behind_vips

VIP_GW = ip_address("192.168.2.254")
VIPS = {ip_address("192.168.1.200"), VIP_GW}


def route(destination: str, *gateways: str) -> Route:
    return Route(ip_network(destination), tuple(ip_address(g) for g in gateways))


ON_LINK = route("192.168.2.0/24")
DEFAULT = route("0.0.0.0/0", "192.168.1.1")


def reals(*addresses: str) -> list[IPv4Address | IPv6Address]:
    return [ip_address(a) for a in addresses]


def test_nothing_when_no_route_points_at_a_vip() -> None:
    assert reals_behind_vips([DEFAULT, ON_LINK], reals("192.168.2.30", "10.9.0.5"), VIPS) == []


def test_a_real_behind_a_gateway_vip_is_reported_once_with_its_route() -> None:
    behind = route("10.9.0.0/16", "192.168.2.254")
    found = reals_behind_vips(
        [DEFAULT, ON_LINK, behind], reals("10.9.0.5", "10.9.0.5", "192.168.2.30"), VIPS
    )
    assert [(str(f.real), f.route) for f in found] == [("10.9.0.5", behind)]


def test_a_more_specific_route_without_a_vip_wins() -> None:
    behind = route("10.0.0.0/8", "192.168.2.254")
    direct = route("10.9.0.0/24")
    assert reals_behind_vips([behind, direct], reals("10.9.0.5"), VIPS) == []
    assert [str(f.real) for f in reals_behind_vips([behind, direct], reals("10.8.0.5"), VIPS)] == [
        "10.8.0.5"
    ]


def test_a_default_route_via_a_vip_catches_reals_without_a_better_route() -> None:
    default_via_vip = route("0.0.0.0/0", "192.168.1.200")
    found = reals_behind_vips([default_via_vip, ON_LINK], reals("192.168.2.30", "10.1.1.1"), VIPS)
    assert [str(f.real) for f in found] == ["10.1.1.1"]


def test_multipath_with_one_real_router_is_not_only_through_a_vip() -> None:
    mixed = route("10.9.0.0/16", "192.168.2.254", "192.168.2.1")
    only_vips = route("10.9.0.0/16", "192.168.2.254", "192.168.1.200")
    assert reals_behind_vips([mixed], reals("10.9.0.5"), VIPS) == []
    assert len(reals_behind_vips([only_vips], reals("10.9.0.5"), VIPS)) == 1


def test_families_do_not_mix() -> None:
    v6_default_via_vip = route("::/0", "2001:db8::1")
    found = reals_behind_vips(
        [v6_default_via_vip], reals("10.9.0.5", "2001:db8:9::5"), {ip_address("2001:db8::1")}
    )
    assert [str(f.real) for f in found] == ["2001:db8:9::5"]
