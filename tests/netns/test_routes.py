"""The route check against the host kernel's routing table, in a namespace."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address, ip_network

from structlog.testing import capture_logs

from ipvsd.netlink.routes import main_routes, warn_reals_behind_vips
from lab.netns import Topology, in_netns


def test_a_real_behind_the_gateway_vip_is_warned_about(topology: Topology) -> None:
    director, peer = topology.netns("dir"), topology.netns("peer")
    topology.veth(director, "eth0", peer_ns=peer, peer_name="eth0", address="192.168.2.10/24")
    topology.route(director, "10.9.0.0/16", via="192.168.2.254")
    topology.route(director, "default", via="192.168.2.1")
    vips = {ip_address("192.168.2.254")}
    reals = [ip_address("10.9.0.5"), ip_address("192.168.2.30"), ip_address("172.16.0.9")]
    with in_netns(director):
        routes = asyncio.run(main_routes())
        with capture_logs() as logs:
            count = asyncio.run(warn_reals_behind_vips(reals, vips))
    by_destination = {str(r.destination): r.gateways for r in routes}
    assert by_destination["10.9.0.0/16"] == (ip_address("192.168.2.254"),)
    assert by_destination["0.0.0.0/0"] == (ip_address("192.168.2.1"),)
    assert by_destination["192.168.2.0/24"] == ()
    assert count == 1
    warnings = [e for e in logs if e["event"] == "routing.real_behind_vip"]
    assert [(e["real"], e["route"], e["via"]) for e in warnings] == [
        ("10.9.0.5", str(ip_network("10.9.0.0/16")), ["192.168.2.254"])
    ]
