"""ping checks against a real in another network namespace: echo, refusal, timeout, garbage.

Two namespaces joined by a veth pair: ``dir`` (10.98.0.1/24, fd98::1/64),
where the checks run, and ``real`` (10.98.0.2/24, fd98::2/64). How each
failure is made:

- refusal at the director: a route of type ``unreachable`` (the send fails
  with EHOSTUNREACH) or ``prohibit`` (EACCES);
- refusal by a router: ``real`` forwards 10.98.9.0/24 into a ``prohibit``
  route, so it answers our request with an ICMP administratively prohibited,
  which the kernel reports on the check's connected socket;
- timeout: ``real`` ignores echo requests (``net.ipv4.icmp_echo_ignore_all``);
- garbage: ``real`` ignores them in its kernel, and a raw-socket responder
  answers each with our identifier and sequence number but another payload.

As root the check uses a raw socket; with ``net.ipv4.ping_group_range``
including root's group it uses an ICMP datagram socket instead: both are run.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.checks import CheckResult, run_check, target_for
from lab.netns import Topology, in_netns

REAL_V4 = ip_address("10.98.0.2")
REAL_V6 = ip_address("fd98::2")
TIMEOUT_S = 0.5
SLACK_S = 0.5

# Answers every echo request with the same identifier and sequence number and the
# payload reversed (a correct checksum: only the payload is wrong).
WRONG_PAYLOAD = r"""
import socket, struct
def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
while True:
    packet, (source, _) = sock.recvfrom(4096)
    icmp = packet[(packet[0] & 0x0F) * 4:]
    if icmp[0] != 8:
        continue
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    payload = icmp[8:][::-1]
    reply = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + payload
    reply = struct.pack("!BBHHH", 0, 0, checksum(reply), ident, seq) + payload
    sock.sendto(reply, (source, 0))
"""


@dataclass
class Lab:
    topo: Topology
    dir: str
    real: str


@pytest.fixture
def lab(topology: Topology) -> Lab:
    director, real = topology.netns("dir"), topology.netns("real")
    topology.veth(director, "eth0", peer_ns=real, peer_name="eth0", address="10.98.0.1/24")
    topology.address(real, "eth0", "10.98.0.2/24")
    # nodad: usable at once, no second of duplicate address detection
    topology.exec(director, ["ip", "address", "add", "fd98::1/64", "dev", "eth0", "nodad"])
    topology.exec(real, ["ip", "address", "add", "fd98::2/64", "dev", "eth0", "nodad"])
    return Lab(topology, director, real)


def probe(ns: str, address: IPv4Address | IPv6Address) -> CheckResult:
    """One ping check of `address` from namespace `ns`, on a loop of its own."""
    check = CheckConfig(type=CheckType.PING, timeout=TIMEOUT_S)
    with in_netns(ns):
        return asyncio.run(run_check(target_for(check, address, 0)))


def ping_sockets_allowed(ns: str) -> bool:
    with in_netns(ns):
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        except PermissionError:
            return False
    return True


@pytest.mark.parametrize("ping_group", [False, True], ids=["raw", "ping-socket"])
@pytest.mark.parametrize("address", [REAL_V4, REAL_V6], ids=["ipv4", "ipv6"])
def test_an_answering_real_is_up(
    lab: Lab, address: IPv4Address | IPv6Address, ping_group: bool
) -> None:
    if ping_group:
        lab.topo.sysctl(lab.dir, "net.ipv4.ping_group_range", "0 0")
    assert ping_sockets_allowed(lab.dir) is ping_group
    result = probe(lab.dir, address)
    assert (result.ok, result.reason) == (True, "echo reply")
    assert result.duration_s < TIMEOUT_S


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("unreachable", "no route to host (send)"), ("prohibit", "permission denied (send)")],
)
def test_a_route_the_director_refuses_is_down_at_once(lab: Lab, kind: str, reason: str) -> None:
    lab.topo.exec(lab.dir, ["ip", "route", "add", kind, "10.98.8.0/24"])
    result = probe(lab.dir, ip_address("10.98.8.1"))
    assert (result.ok, result.reason) == (False, reason)
    assert result.duration_s < TIMEOUT_S


def test_an_icmp_error_from_a_router_is_down_at_once(lab: Lab) -> None:
    lab.topo.sysctl(lab.real, "net.ipv4.ip_forward", 1)
    lab.topo.exec(lab.real, ["ip", "route", "add", "prohibit", "10.98.9.0/24"])
    lab.topo.route(lab.dir, "10.98.9.0/24", via=str(REAL_V4))
    result = probe(lab.dir, ip_address("10.98.9.1"))
    assert (result.ok, result.reason) == (False, "no route to host (reply)")
    assert result.duration_s < TIMEOUT_S


def test_a_real_that_does_not_answer_times_out(lab: Lab) -> None:
    lab.topo.sysctl(lab.real, "net.ipv4.icmp_echo_ignore_all", 1)
    result = probe(lab.dir, REAL_V4)
    assert (result.ok, result.reason) == (False, f"timeout after {TIMEOUT_S} s (reply)")
    assert TIMEOUT_S <= result.duration_s < TIMEOUT_S + SLACK_S


def test_a_reply_with_another_payload_is_down(lab: Lab) -> None:
    lab.topo.sysctl(lab.real, "net.ipv4.icmp_echo_ignore_all", 1)
    responder = lab.topo.popen(
        lab.real, [sys.executable, "-c", WRONG_PAYLOAD], stdout=subprocess.PIPE, text=True
    )
    assert responder.stdout is not None
    with responder.stdout:
        assert responder.stdout.readline() == "ready\n"
    result = probe(lab.dir, REAL_V4)
    assert (result.ok, result.reason) == (False, "echo reply with another payload (16 bytes)")
