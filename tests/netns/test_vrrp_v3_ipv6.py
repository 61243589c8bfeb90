"""VRRPv3 over IPv6, end to end (issue 14): ipvsd against ipvsd and against keepalived
2.2.7 (``vrrp_version 3``, an IPv6 VIP), both ways, on one bridge (`lab.vrrp_pair` with
``ipv6=True``).

Each pairing goes through election, failover on SIGKILL (within Master_Down_Interval
plus `SLACK`), preemption by the returning master, failover on link down, and a
graceful stop (priority 0: the backup takes over within its skew time). The VIP is
sampled every 10 ms on both routers during every hand-over that has two live sides
(preemption, graceful stop): it is never held by both for longer than one advert
interval. Then: nopreempt both ways, malformed adverts (bad checksum, hop limit 64 in
multicast mode) rejected and counted, the observer's neighbour cache following the VIP
to the new master's MAC (unsolicited NA with Override), unicast peers over IPv6, and an
instance that leaves FAULT when its link-local address finishes DAD, without a restart.

The times measured are printed (``pytest -s``) and summarised in docs/vrrp-ipv6.md.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Protocol

import pytest

from ipvsd.control.client import request
from ipvsd.vrrp.packet_v3 import VRRP_GROUP_V6, AdvertisementV3, encode_message
from lab.netns import Topology, in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import ROUTERS6, VIP6, OwnershipMonitor, VrrpLab, build, holds_vip
from tests.netns.test_vrrp_keepalived import SLACK, complaints
from tests.netns.test_vrrp_v3_keepalived import master_down_interval, rejected

FAST = 0.1
V6: dict[str, Any] = {"version": 3, "vips": (f"{VIP6}/64",)}


class Router(Protocol):
    proc: Any

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def terminate(self) -> None: ...


@pytest.fixture
def lab6(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path, ipv6=True)


def router(lab: VrrpLab, kind: str, short: str, priority: int, **kwargs: Any) -> Router:
    make = lab.daemon if kind == "ipvsd" else lab.keepalived
    return make(short, priority, **(V6 | {"advert_int": FAST} | kwargs))


def events_of(r: Router) -> list[dict[str, Any]]:
    events = getattr(r, "events", None)
    return [] if events is None else list(events())


def report(what: str, seconds: float) -> None:
    print(f"\nMEASURED {what}: {seconds:.3f} s")


def observer_knows(lab: VrrpLab) -> None:
    """The observer resolves the VIP (a neighbour entry for the current master's MAC)."""
    lab.topo.exec(lab.observer, ["ping", "-6", "-c", "1", "-W", "1", VIP6], check=False)


def holds_vip6(topo: Topology, ns: str) -> bool:
    return holds_vip(topo, ns, VIP6)


def monitor_vip6(lab: VrrpLab) -> OwnershipMonitor:
    """Who holds the IPv6 VIP, every 10 ms."""
    return OwnershipMonitor(lab.topo, list(lab.routers.values()), 0.01, probe=holds_vip6)


def dual_after_release(monitor: OwnershipMonitor) -> float:
    """The longest dual ownership once the killed master's stale VIP is gone (its
    restart removes it: until then both hold it, which is no hand-over)."""
    samples = monitor.samples
    first = next(i for i, (_, state) in enumerate(samples) if not all(state))
    return OwnershipMonitor(monitor.topo, [], samples=samples[first:]).longest_dual_ownership()


PAIRS = [
    ("ipvsd", "ipvsd"),
    ("ipvsd", "keepalived"),
    ("keepalived", "ipvsd"),
    ("keepalived", "keepalived"),  # the reference the others are compared with
]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_election_failover_preemption_and_graceful_stop(
    lab6: VrrpLab, first: str, second: str
) -> None:
    lab = lab6
    d1 = router(lab, first, "d1", 100)
    d2 = router(lab, second, "d2", 90)
    label = f"{first} 100 -> {second} 90"
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=10)
    time.sleep(1)
    assert lab.holder() == ["d1"]  # the backup accepts every advert of the master
    observer_knows(lab)
    assert lab.observer_neighbour() == lab.mac("d1")

    # SIGKILL: the backup takes over after Master_Down_Interval (the old master
    # keeps its VIP: nothing runs there to remove it).
    d1.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.01)
    report(f"SIGKILL {label}", took)
    assert took <= master_down_interval(90, FAST) + SLACK
    # The NA (Override) moves the observer's entry to the new master's MAC.
    wait_until(lambda: lab.observer_neighbour() == lab.mac("d2"), timeout=2, interval=0.05)

    # The returning master removes its stale VIP, then preempts.
    with monitor_vip6(lab) as monitor:
        d1.start()
        wait_until(lambda: lab.holder() == ["d1"], timeout=10, interval=0.01)
        time.sleep(0.3)
    dual = dual_after_release(monitor)
    report(f"dual ownership on preemption {label}", dual)
    assert dual <= FAST
    wait_until(lambda: lab.observer_neighbour() == lab.mac("d1"), timeout=2, interval=0.05)

    # Link down on the master: the backup takes over.
    lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth1", "down"])
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.01)
    report(f"link down {label}", took)
    assert took <= master_down_interval(90, FAST) + SLACK
    with monitor_vip6(lab) as monitor:
        lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth1", "up"])
        wait_until(lambda: lab.holder() == ["d1"], timeout=10, interval=0.01)
        time.sleep(0.2)
    report(f"dual ownership on preemption after link up {label}", dual_after_release(monitor))
    assert dual_after_release(monitor) <= FAST

    # Graceful stop: priority 0, the backup takes over within its skew time.
    with monitor_vip6(lab) as monitor:
        d1.terminate()
        took = wait_until(lambda: lab.holder() == ["d2"], timeout=2, interval=0.01)
        time.sleep(0.2)
    report(f"graceful stop {label}", took)
    assert took <= (256 - 90) * FAST / 256 + SLACK
    assert monitor.longest_dual_ownership() <= FAST
    d1.proc.wait(15)
    for r in (d1, d2):
        assert rejected(events_of(r)) == []
        text = getattr(r, "text", None)
        if text is not None:
            # Its own sends failing while eth1 was down and coming back (EINVAL: its
            # link-local source was gone) are not about the peer.
            about_peer = [c for c in complaints(text()) if "send advert error" not in c]
            assert about_peer == [], text()


