"""What a MASTER owns on the host kernel (issue 13, items 1 and 2): VIP mappings
with dev/scope/label/broadcast, excluded VIPs, virtual routes and rules.

Two `ipvsd run` processes on the lab segment (lab.vrrp_pair) with the same
instance; d1 becomes MASTER, then d2 (higher priority) preempts it, then d2
stops. What each router's kernel holds is read with ``ip -j``; the adverts are
captured from the observer's namespace with an AF_PACKET socket and decoded.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

from lab.netns import in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import OBSERVER, VIP, VrrpLab

OWNED = """\
      virtual_ipaddresses_excluded:
        - 192.168.1.201/24
        - {address: 192.168.1.202/32, scope: host, label: "eth1:ex"}
      virtual_routes:
        - {to: 10.9.0.0/16, via: 192.168.1.1, src: 192.168.1.200, table: 100, metric: 7}
        - {to: 10.8.0.0/16, dev: eth1}
      virtual_rules:
        - {from: 192.168.1.200/32, table: 100, priority: 1000}
"""
MAPPED = (
    f"{VIP}/24",
    '{address: 10.0.0.1/24, scope: link, label: "eth1:web", broadcast: 10.0.0.255}',
)
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
VRRP_PROTOCOL = 112


def start(lab: VrrpLab, short: str, priority: int) -> Any:
    """An ipvsd with the mapped VIPs, plus the excluded VIPs, routes and rules."""
    daemon = lab.daemon(short, priority, vips=MAPPED)
    text = daemon.config.read_text()
    daemon.config.write_text(
        text.replace("      track_scripts: []\n", "      track_scripts: []\n" + OWNED)
    )
    daemon.start()
    return daemon


def ip_json(lab: VrrpLab, short: str, *args: str) -> list[dict[str, Any]]:
    out = lab.topo.exec(lab.routers[short], ["ip", "-j", *args]).stdout
    return json.loads(out) if out.strip() else []


def addresses(lab: VrrpLab, short: str) -> dict[str, dict[str, Any]]:
    """eth1's IPv4 addresses: ``A/P`` -> the kernel's fields (scope, label, broadcast)."""
    (link,) = ip_json(lab, short, "-4", "addr", "show", "dev", "eth1")
    return {f"{a['local']}/{a['prefixlen']}": a for a in link["addr_info"]}


def routes(lab: VrrpLab, short: str) -> set[str]:
    found = ip_json(lab, short, "route", "show", "table", "100")
    found += ip_json(lab, short, "route", "show", "10.8.0.0/16")
    return {r["dst"] for r in found}


def rules(lab: VrrpLab, short: str) -> list[dict[str, Any]]:
    return [r for r in ip_json(lab, short, "rule") if r.get("table") == "100"]


def owns_everything(lab: VrrpLab, short: str) -> bool:
    held = addresses(lab, short)
    return {"192.168.1.200/24", "10.0.0.1/24", "192.168.1.201/24", "192.168.1.202/32"} <= set(
        held
    ) and routes(lab, short) == {"10.9.0.0/16", "10.8.0.0/16"}


def owns_nothing(lab: VrrpLab, short: str) -> bool:
    return set(addresses(lab, short)) == {
        f"{'192.168.1.10' if short == 'd1' else '192.168.1.20'}/24"
    } and (routes(lab, short), rules(lab, short)) == (set(), [])


def observed(lab: VrrpLab, ethertype: int, seconds: float, send: bytes = b"") -> Iterator[bytes]:
    """Frames of `ethertype` the observer's eth0 receives for `seconds` (after sending `send`)."""
    with in_netns(lab.observer):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    try:
        sock.bind(("eth0", ethertype))
        if send:
            sock.send(send)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            yield sock.recv(2048)
    finally:
        sock.close()


def capture_adverts(lab: VrrpLab, seconds: float) -> list[tuple[str, int, list[IPv4Address]]]:
    """VRRP frames seen by the observer: (source MAC, priority, advertised addresses)."""
    found = []
    for frame in observed(lab, ETH_P_IP, seconds):
        if frame[14 + 9] != VRRP_PROTOCOL:
            continue
        vrrp = frame[14 + (frame[14] & 0x0F) * 4 :]
        count = vrrp[3]
        listed = [IPv4Address(vrrp[8 + 4 * i : 12 + 4 * i]) for i in range(count)]
        found.append((frame[6:12].hex(":"), vrrp[2], listed))
    return found


