"""VRRP's kernel edges on the host kernel: VIPs and link events, advert and GARP sockets, notify.

Each test builds its own segment with `lab.netns.Topology`: a bridge in a
switch namespace and three hosts, A (10.98.51.1), B (.2) and C (.3), on
10.98.51.0/24. Sockets are opened inside a host's namespace with `in_netns`
(they stay there afterwards); the rtnetlink tests run a whole event loop inside
the namespace (`run_in`), as the daemon's loop does.
Payloads are plain bytes: the codec is not involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, MutableMapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from structlog.testing import capture_logs

from ipvsd.errors import KernelError
from ipvsd.netlink.addresses import AddressManager, vip_label
from ipvsd.netlink.links import AddressChange, LinkInfo, LinkWatcher
from ipvsd.vrrp.arp import gratuitous_arp
from ipvsd.vrrp.notify import OUTPUT_LIMIT, run_notify
from ipvsd.vrrp.packet import VRRP_GROUP
from ipvsd.vrrp.relink import InterfaceEndpoint
from ipvsd.vrrp.transport import AdvertSocket, GarpSender, VrrpSocket
from lab.netns import Topology, in_netns, sysctl_get

T = TypeVar("T")

A_IP = IPv4Address("10.98.51.1")
B_IP = IPv4Address("10.98.51.2")
C_IP = IPv4Address("10.98.51.3")
VIP = IPv4Interface("10.98.51.100/24")
# A VRRP advert as keepalived sends it (VRID 51, prio 100, one VIP, auth 0):
# the codec is not needed, the transport moves bytes.
ADVERT = bytes.fromhex("21336401000100000a6233640000000000000000")


@dataclass
class Segment:
    topo: Topology
    sw: str
    a: str
    b: str
    c: str
    port: dict[str, str]  # host namespace -> its veth peer on the bridge

    def mac(self, ns: str, dev: str = "eth0") -> str:
        out = self.topo.exec(ns, ["ip", "-j", "link", "show", "dev", dev]).stdout
        return str(json.loads(out)[0]["address"])


@pytest.fixture
def segment(topology: Topology) -> Segment:
    sw = topology.netns("sw")
    bridge = topology.bridge("br0", ns=sw)
    hosts = {name: topology.netns(name) for name in ("a", "b", "c")}
    port = {}
    for name, ip in (("a", A_IP), ("b", B_IP), ("c", C_IP)):
        ns = hosts[name]
        port[ns] = topology.veth(ns, "eth0", bridge=bridge, bridge_ns=sw, address=f"{ip}/24")
    seg = Segment(topology, sw, hosts["a"], hosts["b"], hosts["c"], port)
    for ns in hosts.values():
        wait_operstate(seg, ns, "UP")
    return seg


def wait_operstate(seg: Segment, ns: str, state: str, dev: str = "eth0") -> None:
    """Wait until the kernel's link watcher has set ``dev``'s operstate to ``state``."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = seg.topo.exec(ns, ["ip", "-j", "link", "show", "dev", dev]).stdout
        if json.loads(out)[0].get("operstate") == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"{dev} in {ns} never reached operstate {state}")


