"""What `AddressManager.add` asks the kernel for: IPv6 VIPs without DAD, IPv4 VIPs labelled.

The kernel's side (the address usable at once, not ``tentative``) is proven in
``tests/netns/test_vrrp_io6.py``."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from ipvsd.netlink.addresses import IFA_F_NODAD, add_request


def test_ipv6_vips_are_added_without_duplicate_address_detection_and_deprecated() -> None:
    request = add_request(IPv6Interface("2001:db8::200/64"), "eth1:vrrp52", scope=0)
    assert request == {
        "address": "2001:db8::200",
        "prefixlen": 64,
        "scope": 0,
        "flags": IFA_F_NODAD,  # pyroute2 sends it as IFA_FLAGS, as `ip addr add ... nodad`
        # preferred_lft 0, valid_lft forever: never the director's own source address
        "IFA_CACHEINFO": {"ifa_preferred": 0, "ifa_valid": 0xFFFFFFFF, "cstamp": 0, "tstamp": 0},
    }
    assert IFA_F_NODAD == 0x02  # <linux/if_addr.h>


def test_ipv6_vips_get_no_label() -> None:
    # IPv6 addresses have no labels: the kernel ignores IFA_LABEL, keepalived refuses one
    assert "label" not in add_request(IPv6Interface("fd00::1/128"), "eth1:vrrp52")


def test_ipv4_vips_are_labelled_and_keep_dad_out_of_it() -> None:
    vip = IPv4Interface("10.0.0.100/24")
    assert add_request(vip, "eth1:vrrp51", scope=253) == {
        "address": "10.0.0.100",
        "prefixlen": 24,
        "scope": 253,
        "label": "eth1:vrrp51",
    }
    with_broadcast = add_request(vip, "eth1:vrrp51", broadcast=IPv4Address("10.0.0.255"))
    assert with_broadcast["broadcast"] == "10.0.0.255"
    assert "flags" not in with_broadcast