def test_the_master_owns_mapped_and_excluded_vips_routes_and_rules(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    d1 = start(lab, "d1", 100)
    wait_until(lambda: owns_everything(lab, "d1"), timeout=10)
    held = addresses(lab, "d1")
    assert held["192.168.1.200/24"]["label"] == "eth1:vrrp51"
    assert held["192.168.1.200/24"]["scope"] == "global"
    web = held["10.0.0.1/24"]
    assert (web["scope"], web["label"], web["broadcast"]) == ("link", "eth1:web", "10.0.0.255")
    excluded = held["192.168.1.202/32"]
    assert (excluded["scope"], excluded["label"]) == ("host", "eth1:ex")
    (table_100,) = ip_json(lab, "d1", "route", "show", "table", "100")
    assert (table_100["gateway"], table_100["prefsrc"], table_100["metric"]) == (
        "192.168.1.1",
        "192.168.1.200",
        7,
    )
    (rule,) = rules(lab, "d1")
    assert (rule["priority"], rule["src"], rule.get("srclen", 32)) == (1000, "192.168.1.200", 32)

    # The adverts list the two advertised VIPs only, never the excluded ones.
    adverts = capture_adverts(lab, 2.5)
    assert adverts
    for _, priority, listed in adverts:
        assert priority == 100
        assert listed == [IPv4Address(VIP), IPv4Address("10.0.0.1")]

    # d2 preempts (110 > 100): d1 goes BACKUP and gives everything up; d2 has it all.
    d2 = start(lab, "d2", 110)
    wait_until(lambda: owns_everything(lab, "d2"), timeout=10)
    wait_until(lambda: owns_nothing(lab, "d1"), timeout=5)
    assert d1.proc is not None
    assert d1.proc.poll() is None
    assert not [e for e in d1.events() if e.get("event") == "vrrp.route_error"]

    # A graceful stop releases everything too.
    assert d2.stop() == 0
    assert owns_nothing(lab, "d2")
    wait_until(lambda: owns_everything(lab, "d1"), timeout=10)
    assert d1.stop() == 0
    assert owns_nothing(lab, "d1")


def test_a_route_the_kernel_refuses_leaves_the_instance_master(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    daemon = lab.daemon("d1", 100)
    text = daemon.config.read_text()
    unreachable = "      virtual_routes:\n        - {to: 10.7.0.0/16, via: 172.16.0.1}\n"
    daemon.config.write_text(
        text.replace("      track_scripts: []\n", "      track_scripts: []\n" + unreachable)
    )
    daemon.start()
    event = daemon.wait_event("vrrp.route_error", timeout=10)
    assert event["add"] is True
    assert "172.16.0.1" in event["error"]
    assert lab.holder() == ["d1"]
    transitions = [e for e in daemon.events() if e.get("event") == "vrrp.transition"]
    assert [e["new"] for e in transitions] == ["BACKUP", "MASTER"]
    assert daemon.stop() == 0


VMAC = "00:00:5e:00:01:33"  # RFC 3768 §7.3, VRID 51


def start_vmac(lab: VrrpLab, short: str, priority: int) -> Any:
    daemon = lab.daemon(short, priority)
    text = daemon.config.read_text()
    daemon.config.write_text(
        text.replace("      track_scripts: []\n", "      track_scripts: []\n      vmac: true\n")
    )
    daemon.start()
    return daemon


def link(lab: VrrpLab, short: str, name: str) -> dict[str, Any] | None:
    found = lab.topo.exec(
        lab.routers[short], ["ip", "-j", "addr", "show", "dev", name], check=False
    )
    if found.returncode != 0:
        return None
    (info,) = json.loads(found.stdout)
    result: dict[str, Any] = info
    return result


def vmac_holds_vip(lab: VrrpLab, short: str) -> bool:
    info = link(lab, short, "vrrp.51")
    return info is not None and any(a["local"] == VIP for a in info["addr_info"])


def sysctl(lab: VrrpLab, short: str, key: str) -> str:
    path = f"/proc/sys/net/ipv4/conf/{key}"
    return lab.topo.exec(lab.routers[short], ["cat", path]).stdout.strip()


def arp_replies(lab: VrrpLab, target: str, seconds: float = 1.0) -> list[str]:
    """Sender MACs of the ARP replies the observer gets to one who-has `target`."""
    mac = lab.topo.exec(lab.observer, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    own = bytes.fromhex(mac.replace(":", ""))
    request = (
        b"\xff" * 6
        + own
        + struct.pack("!HHHBBH", ETH_P_ARP, 1, ETH_P_IP, 6, 4, 1)
        + own
        + IPv4Address(OBSERVER).packed
        + b"\x00" * 6
        + IPv4Address(target).packed
    )
    senders = []
    for frame in observed(lab, ETH_P_ARP, seconds, send=request):
        op = struct.unpack_from("!H", frame, 20)[0]
        if op == 2 and frame[28:32] == IPv4Address(target).packed:
            senders.append(frame[22:28].hex(":"))
    return senders


def test_vmac_the_vip_answers_arp_and_adverts_leave_from_the_virtual_mac(
    vrrp_lab: VrrpLab,
) -> None:
    lab = vrrp_lab
    d1 = start_vmac(lab, "d1", 100)
    d2 = start_vmac(lab, "d2", 90)
    wait_until(lambda: vmac_holds_vip(lab, "d1"), timeout=10)
    for short in ("d1", "d2"):
        info = link(lab, short, "vrrp.51")
        assert info is not None
        assert (info["address"], info["link"]) == (VMAC, "eth1")
        assert (sysctl(lab, short, "eth1/arp_ignore"), sysctl(lab, short, "eth1/arp_filter")) == (
            "1",
            "1",
        )
        assert sysctl(lab, short, "vrrp.51/arp_ignore") == "1"
    assert not vmac_holds_vip(lab, "d2")
    assert lab.holder() == []  # never on eth1

    # Only the master's vmac answers, with the virtual MAC; eth1 stays silent.
    assert arp_replies(lab, VIP) == [VMAC]
    # The adverts carry the virtual MAC as Ethernet source (RFC 3768 §7.2).
    adverts = capture_adverts(lab, 2.5)
    assert adverts
    assert {(source, priority) for source, priority, _ in adverts} == {(VMAC, 100)}

    for daemon in (d1, d2):
        errors = [
            e
            for e in daemon.events()
            if e.get("level") in ("error", "warning")
            # The machine's load, not the vmac: the advert sender says when the CPU
            # made it late (51 ms once, with the kernel tier in UML beside this one).
            and e.get("event") != "vrrp.advert_sender_late"
        ]
        assert errors == []

    # Election works across two vmacs with the same MAC: d2 takes over when d1 stops,
    # and d1's vmac goes with it, its eth1 sysctls restored.
    assert d1.stop() == 0
    wait_until(lambda: vmac_holds_vip(lab, "d2"), timeout=3)
    assert link(lab, "d1", "vrrp.51") is None
    assert (sysctl(lab, "d1", "eth1/arp_ignore"), sysctl(lab, "d1", "eth1/arp_filter")) == (
        "0",
        "0",
    )
    assert arp_replies(lab, VIP) == [VMAC]
    assert d2.stop() == 0
    assert link(lab, "d2", "vrrp.51") is None


def test_vmac_interoperates_with_keepalived_use_vmac(vrrp_lab: VrrpLab) -> None:
    """ipvsd's vmac and keepalived's use_vmac (both vrrp.51, 00:00:5e:00:01:33) elect."""
    lab = vrrp_lab
    ours = start_vmac(lab, "d1", 100)
    theirs = lab.keepalived("d2", 90)
    text = theirs.config.read_text()
    theirs.config.write_text(text.replace("  advert_int 1\n", "  advert_int 1\n  use_vmac\n"))
    theirs.start()
    wait_until(lambda: vmac_holds_vip(lab, "d1"), timeout=10)
    time.sleep(2)
    assert vmac_holds_vip(lab, "d1")
    assert not vmac_holds_vip(lab, "d2")  # keepalived takes our adverts and stays BACKUP
    assert arp_replies(lab, VIP) == [VMAC]
    assert ours.stop() == 0  # priority 0 from our vmac: keepalived takes over at once
    wait_until(lambda: vmac_holds_vip(lab, "d2"), timeout=1.5)
    assert arp_replies(lab, VIP) == [VMAC]
    theirs.stop()


def test_a_vmac_comes_back_with_a_recreated_interface(vrrp_lab: VrrpLab) -> None:
    """The kernel deletes the vmac with eth1; eth1 made again brings the vmac and the VIP back."""
    lab = vrrp_lab
    d1 = start_vmac(lab, "d1", 100)
    wait_until(lambda: vmac_holds_vip(lab, "d1"), timeout=10)
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "del", "eth1"])
    d1.wait_event("vrrp.interface_gone", timeout=3)
    assert link(lab, "d1", "vrrp.51") is None
    segment = next(ns for ns in lab.topo.namespaces if ns.endswith("-seg"))
    lab.topo.veth(
        lab.routers["d1"], "eth1", bridge="br0", bridge_ns=segment, address="192.168.1.10/24"
    )
    wait_until(lambda: vmac_holds_vip(lab, "d1"), timeout=10)
    assert sysctl(lab, "d1", "eth1/arp_ignore") == "1"
    assert arp_replies(lab, VIP) == [VMAC]
    assert not [e for e in d1.events() if e.get("event") == "vrrp.vmac_failed"]
    assert d1.stop() == 0
    assert link(lab, "d1", "vrrp.51") is None
