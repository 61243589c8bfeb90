"""Two ipvsd processes running VRRP in namespaces of the host kernel (and an observer).

Bounds come from RFC 3768: a backup of priority 90 with advert_int 1 takes
over at most Master_Down_Interval = 3 + (256-90)/256 = 3.648 s after the
master's last advert; the tests allow 0.5 s for process and polling latency.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ipvsd import __version__
from ipvsd.control.client import request
from ipvsd.vrrp.packet import Advertisement, AuthType, encode_ip
from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.scenario import wait_until
from lab.vrrp_pair import VIP, OwnershipMonitor, VrrpLab, build, holds_vip

MDI_90 = 3 + (256 - 90) / 256
SKEW_90 = (256 - 90) / 256
SLACK = 0.5


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def elect(lab: VrrpLab, **kwargs: Any) -> tuple[DaemonProcess, DaemonProcess]:
    d1 = lab.daemon("d1", 100, **kwargs)
    d2 = lab.daemon("d2", 90, **kwargs)
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 2)
    return d1, d2


def test_election_garp_and_sigkill_failover(lab: VrrpLab) -> None:
    d1, _d2 = elect(lab)
    with OwnershipMonitor(lab.topo, list(lab.routers.values())) as monitor:
        time.sleep(1.5)  # steady state: adverts flow, d2 stays backup
        assert lab.holder() == ["d1"]
        # The observer learned the VIP from d1's gratuitous ARPs.
        lab.topo.exec(lab.observer, ["ping", "-c", "1", "-W", "1", VIP])
        assert lab.observer_neighbour() == lab.mac("d1")
        assert monitor.longest_dual_ownership() == 0
    d1.kill()  # a crash: no priority-0 advert, the VIP stays on d1's interface
    took_over = wait_until(lambda: "d2" in lab.holder(), timeout=MDI_90 + SLACK + 1)
    assert took_over <= MDI_90 + SLACK, took_over
    wait_until(lambda: lab.observer_neighbour() == lab.mac("d2"), timeout=2)
    # The crashed d1 left the VIP on eth1 (a stale VIP); on restart it removes it
    # before entering BACKUP, then preempts after Master_Down_Interval.
    d1.start()
    assert lab.holder() == ["d2"]
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)


def test_sigterm_hands_over_within_skew_time(lab: VrrpLab) -> None:
    d1, _d2 = elect(lab)
    with OwnershipMonitor(lab.topo, list(lab.routers.values())) as monitor:
        stopped = time.monotonic()
        assert d1.stop() == 0
        wait_until(lambda: lab.holder() == ["d2"], timeout=2)
        gap = time.monotonic() - stopped
    assert gap < 1.0, gap
    assert monitor.longest_dual_ownership() < 1.0


def test_link_down_moves_the_vip_and_link_up_preempts(lab: VrrpLab) -> None:
    d1, _d2 = elect(lab)
    down = time.monotonic()
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth1", "down"])
    wait_until(lambda: "d2" in lab.holder(), timeout=MDI_90 + SLACK + 1)
    assert time.monotonic() - down <= MDI_90 + SLACK
    assert "d1" not in lab.holder()  # FAULT removed it
    d1.wait_event("vrrp.transition", timeout=5)
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth1", "up"])
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 3)


def test_no_preempt_keeps_the_backup_as_master(lab: VrrpLab) -> None:
    d1, _d2 = elect(lab, preempt=False)
    assert d1.stop() == 0
    wait_until(lambda: lab.holder() == ["d2"], timeout=2)
    d1.start()
    time.sleep(MDI_90 + 1.5)
    assert lab.holder() == ["d2"]


def test_a_backups_status_names_the_master(lab: VrrpLab) -> None:
    """Issue 12 items 4 and 5: who is master, from the backup's own status and log."""
    d1, d2 = elect(lab)
    sockets = {name: str(lab.workdir / f"{name}.sock") for name in ("d1", "d2")}

    def instance(name: str) -> dict[str, Any]:
        vrrp: list[dict[str, Any]] = request(sockets[name], {"command": "status"})["result"]["vrrp"]
        return vrrp[0]

    wait_until(lambda: instance("d2")["master_address"] == "192.168.1.10", timeout=3)
    assert instance("d2")["state"] == "BACKUP"
    assert (instance("d1")["state"], instance("d1")["master_address"]) == ("MASTER", "192.168.1.10")
    shown = subprocess.run(
        [sys.executable, "-m", "ipvsd", "status", "--socket", sockets["d2"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[0] == f"ipvsd {__version__} on d2"
    header = next(line.split() for line in shown if line.startswith("Instance "))
    row = next(line.split() for line in shown if line.startswith("VI_1 "))
    assert row[header.index("Master")] == "192.168.1.10"
    # d1 hands over (priority 0): d2's transition log names d2 as the master now.
    seen = len(d2.events())
    assert d1.stop() == 0
    event = d2.wait_event("vrrp.transition", timeout=3, after=seen)
    assert (event["new"], event["master"]) == ("MASTER", "192.168.1.20")
    assert instance("d2")["master_address"] == "192.168.1.20"


def test_unicast_peers(lab: VrrpLab) -> None:
    d1 = lab.daemon("d1", 100, unicast_peers=("192.168.1.20",))
    d2 = lab.daemon("d2", 90, unicast_peers=("192.168.1.10",))
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 2)
    time.sleep(1.5)
    assert lab.holder() == ["d1"]
    d1.kill()
    wait_until(lambda: "d2" in lab.holder(), timeout=MDI_90 + SLACK + 1)


def inject(lab: VrrpLab, packet: bytes) -> None:
    """Send a raw IPv4 packet (header included) from the observer to 224.0.0.18."""
    script = (
        "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW);"
        "s.setsockopt(socket.SOL_SOCKET,25,b'eth0');"
        "s.sendto(bytes.fromhex(sys.argv[1]),('224.0.0.18',0))"
    )
    lab.topo.exec(lab.observer, ["python3", "-c", script, packet.hex()])


VIP_ADDR = IPv4Address(VIP)
OBS = IPv4Address("192.168.1.50")


def advert(priority: int, **changes: Any) -> Advertisement:
    base = Advertisement(vrid=51, priority=priority, advert_int=1, addresses=(VIP_ADDR,))
    return replace(base, **changes)


def malformed_packets() -> dict[str, bytes]:
    good = encode_ip(advert(254), OBS)
    bad_checksum = bytearray(good)
    bad_checksum[20 + 6] ^= 0xFF
    wrong_version = bytearray(good)
    wrong_version[20] = 0x31
    truncated = good[:-6]
    return {
        "bad_checksum_high_priority": bytes(bad_checksum),
        "ttl_64": encode_ip(advert(254), OBS, ttl=64),
        "wrong_version": bytes(wrong_version),
        "wrong_vrid": encode_ip(advert(254, vrid=52), OBS),
        "wrong_password": encode_ip(
            advert(254, auth_type=AuthType.SIMPLE, auth_data=b"nope\0\0\0\0"), OBS
        ),
        "truncated": truncated,
        "count_mismatch": encode_ip(advert(254, addresses=(VIP_ADDR, OBS)), OBS),
        "priority_0_wrong_interval": encode_ip(advert(0, advert_int=3), OBS),
    }


def test_malformed_packets_change_nothing(lab: VrrpLab) -> None:
    d1, d2 = elect(lab)
    before = {name: len(d.events()) for name, d in (("d1", d1), ("d2", d2))}
    with OwnershipMonitor(lab.topo, list(lab.routers.values())) as monitor:
        for _ in range(3):
            for packet in malformed_packets().values():
                inject(lab, packet)
        time.sleep(MDI_90 + 0.5)
    assert lab.holder() == ["d1"]
    assert not any(d2_holds for _, (_d1_holds, d2_holds) in monitor.samples)
    for name, d in (("d1", d1), ("d2", d2)):
        events = d.events()[before[name] :]
        assert not [e for e in events if e.get("event") == "vrrp.transition"], events
        reasons = {e.get("reason") for e in events if e.get("event") == "vrrp.packet_rejected"}
        assert {"checksum", "ttl", "version", "auth_type", "length", "vip_mismatch"} <= reasons, (
            reasons
        )


def test_reload_that_does_not_touch_an_instance_leaves_it_undisturbed(lab: VrrpLab) -> None:
    d1, d2 = elect(lab)
    config = d1.config.read_text()
    before = {name: len(d.events()) for name, d in (("d1", d1), ("d2", d2))}
    # Unrelated change: VRRP untouched.
    d1.config.write_text(
        config.replace("ipvs: {services: []}", "ipvs: {services: [], resync_interval: 5}")
    )
    d1.reload()
    d1.wait_event("config.reloaded", timeout=10, after=before["d1"])
    time.sleep(1.5)
    for name, d in (("d1", d1), ("d2", d2)):
        events = d.events()[before[name] :]
        assert not [
            e for e in events if e.get("event", "").startswith(("vrrp.transition", "netlink.vip"))
        ], events
    assert lab.holder() == ["d1"]
    # A changed instance is restarted: priority 100 -> 80 hands the VIP to d2.
    d1.config.write_text(config.replace("priority: 100", "priority: 80"))
    d1.reload()
    wait_until(lambda: lab.holder() == ["d2"], timeout=MDI_90 + 2)


SYNC_GROUP_CONFIG = """\
node_name: {name}
metrics: {{listen: null}}
control: {{socket: {workdir}/{name}-sync.sock}}
state_dir: {workdir}/{name}-state
vrrp:
  sync_groups: [{{name: G1, instances: [VI_1, VI_2]}}]
  instances:
    - {{name: VI_1, interface: eth1, vrid: 51, priority: {priority},
       virtual_ipaddresses: [192.168.1.200/24]}}
    - {{name: VI_2, interface: eth1, vrid: 52, priority: {priority},
       virtual_ipaddresses: [192.168.1.201/24],
       track_interfaces: [{{interface: eth2, weight: 0}}]}}
ipvs: {{services: []}}
"""


def test_sync_group_moves_instances_together(lab: VrrpLab) -> None:
    # eth2 on each router is a link of its own that the test can cut.
    for short, ns in lab.routers.items():
        lab.topo.veth(ns, "eth2", peer_ns=lab.observer, peer_name=f"o{short}")
    daemons = []
    for short, priority in (("d1", 100), ("d2", 90)):
        config = lab.workdir / f"{short}-sync.yaml"
        config.write_text(
            SYNC_GROUP_CONFIG.format(name=short, priority=priority, workdir=lab.workdir)
        )
        daemon = DaemonProcess(
            lab.topo, lab.routers[short], config, lab.workdir / f"{short}-sync.log"
        )
        daemon.start()
        daemons.append(daemon)

    def holders(vip: str) -> list[str]:
        return [s for s, ns in lab.routers.items() if holds_vip(lab.topo, ns, vip)]

    wait_until(
        lambda: holders(VIP) == ["d1"] and holders("192.168.1.201") == ["d1"], timeout=MDI_90 + 2
    )
    # Only VI_2 tracks eth2, but the group takes VI_1 along into FAULT.
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth2", "down"])
    wait_until(
        lambda: holders(VIP) == ["d2"] and holders("192.168.1.201") == ["d2"], timeout=MDI_90 + 2
    )
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth2", "up"])
    wait_until(
        lambda: holders(VIP) == ["d1"] and holders("192.168.1.201") == ["d1"], timeout=MDI_90 + 4
    )


def test_a_failing_track_script_hands_the_vip_over_and_recovery_takes_it_back(
    lab: VrrpLab, tmp_path: Path
) -> None:
    """keepalived's track_script with a negative weight (issue 13): d1 (100, -20 while
    its script fails) drops to 80 below d2's 90, d2 preempts; the script succeeding
    again gives d1 100 and it preempts back."""
    flag = tmp_path / "maintenance"
    d1 = lab.daemon("d1", 100, track_script=("test", "!", "-e", str(flag)), script_weight=-20)
    d2 = lab.daemon("d2", 90)
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 2)
    socket = str(lab.workdir / "d1.sock")

    def d1_instance() -> dict[str, Any]:
        vrrp: list[dict[str, Any]] = request(socket, {"command": "status"})["result"]["vrrp"]
        return vrrp[0]

    assert d1_instance()["track_scripts"] == [{"script": "chk", "state": "ok"}]
    flag.touch()
    # The script fails within 0.2 s, d1 advertises 80 within 1 s, d2 preempts
    # Master_Down_Interval after the last advert it accepted.
    took_over = wait_until(lambda: lab.holder() == ["d2"], timeout=1 + MDI_90 + 2)
    assert took_over <= 1.2 + MDI_90 + SLACK, took_over
    instance = d1_instance()
    assert (instance["state"], instance["effective_priority"]) == ("BACKUP", 80)
    assert instance["track_scripts"] == [{"script": "chk", "state": "failing"}]
    flag.unlink()
    wait_until(lambda: lab.holder() == ["d1"], timeout=1.2 + 3 + 156 / 256 + 2)


def test_a_tracked_file_s_value_moves_the_vip_and_back(lab: VrrpLab, tmp_path: Path) -> None:
    """keepalived's track_file (issue 13): d1 (100) tracks a file with weight -5; the value
    4 gives it 80, below d2's 90, and d2 preempts; 0 gives it 100 back and it preempts."""
    level = tmp_path / "level"
    level.write_text("0\n")
    d1 = lab.daemon("d1", 100)
    config = lab.workdir / "d1.yaml"
    tracked = f"      track_files: [{{path: {level}, weight: -5}}]\n"
    config.write_text(config.read_text().replace("      track_scripts: []\n", tracked))
    d2 = lab.daemon("d2", 90)
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=MDI_90 + 2)
    socket = str(lab.workdir / "d1.sock")

    def d1_instance() -> dict[str, Any]:
        vrrp: list[dict[str, Any]] = request(socket, {"command": "status"})["result"]["vrrp"]
        return vrrp[0]

    assert d1_instance()["track_files"] == [{"path": str(level), "value": 0, "weight": -5}]
    level.write_text("4\n")
    # The file is read every 0.5 s, d1 advertises 80 within 1 s, d2 preempts
    # Master_Down_Interval after the last advert it accepted.
    took_over = wait_until(lambda: lab.holder() == ["d2"], timeout=1.5 + MDI_90 + 2)
    assert took_over <= 1.5 + MDI_90 + SLACK, took_over
    instance = d1_instance()
    assert (instance["state"], instance["effective_priority"]) == ("BACKUP", 80)
    assert instance["track_files"] == [{"path": str(level), "value": 4, "weight": -5}]
    level.write_text("0\n")
    wait_until(lambda: lab.holder() == ["d1"], timeout=1.5 + 3 + 156 / 256 + 2)
