"""VRRPv3's IPv6 edge on the host kernel (issue 14): the advert socket, NAs, nodad VIPs.

Two namespaces, A and B, joined by a veth pair (``eth0`` on both sides).
Duplicate address detection is off for the link-local addresses of the pair,
so that they are usable at once (the nodad test turns it on again for its
own addresses). Sockets are opened inside a namespace with `in_netns` and
stay there; adverts are real `packet_v3` messages, checksummed for the
addresses they travel between.
"""

from __future__ import annotations

import asyncio
import errno
import json
import select
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any

import pytest

from ipvsd.errors import KernelError
from ipvsd.netlink.addresses import AddressManager
from ipvsd.vrrp.ndisc import NA_FLAG_OVERRIDE, unsolicited_na
from ipvsd.vrrp.pacer import AdvertBurst, AdvertProcess
from ipvsd.vrrp.packet_v3 import AdvertisementV3, decode_message, encode_message
from ipvsd.vrrp.transport import GarpSender
from ipvsd.vrrp.transport6 import VRRP_GROUP6, ReceivedPacket6, VrrpSocket6, forwards_ipv6
from lab.netns import Topology, in_netns, sysctl_get
from lab.vrrp_pair import KeepalivedProcess
from tests.netns import test_vrrp_io as io4

VIP6 = IPv6Address("2001:db8::200")
A_GLOBAL = IPv6Address("2001:db8::1")
B_GLOBAL = IPv6Address("2001:db8::2")
ETH_P_IPV6 = 0x86DD
ADVERT = AdvertisementV3(52, 200, 100, (VIP6,))


@dataclass
class Pair:
    topo: Topology
    a: str
    b: str

    def mac(self, ns: str) -> str:
        return str(self.topo.exec(ns, ["cat", "/sys/class/net/eth0/address"]).stdout.strip())

    def link_local(self, ns: str) -> IPv6Address:
        """The kernel-made (EUI-64) link-local address of eth0."""
        local = [x["local"] for x in self.addresses(ns) if x.get("scope") == "link"]
        return IPv6Address(local[-1])  # the kernel's comes last, after ones tests add

    def addresses(self, ns: str) -> list[dict[str, Any]]:
        out = self.topo.exec(ns, ["ip", "-j", "-6", "addr", "show", "dev", "eth0"]).stdout
        (info,) = json.loads(out)
        return list(info["addr_info"])


@pytest.fixture
def pair(topology: Topology) -> Pair:
    a, b = topology.netns("a"), topology.netns("b")
    for ns in (a, b):  # link-local addresses usable at once (no DAD on the new veth)
        topology.sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
    topology.veth(a, "eth0", peer_ns=b, peer_name="eth0")
    pair = Pair(topology, a, b)
    for ns in (a, b):
        wait_for(lambda ns=ns: any(x.get("scope") == "link" for x in pair.addresses(ns)))
    return pair


def wait_for(condition: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.02)


def advert_for(source: IPv6Address, destination: IPv6Address = VRRP_GROUP6) -> bytes:
    return encode_message(ADVERT, source, destination)


async def receive(sock: VrrpSocket6, seconds: float = 2) -> ReceivedPacket6:
    return await asyncio.wait_for(sock.recv(), seconds)


# Shared with the IPv4 tests: the debug_logs fixture and two helpers.
debug_logs = io4.debug_logs
failures = io4.failures
nothing_arrives = io4.nothing_arrives


