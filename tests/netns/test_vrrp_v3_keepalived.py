"""VRRPv3 with keepalived (Debian's 2.2.7, ``vrrp_version 3``), issue 14.

First what keepalived sends decodes with ipvsd's VRRPv3 codec: IPv4 and IPv6
adverts captured on the wire, checksum over the pseudo-header included (RFC
5798 §5.2.8), which answers the question of keepalived's IPv4 checksum for its
default settings. Then IPv4 interop both ways at a 0.1 s interval (election,
failover on a kill, priority-0 hand-over, preemption), and a backup that
follows a master advertising another interval (RFC 5798 §6.4.2).
"""

from __future__ import annotations

import select
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ipvsd.control.client import request
from ipvsd.vrrp.packet_v3 import AdvertisementV3, decode_message
from lab.netns import in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import KeepalivedProcess, VrrpLab
from tests.netns.test_vrrp_keepalived import SLACK, complaints

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
VRRP = 112

CONFIG = """\
global_defs {
  router_id k1
  vrrp_version 3
}
vrrp_instance V4 {
  state BACKUP
  interface eth1
  virtual_router_id 51
  priority 150
  advert_int 0.5
  virtual_ipaddress {
    192.168.1.200/24
  }
}
vrrp_instance V6 {
  state BACKUP
  interface eth1
  virtual_router_id 52
  priority 150
  advert_int 1
  virtual_ipaddress {
    2001:db8::200/64
  }
}
"""


def frames(lab: VrrpLab, ethertype: int, seconds: float) -> Iterator[bytes]:
    with in_netns(lab.observer):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    try:
        sock.bind(("eth0", ethertype))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                yield sock.recv(2048)
    finally:
        sock.close()


def first_adverts(lab: VrrpLab, seconds: float) -> dict[int, AdvertisementV3]:
    """The first decodable VRRPv3 advert of each family, by IP version."""
    found: dict[int, AdvertisementV3] = {}
    deadline = time.monotonic() + seconds
    while len(found) < 2 and time.monotonic() < deadline:
        for frame in frames(lab, ETH_P_IP, 1.5):
            ip = frame[14:]
            if ip[9] == VRRP and 4 not in found:
                src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
                found[4] = decode_message(ip[(ip[0] & 0x0F) * 4 :], src, dst)
        for frame in frames(lab, ETH_P_IPV6, 1.5):
            ip6 = frame[14:]
            if ip6[6] == VRRP and 6 not in found:
                src6, dst6 = IPv6Address(ip6[8:24]), IPv6Address(ip6[24:40])
                assert src6.is_link_local
                assert dst6 == IPv6Address("ff02::12")
                found[6] = decode_message(ip6[40:], src6, dst6)
    return found


def test_keepalived_v3_adverts_decode_for_both_families(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    config = lab.workdir / "k1.keepalived.conf"
    config.write_text(textwrap.dedent(CONFIG))
    keepalived = KeepalivedProcess(
        lab.topo, lab.routers["d1"], config, lab.workdir / "k1.keepalived.log"
    )
    keepalived.start()
    try:
        # MASTER after ~3 intervals; IPv6 waits for the link-local address's DAD too.
        adverts = first_adverts(lab, 20)
    finally:
        keepalived.stop()
    assert adverts[4] == AdvertisementV3(51, 150, 50, (IPv4Address("192.168.1.200"),))
    assert adverts[6] == AdvertisementV3(52, 150, 100, (IPv6Address("2001:db8::200"),))


FAST = 0.1  # seconds: ten adverts a second


def master_down_interval(priority: int, interval: float) -> float:
    """RFC 5798 §6.1: 3 * Master_Adver_Interval + ((256 - priority) * it) / 256."""
    return 3 * interval + (256 - priority) * interval / 256


def rejected(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "vrrp.packet_rejected"]


def elected(lab: VrrpLab, master: Any, backup: Any) -> None:
    """Start d1's `master` (priority 100) then d2's `backup` (90); d1 wins and keeps the
    VIP for a second of adverts (the backup accepts every one of them)."""
    master.start()
    backup.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=5)
    time.sleep(1)
    assert lab.holder() == ["d1"]


