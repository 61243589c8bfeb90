"""What IPVS's Maglev scheduler (``mh``) builds its table from, on the real kernel.

The facts `docs/consistent-hashing.md` rests on (issue 15 part 3): directors
behind ECMP keep a connection on the same real only if their tables are the
same, and the table depends on the kernel's list order of the reals (reverse
insertion order), on each real's *last non-zero* weight, and on the
``mh-fallback`` flag for drained reals.

Method: one namespace, one service per case (each on its own VIP, so the
connection entries of the cases never mix); 2,000 local source addresses each
open a TCP connection to the VIP (IPVS schedules locally sent SYNs in
LOCAL_OUT); the real each source went to is read from
``/proc/net/ip_vs_conn``. The reals do not exist: the SYNs leave through a
dummy interface and are dropped, the connection entries stay.

The last tests drive ipvsd's own pipeline (config, health policy, desired
table, planner, netlink client) instead of ipvsadm: services ("directors")
with other histories (a late first check, a reload that adds a real, a table
adopted in another order) send every source to the same real and have the
same status fingerprint; and a connection through a dest that the planner
deletes and adds back (to put the list in order) keeps working.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from ipaddress import IPv4Address

import pytest

from ipvsd.config import parse_config
from ipvsd.config.model import Config
from ipvsd.desired import desired_table
from ipvsd.health.policy import overrides
from ipvsd.health.tracker import Health
from ipvsd.ipvs.plan import Plan, plan
from ipvsd.mh import service_fingerprint
from ipvsd.model import Table
from ipvsd.netlink.ipvs import IpvsClient
from lab.netns import Topology, in_netns

SOURCES = [IPv4Address("10.77.0.0") + i for i in range(1, 2001)]
REALS = [f"10.88.0.{i}" for i in range(1, 5)]


@pytest.fixture
def ns(topology: Topology) -> str:
    name = topology.netns("mh")
    commands = [
        "link add dummy0 type dummy",
        "link set dummy0 up",
        "route add 10.88.0.0/24 dev dummy0",
        "route add 10.99.0.0/24 dev dummy0",  # the VIPs: connect() needs a route to them
        *(f"address add {source}/32 dev lo" for source in SOURCES),
    ]
    # One process for all of them: a fork and exec each costs ~50 ms in UML.
    subprocess.run(
        ["ip", "-n", name, "-batch", "-"], input="\n".join(commands), text=True, check=True
    )
    return name


def _ipvsadm(ns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", *args], check=True, capture_output=True)


def _service(ns: str, vip: str, reals: Sequence[tuple[str, int]], *, fallback: bool = True) -> None:
    """An ``mh`` service on `vip`:80 with `reals` added in that order, at those weights."""
    flags = ["-b", "mh-fallback"] if fallback else []
    _ipvsadm(ns, "-A", "-t", f"{vip}:80", "-s", "mh", *flags)
    for address, weight in reals:
        _ipvsadm(ns, "-a", "-t", f"{vip}:80", "-r", f"{address}:80", "-g", "-w", str(weight))


def _weight(ns: str, vip: str, real: str, weight: int) -> None:
    _ipvsadm(ns, "-e", "-t", f"{vip}:80", "-r", f"{real}:80", "-g", "-w", str(weight))


def _schedule(ns: str, vip: str) -> dict[IPv4Address, str]:
    """Which real each source's new connection to `vip`:80 went to (absent: refused)."""
    ours = set()  # (source, port): an earlier call's entries for this VIP may still be there
    with in_netns(ns):
        for source in SOURCES:
            # Closed once its SYN is out: the connection entry outlives it
            # (seconds), and 2,000 open sockets would pass the fd limit.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setblocking(False)
                sock.bind((str(source), 0))
                ours.add((int(source), sock.getsockname()[1]))
                code = sock.connect_ex((vip, 80))
                assert code in (errno.EINPROGRESS, errno.ECONNREFUSED), errno.errorcode[code]
        with open("/proc/thread-self/net/ip_vs_conn") as table:
            lines = table.read().splitlines()[1:]
    wanted = int(IPv4Address(vip))
    chosen = {}
    for line in lines:
        _proto, client, cport, virtual, _vport, real, *_ = line.split()
        if int(virtual, 16) == wanted and (int(client, 16), int(cport, 16)) in ours:
            chosen[IPv4Address(int(client, 16))] = str(IPv4Address(int(real, 16)))
    return chosen


