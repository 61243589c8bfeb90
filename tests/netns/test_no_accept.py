"""``accept_mode: false`` enforced (RFC 5798 §6.1), on the host kernel's nf_tables.

First the table alone (`ipvsd.netlink.nftables`, the batches whose bytes
tests/unit/test_nftables.py pins): pings and TCP connects to the VIPs dropped,
neighbour discovery of an IPv6 VIP still answered, the host's other addresses
untouched. Then the daemon (`lab.vrrp_pair`): a non-owner MASTER with
``accept_mode: false`` drops a ping and a TCP connect to its VIP from the
observer, one with ``accept_mode: true`` accepts them; the table goes when the
instance goes BACKUP and when the daemon stops, and a table a killed daemon
left is deleted by the next start. (IPVS traffic to the VIP still flowing:
tests/kernel/test_no_accept.py, in UML.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address

from ipvsd.netlink import nftables
from lab.netns import Topology, in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import VIP, VrrpLab

PORT = 8080
FAST = {"version": 3, "advert_int": 0.1}


def pings(topo: Topology, ns: str, address: str) -> bool:
    out = topo.exec(ns, ["ping", "-c", "1", "-W", "1", address], check=False)
    return out.returncode == 0


@contextmanager
def listening(ns: str, family: socket.AddressFamily = socket.AF_INET) -> Iterator[None]:
    """A TCP listener on every address of `ns`, port `PORT` (the kernel completes the
    handshakes: nothing needs to accept)."""
    with in_netns(ns):
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", PORT))
        sock.listen(16)
        yield


def connects(ns: str, address: str, timeout: float = 1.0) -> bool:
    with in_netns(ns):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, PORT))
        except OSError:  # TimeoutError when dropped
            return False
        return True


def table_in(ns: str) -> bool:
    with in_netns(ns):
        return nftables.table_exists()


def apply_in(ns: str, *addresses: str) -> None:
    with in_netns(ns):
        nftables.apply(ip_address(a) for a in addresses)


def neighbour(topo: Topology, ns: str, address: str) -> str:
    out = topo.exec(ns, ["ip", "neigh", "show", address], check=False).stdout
    return out.strip()


def test_the_table_drops_what_is_addressed_to_the_vips_and_nothing_else(
    topology: Topology,
) -> None:
    topo = topology
    director, client = topo.netns("dir"), topo.netns("cli")
    for ns in (director, client):
        topo.sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
    topo.veth(
        director,
        "eth0",
        peer_ns=client,
        peer_name="eth0",
        address=["10.88.0.2/24", "10.88.0.100/24", "fd88::2/64", "fd88::100/64"],
    )
    topo.address(client, "eth0", "10.88.0.1/24")
    topo.address(client, "eth0", "fd88::1/64")
    wait_until(lambda: pings(topo, client, "fd88::2"), timeout=5)
    with listening(director, socket.AF_INET6):
        for vip in ("10.88.0.100", "fd88::100"):
            assert pings(topo, client, vip)
            assert connects(client, vip)

        apply_in(director, "10.88.0.100", "fd88::100")
        assert table_in(director)
        topo.exec(client, ["ip", "neigh", "flush", "dev", "eth0"])
        for vip in ("10.88.0.100", "fd88::100"):
            assert not pings(topo, client, vip)
            assert not connects(client, vip)
        # Neighbour discovery of the IPv6 VIP is answered (and ARP, below IP).
        assert "lladdr" in neighbour(topo, client, "fd88::100")
        assert "lladdr" in neighbour(topo, client, "10.88.0.100")
        for other in ("10.88.0.2", "fd88::2"):
            assert pings(topo, client, other)
            assert connects(client, other)

        # Another set replaces the table whole; none deletes it.
        apply_in(director, "10.88.0.100")
        assert pings(topo, client, "fd88::100")
        assert not pings(topo, client, "10.88.0.100")
        apply_in(director)
        assert not table_in(director)
        apply_in(director)  # nothing to delete: no error
        assert pings(topo, client, "10.88.0.100")
        assert connects(client, "fd88::100")


def test_a_non_owner_master_with_accept_mode_false_drops_what_is_for_its_vip(
    vrrp_lab: VrrpLab,
) -> None:
    lab = vrrp_lab
    d1_ns = lab.routers["d1"]
    d1 = lab.daemon("d1", 100, accept_mode=False, **FAST)
    d2 = lab.daemon("d2", 200, **FAST)
    with listening(d1_ns), listening(lab.routers["d2"]):
        d1.start()
        wait_until(lambda: lab.holder() == ["d1"], timeout=10)
        assert table_in(d1_ns)
        assert not pings(lab.topo, lab.observer, VIP)
        assert not connects(lab.observer, VIP)
        assert pings(lab.topo, lab.observer, "192.168.1.10")  # its own address: accepted

        # Preempted: BACKUP, no table; the new master (accept_mode true) accepts.
        d2.start()
        wait_until(lambda: lab.holder() == ["d2"], timeout=10)
        wait_until(lambda: not table_in(d1_ns), timeout=2, interval=0.02)
        assert pings(lab.topo, lab.observer, VIP)
        assert connects(lab.observer, VIP)

        # Master again, then a graceful stop: the table comes and goes with it.
        assert d2.stop() == 0
        wait_until(lambda: lab.holder() == ["d1"], timeout=10)
        wait_until(lambda: table_in(d1_ns), timeout=2, interval=0.02)
        assert not connects(lab.observer, VIP)
        assert d1.stop() == 0
        assert not table_in(d1_ns)


def test_accept_mode_true_accepts_and_a_killed_daemons_table_goes_at_start(
    vrrp_lab: VrrpLab,
) -> None:
    lab = vrrp_lab
    d1_ns = lab.routers["d1"]
    with listening(d1_ns):
        crashing = lab.daemon("d1", 100, accept_mode=False, **FAST)
        crashing.start()
        wait_until(lambda: lab.holder() == ["d1"], timeout=10)
        wait_until(lambda: table_in(d1_ns), timeout=2, interval=0.02)
        crashing.kill()
        assert table_in(d1_ns)  # nothing removed it

        d1 = lab.daemon("d1", 100, **FAST)  # accept_mode true now
        d1.start()
        assert not table_in(d1_ns)
        wait_until(lambda: lab.holder() == ["d1"], timeout=10)
        assert pings(lab.topo, lab.observer, VIP)
        assert connects(lab.observer, VIP)
        assert not table_in(d1_ns)


def test_the_kernel_takes_the_golden_batches_of_the_unit_tests(topology: Topology) -> None:
    """tests/unit/test_nftables.py pins these bytes; here the kernel acks them."""
    from tests.unit.test_nftables import DELETE_BATCH, DROP_192_0_2_10, _hex

    ns = topology.netns("gold")
    create = nftables.batch([ip_address("192.0.2.10")])
    assert create[-2].endswith(_hex(DROP_192_0_2_10))  # the last rule's expressions
    for data in (b"".join(create), _hex(DELETE_BATCH)):
        with in_netns(ns):
            sock = nftables._open()
        with sock:
            sock.send(data)
            answers = nftables._answers(sock)
        assert answers
        assert [code for _, code, _ in answers] == [0] * len(answers)
        with in_netns(ns):
            assert nftables.table_exists() is (data != _hex(DELETE_BATCH))