class Capture:
    """An AF_PACKET socket in a namespace that sees every IPv6 frame on its eth0."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        self._sock.bind(("eth0", ETH_P_IPV6))

    def frames(self, seconds: float, *, stop: Any = None) -> list[bytes]:
        """Frames seen within ``seconds``, or until one satisfies ``stop``."""
        seen: list[bytes] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self._sock], [], [], left)[0]:
                seen.append(self._sock.recv(4096))
                if stop is not None and stop(seen[-1]):
                    break
        return seen

    def close(self) -> None:
        self._sock.close()


def is_vrrp(frame: bytes) -> bool:
    return frame[12:14] == b"\x86\xdd" and frame[14 + 6] == 112


# --- VrrpSocket6 ----------------------------------------------------------------------------


async def test_multicast_advert_from_link_local_with_hop_limit_255(pair: Pair) -> None:
    lla_a = pair.link_local(pair.a)
    with in_netns(pair.a):
        sock_a = VrrpSocket6.open("eth0")
    with in_netns(pair.b):
        sock_b = VrrpSocket6.open("eth0")
    capture = Capture(pair.b)
    try:
        # the kernel adds no checksum of its own: packet_v3 computes it
        assert sock_a._sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM) == -1
        sock_a.bind_source(lla_a)
        assert sock_a.source == lla_a
        payload = advert_for(lla_a)
        assert sock_a.send(payload)
        got = await receive(sock_b)
        assert got == ReceivedPacket6(payload, lla_a, VRRP_GROUP6, 255)
        assert decode_message(got.message, got.source, got.destination) == ADVERT
        assert await nothing_arrives(sock_a), "our own advert was looped back"

        # on the wire: the header the kernel wrote
        (frame,) = [f for f in capture.frames(1, stop=is_vrrp) if is_vrrp(f)]
        assert frame[0:6] == bytes.fromhex("333300000012")  # ff02::12's MAC
        ip6 = frame[14:54]
        assert ip6[0] >> 4 == 6
        assert ((ip6[0] & 0x0F) << 4 | ip6[1] >> 4) == 0xC0  # traffic class, as keepalived
        assert (ip6[6], ip6[7]) == (112, 255)  # next header, hop limit
        assert IPv6Address(ip6[8:24]) == lla_a
        assert IPv6Address(ip6[24:40]) == VRRP_GROUP6
        assert frame[54:] == payload
    finally:
        capture.close()
        for sock in (sock_a, sock_b):
            sock.close()


async def test_bind_source_is_honoured_per_send(pair: Pair) -> None:
    other = IPv6Address("fe80::99")
    pair.topo.exec(pair.a, ["ip", "addr", "add", f"{other}/64", "dev", "eth0", "nodad"])
    lla_a = pair.link_local(pair.a)
    with in_netns(pair.a):
        sock_a = VrrpSocket6.open("eth0")
    with in_netns(pair.b):
        sock_b = VrrpSocket6.open("eth0")
    try:
        for source in (other, lla_a, other):
            sock_a.bind_source(source)
            assert sock_a.send(advert_for(source))
            got = await receive(sock_b)
            assert got.source == source
            assert decode_message(got.message, got.source, got.destination) == ADVERT
    finally:
        sock_a.close()
        sock_b.close()


async def test_unicast_to_global_and_link_local_peers(pair: Pair) -> None:
    for ns, address in ((pair.a, A_GLOBAL), (pair.b, B_GLOBAL)):
        pair.topo.exec(ns, ["ip", "addr", "add", f"{address}/64", "dev", "eth0", "nodad"])
    lla_a, lla_b = pair.link_local(pair.a), pair.link_local(pair.b)
    with in_netns(pair.a):
        sock_a = VrrpSocket6.open("eth0", unicast=True)
        multicast_a = VrrpSocket6.open("eth0")
    with in_netns(pair.b):
        sock_b = VrrpSocket6.open("eth0", unicast=True)
        multicast_b = VrrpSocket6.open("eth0")
    try:
        sock_a.bind_source(lla_a)
        for peer in (B_GLOBAL, lla_b):
            payload = advert_for(lla_a, peer)
            assert sock_a.send(payload, peer)
            got = await receive(sock_b)
            assert got == ReceivedPacket6(payload, lla_a, peer, 255)
            assert decode_message(got.message, got.source, got.destination) == ADVERT
            # a multicast socket sees unicast adverts to us too: the receiver checks
            assert (await receive(multicast_b)).destination == peer

        # a global source for a global peer (keepalived's unicast_src_ip)
        sock_a.bind_source(A_GLOBAL)
        assert sock_a.send(advert_for(A_GLOBAL, B_GLOBAL), B_GLOBAL)
        got = await receive(sock_b)
        assert (got.source, got.destination, got.hop_limit) == (A_GLOBAL, B_GLOBAL, 255)
        await receive(multicast_b)

        # A unicast-mode socket joins no group. Unlike IPv4, an unbound raw IPv6
        # socket still receives group packets the host accepts because another
        # socket joined (raw_v6_match): the receiver checks the destination.
        assert multicast_a.send(advert_for(lla_a))
        assert (await receive(multicast_b)).destination == VRRP_GROUP6
        assert (await receive(sock_b)).destination == VRRP_GROUP6
        multicast_b.close()  # nobody in B is in ff02::12 any more
        await asyncio.sleep(0.1)
        assert multicast_a.send(advert_for(lla_a))
        assert await nothing_arrives(sock_b)
    finally:
        for sock in (sock_a, multicast_a, sock_b, multicast_b):
            sock.close()


async def test_hop_limit_is_reported_so_the_caller_can_reject(pair: Pair) -> None:
    """RFC 5798 §7.1: an advert from off-link (hop limit < 255) must be dropped;
    a raw IPv6 socket does not return the header, so the hop limit is reported."""
    lla_a = pair.link_local(pair.a)
    with in_netns(pair.a):
        plain = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
        ifindex = socket.if_nametoindex("eth0")
    with in_netns(pair.b):
        sock_b = VrrpSocket6.open("eth0")
    try:
        plain.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 64)
        plain.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        payload = advert_for(lla_a)
        plain.sendto(payload, (str(VRRP_GROUP6), 0, 0, ifindex))
        got = await receive(sock_b)
        assert got == ReceivedPacket6(payload, lla_a, VRRP_GROUP6, 64)
    finally:
        plain.close()
        sock_b.close()


async def test_sends_on_a_down_link_fail_quietly(
    pair: Pair, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    lla_a = pair.link_local(pair.a)
    with in_netns(pair.a):
        sock = VrrpSocket6.open("eth0")
    try:
        sock.bind_source(lla_a)
        pair.topo.exec(pair.a, ["ip", "link", "set", "eth0", "down"])
        assert sock.send(advert_for(lla_a)) is False  # the link-local address went with it
        sock.bind_source(None)
        assert sock.send(advert_for(lla_a)) is False
        assert sock.send_failures == 2
    finally:
        sock.close()
    assert failures(debug_logs) == [
        ("vrrp.send_failed", "debug", True, errno.EINVAL),  # source not (any more) local
        ("vrrp.send_failed", "debug", True, errno.ENETUNREACH),
    ]
    with pytest.raises(KernelError, match="closed"):
        sock.send(b"")


async def test_a_send_failure_on_an_up_link_is_a_warning(
    pair: Pair, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    with in_netns(pair.a):
        sock = VrrpSocket6.open("eth0")
    try:
        sock.bind_source(IPv6Address("fe80::dead"))  # not A's: a configuration mistake
        assert sock.send(advert_for(IPv6Address("fe80::dead"))) is False
    finally:
        sock.close()
    assert failures(debug_logs) == [("vrrp.send_failed", "warning", False, errno.EINVAL)]


def test_open_errors(pair: Pair) -> None:
    with in_netns(pair.a), pytest.raises(KernelError, match="no interface 'eth9'") as info:
        VrrpSocket6.open("eth9")
    assert info.value.errno == errno.ENODEV


async def test_close_ends_a_pending_recv(pair: Pair) -> None:
    with in_netns(pair.a):
        sock = VrrpSocket6.open("eth0")
    pending = asyncio.create_task(sock.recv())
    await asyncio.sleep(0.05)
    sock.close()
    with pytest.raises(KernelError, match="closed"):
        await asyncio.wait_for(pending, 1)
    assert [packet async for packet in sock.packets()] == []


# --- AddressManager: IPv6 VIPs without DAD --------------------------------------------------


def flags_of(pair: Pair, ns: str, address: IPv6Address) -> set[str]:
    """``ip -j addr``'s boolean keys for ``address`` (``tentative``, ``nodad``...)."""
    for info in pair.addresses(ns):
        if info.get("local") == str(address):
            return {key for key, value in info.items() if value is True}
    raise AssertionError(f"{address} is not on eth0 in {ns}")