def _moved(a: dict[IPv4Address, str], b: dict[IPv4Address, str]) -> int:
    return sum(1 for source in SOURCES if a.get(source) != b.get(source))


def test_same_reals_in_the_same_order_give_the_same_table(ns: str) -> None:
    # The hash keys are constants of the module: two services (two directors)
    # built alike send every source to the same real.
    reals = [(r, 1) for r in REALS]
    _service(ns, "10.99.0.1", reals)
    _service(ns, "10.99.0.2", reals)
    first, second = _schedule(ns, "10.99.0.1"), _schedule(ns, "10.99.0.2")
    assert len(first) == len(SOURCES)
    assert set(first.values()) == set(REALS)  # all four take connections
    assert _moved(first, second) == 0


def test_another_insertion_order_gives_another_table(ns: str) -> None:
    # Only slots two reals claim in the same round of the population differ,
    # and the losers' next choices after them: a small share of the table.
    _service(ns, "10.99.0.1", [(r, 1) for r in REALS])
    _service(ns, "10.99.0.3", [(r, 1) for r in reversed(REALS)])
    moved = _moved(_schedule(ns, "10.99.0.1"), _schedule(ns, "10.99.0.3"))
    print(f"reversed order: {moved} of {len(SOURCES)} sources on another real")
    assert moved > 0, "the kernel's list order did not matter"


def test_a_drained_real_keeps_its_slots_with_mh_fallback(ns: str) -> None:
    # Weight 0 after a non-zero weight: last_weight keeps the table; only the
    # drained real's own sources move (rehashed to available reals).
    _service(ns, "10.99.0.1", [(r, 1) for r in REALS])
    _service(ns, "10.99.0.4", [(r, 1) for r in REALS])
    _weight(ns, "10.99.0.4", REALS[1], 0)
    before, drained = _schedule(ns, "10.99.0.1"), _schedule(ns, "10.99.0.4")
    assert len(drained) == len(SOURCES)
    assert REALS[1] not in drained.values()
    for source in SOURCES:
        if before[source] != REALS[1]:
            assert drained[source] == before[source], source


def test_a_real_added_at_weight_0_has_no_slots(ns: str) -> None:
    # last_weight 0: the table is built without it, so sources of the other
    # reals move too, compared with a real that was once non-zero and drained.
    _service(ns, "10.99.0.4", [(r, 1) for r in REALS])
    _weight(ns, "10.99.0.4", REALS[1], 0)
    _service(ns, "10.99.0.5", [(r, 0 if r == REALS[1] else 1) for r in REALS])
    drained, never_up = _schedule(ns, "10.99.0.4"), _schedule(ns, "10.99.0.5")
    assert REALS[1] not in never_up.values()
    moved = _moved(drained, never_up)
    print(f"added at weight 0: {moved} of {len(SOURCES)} sources elsewhere than drained")
    assert moved > 0
    # Raised later, its last weight is set and the table is the drained one's
    # twin again (same order, same last weights): nothing moves.
    _weight(ns, "10.99.0.5", REALS[1], 1)
    _weight(ns, "10.99.0.5", REALS[1], 0)
    assert _moved(drained, _schedule(ns, "10.99.0.5")) == 0


def test_without_mh_fallback_a_drained_reals_sources_are_refused(ns: str) -> None:
    _service(ns, "10.99.0.1", [(r, 1) for r in REALS])
    _service(ns, "10.99.0.6", [(r, 1) for r in REALS], fallback=False)
    _weight(ns, "10.99.0.6", REALS[1], 0)
    before, strict = _schedule(ns, "10.99.0.1"), _schedule(ns, "10.99.0.6")
    orphans = [s for s in SOURCES if before[s] == REALS[1]]
    assert orphans
    assert not [s for s in orphans if s in strict]  # no connection entry: refused
    assert all(strict[s] == before[s] for s in SOURCES if s not in orphans)


