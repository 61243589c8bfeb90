"""BGP mode's VIPs on the director: `ipvsd.bgp.host.LocalVips` over the real address adapter.

IPVS sees only packets for local addresses, so ipvsd adds each announced VIP
that is not local yet to ``bgp.vip_interface`` (``lo`` by default), removes on
a reload the ones it added whose VIP went away, and on a graceful stop all it
added; an address that was there before is never touched.
"""

from __future__ import annotations

import asyncio
from ipaddress import ip_network

from ipvsd.bgp.host import LocalVips
from ipvsd.netlink.addresses import AddressManager
from lab.netns import Topology, in_netns


def _addresses(topo: Topology, ns: str) -> set[str]:
    out = topo.exec(ns, ["ip", "-o", "address", "show", "dev", "lo"]).stdout
    return {line.split()[3] for line in out.splitlines()}


def test_adds_the_missing_vips_and_takes_back_only_its_own(topology: Topology) -> None:
    ns = topology.netns("vips")
    topology.address(ns, "lo", "10.97.100.9/32")  # the operator's: kept
    first = [ip_network(p) for p in ("10.97.100.1/32", "10.97.100.9/32", "2001:db8::1/128")]
    second = [ip_network(p) for p in ("10.97.100.2/32", "10.97.100.9/32")]

    async def scenario() -> list[set[str]]:
        seen = []
        vips = LocalVips(AddressManager.open, "lo")
        await vips.ensure(first, "lo")
        seen.append(_addresses(topology, ns))
        await vips.ensure(second, "lo")  # a reload: .1 and ::1 dropped, .2 added
        seen.append(_addresses(topology, ns))
        await vips.release()  # a graceful stop
        seen.append(_addresses(topology, ns))
        return seen

    with in_netns(ns):
        started, reloaded, stopped = asyncio.run(scenario())
    assert {"10.97.100.1/32", "10.97.100.9/32", "2001:db8::1/128"} <= started
    assert "10.97.100.2/32" in reloaded
    assert not {"10.97.100.1/32", "2001:db8::1/128"} & reloaded
    assert "10.97.100.9/32" in stopped
    assert not {"10.97.100.1/32", "10.97.100.2/32", "2001:db8::1/128"} & stopped


def test_null_interface_manages_nothing(topology: Topology) -> None:
    ns = topology.netns("novips")

    async def scenario() -> set[str]:
        vips = LocalVips(AddressManager.open, None)
        await vips.ensure([ip_network("10.97.100.1/32")], None)
        return _addresses(topology, ns)

    with in_netns(ns):
        assert "10.97.100.1/32" not in asyncio.run(scenario())