def test_ipv6_vip_is_usable_at_once_nodad(pair: Pair) -> None:
    topo, a = pair.topo, pair.a
    topo.sysctl(a, "net/ipv6/conf/eth0/accept_dad", 1)  # DAD on, as on any real host
    # the control: an address added without nodad waits for DAD
    topo.exec(a, ["ip", "addr", "add", f"{A_GLOBAL}/64", "dev", "eth0"])
    assert "tentative" in flags_of(pair, a, A_GLOBAL)
    vip = IPv6Interface(f"{VIP6}/64")

    async def body() -> list[object]:
        steps: list[object] = []
        async with await AddressManager.open() as mgr:
            steps.append(await mgr.has("eth0", vip))
            steps.append(await mgr.add("eth0", vip, "eth0:vrrp52"))
            flags = flags_of(pair, a, VIP6)  # at once, before any DAD could finish
            steps.append(sorted(flags & {"tentative", "nodad", "dadfailed", "deprecated"}))
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
                udp.bind((str(VIP6), 0))  # a tentative address would give EADDRNOTAVAIL
            steps.append(await mgr.add("eth0", vip, "eth0:vrrp52"))
            steps.append(await mgr.has("eth0", vip))
            steps.append(await mgr.has("eth0", IPv6Interface(f"{VIP6}/128")))
            steps.append(await mgr.remove("eth0", vip))
            steps.append(await mgr.remove("eth0", vip))
            steps.append(await mgr.has("eth0", vip))
        return steps

    assert io4.run_in(a, body) == [
        False,
        True,
        ["deprecated", "nodad"],
        False,
        True,
        False,
        True,
        False,
        False,
    ]