# --- ipvsd's planning: the same table whatever the history (issue 15 part 3) ---------
#
# Each VIP is one "director": its service is built by ipvsd's own pipeline
# (config -> health policy -> desired table -> planner -> netlink), each with
# another history of health verdicts and reloads.

MH_WEIGHTS = {"10.88.0.1": 1, "10.88.0.2": 2, "10.88.0.3": 1, "10.88.0.4": 3}
LATE, RELOADED = "10.88.0.2", "10.88.0.3"


def _mh_config(vip: str, reals: Sequence[str], *, forward: str = "dr") -> Config:
    listed = "".join(f"\n        - {{address: {r}, weight: {MH_WEIGHTS.get(r, 1)}}}" for r in reals)
    text = f"""\
ipvs:
  services:
    - address: {vip}
      port: 80
      scheduler: mh
      scheduler_flags: [mh-fallback]
      forward: {forward}
      check: {{type: tcp}}
      reals:{listed}
"""
    return parse_config(text, f"{vip}.yaml")


def _desired(config: Config, up: Sequence[str]) -> Table:
    service = config.ipvs.services[0]
    states = {
        (service.key, service.dest_key(real)): Health.UP
        for real in service.reals
        if str(real.address) in up
    }
    rules = overrides(config, states)
    return desired_table(
        config, weight_overrides=rules.weights, excluded=rules.excluded, sorry=rules.sorry
    )


async def _converge(client: IpvsClient, desired: Table) -> Plan:
    """One reconcile pass of the service in `desired` (others in the kernel untouched)."""
    todo = plan(desired, await client.dump(with_stats=False), owns=lambda _key: False)
    result = await client.apply(todo.operations)
    assert result.ok, result.failures
    return todo


def _fingerprint(table: Table, config: Config) -> str:
    """The status's ``mh_fingerprint`` of the config's service (``ipvsd.daemon.status``)."""
    service = config.ipvs.services[0]
    dests = table.services[service.key].dests.values()
    weights = {service.dest_key(real): real.weight for real in service.reals}
    return service_fingerprint(dests, weights)


@pytest.fixture
async def client(ns: str) -> AsyncIterator[IpvsClient]:
    with in_netns(ns):  # the sockets stay in the namespace they were opened in
        ipvs = await IpvsClient.open()
    async with ipvs:
        yield ipvs


async def test_directors_with_other_histories_build_the_same_table(
    ns: str, client: IpvsClient
) -> None:
    reals = sorted(MH_WEIGHTS)
    # A: every real healthy from the start.
    a = _mh_config("10.99.0.11", reals)
    await _converge(client, _desired(a, reals))
    # B: LATE's first check passes after the others': in at weight 0 meanwhile.
    b = _mh_config("10.99.0.12", reals)
    await _converge(client, _desired(b, [r for r in reals if r != LATE]))
    early = (await client.dump(with_stats=False)).services[b.ipvs.services[0].key]
    assert {str(k.address): d.attrs.weight for k, d in early.dests.items()}[LATE] == 0
    await _converge(client, _desired(b, reals))
    # C: started without RELOADED, a reload adds it (its check late too).
    c_before = _mh_config("10.99.0.13", [r for r in reals if r != RELOADED])
    await _converge(client, _desired(c_before, reals))
    c = _mh_config("10.99.0.13", reals)
    reload = await _converge(client, _desired(c, [r for r in reals if r != RELOADED]))
    assert reload.readded_dests == 1  # 10.88.0.4 must sit before 10.88.0.3
    await _converge(client, _desired(c, reals))
    # D: adopted from a table built in another order (ascending list): made canonical.
    d = _mh_config("10.99.0.14", reals)
    _service(ns, "10.99.0.14", [(r, MH_WEIGHTS[r]) for r in reversed(reals)])
    adopt = await _converge(client, _desired(d, reals))
    assert adopt.readded_dests == 3
    # What ipvsd built before: LATE added when its check passed, RELOADED at the head.
    _service(ns, "10.99.0.21", [(r, MH_WEIGHTS[r]) for r in [*reals[:1], *reals[2:], LATE]])
    _service(ns, "10.99.0.22", [(r, MH_WEIGHTS[r]) for r in [*reals[:2], reals[3], RELOADED]])

    reference = _schedule(ns, "10.99.0.11")
    assert len(reference) == len(SOURCES)
    assert set(reference.values()) == set(reals)
    for vip in ("10.99.0.12", "10.99.0.13", "10.99.0.14"):
        assert _moved(reference, _schedule(ns, vip)) == 0, vip
    late_before = _moved(reference, _schedule(ns, "10.99.0.21"))
    reload_before = _moved(reference, _schedule(ns, "10.99.0.22"))
    print(
        f"before this change: late first check {late_before}, reload {reload_before}"
        f" of {len(SOURCES)} sources on another real than the reference"
    )
    assert late_before > 0
    assert reload_before > 0

    table = await client.dump(with_stats=False)
    prints = {_fingerprint(table, config) for config in (a, b, c, d)}
    assert len(prints) == 1, prints
    old = _fingerprint(table, _mh_config("10.99.0.21", reals))
    assert old not in prints  # the fingerprint tells the old table apart


