"""The IPVS connection-sync daemon on a real kernel: netlink ops, errnos, and a real sync.

Every test works in namespaces it creates (the sync daemons are per network
namespace, and deleting the namespace stops them), so nothing here touches the
kernel's root namespace.

Measured on Linux 6.1 (UML), and frozen here:

- a second start of a role that runs is EEXIST, whatever the new settings;
- a stop of a role that does not run is ESRCH;
- an unknown interface is ENODEV; a master on an interface that is down is
  ENETUNREACH (a backup starts there); a non-multicast group, a 16-character
  interface name, or any real of the other address family is EINVAL;
- a stop right after a start gets no ack at all (EINTR inside the kernel,
  see IpvsClient._fenced_request), yet the daemon is stopped.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from ipvsd.control.client import request
from ipvsd.errors import AlreadyExists, KernelError, NotFound
from ipvsd.ipvs.plan import AddDest, AddService
from ipvsd.ipvs.sync_daemon import SyncDaemonController, SyncTarget
from ipvsd.model import (
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceKey,
    fwmark_key,
)
from ipvsd.netlink.ipvs import IpvsClient
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState
from lab.daemon import DaemonProcess
from lab.netns import Topology, in_netns, ip, ns_exec

MASTER, BACKUP = SyncState.MASTER, SyncState.BACKUP


async def open_in(ns: str) -> IpvsClient:
    """A client whose socket lives in namespace `ns` (sockets keep their namespace).

    The await runs with this thread in `ns`; nothing else runs on the test's loop.
    """
    with in_netns(ns):
        return await IpvsClient.open()


def ipvsadm(ns: str, *args: str) -> str:
    return ns_exec(ns, ["ipvsadm", *args]).stdout


@pytest.fixture
async def box(topology: Topology) -> AsyncIterator[tuple[str, IpvsClient]]:
    """A namespace with eth0 (up, 10.97.0.1/24) and down0 (down, with an address)."""
    ns = topology.netns("sync")
    ip("link", "add", "eth0", "type", "dummy", ns=ns)
    ip("link", "set", "eth0", "up", ns=ns)
    ip("address", "add", "10.97.0.1/24", "dev", "eth0", ns=ns)
    ip("link", "add", "down0", "type", "dummy", ns=ns)
    ip("address", "add", "10.97.1.1/24", "dev", "down0", ns=ns)
    client = await open_in(ns)
    yield ns, client
    client.close()


async def test_start_read_back_and_stop_both_roles(box: tuple[str, IpvsClient]) -> None:
    ns, client = box
    assert await client.sync_daemons() == []
    await client.start_sync_daemon(SyncDaemon(MASTER, "eth0", 51))
    await client.start_sync_daemon(SyncDaemon(BACKUP, "eth0", 52))
    default_group = ip_address("224.0.0.81")
    assert await client.sync_daemons() == [
        SyncDaemon(MASTER, "eth0", 51, 1472, default_group, 8848, 1),
        SyncDaemon(BACKUP, "eth0", 52, 1472, default_group, 8848, 1),
    ]
    assert ipvsadm(ns, "-L", "--daemon").splitlines() == [
        "master sync daemon (mcast=eth0, syncid=51, maxlen=1472, group=224.0.0.81, port=8848,"
        " ttl=1)",
        "backup sync daemon (mcast=eth0, syncid=52, maxlen=1472, group=224.0.0.81, port=8848,"
        " ttl=1)",
    ]
    await client.stop_sync_daemon(MASTER)
    assert [d.state for d in await client.sync_daemons()] == [BACKUP]
    await client.stop_sync_daemon(BACKUP)
    assert await client.sync_daemons() == []
    assert ipvsadm(ns, "-L", "--daemon") == ""


async def test_every_setting_reaches_the_kernel(box: tuple[str, IpvsClient]) -> None:
    ns, client = box
    group = ip_address("239.1.2.3")
    await client.start_sync_daemon(SyncDaemon(BACKUP, "eth0", 7, 1200, group, 8850, 3))
    await client.start_sync_daemon(SyncDaemon(MASTER, "eth0", 8, 0, ip_address("ff02::1:5")))
    backup, master = sorted(await client.sync_daemons(), key=lambda d: -d.state)
    assert backup == SyncDaemon(BACKUP, "eth0", 7, 1200, group, 8850, 3)
    # An IPv6 group leaves less room for the payload (1500 - 40 - 8).
    assert master == SyncDaemon(MASTER, "eth0", 8, 1452, ip_address("ff02::1:5"), 8848, 1)
    listing = ipvsadm(ns, "-L", "--daemon")
    assert "group=239.1.2.3, port=8850, ttl=3" in listing


async def test_daemons_started_by_ipvsadm_are_read_back(box: tuple[str, IpvsClient]) -> None:
    ns, client = box
    ipvsadm(ns, "--start-daemon", "master", "--mcast-interface", "eth0", "--syncid", "9")
    (daemon,) = await client.sync_daemons()
    assert (daemon.state, daemon.interface, daemon.sync_id) == (MASTER, "eth0", 9)


@pytest.mark.parametrize("state", [MASTER, BACKUP])
async def test_double_start_is_eexist_and_stopping_nothing_is_esrch(
    box: tuple[str, IpvsClient], state: SyncState
) -> None:
    _ns, client = box
    with pytest.raises(NotFound) as stop_nothing:
        await client.stop_sync_daemon(state)
    assert stop_nothing.value.errno == errno.ESRCH
    await client.start_sync_daemon(SyncDaemon(state, "eth0", 51))
    for again in (SyncDaemon(state, "eth0", 51), SyncDaemon(state, "down0", 99)):
        with pytest.raises(AlreadyExists) as twice:
            await client.start_sync_daemon(again)
        assert twice.value.errno == errno.EEXIST
    await client.stop_sync_daemon(state)
    with pytest.raises(NotFound):
        await client.stop_sync_daemon(state)


@pytest.mark.parametrize(
    ("daemon", "code"),
    [
        (SyncDaemon(MASTER, "nosuch0", 1), errno.ENODEV),
        (SyncDaemon(BACKUP, "nosuch0", 1), errno.ENODEV),
        (SyncDaemon(MASTER, "down0", 1), errno.ENETUNREACH),
        (SyncDaemon(MASTER, "eth0", 1, mcast_group=IPv4Address("10.0.0.1")), errno.EINVAL),
        (SyncDaemon(MASTER, "x" * 16, 1), errno.EINVAL),
    ],
    ids=["master-no-iface", "backup-no-iface", "master-iface-down", "unicast-group", "long-name"],
)
async def test_refused_starts(box: tuple[str, IpvsClient], daemon: SyncDaemon, code: int) -> None:
    _ns, client = box
    with pytest.raises(KernelError) as refused:
        await client.start_sync_daemon(daemon)
    assert type(refused.value) is KernelError  # no narrower class applies
    assert refused.value.errno == code
    assert await client.sync_daemons() == []


async def test_a_backup_starts_on_an_interface_that_is_down(box: tuple[str, IpvsClient]) -> None:
    _ns, client = box
    await client.start_sync_daemon(SyncDaemon(BACKUP, "down0", 1))
    assert [d.interface for d in await client.sync_daemons()] == ["down0"]


async def test_a_real_of_the_other_family_forbids_sync(box: tuple[str, IpvsClient]) -> None:
    _ns, client = box
    v6 = fwmark_key(Family.INET6, 8)
    result = await client.apply(
        [
            AddService(v6, ServiceAttrs("rr")),
            AddDest(v6, DestKey(ip_address("10.97.0.5"), 0), DestAttrs(ForwardMethod.TUNNEL)),
        ]
    )
    assert result.ok, result.failures
    with pytest.raises(KernelError) as refused:
        await client.start_sync_daemon(SyncDaemon(MASTER, "eth0", 1))
    assert refused.value.errno == errno.EINVAL


async def test_a_stop_right_after_the_start_does_not_hang(box: tuple[str, IpvsClient]) -> None:
    # The fresh kthread has not run yet: the kernel answers DEL_DAEMON with no ack.
    _ns, client = box
    for state in (MASTER, BACKUP, MASTER, BACKUP):
        await client.start_sync_daemon(SyncDaemon(state, "eth0", 51))
        async with asyncio.timeout(10):
            await client.stop_sync_daemon(state)
        assert await client.sync_daemons() == []
    assert (await client.info()).conn_tab_size > 0  # the socket is still in step


async def test_controller_switches_roles_on_the_kernel(box: tuple[str, IpvsClient]) -> None:
    ns, _client = box

    async def open_backend() -> IpvsClient:
        return await open_in(ns)

    controller = SyncDaemonController(open_backend)
    controller.configure(SyncTarget("VI_1", "eth0", 51), master=False)
    reader = await open_in(ns)
    try:
        # INIT, MASTER, FAULT, MASTER: the root says only whether it is MASTER.
        for master, role in [(False, BACKUP), (True, MASTER), (False, BACKUP), (True, MASTER)]:
            controller.vrrp_transitioned("VI_1", master=master)
            assert await controller.apply()
            running = await reader.sync_daemons()
            assert [(d.state, d.interface, d.sync_id) for d in running] == [(role, "eth0", 51)]
        await controller.stop()
        assert await reader.sync_daemons() == []
    finally:
        reader.close()


# --- a connection synced between two directors ------------------------------------------

VIP = "10.97.5.200"
SERVICE = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)
REAL = "10.97.5.30"


def _conns(ns: str) -> list[tuple[str, str, str]]:
    """(client, virtual, state) of each TCP entry in the namespace's connection table."""
    with in_netns(ns), open("/proc/thread-self/net/ip_vs_conn") as table:
        lines = table.read().splitlines()[1:]
    entries = []
    for line in lines:
        fields = line.split()
        if fields[0] != "TCP":
            continue
        client = f"{IPv4Address(int(fields[1], 16))}:{int(fields[2], 16)}"
        virtual = f"{IPv4Address(int(fields[3], 16))}:{int(fields[4], 16)}"
        entries.append((client, virtual, fields[7]))
    return entries


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _dr_lab(topology: Topology) -> tuple[str, str, str, str]:
    """Two directors, one DR real and a client on one bridge; VIP on director 1."""
    switch = topology.netns("sw")
    bridge = topology.bridge("br0", ns=switch)
    d1, d2, real, client = (topology.netns(n) for n in ("d1", "d2", "real", "cl"))
    for ns, address in ((d1, "10.97.5.1"), (d2, "10.97.5.2"), (real, REAL), (client, "10.97.5.50")):
        topology.veth(ns, "eth0", bridge=bridge, bridge_ns=switch, address=f"{address}/24")
    topology.address(d1, "eth0", f"{VIP}/32")
    # DR: the real holds the VIP on lo and neither answers nor announces ARP for it.
    topology.address(real, "lo", f"{VIP}/32")
    for key in ("all", "eth0"):
        topology.sysctl(real, f"net/ipv4/conf/{key}/arp_ignore", 1)
        topology.sysctl(real, f"net/ipv4/conf/{key}/arp_announce", 2)
    return d1, d2, real, client