def test_an_ipv6_vip_is_never_the_directors_own_source_address(pair: Pair) -> None:
    """Linux picks the newest address of a prefix as the source of the host's own
    connections, so a VIP in the segment's /64 would source the director's
    health checks, and DR reals, which hold the VIP on lo, would answer
    themselves. A deprecated VIP (preferred_lft 0) is avoided (RFC 6724 rule
    3) and still receives. keepalived deprecates /128 VIPs for the same reason."""
    topo, a = pair.topo, pair.a
    topo.exec(a, ["ip", "addr", "add", f"{A_GLOBAL}/64", "dev", "eth0", "nodad"])
    vip = IPv6Interface(f"{VIP6}/64")

    async def body() -> str:
        async with await AddressManager.open() as mgr:
            await mgr.add("eth0", vip, "eth0:vrrp52")
        return topo.exec(a, ["ip", "-6", "route", "get", str(vip.network[0x30])]).stdout

    assert f"src {A_GLOBAL} " in io4.run_in(a, body)


def test_link_local_source_waits_for_dad(pair: Pair) -> None:
    topo, a = pair.topo, pair.a
    topo.sysctl(a, "net/ipv6/conf/default/accept_dad", 1)
    topo.exec(a, ["ip", "link", "add", "pair0", "type", "veth", "peer", "name", "pair1"])
    topo.exec(a, ["ip", "link", "set", "pair1", "up"])
    topo.exec(a, ["ip", "link", "set", "pair0", "up"])

    async def body() -> list[IPv6Address | None]:
        async with await AddressManager.open() as mgr:
            tentative = await mgr.link_local_ipv6("pair0")  # DAD takes a second
            await asyncio.sleep(2.5)
            return [
                tentative,
                await mgr.link_local_ipv6("pair0"),
                await mgr.link_local_ipv6("eth0"),
            ]

    tentative, done, eth0 = io4.run_in(a, body)
    assert tentative is None
    assert done is not None
    assert done.is_link_local
    assert eth0 == pair.link_local(a)


# --- Unsolicited Neighbor Advertisements (GarpSender + ndisc) ---------------------------------


def neighbour(pair: Pair, ns: str, ip: IPv6Address) -> dict[str, Any] | None:
    out = pair.topo.exec(ns, ["ip", "-j", "-6", "neigh", "show", str(ip), "dev", "eth0"]).stdout
    entries = json.loads(out)
    return entries[0] if entries else None


def without_override(frame: bytes) -> bytes:
    """The same NA with the Override flag cleared and the checksum redone (by the test)."""
    icmp = bytearray(frame[54:])
    icmp[4] &= ~NA_FLAG_OVERRIDE
    icmp[2:4] = b"\0\0"
    pseudo = frame[22:54] + len(icmp).to_bytes(4, "big") + b"\0\0\0\x3a"
    data = pseudo + icmp
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    icmp[2:4] = (~total & 0xFFFF).to_bytes(2, "big")
    return frame[:54] + bytes(icmp)


async def wait_lladdr(pair: Pair, ns: str, ip: IPv6Address, mac: str) -> dict[str, Any] | None:
    entry = None
    for _ in range(50):
        entry = neighbour(pair, ns, ip)
        if entry and entry.get("lladdr") == mac:
            break
        await asyncio.sleep(0.02)
    return entry