def test_ipvsd_v3_master_keepalived_v3_backup(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    ipvsd = lab.daemon("d1", 100, version=3, advert_int=FAST)
    keepalived = lab.keepalived("d2", 90, version=3, advert_int=FAST)
    elected(lab, ipvsd, keepalived)
    ipvsd.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.02)
    assert took <= master_down_interval(90, FAST) + SLACK
    ipvsd.start()  # removes its stale VIP, then preempts keepalived
    wait_until(lambda: lab.holder() == ["d1"], timeout=5)
    assert ipvsd.stop() == 0  # priority 0: keepalived takes over within its skew time
    wait_until(lambda: lab.holder() == ["d2"], timeout=1.5, interval=0.02)
    keepalived.stop()
    assert complaints(keepalived.text()) == [], keepalived.text()


def test_keepalived_v3_master_ipvsd_v3_backup(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    keepalived = lab.keepalived("d1", 100, version=3, advert_int=FAST)
    ipvsd = lab.daemon("d2", 90, version=3, advert_int=FAST)
    elected(lab, keepalived, ipvsd)
    keepalived.stop(signal.SIGTERM, wait=False)  # keepalived sends priority 0
    wait_until(lambda: lab.holder() == ["d2"], timeout=1.5, interval=0.02)
    keepalived.wait()
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=5)  # keepalived preempts
    keepalived.stop(signal.SIGKILL)  # a crash of the whole process group
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.02)
    assert took <= master_down_interval(90, FAST) + SLACK
    assert rejected(ipvsd.events()) == []  # ipvsd accepted every keepalived advert
    assert complaints(keepalived.text()) == [], keepalived.text()


def test_a_v3_backup_follows_the_masters_interval(vrrp_lab: VrrpLab) -> None:
    """keepalived advertises every second; ipvsd, configured for 0.1 s, times the master
    by its adverts' 1 s (RFC 5798 §6.4.2) instead of taking over between two of them."""
    lab = vrrp_lab
    keepalived = lab.keepalived("d1", 100, version=3, advert_int=1)
    ipvsd = lab.daemon("d2", 90, version=3, advert_int=FAST)
    keepalived.start()
    ipvsd.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=master_down_interval(100, 1) + 3)
    socket_path = str(lab.workdir / "d2.sock")

    def status() -> dict[str, Any]:
        vrrp: list[dict[str, Any]] = request(socket_path, {"command": "status"})["result"]["vrrp"]
        return vrrp[0]

    wait_until(lambda: status()["master_adver_int"] == 1.0, timeout=3)
    shown = status()
    assert (shown["advert_int"], shown["version"], shown["family"]) == (0.1, 3, "ipv4")
    assert shown["accept_mode"] is True
    transitions = len([e for e in ipvsd.events() if e.get("event") == "vrrp.transition"])
    time.sleep(3)
    assert lab.holder() == ["d1"]
    after = [e for e in ipvsd.events() if e.get("event") == "vrrp.transition"]
    assert len(after) == transitions  # never MASTER between keepalived's adverts
    keepalived.stop(signal.SIGKILL)
    took = wait_until(lambda: "d2" in lab.holder(), timeout=6, interval=0.05)
    # The learned interval's Master_Down_Interval (3.648 s), less up to one interval.
    assert master_down_interval(90, 1) - 1 - SLACK <= took <= master_down_interval(90, 1) + SLACK
    assert rejected(ipvsd.events()) == []


def test_unicast_v3_with_keepalived(vrrp_lab: VrrpLab) -> None:
    """The checksum covers the unicast destination (keepalived since 1.3.6, and ipvsd):
    each side, as BACKUP, accepts the other's unicast adverts and stays BACKUP."""
    lab = vrrp_lab
    d1, d2 = "192.168.1.10", "192.168.1.20"
    ipvsd = lab.daemon("d1", 100, version=3, advert_int=FAST, unicast_peers=(d2,))
    keepalived = lab.keepalived("d2", 90, version=3, advert_int=FAST, unicast_peers=(d1,))
    elected(lab, ipvsd, keepalived)  # keepalived accepts ipvsd's
    # ... as they are: not by switching to keepalived < 1.3.6's multicast checksum.
    assert "Setting unicast VRRPv3 checksum to old version" not in keepalived.text()
    keepalived.stop()
    keepalived = lab.keepalived("d2", 110, version=3, advert_int=FAST, unicast_peers=(d1,))
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d2"], timeout=5)  # keepalived preempts
    time.sleep(1)
    assert lab.holder() == ["d2"]  # ipvsd accepts keepalived's and stays BACKUP
    assert rejected(ipvsd.events()) == []
    keepalived.stop()
    assert complaints(keepalived.text()) == [], keepalived.text()