@pytest.mark.parametrize("nopreempt", ["ipvsd", "keepalived"])
def test_nopreempt_keeps_the_running_master(lab6: VrrpLab, nopreempt: str) -> None:
    lab = lab6
    other = "keepalived" if nopreempt == "ipvsd" else "ipvsd"
    d2 = router(lab, other, "d2", 90)
    d2.start()
    wait_until(lambda: lab.holder() == ["d2"], timeout=10)
    d1 = router(lab, nopreempt, "d1", 100, preempt=False)
    d1.start()
    time.sleep(2)  # many Master_Down_Intervals of d1's
    assert lab.holder() == ["d2"]
    d2.kill()  # ... and it still takes over when the master goes
    wait_until(lambda: "d1" in lab.holder(), timeout=3, interval=0.02)


def inject(lab: VrrpLab, message: bytes, *, hop_limit: int = 255) -> None:
    """Send a VRRPv3 message to ff02::12 from the observer (its link-local source)."""
    with in_netns(lab.observer):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, -1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hop_limit)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        sock.sendto(message, (str(VRRP_GROUP_V6), 0, 0, _ifindex(lab, "eth0")))
    finally:
        sock.close()


def _ifindex(lab: VrrpLab, dev: str) -> int:
    out = lab.topo.exec(lab.observer, ["cat", f"/sys/class/net/{dev}/ifindex"]).stdout
    return int(out)


def test_malformed_adverts_are_rejected_counted_and_change_nothing(lab6: VrrpLab) -> None:
    lab = lab6
    d1 = lab.daemon("d1", 100, advert_int=FAST, metrics=METRICS, **V6)
    d1.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=10)
    source = link_local(lab, lab.observer, "eth0")
    higher = AdvertisementV3(51, 200, 10, (IPv6Address(VIP6),))
    good = encode_message(higher, source, VRRP_GROUP_V6)
    bad_checksum = good[:6] + bytes([good[6] ^ 0xFF]) + good[7:]
    for _ in range(5):
        inject(lab, bad_checksum)
        inject(lab, good, hop_limit=64)  # off-link, as far as §7.1 can tell
        time.sleep(FAST)
    time.sleep(0.5)
    assert lab.holder() == ["d1"]  # a priority-200 advert accepted would have made it BACKUP
    reasons = {e.get("reason") for e in rejected(d1.events())}
    assert reasons == {"checksum", "ttl"}
    for reason in ("checksum", "ttl"):  # the v2 path's counter, each advert counted
        assert scrape(lab.routers["d1"], "ipvsd_vrrp_invalid_packets_total", reason=reason) == 5
    transitions = [e for e in d1.events() if e.get("event") == "vrrp.transition"]
    assert [e["new"] for e in transitions][-1] == "MASTER"
    # The same advert, well formed with hop limit 255, is accepted: d1 steps down.
    inject(lab, good)
    wait_until(lambda: lab.holder() == [], timeout=2, interval=0.02)


def test_unicast_over_ipv6_with_keepalived(lab6: VrrpLab) -> None:
    """Global unicast sources and peers both ways; keepalived sends IPv6 unicast with hop
    limit 64 (docs/vrrp-ipv6.md), which ipvsd must accept."""
    lab = lab6
    a, b = ROUTERS6["d1"], ROUTERS6["d2"]
    ipvsd = lab.daemon("d1", 100, advert_int=FAST, unicast_peers=(b,), unicast_src=a, **V6)
    keepalived = lab.keepalived("d2", 90, advert_int=FAST, unicast_peers=(a,), unicast_src=b, **V6)
    ipvsd.start()
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=10)
    time.sleep(1)
    assert lab.holder() == ["d1"]  # keepalived accepts ipvsd's unicast adverts
    ipvsd.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.01)
    report("SIGKILL ipvsd -> keepalived, unicast", took)
    assert took <= master_down_interval(90, FAST) + SLACK
    ipvsd = lab.daemon("d1", 80, advert_int=FAST, unicast_peers=(b,), unicast_src=a, **V6)
    ipvsd.start()  # lower priority: it follows keepalived's hop-limit-64 unicast adverts
    time.sleep(1.5)
    assert lab.holder() == ["d2"]
    assert rejected(ipvsd.events()) == []
    keepalived.stop()
    assert complaints(keepalived.text()) == [], keepalived.text()


