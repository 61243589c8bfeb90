"""What keepalived sends with ``vrrp_version 3`` decodes with ipvsd's VRRPv3 codec
(issue 14, first part): IPv4 and IPv6 adverts captured on the wire, checksum over
the pseudo-header included (RFC 5798 §5.2.8), which answers the question of
keepalived's IPv4 checksum for its default settings."""

from __future__ import annotations

import select
import socket
import textwrap
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

from ipvsd.vrrp.packet_v3 import AdvertisementV3, decode_message
from lab.netns import in_netns
from lab.vrrp_pair import KeepalivedProcess, VrrpLab

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
