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
"""

from __future__ import annotations

import errno
import socket
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest

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
