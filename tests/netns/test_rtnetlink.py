"""The raw rtnetlink codec and request socket (`ipvsd.netlink.rtmsg`, `rtsock`) on the host kernel.

What the VRRP adapters' tests (test_vrrp_io.py, test_vrrp_io6.py) do not
reach: the kernel's extended-ack text, with the request echoed whole or only
its header; a dump longer than one datagram; and an address dump decoded as
``ip -j addr`` shows it (labels, secondary, nodad, and flags above 0xff that
only IFA_FLAGS carries).
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from ipaddress import ip_interface
from pathlib import Path

import pytest

from ipvsd.errors import KernelError
from ipvsd.netlink import rtmsg
from ipvsd.netlink.rtsock import NETLINK_EXT_ACK, SOL_NETLINK, RtnlSocket
from lab.netns import Topology, in_netns


@pytest.fixture
def ns(topology: Topology) -> str:
    name = topology.netns("rt")
    topology.exec(name, ["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth2"])
    topology.exec(name, ["ip", "link", "set", "eth1", "up"])
    return name


def _bad_prefix(seq: int, index: int) -> bytes:
    """RTM_NEWADDR of an IPv4 /33, which the kernel refuses with a reason."""
    body = rtmsg.IFADDRMSG.pack(socket.AF_INET, 33, 0, 0, index)
    body += rtmsg.attribute(rtmsg.IFA_LOCAL, bytes([10, 0, 0, 1]))
    flags = rtmsg.NLM_F_REQUEST | rtmsg.NLM_F_ACK | rtmsg.NLM_F_CREATE
    return rtmsg.request(rtmsg.RTM_NEWADDR, flags, seq, body)


def test_a_refusal_carries_the_kernels_reason(ns: str) -> None:
    async def body() -> KernelError:
        sock = await RtnlSocket.open()
        try:
            seq = sock.next_seq()
            index = socket.if_nametoindex("eth1")
            with pytest.raises(KernelError) as caught:
                await sock.ask(_bad_prefix(seq, index), seq, "add 10.0.0.1/33")
            return caught.value
        finally:
            sock.close()

    with in_netns(ns):
        refused = asyncio.run(body())
    assert refused.errno == errno.EINVAL
    assert str(refused) == "add 10.0.0.1/33: ipv4: Invalid prefix length (errno 22)"


def test_the_reason_is_found_after_a_whole_echoed_request(ns: str) -> None:
    # Without NETLINK_CAP_ACK the kernel echoes the request before the TLVs.
    with in_netns(ns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        index = socket.if_nametoindex("eth1")
    with sock:
        sock.settimeout(2)
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.send(_bad_prefix(5, index))
        (message,) = rtmsg.messages(sock.recv(65536))
    assert message.kind == rtmsg.NLMSG_ERROR
    assert not message.flags & rtmsg.NLM_F_CAPPED
    assert rtmsg.error_of(message) == (errno.EINVAL, "ipv4: Invalid prefix length")


def _address_dump(seq: int) -> bytes:
    header = rtmsg.IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return rtmsg.request(rtmsg.RTM_GETADDR, rtmsg.NLM_F_REQUEST | rtmsg.NLM_F_DUMP, seq, header)


def test_a_dump_of_many_datagrams_is_read_to_its_end(
    ns: str, topology: Topology, tmp_path: Path
) -> None:
    # 600 addresses do not fit one datagram: the kernel goes on with the dump
    # only as it is read, and would refuse the next request meanwhile (EBUSY).
    batch = tmp_path / "addresses"
    batch.write_text(
        "".join(f"addr add 10.2.{i // 250}.{i % 250 + 1}/16 dev eth1\n" for i in range(600))
    )
    topology.exec(ns, ["ip", "-batch", str(batch)])

    async def body() -> tuple[int, int, str]:
        sock = await RtnlSocket.open()
        try:
            seq = sock.next_seq()
            replies = await sock.ask(_address_dump(seq), seq, "dump")
            found = [rtmsg.decode_address(m) for m in replies]
            eth1 = socket.if_nametoindex("eth1")
            ours = [
                a for a in found if a is not None and a.index == eth1 and a.address.version == 4
            ]
            size = sum(16 + len(m.payload) for m in replies)
            return size, len(ours), (await sock.link("eth1")).name
        finally:
            sock.close()

    with in_netns(ns):
        size, ours, name = asyncio.run(body())
    assert size > 32768  # the kernel's largest dump datagram (netlink_recvmsg)
    assert ours == 600
    assert name == "eth1"


def test_an_address_dump_decodes_as_ip_shows_it(ns: str, topology: Topology) -> None:
    topology.exec(ns, ["ip", "addr", "add", "10.1.0.1/24", "dev", "eth1", "noprefixroute"])
    topology.exec(ns, ["ip", "addr", "add", "10.1.0.2/24", "dev", "eth1", "label", "eth1:vrrp9"])
    topology.exec(ns, ["ip", "addr", "add", "2001:db8::5/64", "dev", "eth1", "nodad"])

    async def body() -> list[rtmsg.Address]:
        sock = await RtnlSocket.open()
        try:
            seq = sock.next_seq()
            found = [rtmsg.decode_address(m) for m in await sock.ask(_address_dump(seq), seq, "d")]
            return [a for a in found if a is not None]
        finally:
            sock.close()

    with in_netns(ns):
        decoded = {(a.index, a.address): a for a in asyncio.run(body())}
    shown = json.loads(topology.exec(ns, ["ip", "-j", "addr", "show"]).stdout)
    expected = {}
    for link in shown:
        for info in link["addr_info"]:
            address = ip_interface(f"{info['local']}/{info['prefixlen']}")
            expected[link["ifindex"], address] = info
    assert set(decoded) == set(expected)
    for key, info in expected.items():
        assert decoded[key].label == info.get("label", ""), key
        assert bool(decoded[key].flags & 0x01) == bool(info.get("secondary")), key
        assert bool(decoded[key].flags & 0x02) == bool(info.get("nodad")), key
        # IFA_F_NOPREFIXROUTE is above 0xff: only IFA_FLAGS carries it
        assert bool(decoded[key].flags & 0x200) == bool(info.get("noprefixroute")), key
    labels = {str(address): a.label for (_, address), a in decoded.items()}
    assert labels["10.1.0.1/24"] == "eth1"
    assert labels["10.1.0.2/24"] == "eth1:vrrp9"
    assert decoded[next(k for k in decoded if str(k[1]) == "10.1.0.1/24")].flags & 0x200
