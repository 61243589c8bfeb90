"""`VrrpRouter` with IPv6 VRRPv3 instances over a simulated host (issue 14): adverts to
ff02::12 from the link-local address, FAULT while there is none, unsolicited Neighbor
Advertisements for the VIPs, and the RFC 5798 §7.1 receive checks of `ReceivedPacket6`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

import pytest

from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.ndisc import unsolicited_na
from ipvsd.vrrp.packet_v3 import VRRP_GROUP_V6, AdvertisementV3, decode_message, encode_message
from ipvsd.vrrp.transport6 import ReceivedPacket6
from tests.fakes.vrrp_io import FakeSocket
from tests.unit.test_vrrp_router import Rig, until
from tests.unit.test_vrrp_router import config as v2_config

MASTER, BACKUP, FAULT = VrrpState.MASTER, VrrpState.BACKUP, VrrpState.FAULT
VIP6 = IPv6Interface("2001:db8::200/64")
LLA = IPv6Address("fe80::10")
PEER = IPv6Address("fe80::20")
MAC = "02:00:00:00:00:01"  # FakeHost's links


def config(name: str = "VI_6", **fields: Any) -> VrrpInstanceConfig:
    """An IPv6 VRRPv3 owner on eth1, VRID 61, 0.1 s."""
    values: dict[str, Any] = {
        "version": 3,
        "vrid": 61,
        "advert_int": 0.1,
        "virtual_ipaddresses": (str(VIP6),),
    }
    return v2_config(name, **(values | fields))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    rig.host.add_link("eth1", address="192.168.1.10/24")
    rig.host.add_address("eth1", f"{LLA}/64")
    yield rig
    await rig.router.stop()


def v6_socket(rig: Rig, *, unicast: bool = False) -> FakeSocket:
    (sock,) = [s for s in rig.wire.open_sockets(family="ipv6") if s.unicast == unicast]
    return sock


def heard(
    priority: int,
    *,
    src: IPv6Address = PEER,
    dst: IPv6Address = VRRP_GROUP_V6,
    hop_limit: int = 255,
    vrid: int = 61,
    corrupt: bool = False,
) -> ReceivedPacket6:
    message = encode_message(AdvertisementV3(vrid, priority, 10, (VIP6.ip,)), src, dst)
    if corrupt:
        message = message[:6] + bytes([message[6] ^ 0xFF]) + message[7:]
    return ReceivedPacket6(message, src, dst, hop_limit)


async def test_an_owner_advertises_to_ff02_12_from_the_link_local_address(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state("VI_6") is MASTER and bool(rig.host.vips()))
    sock = v6_socket(rig)
    payload, destination = sock.sent[0]
    assert destination == VRRP_GROUP_V6
    assert sock.source == LLA
    assert decode_message(payload, LLA, VRRP_GROUP_V6) == AdvertisementV3(61, 255, 10, (VIP6.ip,))
    assert rig.host.vips() == {VIP6}
    assert rig.instance("VI_6").status.primary_ip == LLA
    # No IPv4 socket was opened for it: the endpoint is per family.
    assert rig.wire.open_sockets(family="ipv4") == []


async def test_the_vips_are_announced_with_unsolicited_nas(rig: Rig) -> None:
    await rig.router.start([config(garp_repeat=3)], [])
    await until(lambda: rig.state("VI_6") is MASTER and bool(rig.wire.garps[0].bursts))
    (garp,) = rig.wire.garps
    assert garp.bursts[0] == ([unsolicited_na(MAC, VIP6.ip, router=False)], 3)


async def test_leaving_master_removes_the_ipv6_vips(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state("VI_6") is MASTER and bool(rig.host.vips()))
    sock = v6_socket(rig)
    await rig.router.stop()
    assert rig.host.vips() == set()
    assert ("remove", "eth1", VIP6) in rig.host.log
    assert sock.priorities()[-1] == 0  # resigned


async def test_without_a_link_local_address_it_waits_in_fault_until_one_appears() -> None:
    rig = Rig()
    rig.host.add_link("eth1", address="192.168.1.10/24")
    try:
        await rig.router.start([config()], [])
        await until(lambda: rig.state("VI_6") is FAULT)
        reason = rig.instance("VI_6").status.fault_reason
        assert reason is not None
        assert "link-local" in reason
        assert v6_socket(rig).sent == []
        rig.host.add_address("eth1", f"{LLA}/64", tentative=True)  # DAD running
        rig.host.add_address("eth1", "2001:db8::10/64")  # a global one is no source
        await asyncio.sleep(0.1)  # both events handled: neither is a source
        assert rig.state("VI_6") is FAULT
        rig.host.dad_done("eth1", f"{LLA}/64")
        await until(lambda: rig.state("VI_6") is MASTER)
        assert v6_socket(rig).source == LLA
    finally:
        await rig.router.stop()


async def test_a_backup_follows_a_valid_ipv6_advert(rig: Rig) -> None:
    await rig.router.start([config(priority=100)], [])
    await until(lambda: rig.state("VI_6") is BACKUP)
    v6_socket(rig).inbox.put_nowait(heard(200))
    await until(lambda: rig.instance("VI_6").status.master_address == PEER)
    assert rig.rejects == []


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (heard(200, hop_limit=64), "ttl"),
        (heard(200, corrupt=True), "checksum"),
        (heard(200, dst=LLA), "unexpected_unicast"),
        (heard(200, vrid=62), "unknown_vrid"),
    ],
    ids=["hop-limit-64", "bad-checksum", "unicast-in-multicast-mode", "other-vrid"],
)
async def test_a_bad_multicast_advert_is_dropped_counted_and_changes_nothing(
    rig: Rig, packet: ReceivedPacket6, reason: str
) -> None:
    await rig.router.start([config(priority=100)], [])
    await until(lambda: rig.state("VI_6") is BACKUP)
    v6_socket(rig).inbox.put_nowait(packet)
    await until(lambda: bool(rig.rejects))
    assert rig.rejects == [("eth1", reason)]
    assert rig.instance("VI_6").status.master_address is None


async def test_unicast_mode_takes_any_hop_limit_and_refuses_the_group(rig: Rig) -> None:
    """keepalived 2.2.7 sends IPv6 unicast adverts with hop limit 64 (docs/vrrp-ipv6.md)."""
    await rig.router.start([config(priority=100, unicast_peers=(str(PEER),))], [])
    await until(lambda: rig.state("VI_6") is BACKUP)
    sock = v6_socket(rig, unicast=True)
    sock.inbox.put_nowait(heard(200))  # to ff02::12
    await until(lambda: bool(rig.rejects))
    assert rig.rejects == [("eth1", "unexpected_multicast")]
    sock.inbox.put_nowait(heard(200, dst=LLA, hop_limit=64))
    await until(lambda: rig.instance("VI_6").status.master_address == PEER)
    assert len(rig.rejects) == 1


async def test_unicast_adverts_go_to_each_ipv6_peer(rig: Rig) -> None:
    other = IPv6Address("2001:db8::30")
    await rig.router.start([config(unicast_peers=(str(PEER), str(other)))], [])
    await until(lambda: len(v6_socket(rig, unicast=True).sent) >= 2)
    sent = v6_socket(rig, unicast=True).sent[:2]
    assert [dst for _, dst in sent] == [PEER, other]
    for payload, dst in sent:
        assert decode_message(payload, LLA, dst).priority == 255


async def test_ipv4_and_ipv6_instances_on_one_interface_have_sockets_of_their_own(
    rig: Rig,
) -> None:
    await rig.router.start([config(), v2_config(version=3, advert_int=0.1)], [])
    await until(lambda: rig.state("VI_6") is MASTER and rig.state() is MASTER)
    (v4,) = rig.wire.open_sockets(family="ipv4")
    v6 = v6_socket(rig)
    assert {dst.version for _, dst in v4.sent} == {4}
    assert {dst.version for _, dst in v6.sent} == {6}


@pytest.mark.parametrize(
    ("family", "fields"),
    [
        ("ipv6", {"unicast_peers": ("2001:db8::20",), "unicast_src": "2001:db8::10"}),
        (
            "ipv4",
            {
                "unicast_peers": ("192.168.1.20",),
                "unicast_src": "192.168.1.11",
                "virtual_ipaddresses": ("192.168.1.200/24",),
            },
        ),
    ],
)
async def test_a_v3_instance_with_unicast_src_advertises_from_it(
    rig: Rig, family: str, fields: dict[str, Any]
) -> None:
    """The VRRPv3 checksum covers the source: it must be known from the start."""
    await rig.router.start([config(**fields)], [])
    (sock,) = [s for s in rig.wire.adverts if s.family == family]
    await until(lambda: bool(sock.sent))
    source = sock.source
    assert str(source) == fields["unicast_src"]
    payload, destination = sock.sent[0]
    assert str(destination) == fields["unicast_peers"][0]
    assert source is not None
    assert decode_message(payload, source, destination).priority == 255


async def test_garp_delay_and_garp_refresh_repeat_the_nas(rig: Rig) -> None:
    """The IPv4 path's repeats, for NAs: a second burst after ``garp_delay``, then one NA
    per VIP every ``garp_refresh`` (keepalived's vrrp_garp_master_delay / _refresh)."""
    await rig.router.start([config(garp_repeat=2, garp_delay=0.1, garp_refresh=1)], [])
    await until(lambda: len(rig.wire.garps[0].bursts) >= 3, within=3)
    na = [unsolicited_na(MAC, VIP6.ip, router=False)]
    bursts = rig.wire.garps[0].bursts
    assert bursts[:2] == [(na, 2), (na, 2)]  # at MASTER, then garp_delay later
    assert (na, 1) in bursts[2:]  # a refresh: one NA


async def test_both_families_follow_a_recreated_interface(rig: Rig) -> None:
    """Each (interface, family) endpoint closes when the interface goes and opens on
    its successor (`vrrp.relink`); the instances leave FAULT with their own family's source."""
    await rig.router.start([config(), v2_config(version=3, advert_int=0.1)], [])
    await until(lambda: rig.state("VI_6") is MASTER and rig.state() is MASTER)
    old = {s.family: s for s in rig.wire.adverts}
    rig.host.delete_link("eth1")
    await until(lambda: rig.state("VI_6") is FAULT and rig.state() is FAULT)
    assert all(sock.closed for sock in old.values())
    new = rig.host.add_link("eth1", address="192.168.1.10/24")
    rig.host.add_address("eth1", f"{LLA}/64")
    await until(lambda: rig.state("VI_6") is MASTER and rig.state() is MASTER)
    (v6,) = rig.wire.open_sockets(family="ipv6")
    (v4,) = rig.wire.open_sockets(family="ipv4")
    assert (v6.ifindex, v4.ifindex) == (new.index, new.index)
    await until(lambda: bool(v6.sent) and bool(v4.sent))
    assert v6.source == LLA
    assert rig.host.vips() == {VIP6, IPv4Interface("192.168.1.200/24")}