def run_in(ns: str, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``body()`` on a fresh event loop with this thread inside namespace ``ns``."""
    with in_netns(ns):
        return asyncio.run(body())


def ip_header(packet: bytes) -> dict[str, Any]:
    return {
        "ihl": (packet[0] & 0x0F) * 4,
        "tos": packet[1],
        "df": bool(packet[6] & 0x40),
        "ttl": packet[8],
        "protocol": packet[9],
        "src": IPv4Address(packet[12:16]),
        "dst": IPv4Address(packet[16:20]),
    }


async def nothing_arrives(sock: AdvertSocket[Any, Any], seconds: float = 0.3) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await sock.recv()
    except TimeoutError:
        return True
    return False


@pytest.fixture
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """capture_logs() with debug events kept whatever an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


# --- AddressManager: VIPs -------------------------------------------------------------------


def test_vip_add_remove_has_are_idempotent_and_labelled(segment: Segment) -> None:
    label = vip_label("eth0", 51)
    assert label == "eth0:vrrp51"

    async def body() -> list[str]:
        steps = []
        async with await AddressManager.open() as mgr:
            steps.append(f"has={await mgr.has('eth0', VIP)}")
            steps.append(f"add={await mgr.add('eth0', VIP, label)}")
            steps.append(f"add={await mgr.add('eth0', VIP, label)}")
            steps.append(f"has={await mgr.has('eth0', VIP)}")
            # same address, other prefix length: a different kernel address
            steps.append(f"has/32={await mgr.has('eth0', IPv4Interface('10.98.51.100/32'))}")
            lines = segment.topo.exec(segment.a, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
            steps.append(lines.stdout)
            steps.append(f"remove={await mgr.remove('eth0', VIP)}")
            steps.append(f"remove={await mgr.remove('eth0', VIP)}")
            steps.append(f"has={await mgr.has('eth0', VIP)}")
        return steps

    steps = run_in(segment.a, body)
    addr_lines = steps.pop(5).splitlines()
    assert steps == [
        "has=False",
        "add=True",
        "add=False",
        "has=True",
        "has/32=False",
        "remove=True",
        "remove=False",
        "has=False",
    ]
    (vip_line,) = [line for line in addr_lines if "10.98.51.100/24" in line]
    assert "secondary" in vip_line
    assert vip_line.split("\\")[0].split()[-1] == "eth0:vrrp51"
    after = segment.topo.exec(segment.a, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert "10.98.51.100" not in after


def test_vip_errors_are_clear(segment: Segment) -> None:
    async def body() -> list[str]:
        seen = []
        async with await AddressManager.open() as mgr, await LinkWatcher.open() as links:
            for call in (
                lambda: mgr.add("eth9", VIP, "eth9:vrrp51"),
                lambda: mgr.remove("eth9", VIP),
                lambda: mgr.has("eth9", VIP),
                lambda: links.link("eth9"),
                lambda: mgr.primary_ipv4("eth9"),
            ):
                try:
                    await call()
                except KernelError as exc:
                    seen.append(f"{exc} errno={exc.errno}")
            for label in ("eth1:vrrp51", "eth0:" + "x" * 11, "foo"):
                try:
                    await mgr.add("eth0", VIP, label)
                except ValueError as exc:
                    seen.append(str(exc))
            assert not await mgr.has("eth0", VIP)
        return seen

    seen = run_in(segment.a, body)
    assert seen[:5] == ["no interface 'eth9' errno=19"] * 5
    assert seen[5] == "address label 'eth1:vrrp51' must be 'eth0' or start with 'eth0:'"
    assert seen[6] == "address label 'eth0:xxxxxxxxxxx' is longer than 15 bytes"
    assert seen[7] == "address label 'foo' must be 'eth0' or start with 'eth0:'"


def test_vip_label_fits_ifnamsiz() -> None:
    assert vip_label("eth1", 51) == "eth1:vrrp51"
    assert vip_label("enp0s31f6", 255) == "enp0s31f6:v255"
    assert vip_label("enp0s31f6ab", 255) == "enp0s31f6ab:255"
    assert vip_label("enp0s31f6abc", 255) == "enp0s31f6abc"
    assert vip_label("x" * 15, 1) == "x" * 15
    assert all(len(vip_label("e" * n, 255)) <= 15 for n in range(1, 16))


def test_primary_ipv4_skips_secondaries_and_vips(segment: Segment) -> None:
    topo, a = segment.topo, segment.a
    # a veth pair inside A (the host kernel may lack the dummy module)
    topo.exec(a, ["ip", "link", "add", "pair0", "type", "veth", "peer", "name", "pair1"])
    # pair0: a /32 VIP first (the kernel flags it primary: its own subnet), then the real one
    topo.exec(a, ["ip", "addr", "add", "10.98.52.100/32", "dev", "pair0"])
    topo.exec(a, ["ip", "addr", "add", "10.98.53.1/24", "dev", "pair0"])
    topo.exec(a, ["ip", "addr", "add", "10.98.53.2/24", "dev", "pair0"])  # secondary

    async def body() -> list[IPv4Address | None]:
        async with await AddressManager.open() as mgr:
            await mgr.add("eth0", VIP, "eth0:vrrp51")  # secondary on eth0
            return [
                await mgr.primary_ipv4("eth0"),
                await mgr.primary_ipv4("eth0", exclude={VIP.ip}),
                await mgr.primary_ipv4("pair0"),
                await mgr.primary_ipv4("pair0", exclude={IPv4Address("10.98.52.100")}),
                await mgr.primary_ipv4(
                    "pair0", exclude={IPv4Address("10.98.52.100"), IPv4Address("10.98.53.1")}
                ),
                await mgr.primary_ipv4("pair1"),
            ]

    assert run_in(a, body) == [
        A_IP,
        A_IP,
        IPv4Address("10.98.52.100"),
        IPv4Address("10.98.53.1"),
        None,  # 10.98.53.2 is a secondary: never the VRRP source
        None,
    ]


# --- LinkWatcher ----------------------------------------------------------------------------


def test_link_reports_state_and_mac(segment: Segment) -> None:
    async def body() -> tuple[LinkInfo, LinkInfo]:
        async with await LinkWatcher.open() as links:
            eth0 = await links.link("eth0")
            segment.topo.exec(segment.a, ["ip", "link", "set", "eth0", "down"])
            return eth0, await links.link("eth0")

    up, down = run_in(segment.a, body)
    assert up.name == "eth0"
    assert up.index > 1
    assert up.mac == segment.mac(segment.a)
    assert (up.up, up.admin_up, up.carrier, up.operstate) == (True, True, True, "UP")
    assert (down.up, down.admin_up, down.operstate) == (False, False, "DOWN")


async def next_change(
    events: AsyncIterator[LinkInfo], name: str, want: Callable[[LinkInfo], bool], within: float
) -> tuple[LinkInfo, float]:
    """The first event for ``name`` satisfying ``want``, and how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(within):
        async for info in events:
            if info.name == name and want(info):
                return info, loop.time() - start
    raise AssertionError("watch_links() ended")


def test_watch_links_follows_admin_state_carrier_and_deletion(segment: Segment) -> None:
    topo, a, sw = segment.topo, segment.a, segment.sw

    async def body() -> dict[str, tuple[LinkInfo, float]]:
        got = {}
        async with await LinkWatcher.open() as links:
            events = aiter(links.watch_links())
            # the snapshot comes first: eth0 as it is now
            got["initial"] = await next_change(events, "eth0", lambda i: True, 1.0)

            topo.exec(a, ["ip", "link", "set", "eth0", "down"])
            got["down"] = await next_change(events, "eth0", lambda i: not i.up, 1.0)
            topo.exec(a, ["ip", "link", "set", "eth0", "up"])
            got["up"] = await next_change(events, "eth0", lambda i: i.up, 1.0)

            # the switch port goes down: eth0 stays admin-up but loses its carrier
            topo.exec(sw, ["ip", "link", "set", segment.port[a], "down"])
            got["no carrier"] = await next_change(events, "eth0", lambda i: not i.up, 1.0)
            topo.exec(sw, ["ip", "link", "set", segment.port[a], "up"])
            got["carrier"] = await next_change(events, "eth0", lambda i: i.up, 1.0)

            topo.exec(a, ["ip", "link", "add", "pair7", "type", "veth", "peer", "name", "pair8"])
            got["added"] = await next_change(events, "pair7", lambda i: True, 1.0)
            topo.exec(a, ["ip", "link", "del", "pair7"])
            got["deleted"] = await next_change(events, "pair7", lambda i: i.deleted, 1.0)

            # a second concurrent watcher is refused
            with pytest.raises(RuntimeError, match="already running"):
                await anext(aiter(links.watch_links()))
        return got

    got = run_in(a, body)
    assert got["initial"][0].up
    assert got["down"][0].admin_up is False
    assert got["up"][0].operstate == "UP"
    no_carrier = got["no carrier"][0]
    assert (no_carrier.admin_up, no_carrier.carrier) == (True, False)
    assert got["carrier"][0].carrier
    assert got["added"][0].deleted is False
    assert got["deleted"][0].deleted
    for what, (_, seconds) in got.items():
        assert seconds < 1.0, what


def test_watch_links_ends_when_closed(segment: Segment) -> None:
    async def body() -> list[LinkInfo]:
        links = await LinkWatcher.open()
        seen: list[LinkInfo] = []

        async def consume() -> None:
            async for info in links.watch_links():
                seen.append(info)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        links.close()
        await asyncio.wait_for(task, 1.0)
        return seen

    seen = run_in(segment.a, body)
    assert {info.name for info in seen} >= {"lo", "eth0"}


# --- VrrpSocket -----------------------------------------------------------------------------


async def test_multicast_advert_reaches_peer_with_ttl_255_from_primary(segment: Segment) -> None:
    segment.topo.exec(segment.a, ["ip", "addr", "add", str(VIP), "dev", "eth0"])
    with in_netns(segment.a):
        sock_a = VrrpSocket.open("eth0")
    with in_netns(segment.b):
        sock_b = VrrpSocket.open("eth0")
    with in_netns(segment.c):
        sock_c = VrrpSocket.open("eth0")
    try:
        sock_a.bind_source(A_IP)
        assert sock_a.send(ADVERT)
        for receiver in (sock_b, sock_c):
            got = await asyncio.wait_for(receiver.recv(), 2)
            header = ip_header(got.packet)
            assert header == {
                "ihl": 20,
                "tos": 0xC0,
                "df": False,
                "ttl": 255,
                "protocol": 112,
                "src": A_IP,
                "dst": VRRP_GROUP,
            }
            assert got.packet[20:] == ADVERT
            assert got.source == A_IP
        assert await nothing_arrives(sock_a), "our own advert was looped back"

        # bind_source is honoured: send from the VIP instead (not what VRRP does)
        sock_a.bind_source(VIP.ip)
        assert sock_a.send(ADVERT)
        got = await asyncio.wait_for(sock_b.recv(), 2)
        assert ip_header(got.packet)["src"] == VIP.ip
    finally:
        for sock in (sock_a, sock_b, sock_c):
            sock.close()


async def test_unicast_mode(segment: Segment) -> None:
    with in_netns(segment.a):
        sock_a = VrrpSocket.open("eth0", unicast=True)
        multicast_a = VrrpSocket.open("eth0")
    with in_netns(segment.b):
        sock_b = VrrpSocket.open("eth0", unicast=True)
    with in_netns(segment.c):
        sock_c = VrrpSocket.open("eth0")
    try:
        sock_a.bind_source(A_IP)
        assert sock_a.send(ADVERT, B_IP)
        got = await asyncio.wait_for(sock_b.recv(), 2)
        header = ip_header(got.packet)
        assert (header["src"], header["dst"], header["ttl"]) == (A_IP, B_IP, 255)
        assert got.packet[20:] == ADVERT
        assert await nothing_arrives(sock_c), "a unicast advert to B reached C"

        # a unicast-mode socket joins no group and sees no multicast adverts
        assert multicast_a.send(ADVERT)
        assert await asyncio.wait_for(sock_c.recv(), 2)
        assert await nothing_arrives(sock_b)
    finally:
        for sock in (sock_a, multicast_a, sock_b, sock_c):
            sock.close()


def failures(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str, bool, int]]:
    return [
        (e["event"], e["log_level"], e["link_down"], e["errno"])
        for e in logs
        if e["event"] in ("vrrp.send_failed", "vrrp.garp_failed")
    ]


async def test_sends_on_a_down_link_fail_quietly(
    segment: Segment, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    topo, a = segment.topo, segment.a
    with in_netns(a):
        sock = VrrpSocket.open("eth0")
        garp = GarpSender.open("eth0")
    frames = [gratuitous_arp(segment.mac(a), VIP.ip)]
    sock.bind_source(A_IP)
    try:
        # the switch port goes down: carrier lost, eth0 still administratively up
        topo.exec(segment.sw, ["ip", "link", "set", segment.port[a], "down"])
        wait_operstate(segment, a, "DOWN")  # veth: no carrier is DOWN, not LOWERLAYERDOWN
        assert sock.send(ADVERT) is True  # IP accepts it; the kernel drops it later
        # AF_PACKET reports the drop (ENOBUFS) once the link watcher has swapped
        # the qdisc for noop, which can trail the operstate change a little
        assert garp.send_burst(frames, 5) in (0, 5)
        # eth0 itself goes down
        topo.exec(a, ["ip", "link", "set", "eth0", "down"])
        assert sock.send(ADVERT) is False
        assert sock.send(ADVERT, B_IP) is False
        assert garp.send_burst(frames, 5) == 0
        assert sock.send_failures == 2
        assert garp.send_failures in (1, 2)
    finally:
        sock.close()
        garp.close()
    logged = failures(debug_logs)
    if garp.send_failures == 2:
        assert logged[0] == ("vrrp.garp_failed", "debug", True, errno.ENOBUFS)
        logged.pop(0)
    assert logged == [
        ("vrrp.send_failed", "debug", True, errno.ENETUNREACH),
        ("vrrp.send_failed", "debug", True, errno.ENETUNREACH),
        ("vrrp.garp_failed", "debug", True, errno.ENETDOWN),
    ]
    failed = next(e for e in debug_logs if e["event"] == "vrrp.send_failed")
    assert failed["error"] == os.strerror(errno.ENETUNREACH)
    assert failed["interface"] == "eth0"


async def test_a_send_failure_on_an_up_link_is_a_warning(
    segment: Segment, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    with in_netns(segment.a):
        sock = VrrpSocket.open("eth0")
    try:
        sock.bind_source(IPv4Address("10.98.51.99"))  # not A's: a configuration mistake
        assert sock.send(ADVERT) is False
    finally:
        sock.close()
    assert failures(debug_logs) == [("vrrp.send_failed", "warning", False, errno.ENETUNREACH)]


def test_open_errors(segment: Segment) -> None:
    with in_netns(segment.a):
        with pytest.raises(KernelError, match="no interface 'eth9'"):
            VrrpSocket.open("eth9")
        with pytest.raises(KernelError, match="no interface 'eth9'"):
            GarpSender.open("eth9")


async def test_close_ends_a_pending_recv(segment: Segment) -> None:
    with in_netns(segment.b):
        sock = VrrpSocket.open("eth0")
        other = VrrpSocket.open("eth0")
    pending = asyncio.create_task(sock.recv())
    listing = asyncio.create_task(anext(aiter(other.packets()), None))
    await asyncio.sleep(0.05)
    sock.close()
    other.close()
    with pytest.raises(KernelError, match="closed"):
        await asyncio.wait_for(pending, 1)
    assert await asyncio.wait_for(listing, 1) is None
    # the descriptor numbers are free again, and the loop accepts new sockets on them
    with in_netns(segment.b):
        again = VrrpSocket.open("eth0")
    try:
        reader = asyncio.create_task(again.recv())
        await asyncio.sleep(0.05)
        reader.cancel()
    finally:
        again.close()


def endpoint_state(endpoint: InterfaceEndpoint) -> tuple[int, GarpSender | None, int | None]:
    """An endpoint's users, GARP sender and ifindex, read afresh: mypy would keep
    ``endpoint.garp`` narrowed by an earlier assert across `InterfaceEndpoint.release`."""
    return endpoint.users, endpoint.garp, endpoint.ifindex


def test_interface_endpoint_shares_and_refcounts(segment: Segment) -> None:
    with in_netns(segment.a):
        endpoint = InterfaceEndpoint("eth0")
        endpoint.acquire(unicast=False)
        endpoint.acquire(unicast=False)
        endpoint.acquire(unicast=True)
    first, unicast = endpoint.advert(False), endpoint.advert(True)
    assert first is not None
    assert unicast is not None
    assert first is not unicast
    assert endpoint.garp is not None
    assert endpoint.users == 3
    endpoint.release(unicast=False)
    assert first.send(ADVERT)  # still open
    endpoint.release(unicast=False)
    assert endpoint.advert(False) is None
    with pytest.raises(KernelError, match="closed"):
        first.send(ADVERT)
    assert endpoint.garp is not None  # the unicast instance still uses it
    endpoint.release(unicast=True)
    assert endpoint_state(endpoint) == (0, None, None)


async def test_interface_endpoint_reopens_on_a_recreated_interface(segment: Segment) -> None:
    """Delete and re-create a veth pair (vr0 in A, vr1 in B): the old sockets are dead,
    the re-opened ones work."""
    topo, a, b = segment.topo, segment.a, segment.b

    def make_pair() -> None:
        topo.exec(a, ["ip", "link", "add", "vr0", "type", "veth", "peer", "name", "vr1",
                      "netns", b])  # fmt: skip
        topo.exec(a, ["ip", "addr", "add", "10.98.52.1/24", "dev", "vr0"])
        topo.exec(b, ["ip", "addr", "add", "10.98.52.2/24", "dev", "vr1"])
        topo.exec(a, ["ip", "link", "set", "vr0", "up"])
        topo.exec(b, ["ip", "link", "set", "vr1", "up"])
        wait_operstate(segment, a, "UP", "vr0")
        wait_operstate(segment, b, "UP", "vr1")

    async def arrives(listener: VrrpSocket) -> bool:
        async with asyncio.timeout(1.0):
            received = await listener.recv()
        return received.packet.endswith(ADVERT)

    make_pair()
    with in_netns(a):
        endpoint = InterfaceEndpoint("vr0")
        endpoint.acquire(unicast=False)
    with in_netns(b):
        listener = VrrpSocket.open("vr1")
    try:
        sock = endpoint.advert(False)
        assert sock is not None
        old_index = endpoint.ifindex
        assert sock.send(ADVERT)
        assert await arrives(listener)
        listener.close()

        topo.exec(a, ["ip", "link", "del", "vr0"])
        make_pair()
        with in_netns(b):
            listener = VrrpSocket.open("vr1")
        with in_netns(a):
            new = socket.if_nametoindex("vr0")
        assert new != old_index
        assert not sock.send(ADVERT)  # bound to the deleted ifindex
        assert await nothing_arrives(listener)

        endpoint.close_gone()
        assert (endpoint.gone, endpoint.advert(False), endpoint.last_ifindex) == (
            True,
            None,
            old_index,
        )
        with in_netns(a):
            (reopened,) = endpoint.reopen()
        assert (endpoint.gone, endpoint.ifindex, reopened.ifindex) == (False, new, new)
        assert isinstance(reopened, VrrpSocket)  # vr0 is an IPv4 endpoint
        reopened.bind_source(IPv4Address("10.98.52.1"))
        assert reopened.send(ADVERT)
        assert await arrives(listener)
    finally:
        listener.close()
        endpoint.close()


# --- GarpSender -----------------------------------------------------------------------------


def neighbour(seg: Segment, ns: str, ip: IPv4Address) -> dict[str, Any] | None:
    out = seg.topo.exec(ns, ["ip", "-j", "neigh", "show", str(ip), "dev", "eth0"]).stdout
    entries = json.loads(out)
    return entries[0] if entries else None


async def test_garp_moves_a_peers_neighbour_entry(segment: Segment) -> None:
    topo, a, b = segment.topo, segment.a, segment.b
    mac_a = segment.mac(a)
    # B believes the VIP is elsewhere, as after a failover from another director
    topo.exec(b, ["ip", "neigh", "replace", str(VIP.ip), "lladdr", "02:00:00:00:00:99",
                  "dev", "eth0", "nud", "stale"])  # fmt: skip
    # Linux's default: no arp_accept. A GARP request updates an existing entry anyway.
    assert sysctl_get(b, "net/ipv4/conf/eth0/arp_accept") == "0"
    assert sysctl_get(b, "net/ipv4/conf/all/arp_accept") == "0"
    entry = neighbour(segment, b, VIP.ip)
    assert entry is not None
    assert entry["lladdr"] == "02:00:00:00:00:99"
    # C has no entry for the VIP, and a GARP does not create one without arp_accept
    assert neighbour(segment, segment.c, VIP.ip) is None

    topo.exec(a, ["ip", "addr", "add", str(VIP), "dev", "eth0"])
    with in_netns(a):
        garp = GarpSender.open("eth0")
    try:
        assert garp.send_burst([gratuitous_arp(mac_a, VIP.ip)], 5) == 5
    finally:
        garp.close()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while loop.time() < deadline:
        entry = neighbour(segment, b, VIP.ip)
        if entry and entry.get("lladdr") == mac_a:
            break
        await asyncio.sleep(0.02)
    assert entry is not None
    assert entry.get("lladdr") == mac_a, entry
    assert "STALE" in entry.get("state", [])  # a request does not prove reachability
    assert neighbour(segment, segment.c, VIP.ip) is None


# --- run_notify -----------------------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def process_exists(pid: int) -> bool:
    """Whether ``pid`` exists at all, zombies included."""
    return Path(f"/proc/{pid}").exists()


def process_gone(pid: int) -> bool:
    """No such process, or a zombie that is not ours to reap (reparented)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    state, ppid = fields[0], int(fields[1])
    return state in ("Z", "X") and ppid != os.getpid()


async def test_notify_passes_keepalived_arguments(tmp_path: Path) -> None:
    hook = script(tmp_path, "notify.sh", f'echo "$@" > {tmp_path}/args\necho done; echo oops >&2')
    result = await run_notify(str(hook), "VI_1", "MASTER", 100)
    assert result.ok
    assert result.returncode == 0
    assert result.argv == (str(hook), "INSTANCE", "VI_1", "MASTER", "100")
    assert (tmp_path / "args").read_text() == "INSTANCE VI_1 MASTER 100\n"
    assert result.output == "done\noops\n"
    assert result.error is None
    assert not result.timed_out


async def test_notify_failure_is_a_value(tmp_path: Path) -> None:
    hook = script(tmp_path, "fail.sh", "echo bad state; exit 3")
    with capture_logs() as logs:
        result = await run_notify(str(hook), "VI_1", "FAULT", 90)
    assert (result.ok, result.returncode, result.output) == (False, 3, "bad state\n")
    assert [(e["event"], e["returncode"]) for e in logs] == [("vrrp.notify_failed", 3)]


async def test_notify_timeout_kills_the_process_group(tmp_path: Path) -> None:
    hook = script(
        tmp_path,
        "hang.sh",
        f"sleep 300 &\necho $! > {tmp_path}/child\necho $$ > {tmp_path}/pid\necho started\nwait",
    )
    start = time.monotonic()
    result = await run_notify(str(hook), "VI_1", "BACKUP", 100, timeout=0.5)
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert result.returncode is None
    assert result.output == "started\n"
    assert 0.5 <= result.duration_s < 2.0
    assert elapsed < 2.0
    pid = int((tmp_path / "pid").read_text())
    child = int((tmp_path / "child").read_text())
    assert not process_exists(pid), "the script was not reaped (zombie)"
    for _ in range(50):
        if process_gone(child):
            break
        await asyncio.sleep(0.02)
    assert process_gone(child), "the script's child survived the timeout"


async def test_notify_missing_or_not_executable(tmp_path: Path) -> None:
    missing = await run_notify(str(tmp_path / "nope.sh"), "VI_1", "STOP", 0)
    assert missing.returncode is None
    assert missing.error is not None
    assert "nope.sh" in missing.error
    assert "No such file" in missing.error
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    denied = await run_notify(str(plain), "VI_1", "STOP", 0)
    assert denied.error is not None
    assert "Permission denied" in denied.error
    with pytest.raises(ValueError, match="notify state"):
        await run_notify(str(plain), "VI_1", "master", 0)


async def test_notify_output_is_bounded(tmp_path: Path) -> None:
    hook = script(tmp_path, "chatty.sh", "seq 1 50000; echo last line")
    result = await run_notify(str(hook), "VI_1", "MASTER", 100)
    assert result.ok
    assert len(result.output) == OUTPUT_LIMIT
    assert result.output.endswith("50000\nlast line\n")


async def test_notify_does_not_wait_for_a_background_child(tmp_path: Path) -> None:
    hook = script(tmp_path, "daemonise.sh", f"sleep 300 &\necho $! > {tmp_path}/child\necho ok")
    try:
        start = time.monotonic()
        result = await run_notify(str(hook), "VI_1", "MASTER", 100, timeout=5)
        assert time.monotonic() - start < 3
        assert result.ok
        assert result.output == "ok\n"
    finally:
        child = int((tmp_path / "child").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # the sleep our script left behind


def test_watch_reports_ipv4_address_changes_and_survives_a_read_error(segment: Segment) -> None:
    topo, a = segment.topo, segment.a
    added_ip = IPv4Interface("10.98.51.77/24")

    async def body() -> tuple[list[AddressChange], list[AddressChange], LinkInfo]:
        async with await LinkWatcher.open() as links:
            eth0 = await links.link("eth0")
            events = aiter(links.watch())

            async def addresses(count: int) -> list[AddressChange]:
                got: list[AddressChange] = []
                async with asyncio.timeout(2):
                    async for change in events:
                        if isinstance(change, AddressChange) and change.index == eth0.index:
                            got.append(change)
                            if len(got) == count:
                                return got
                raise AssertionError("watch() ended")

            async with asyncio.timeout(1):
                while (first := await anext(events)) != eth0:  # the initial dump
                    pass
            topo.exec(a, ["ip", "addr", "add", str(added_ip), "dev", "eth0"])
            topo.exec(a, ["ip", "addr", "del", str(added_ip), "dev", "eth0"])
            changes = await addresses(2)
            # A read error that is not ENOBUFS: a fresh dump, and "addresses unknown".
            real = links._events

            class Broken:
                def __getattr__(self, name: str) -> Any:
                    return getattr(real, name)

                def recv(self, size: int) -> bytes:
                    links._events = real
                    raise OSError(errno.EIO, "injected")

            links._events = Broken()  # type: ignore[assignment]
            topo.exec(a, ["ip", "addr", "add", str(added_ip), "dev", "eth0"])
            after = await addresses(1)
        return changes, after, first

    changes, after, first = run_in(a, body)
    assert first.name == "eth0"
    assert changes == [
        AddressChange(changes[0].index, added_ip),
        AddressChange(changes[0].index, added_ip, deleted=True),
    ]
    assert after == [AddressChange(changes[0].index, None)]
