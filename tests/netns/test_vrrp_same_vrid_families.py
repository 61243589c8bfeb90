"""The same VRID in both families on one interface: two virtual routers (RFC 5798 §5.2.3).

A dual-stack director commonly numbers its IPv4 and IPv6 virtual routers alike
(keepalived allows it: its VRIDs are per family). Here d1 (ipvsd, priority
100) and d2 (keepalived 2.2, priority 90) each run VRID 51 twice on eth1, VRRPv3
at 0.1 s: once with the IPv4 VIP, once with the IPv6 VIP. Each family's adverts
reach only that family's instance (separate sockets): d1 holds both VIPs, a
SIGKILL hands both to d2, and d1's return takes both back; nothing is rejected.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.scenario import wait_until
from lab.vrrp_pair import VIP, VIP6, KeepalivedProcess, VrrpLab, build, holds_vip
from tests.netns.test_vrrp_v3_keepalived import rejected

FAST = 0.1


@pytest.fixture
def lab6(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path, ipv6=True)


def ipvsd_config(lab: VrrpLab) -> Path:
    path = lab.workdir / "d1.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            node_name: d1
            control: {{socket: {lab.workdir / "d1.sock"}}}
            state_dir: {lab.workdir / "d1.state"}
            vrrp:
              instances:
                - {{name: V4, interface: eth1, vrid: 51, priority: 100, version: 3,
                    advert_int: {FAST}, virtual_ipaddresses: [{VIP}/24]}}
                - {{name: V6, interface: eth1, vrid: 51, priority: 100, version: 3,
                    advert_int: {FAST}, virtual_ipaddresses: ["{VIP6}/64"]}}
            """
        )
    )
    return path


def keepalived_config(lab: VrrpLab) -> Path:
    instances = "".join(
        textwrap.dedent(
            f"""\
            vrrp_instance {name} {{
              state BACKUP
              interface eth1
              virtual_router_id 51
              priority 90
              advert_int {FAST}
              virtual_ipaddress {{
                {vip}
              }}
            }}
            """
        )
        for name, vip in (("V4", f"{VIP}/24"), ("V6", f"{VIP6}/64"))
    )
    path = lab.workdir / "d2.keepalived.conf"
    path.write_text(f"global_defs {{\n  router_id d2\n  vrrp_version 3\n}}\n{instances}")
    return path


def holders(lab: VrrpLab) -> dict[str, list[str]]:
    return {
        vip: [short for short, ns in lab.routers.items() if holds_vip(lab.topo, ns, vip)]
        for vip in (VIP, VIP6)
    }


def test_one_vrid_in_each_family_fails_over_and_back_against_keepalived(lab6: VrrpLab) -> None:
    lab = lab6
    d1 = DaemonProcess(lab.topo, lab.routers["d1"], ipvsd_config(lab), lab.workdir / "d1.log")
    d2 = KeepalivedProcess(
        lab.topo, lab.routers["d2"], keepalived_config(lab), lab.workdir / "d2.log"
    )
    d2.start()
    d1.start()

    def both_on(short: str) -> bool:
        return holders(lab) == {VIP: [short], VIP6: [short]}

    wait_until(lambda: both_on("d1"), timeout=10)
    d1.kill()  # its VIPs stay on d1's interface (as a crash leaves them) until it restarts
    wait_until(lambda: all("d2" in held for held in holders(lab).values()), timeout=5)
    d1.start()
    wait_until(lambda: both_on("d1"), timeout=10)
    states = {e["instance"]: e["new"] for e in d1.events() if e.get("event") == "vrrp.transition"}
    assert states == {"V4": "MASTER", "V6": "MASTER"}
    assert rejected(d1.events()) == []
    for name in ("V4", "V6"):  # keepalived ran both too, and handed both back
        assert f"({name}) Entering MASTER STATE" in d2.text()
        assert f"({name}) Entering BACKUP STATE" in d2.text()
    assert d1.stop() == 0
    d2.stop()
