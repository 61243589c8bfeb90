"""BGP mode's host checks (ipvsd/bgp/host.py): VIPs that are not local, ARP sysctls."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from ipvsd.bgp.host import host_problems


def sysctls(tmp_path: Path, arp_ignore: int, arp_announce: int) -> Path:
    conf = tmp_path / "net" / "ipv4" / "conf" / "all"
    conf.mkdir(parents=True)
    (conf / "arp_ignore").write_text(f"{arp_ignore}\n")
    (conf / "arp_announce").write_text(f"{arp_announce}\n")
    return tmp_path


def test_a_local_vip_with_arp_suppressed_is_fine(tmp_path: Path) -> None:
    assert host_problems([ip_network("127.0.0.1/32")], sysctls(tmp_path, 1, 2)) == []


def test_what_is_missing_is_said(tmp_path: Path) -> None:
    problems = host_problems([ip_network("192.0.2.200/32")], sysctls(tmp_path, 0, 0))
    assert problems == [
        "VIP 192.0.2.200 is not an address of this host: IPVS will not accept its packets "
        "(add it to a dummy interface or lo, see docs/bgp.md)",
        "net.ipv4.conf.all.arp_ignore is 0, not 1: the director would answer ARP for its VIPs",
        "net.ipv4.conf.all.arp_announce is 0, not 2: ARP requests may carry a VIP as their source",
    ]


def test_ipv6_vips_need_no_arp_settings(tmp_path: Path) -> None:
    assert host_problems([ip_network("::1/128")], sysctls(tmp_path, 0, 0)) == []