def _connect(client: str, listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """An established connection client → VIP:80 → real, with data exchanged both ways."""
    with in_netns(client):
        conn = socket.create_connection((VIP, 80), timeout=10)
    served, _ = listener.accept()
    served.settimeout(10)
    conn.sendall(b"ping")
    assert served.recv(4) == b"ping"
    served.sendall(b"pong")
    assert conn.recv(4) == b"pong"
    return conn, served


async def test_master_syncs_an_established_connection_to_the_backup(topology: Topology) -> None:
    d1, d2, real, client = _dr_lab(topology)
    clients = {ns: await open_in(ns) for ns in (d1, d2)}
    controllers: dict[str, SyncDaemonController] = {}
    for ns, ipvs in clients.items():
        result = await ipvs.apply(
            [
                AddService(SERVICE, ServiceAttrs("rr")),
                AddDest(SERVICE, DestKey(ip_address(REAL), 80), DestAttrs(ForwardMethod.DR)),
            ]
        )
        assert result.ok, result.failures

        async def backend(ns: str = ns) -> IpvsClient:
            return await open_in(ns)

        controllers[ns] = SyncDaemonController(backend)
    controllers[d1].configure(SyncTarget("VI_1", "eth0", 51), master=True)
    controllers[d2].configure(SyncTarget("VI_1", "eth0", 51), master=False)
    for controller in controllers.values():
        assert await controller.apply()
    with in_netns(real):
        listener = socket.create_server(("0.0.0.0", 80))
    listener.settimeout(10)
    opened: list[socket.socket] = []
    try:
        conn, served = _connect(client, listener)
        opened += [conn, served]
        local = "{}:{}".format(*conn.getsockname())
        assert (local, f"{VIP}:80", "ESTABLISHED") in _conns(d1)
        assert _wait_for(lambda: any(c[0] == local for c in _conns(d2)), timeout=15), _conns(d2)
        assert (local, f"{VIP}:80", "ESTABLISHED") in _conns(d2)

        # Failover: the VIP moves to director 2 and the controllers swap roles; the
        # synced connection goes on through director 2, and new ones sync back to 1.
        ip("address", "del", f"{VIP}/32", "dev", "eth0", ns=d1)
        topology.address(d2, "eth0", f"{VIP}/32")
        controllers[d1].vrrp_transitioned("VI_1", master=False)
        controllers[d2].vrrp_transitioned("VI_1", master=True)
        assert await controllers[d1].apply()
        assert await controllers[d2].apply()
        ip("neigh", "flush", "dev", "eth0", ns=client)  # what a gratuitous ARP would do
        conn.sendall(b"more")
        assert served.recv(4) == b"more"
        conn2, served2 = _connect(client, listener)
        opened += [conn2, served2]
        local2 = "{}:{}".format(*conn2.getsockname())
        assert _wait_for(lambda: any(c[0] == local2 for c in _conns(d1)), timeout=15)
    finally:
        for sock in (*opened, listener):
            sock.close()
        for controller in controllers.values():
            await controller.stop()
        for ipvs in clients.values():
            ipvs.close()
    for ns in (d1, d2):
        assert ipvsadm(ns, "-L", "--daemon") == ""


# --- ipvsd itself -------------------------------------------------------------------------


def _ipvsd_config(socket_path: Path, sync: str) -> str:
    return textwrap.dedent(
        f"""\
        node_name: d1
        control: {{socket: {socket_path}}}
        state_dir: {socket_path}.state
        metrics: {{listen: null}}
        vrrp:
          instances:
            - {{name: VI_1, interface: eth0, vrid: 61, priority: 100, advert_int: 1,
               virtual_ipaddresses: [10.97.6.200/24]}}
        ipvs:
          services:
            - {{address: 10.97.6.200, port: 80, reals: [{{address: 10.97.6.30, port: 80}}]}}
          sync_daemon: {sync}
        """
    )


def _kernel_daemons(ns: str) -> list[tuple[SyncState, str, int]]:
    async def read() -> list[SyncDaemon]:
        async with await IpvsClient.open() as client:
            return await client.sync_daemons()

    with in_netns(ns):
        return [(d.state, d.interface, d.sync_id) for d in asyncio.run(read())]


def _sync_events(daemon: DaemonProcess, after: int = 0) -> list[tuple[Any, ...]]:
    return [
        (e["action"], e["state"], e["sync_id"])
        for e in daemon.events()[after:]
        if e.get("event") == "ipvs.sync_daemon"
    ]


def test_ipvsd_follows_its_instance_reloads_and_stops_the_daemon(
    topology: Topology, tmp_path: Path
) -> None:
    ns, peer = topology.netns("d1"), topology.netns("peer")
    topology.veth(ns, "eth0", peer_ns=peer, address="10.97.6.1/24")
    config, sock = tmp_path / "ipvsd.yaml", tmp_path / "ipvsd.sock"
    config.write_text(_ipvsd_config(sock, "{vrrp_instance: VI_1}"))
    daemon = DaemonProcess(topology, ns, config, tmp_path / "ipvsd.log")
    daemon.start()
    # Alone on its link the instance becomes MASTER after Master_Down_Interval.
    _wait_for(lambda: ("start", "master", 61) in _sync_events(daemon), timeout=30)
    assert _sync_events(daemon) == [
        ("start", "backup", 61),
        ("stop", "backup", 61),
        ("start", "master", 61),
    ]
    assert _kernel_daemons(ns) == [(MASTER, "eth0", 61)]
    status = request(sock, {"command": "status"})["result"]["sync_daemon"]
    assert {k: status[k] for k in ("vrrp_instance", "interface", "sync_id", "wanted")} == {
        "vrrp_instance": "VI_1",
        "interface": "eth0",
        "sync_id": 61,
        "wanted": "master",
    }
    assert [(r["state"], r["sync_id"]) for r in status["running"]] == [("master", 61)]

    before = len(daemon.events())
    settings = "sync_id: 7, group: 239.9.9.9, port: 8900, ttl: 2"
    config.write_text(_ipvsd_config(sock, f"{{vrrp_instance: VI_1, {settings}}}"))
    daemon.reload()
    daemon.wait_event("config.reloaded", timeout=30, after=before)
    _wait_for(lambda: ("start", "master", 7) in _sync_events(daemon, before), timeout=15)
    assert _sync_events(daemon, before) == [("stop", "master", 61), ("start", "master", 7)]
    assert _kernel_daemons(ns) == [(MASTER, "eth0", 7)]
    running = request(sock, {"command": "status"})["result"]["sync_daemon"]["running"]
    assert [(r["mcast_group"], r["mcast_port"], r["mcast_ttl"]) for r in running] == [
        ("239.9.9.9", 8900, 2)
    ]

    assert daemon.stop() == 0
    assert _kernel_daemons(ns) == []