def test_an_instance_leaves_fault_when_its_link_local_address_finishes_dad(
    lab6: VrrpLab,
) -> None:
    """Status and metrics show the IPv6 instance as any other, FAULT included."""
    lab = lab6
    ns = lab.routers["d1"]
    lab.topo.sysctl(ns, "net/ipv6/conf/eth1/accept_dad", 1)
    lab.topo.exec(ns, ["ip", "link", "set", "eth1", "down"])  # its addresses go
    d1 = lab.daemon("d1", 100, advert_int=FAST, metrics=METRICS, **V6)
    d1.start()
    socket_path = str(lab.workdir / "d1.sock")

    def status() -> dict[str, Any]:
        vrrp: list[dict[str, Any]] = request(socket_path, {"command": "status"})["result"]["vrrp"]
        return vrrp[0]

    wait_until(lambda: status()["state"] == "FAULT", timeout=5)
    assert scrape_state(ns) == 3.0  # FAULT
    lab.topo.exec(ns, ["ip", "link", "set", "eth1", "up"])  # link-local: tentative for ~1 s
    wait_until(lambda: "link-local" in (status().get("fault_reason") or ""), timeout=1)
    took = wait_until(lambda: lab.holder() == ["d1"], timeout=6, interval=0.02)
    report("link up with DAD -> MASTER", took)
    shown = status()
    assert (shown["state"], shown["family"], shown["version"]) == ("MASTER", "ipv6", 3)
    assert shown["virtual_ipaddresses"] == [f"{VIP6}/64"]
    assert scrape_state(ns) == 2.0  # MASTER


METRICS = "127.0.0.1:9477"


def scrape(ns: str, name: str, **labels: str) -> float:
    """The sample of `name` with `labels` (among others) from the router's /metrics."""
    with in_netns(ns), urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=5) as got:
        text = got.read().decode()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels}:\n{text}")


def scrape_state(ns: str) -> float:
    """``ipvsd_vrrp_state`` of VI_1 (inside the router's namespace)."""
    return scrape(ns, "ipvsd_vrrp_state", vrrp_instance="VI_1")


def link_local(lab: VrrpLab, ns: str, dev: str = "eth1") -> IPv6Address:
    out = lab.topo.exec(ns, ["ip", "-6", "-o", "addr", "show", "dev", dev]).stdout
    for line in out.splitlines():
        address = IPv6Address(line.split()[3].split("/")[0])
        if address.is_link_local:
            return address
    raise AssertionError(f"no link-local address on {dev}: {out}")


@pytest.mark.parametrize("other", ["ipvsd", "keepalived"])
def test_unicast_over_link_local_addresses(lab6: VrrpLab, other: str) -> None:
    """Unicast peers named by their link-local addresses; each side sends from its own."""
    lab = lab6
    a, b = (str(link_local(lab, lab.routers[r])) for r in ("d1", "d2"))
    d1 = lab.daemon("d1", 100, advert_int=FAST, unicast_peers=(b,), **V6)
    d2 = router(lab, other, "d2", 90, unicast_peers=(a,))
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=10)
    time.sleep(1)
    assert lab.holder() == ["d1"]  # the backup accepts the master's unicast adverts
    d1.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=3, interval=0.01)
    report(f"SIGKILL ipvsd -> {other}, link-local unicast", took)
    assert took <= master_down_interval(90, FAST) + SLACK
    d1 = lab.daemon("d1", 80, advert_int=FAST, unicast_peers=(b,), **V6)
    d1.start()  # lower priority now: it follows d2's unicast adverts
    time.sleep(1.5)
    assert lab.holder() == ["d2"]
    assert rejected(d1.events()) == []
    assert rejected(events_of(d2)) == []


@pytest.mark.parametrize(
    ("first", "second"), PAIRS[1:3], ids=["ipvsd-keepalived", "keepalived-ipvsd"]
)
def test_sigkill_failover_at_one_second(lab6: VrrpLab, first: str, second: str) -> None:
    """As the VRRPv2 tests do, at advert_int 1: within Master_Down_Interval (3.648 s)."""
    lab = lab6
    d1 = router(lab, first, "d1", 100, advert_int=1)
    d2 = router(lab, second, "d2", 90, advert_int=1)
    d1.start()
    d2.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=master_down_interval(100, 1) + 5)
    time.sleep(1.5)
    assert lab.holder() == ["d1"]
    d1.kill()
    took = wait_until(lambda: "d2" in lab.holder(), timeout=6, interval=0.02)
    report(f"SIGKILL at 1 s {first} 100 -> {second} 90", took)
    assert master_down_interval(90, 1) - 1 - SLACK <= took <= master_down_interval(90, 1) + SLACK
