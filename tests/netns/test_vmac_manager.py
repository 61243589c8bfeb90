"""`VmacManager` on the host kernel: make, adopt, refuse a stranger, remove and restore.

In a namespace of its own with one veth (the parent); the manager runs in-process
on a loop whose thread is inside the namespace (as the daemon's whole process is).
"""

from __future__ import annotations

import asyncio
import errno
import json

import pytest

from ipvsd.errors import KernelError
from ipvsd.netlink.vmac import VmacManager
from lab.netns import Topology, in_netns, ip, sysctl_get

MAC = "00:00:5e:00:01:33"


def link(ns: str, name: str) -> dict[str, object] | None:
    found = ip("-j", "-d", "link", "show", "dev", name, ns=ns, check=False)
    if found.returncode != 0:
        return None
    (info,) = json.loads(found.stdout)
    result: dict[str, object] = info
    return result


def test_make_adopt_refuse_and_remove(topology: Topology) -> None:
    ns = topology.netns("vm")
    topology.veth(ns, "eth1", peer_ns=ns, peer_name="peer1", address="192.168.1.10/24")
    topology.veth(ns, "vrrp.52", peer_ns=ns, peer_name="peer2")  # a stranger with our name

    async def scenario() -> None:
        manager = await VmacManager.open()
        try:
            assert await manager.ensure("eth1", "vrrp.51", MAC) is True
            made = link(ns, "vrrp.51")
            assert made is not None
            assert (made["address"], made["link"], made["operstate"] != "DOWN") == (
                MAC,
                "eth1",
                True,
            )
            info = made["linkinfo"]
            assert isinstance(info, dict)
            assert (info["info_kind"], info["info_data"]["mode"]) == ("macvlan", "private")
            assert sysctl_get(ns, "net.ipv4.conf.eth1.arp_ignore") == "1"
            assert sysctl_get(ns, "net.ipv4.conf.eth1.arp_filter") == "1"
            assert sysctl_get(ns, "net/ipv4/conf/vrrp.51/arp_ignore") == "1"
            assert sysctl_get(ns, "net/ipv4/conf/vrrp.51/rp_filter") == "0"
            # A restarted daemon finds its vmac and keeps it.
            assert await manager.ensure("eth1", "vrrp.51", MAC) is False
            with pytest.raises(KernelError) as refused:
                await manager.ensure("eth1", "vrrp.52", "00:00:5e:00:01:34")
            assert refused.value.errno == errno.EEXIST
            assert "vrrp.52" in str(refused.value)
            assert await manager.remove("eth1", "vrrp.51") is True
            assert link(ns, "vrrp.51") is None
            assert sysctl_get(ns, "net.ipv4.conf.eth1.arp_ignore") == "0"
            assert sysctl_get(ns, "net.ipv4.conf.eth1.arp_filter") == "0"
            assert await manager.remove("eth1", "vrrp.51") is False
        finally:
            manager.close()

    # The whole loop in the namespace: the sysctls are those of the calling thread's.
    with in_netns(ns):
        asyncio.run(scenario())
