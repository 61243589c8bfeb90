"""The daemon warns about a real it reaches only through one of its VRRP addresses.

design.md's failover pitfall: such a real's checks from a BACKUP travel
through the MASTER and fail in the very seconds it dies. One director, a real
behind 192.168.1.254 (the gateway VIP of the config) and one on-link real.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from lab.daemon import DaemonProcess
from lab.netns import Topology


def test_start_and_reload_warn_about_reals_behind_a_vip(tmp_path: Path) -> None:
    config = tmp_path / "ipvsd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            metrics: {{listen: null}}
            control: {{socket: {tmp_path / "ipvsd.sock"}}}
            state_dir: {tmp_path / "state"}
            vrrp:
              instances:
                - {{name: VI_GW, interface: eth1, vrid: 54, priority: 100,
                   virtual_ipaddresses: [192.168.1.254/24]}}
            ipvs:
              services:
                - address: 192.168.1.200
                  port: 80
                  reals:
                    - {{address: 10.9.0.5, port: 80}}
                    - {{address: 192.168.1.30, port: 80}}
            """
        )
    )
    with Topology() as topo:
        director, peer = topo.netns("dir"), topo.netns("peer")
        topo.veth(director, "eth1", peer_ns=peer, peer_name="eth0", address="192.168.1.10/24")
        topo.route(director, "10.9.0.0/16", via="192.168.1.254")
        daemon = DaemonProcess(topo, director, config, tmp_path / "ipvsd.log")
        daemon.start()
        warning = daemon.wait_event("routing.real_behind_vip", timeout=10)
        assert (warning["real"], warning["route"], warning["via"]) == (
            "10.9.0.5",
            "10.9.0.0/16",
            ["192.168.1.254"],
        )
        count = len(daemon.events())
        daemon.reload()
        daemon.wait_event("config.reloaded", timeout=10, after=count)
        again = daemon.wait_event("routing.real_behind_vip", timeout=10, after=count)
        assert again["real"] == "10.9.0.5"
        warned = [e["real"] for e in daemon.events() if e["event"] == "routing.real_behind_vip"]
        assert "192.168.1.30" not in warned
        assert daemon.stop() == 0