async def test_unsolicited_na_moves_a_peers_neighbour_entry(pair: Pair) -> None:
    topo, a, b = pair.topo, pair.a, pair.b
    mac_a = pair.mac(a)
    untracked = IPv6Address("2001:db8::201")
    # B believes the VIP is elsewhere, as after a failover from another director
    topo.exec(b, ["ip", "-6", "neigh", "replace", str(VIP6), "lladdr", "02:00:00:00:00:99",
                  "dev", "eth0", "nud", "stale"])  # fmt: skip
    for address in (VIP6, untracked):
        topo.exec(a, ["ip", "addr", "add", f"{address}/64", "dev", "eth0", "nodad"])
    frame = unsolicited_na(mac_a, VIP6)
    capture = Capture(b)
    with in_netns(a):
        garp = GarpSender.open("eth0")
    try:
        # without Override an NA does not replace a cached address (RFC 4861 §7.2.5)
        assert garp.send_burst([without_override(frame)], 1) == 1
        await asyncio.sleep(0.2)
        entry = neighbour(pair, b, VIP6)
        assert entry is not None
        assert entry["lladdr"] == "02:00:00:00:00:99"

        assert garp.send_burst([frame, unsolicited_na(mac_a, untracked)], 5) == 10
        seen = [f for f in capture.frames(1) if f[14 + 6] == 58 and f[54] == 136]
    finally:
        garp.close()
        capture.close()
    assert seen.count(frame) == 5  # on the wire as built, EtherType IPv6
    entry = await wait_lladdr(pair, b, VIP6, mac_a)
    assert entry is not None
    assert entry.get("lladdr") == mac_a, entry
    assert "STALE" in entry.get("state", [])
    # no entry is made for an address B had none for (accept_untracked_na is 0)
    assert sysctl_get(b, "net/ipv6/conf/eth0/accept_untracked_na") == "0"
    assert neighbour(pair, b, untracked) is None


# --- keepalived 2.2.7, vrrp_version 3, IPv6 -------------------------------------------------

KEEPALIVED_V6 = """\
global_defs {{
  router_id k6
  vrrp_version 3
}}
vrrp_instance V6 {{
  state BACKUP
  interface eth0
  virtual_router_id 52
  priority 100
  advert_int 1{unicast}
  virtual_ipaddress {{
    2001:db8::200/64
  }}
}}
"""
KEEPALIVED_ADVERT = AdvertisementV3(52, 100, 100, (VIP6,))
UNICAST = f"""
  unicast_src_ip {B_GLOBAL}
  unicast_peer {{
    {A_GLOBAL}
  }}"""


@dataclass
class Interop:
    """What an interop run saw: keepalived's log while we advertised, its first
    advert after we stopped, and the frames our side captured meanwhile."""

    log_while_ours: str
    theirs: ReceivedPacket6
    frames: list[bytes]

    def their_advert(self) -> tuple[IPv6Address, IPv6Address, int, AdvertisementV3]:
        """Source, destination, hop limit and the advert, decoded with its checksum."""
        got = self.theirs
        advert = decode_message(got.message, got.source, got.destination)
        return got.source, got.destination, got.hop_limit, advert


async def interop(
    pair: Pair, tmp_path: Path, *, unicast: bool, source: IPv6Address, peer: IPv6Address
) -> Interop:
    """Run keepalived (priority 100) in B; advertise priority 200 from A for 6 s,
    then stop and wait for keepalived's first advert."""
    config = tmp_path / "keepalived.conf"
    config.write_text(KEEPALIVED_V6.format(unicast=UNICAST if unicast else ""))
    keepalived = KeepalivedProcess(pair.topo, pair.b, config, tmp_path / "keepalived.log")
    with in_netns(pair.a):
        sock = VrrpSocket6.open("eth0", unicast=unicast)
    sock.bind_source(source)
    capture = Capture(pair.a)
    loop = asyncio.get_running_loop()
    try:
        keepalived.start()
        # 6 s: well past keepalived's Master_Down_Interval (3.61 s at priority 100)
        end = loop.time() + 6
        while loop.time() < end:
            assert sock.send(advert_for(source, peer), peer)
            await asyncio.sleep(1)
        log = keepalived.text()
        # silence: keepalived takes over and advertises to us
        theirs = await receive(sock, 8)
        frames = capture.frames(0.5)
    finally:
        capture.close()
        sock.close()
        keepalived.stop()
    return Interop(log, theirs, frames)


