"""``track_services``: a VRRP instance's priority follows a service's quorum (issue 13).

The router hands a tracked service to the machine as a script (``service
SERVICE``) whose state is the service's quorum, so the script rules apply:
weight > 0 added with quorum, < 0 added without, 0 means FAULT without (or
before the first computation).
"""

from __future__ import annotations

from ipaddress import ip_address

from ipvsd.model import Family, Protocol, ServiceKey
from ipvsd.vrrp.track_services import ServiceQuorumFeed, script_name
from tests.unit.test_vrrp_router import BACKUP, FAULT, Rig, config, rig, until

__all__ = ["rig"]  # the fixture

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80)
DNS = ServiceKey(Family.INET, Protocol.UDP, ip_address("192.168.1.200"), 53)


def feed(rig: Rig) -> ServiceQuorumFeed:
    services: ServiceQuorumFeed = rig.router._services
    return services


async def test_weight_0_means_fault_until_the_service_has_quorum(rig: Rig) -> None:
    tracked = config(priority=100, track_services=({"service": "192.168.1.200:80"},))
    await rig.router.start([tracked], [], [])
    await until(lambda: rig.state() is FAULT)  # not computed yet
    feed(rig).publish(WEB, True)
    await until(lambda: rig.state() is BACKUP)
    assert rig.instance().status.scripts == {"service 192.168.1.200:80": True}
    feed(rig).publish(WEB, False)
    await until(lambda: rig.state() is FAULT)


async def test_signed_weights_move_the_priority_and_a_reload_keeps_the_state(rig: Rig) -> None:
    feed(rig).publish(WEB, True)
    feed(rig).publish(DNS, False)
    tracked = config(
        priority=100,
        track_services=(
            {"service": "192.168.1.200:80", "weight": 10},
            {"service": "udp/192.168.1.200:53", "weight": -30},
        ),
    )
    await rig.router.start([tracked], [], [])
    await until(lambda: rig.instance().status.effective_priority == 80)  # +10 -30
    feed(rig).publish(DNS, True)
    await until(lambda: rig.instance().status.effective_priority == 110)
    feed(rig).publish(WEB, False)
    await until(lambda: rig.instance().status.effective_priority == 100)
    only_web = config(priority=100, track_services=({"service": "192.168.1.200:80", "weight": 5},))
    await rig.router.update([only_web], [], [])
    await until(lambda: rig.instance().status.scripts == {script_name(WEB): False})
    feed(rig).publish(WEB, True)
    await until(lambda: rig.instance().status.effective_priority == 105)
    await rig.router.update([config(priority=100)], [], [])
    await until(lambda: rig.instance().status.effective_priority == 100)
    assert rig.instance().status.scripts == {}