ECHO = """
import socket, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 80))
server.listen()
def serve(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
"""


def _wait_listening(ns: str, address: tuple[str, int]) -> None:
    deadline = time.monotonic() + 10
    with in_netns(ns):
        while True:
            try:
                socket.create_connection(address, timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on {address}"
                time.sleep(0.1)


def _conn_entries(ns: str) -> list[list[str]]:
    """The rows of ``/proc/net/ip_vs_conn`` in `ns`, split."""
    with in_netns(ns), open("/proc/thread-self/net/ip_vs_conn") as table:
        return [line.split() for line in table.read().splitlines()[1:]]


def _echo(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    return sock.recv(4096)


async def test_an_established_connection_survives_the_readd_of_its_dest(
    topology: Topology,
) -> None:
    # A NAT service whose one real serves a connection; a reload adds a real that
    # must sit after it in the list, so ipvsd deletes and adds back the serving
    # real (the dest trash keeps its connection; expire_nodest_conn is 0).
    director, real = topology.netns("mhd"), topology.netns("mhr")
    topology.veth(director, "veth0", peer_ns=real, peer_name="eth0", address="10.66.0.1/24")
    topology.address(real, "eth0", "10.66.0.9/24")
    topology.route(director, "10.99.0.0/24", dev="veth0")
    topology.popen(real, [sys.executable, "-c", ECHO])
    nodest = topology.exec(director, ["sysctl", "-n", "net.ipv4.vs.expire_nodest_conn"])
    assert nodest.stdout.strip() == "0"
    with in_netns(director):
        ipvs = await IpvsClient.open()
    _wait_listening(director, ("10.66.0.9", 80))
    async with ipvs:
        first = _mh_config("10.99.0.30", ["10.66.0.9"], forward="nat")
        await _converge(ipvs, _desired(first, ["10.66.0.9"]))
        with in_netns(director):
            conn = socket.create_connection(("10.99.0.30", 80), timeout=5)
        with conn:
            assert _echo(conn, b"one\n") == b"one\n"
            reloaded = _mh_config("10.99.0.30", ["10.66.0.5", "10.66.0.9"], forward="nat")
            todo = await _converge(ipvs, _desired(reloaded, ["10.66.0.9"]))
            assert [type(op).__name__ for op in todo.operations] == [
                "AddDest",  # 10.66.0.5 at weight 1 ...
                "EditDest",  # ... and 0 (its check has not passed)
                "DeleteDest",  # 10.66.0.9 re-added before it
                "AddDest",
            ]
            assert _echo(conn, b"two\n") == b"two\n"
            entries = _conn_entries(director)
            port = conn.getsockname()[1]
            ours = [e for e in entries if int(e[2], 16) == port]
            assert len(ours) == 1, entries
            assert str(IPv4Address(int(ours[0][5], 16))) == "10.66.0.9"
            assert ours[0][7] == "ESTABLISHED"
            dests = (await ipvs.dump(with_stats=False)).services[reloaded.ipvs.services[0].key]
            assert [str(k.address) for k in dests.dests] == ["10.66.0.9", "10.66.0.5"]
