"""`VrrpRouter` with VRRPv3 instances over a simulated host (issue 14): v3 adverts
with the pseudo-header checksum per destination, receiving by the instance's version
on the shared socket, the master's interval adopted, IPv4 and IPv6 instances side by side."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.packet import VRRP_GROUP, Advertisement, encode_ip
from ipvsd.vrrp.packet_v3 import AdvertisementV3, decode_message, encode_ip_v3
from ipvsd.vrrp.transport import ReceivedPacket
from tests.unit.test_vrrp_router import VIP, Rig, until
from tests.unit.test_vrrp_router import config as v2_config
from tests.unit.test_vrrp_router import rig as rig  # the fixture

OURS, PEER, PEER2 = (IPv4Address(f"192.168.1.{n}") for n in (10, 20, 30))


def config(name: str = "VI_1", **fields: Any) -> VrrpInstanceConfig:
    """`test_vrrp_router.config` (an owner on eth1, VRID 51) speaking VRRPv3 at 0.5 s."""
    return v2_config(name, **({"version": 3, "advert_int": 0.5} | fields))


async def test_a_v3_master_sends_v3_adverts_checksummed_for_the_group(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: bool(rig.wire.sent()))
    (sock,) = rig.wire.open_sockets()
    payload, destination = sock.sent[0]
    assert destination == VRRP_GROUP
    assert sock.source == OURS
    assert payload[0] == 0x31  # version 3, type 1
    assert decode_message(payload, OURS, VRRP_GROUP) == AdvertisementV3(51, 255, 50, (VIP.ip,))


async def test_unicast_peers_each_get_their_own_checksum(rig: Rig) -> None:
    await rig.router.start([config(unicast_peers=(str(PEER), str(PEER2)))], [])
    await until(lambda: len(rig.wire.sent()) >= 2)
    sent = next(s for s in rig.wire.adverts if s.sent).sent[:2]
    assert [dst for _, dst in sent] == [PEER, PEER2]
    assert sent[0][0] != sent[1][0]  # the checksum covers the destination
    for payload, dst in sent:
        assert decode_message(payload, OURS, dst).priority == 255


def _heard(packet: bytes) -> ReceivedPacket:
    return ReceivedPacket(packet, PEER)


async def test_the_instances_version_decides_on_the_shared_socket(rig: Rig) -> None:
    await rig.router.start(
        [
            config(priority=100, advert_int=0.25),
            config(
                "VI_2",
                vrid=52,
                priority=100,
                version=2,
                advert_int=1,
                virtual_ipaddresses=("192.168.1.201/24",),
            ),
        ],
        [],
    )
    await until(lambda: rig.state() is VrrpState.BACKUP and rig.state("VI_2") is VrrpState.BACKUP)
    (sock,) = rig.wire.open_sockets()
    # v2 advert for the v3 instance, v3 advert for the v2 instance: "version".
    sock.inbox.put_nowait(_heard(encode_ip(Advertisement(51, 200, 1, (VIP.ip,)), PEER)))
    v3_for_v2 = AdvertisementV3(52, 200, 100, (IPv4Address("192.168.1.201"),))
    sock.inbox.put_nowait(_heard(encode_ip_v3(v3_for_v2, PEER)))
    await until(lambda: len(rig.rejects) == 2)
    assert rig.rejects == [("eth1", "version"), ("eth1", "version")]
    # A v3 master advertising another interval is followed, not rejected (RFC 5798 §7.1).
    sock.inbox.put_nowait(_heard(encode_ip_v3(AdvertisementV3(51, 200, 100, (VIP.ip,)), PEER)))
    await until(lambda: rig.instance().status.master_address == PEER)
    assert len(rig.rejects) == 2
    assert rig.instance().status.master_adver_int == 1.0


async def test_an_ipv6_instance_without_a_link_local_address_waits_and_the_others_run(
    rig: Rig,
) -> None:
    await rig.router.start(
        [
            config("VI_6", vrid=60, virtual_ipaddresses=("2001:db8::200/64",)),
            config(),
        ],
        [],
    )
    await until(lambda: rig.state() is VrrpState.MASTER)
    status = rig.instance("VI_6").status
    assert status.state is VrrpState.FAULT
    assert status.fault_reason is not None
    assert "no link-local IPv6 address" in status.fault_reason


async def test_a_reload_from_v2_to_v3_keeps_the_master_and_speaks_v3(rig: Rig) -> None:
    await rig.router.start([config(version=2, advert_int=1)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    instance = rig.instance()
    (sock,) = rig.wire.open_sockets()
    assert sock.sent[-1][0][0] == 0x21  # VRRPv2
    await rig.router.update([config()], [])  # version 3 at 0.5 s, in place
    await until(lambda: sock.sent[-1][0][0] == 0x31)
    assert rig.instance() is instance
    assert rig.reasons() == [(VrrpState.MASTER, "startup_owner")]


async def test_a_reload_to_another_family_is_a_new_instance(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    instance = rig.instance()
    await rig.router.update([config(virtual_ipaddresses=("2001:db8::200/64",))], [])
    await until(lambda: rig.instance().status.state is VrrpState.FAULT)  # no link-local
    assert rig.instance().config.family == "ipv6"
    assert rig.instance() is not instance
    assert instance.status.state is VrrpState.INIT  # the IPv4 one stopped (priority 0)