def assert_stayed_backup(log: str) -> None:
    assert "Entering BACKUP STATE" in log, log
    assert "Entering MASTER STATE" not in log, log
    for problem in ("checksum", "Invalid", "invalid", "TTL", "mismatch", "Expected"):
        assert problem not in log, log


async def test_keepalived_interop(pair: Pair, tmp_path: Path) -> None:
    """keepalived stays BACKUP under our priority-200 adverts, takes over when they
    stop, and its adverts decode from our socket; its NAs are our frames, byte for byte."""
    lla_a, lla_b, mac_b = pair.link_local(pair.a), pair.link_local(pair.b), pair.mac(pair.b)
    seen = await interop(pair, tmp_path, unicast=False, source=lla_a, peer=VRRP_GROUP6)
    assert_stayed_backup(seen.log_while_ours)
    assert seen.their_advert() == (lla_b, VRRP_GROUP6, 255, KEEPALIVED_ADVERT)
    nas = [f for f in seen.frames if f[14 + 6] == 58 and f[54] == 136]
    assert nas, "no Neighbor Advertisement from the new master"
    assert set(nas) == {unsolicited_na(mac_b, VIP6)}


async def test_keepalived_unicast_interop(pair: Pair, tmp_path: Path) -> None:
    """The same with unicast peers (global addresses): keepalived's unicast v3
    checksum covers the real destination, not ff02::12; and keepalived sends
    IPv6 unicast adverts with the kernel's default hop limit (64), not 255: for
    IPv6 it leaves the hop limit to the kernel unless ``unicast_ttl`` is set
    (``vrrp.c``: "For IPv6 the default is to let the kernel set the default
    value"), and skips the check on receipt in unicast mode. So must we."""
    for ns, address in ((pair.a, A_GLOBAL), (pair.b, B_GLOBAL)):
        pair.topo.exec(ns, ["ip", "addr", "add", f"{address}/64", "dev", "eth0", "nodad"])
    seen = await interop(pair, tmp_path, unicast=True, source=A_GLOBAL, peer=B_GLOBAL)
    assert_stayed_backup(seen.log_while_ours)
    assert seen.their_advert() == (B_GLOBAL, A_GLOBAL, 64, KEEPALIVED_ADVERT)


# --- the advert sender process ----------------------------------------------------------------


async def test_advert_process_sends_ipv6_adverts_from_the_link_local_source(pair: Pair) -> None:
    """A MASTER's adverts go out from `AdvertProcess` (vrrp.advertd) with the
    socket's fd: it sets the IPv6 source with IPV6_PKTINFO as VrrpSocket6 does."""
    lla_a = pair.link_local(pair.a)
    with in_netns(pair.a):
        sock_a = VrrpSocket6.open("eth0")
    with in_netns(pair.b):
        sock_b = VrrpSocket6.open("eth0")
    pacer = AdvertProcess()
    await pacer.start()
    try:
        payload = advert_for(lla_a)
        burst = AdvertBurst(sock_a, payload, lla_a, (VRRP_GROUP6,))
        pacer.send("V6#1", burst, 0.2)
        for _ in range(3):
            assert await receive(sock_b) == ReceivedPacket6(payload, lla_a, VRRP_GROUP6, 255)
    finally:
        await pacer.close()
        sock_a.close()
        sock_b.close()


async def test_router_flag_follows_ipv6_forwarding(pair: Pair) -> None:
    topo, a, b = pair.topo, pair.a, pair.b
    topo.exec(a, ["ip", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad"])
    topo.exec(b, ["ip", "-6", "neigh", "replace", str(VIP6), "lladdr", "02:00:00:00:00:99",
                  "dev", "eth0", "nud", "stale"])  # fmt: skip
    with in_netns(a):
        assert forwards_ipv6("eth0") is False
        assert forwards_ipv6("eth9") is False
        topo.sysctl(a, "net/ipv6/conf/eth0/forwarding", 1)
        router = forwards_ipv6("eth0")
        garp = GarpSender.open("eth0")
    assert router is True
    try:
        assert garp.send_burst([unsolicited_na(pair.mac(a), VIP6, router=router)], 1) == 1
    finally:
        garp.close()
    entry = await wait_lladdr(pair, b, VIP6, pair.mac(a))
    assert entry is not None
    assert "router" in entry, entry  # B now lists A as a router for the VIP
