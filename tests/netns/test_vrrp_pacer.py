"""Adverts repeated by their own process, on the host kernel (issue #11, item 7).

* `AdvertProcess` keeps sending on schedule while the event loop that handed
  the advert over is blocked by a computation that holds the GIL: neither a
  loop timer nor a thread could send then;
* the sender stops when told, when it is not told "alive" for its hold time
  (a hung daemon must lose the VIP), and when the daemon closes it; a sender
  that dies is replaced and told what it was repeating;
* a real ipvsd MASTER stopped with SIGSTOP for longer than
  Master_Down_Interval keeps the VIP: its peer never takes over.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS) on an
observer's raw socket, read after the fact, so the test's own loop being
blocked does not blur them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ipvsd.vrrp.pacer import AdvertBurst, AdvertProcess
from ipvsd.vrrp.packet import VRRP_GROUP
from ipvsd.vrrp.transport import VrrpSocket
from lab.netns import Topology, in_netns
from lab.vrrp_pair import OwnershipMonitor, VrrpLab, build
from tests.netns.test_vrrp_io import A_IP, ADVERT, Segment, segment  # noqa: F401
from tests.unit.test_vrrp_router import until

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
INTERVAL = 0.2


class Observer:
    """A raw VRRP socket in a namespace that keeps each advert's kernel arrival time."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
            mreqn = struct.pack("4s4si", VRRP_GROUP.packed, bytes(4), socket.if_nametoindex("eth0"))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)

    def arrivals(self) -> list[tuple[float, bytes]]:
        """(wall-clock arrival, VRRP payload) of everything received so far."""
        got: list[tuple[float, bytes]] = []
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return got
            stamp = next(d for level, kind, d in ancillary if kind == SO_TIMESTAMPNS)
            seconds, nanoseconds = struct.unpack("qq", stamp)
            got.append((seconds + nanoseconds / 1e9, data[(data[0] & 0x0F) * 4 :]))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def observed(segment: Segment) -> Iterator[tuple[VrrpSocket, Observer]]:  # noqa: F811
    with in_netns(segment.a):
        sender = VrrpSocket.open("eth0")
    observer = Observer(segment.b)
    yield sender, observer
    sender.close()
    observer.close()


def hold_the_gil(seconds: float) -> None:
    """Block the loop and every thread: C-level work that never releases the GIL."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(2_000_000))  # one C call, ~20-40 ms, no eval breaker inside


def locked_kb(pid: int | None) -> int:
    """VmLck of process `pid`: how much of it mlockall keeps in RAM."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmLck:")).split()[1])


def gaps(arrivals: list[tuple[float, bytes]]) -> list[float]:
    times = [at for at, _ in arrivals]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def burst(sock: VrrpSocket, payload: bytes = ADVERT) -> AdvertBurst[IPv4Address]:
    return AdvertBurst(sock=sock, payload=payload, source=A_IP, destinations=(VRRP_GROUP,))


@pytest.fixture
async def pacer() -> AsyncIterator[AdvertProcess]:
    pacer = AdvertProcess()
    await pacer.start()
    yield pacer
    await pacer.close()


async def test_adverts_keep_their_schedule_while_the_loop_holds_the_gil(
    observed: tuple[VrrpSocket, Observer], pacer: AdvertProcess
) -> None:
    sender, observer = observed
    assert pacer.pid is not None
    await until(lambda: locked_kb(pacer.pid) > 1000, within=3)  # locked in RAM at start
    pacer.send("VI_1#1", burst(sender), INTERVAL)
    hold_the_gil(1.5)
    await asyncio.sleep(0.1)
    arrivals = observer.arrivals()
    assert len(arrivals) >= 8, len(arrivals)
    assert all(payload == ADVERT for _, payload in arrivals)
    late = [round(gap - INTERVAL, 4) for gap in gaps(arrivals)]
    assert max(late) < 0.05, late


async def test_the_sender_stops_when_told_when_not_kept_alive_and_on_close(
    observed: tuple[VrrpSocket, Observer],
) -> None:
    sender, observer = observed
    pacer = AdvertProcess(hold_s=0.7)
    await pacer.start()
    process_pid = pacer.pid
    assert process_pid is not None
    try:
        pacer.send("a", burst(sender), INTERVAL)
        await asyncio.sleep(0.5)
        pacer.stop("a")
        await asyncio.sleep(0.5)
        stopped = observer.arrivals()
        assert 2 <= len(stopped) <= 4, len(stopped)
        assert pacer.repeating("a") is None

        # Not kept alive: the sender gives up after the hold and says so.
        pacer.send("b", burst(sender), INTERVAL)
        assert pacer.repeating("b") is not None
        await asyncio.sleep(1.5)
        expired = observer.arrivals()
        assert 3 <= len(expired) <= 6, len(expired)
        assert pacer.repeating("b") is None, "the daemon was told it expired"

        # Kept alive: it does not.
        pacer.send("c", burst(sender), INTERVAL)
        for _ in range(8):
            await asyncio.sleep(0.2)
            pacer.touch("c")
        assert len(observer.arrivals()) >= 7
        assert pacer.repeating("c") is not None
    finally:
        await pacer.close()
    closed_at = time.time()
    with pytest.raises(ProcessLookupError):
        os.kill(process_pid, 0)  # the sender did not outlive close()
    await asyncio.sleep(INTERVAL * 2)
    # By their kernel arrival time: adverts sent before close() may still be
    # queued, unread (the last read above was some time before it).
    late = [at for at, _ in observer.arrivals() if at > closed_at]
    assert late == [], "adverts after close()"


async def test_a_dead_sender_is_replaced_and_told_what_it_repeated(
    observed: tuple[VrrpSocket, Observer], pacer: AdvertProcess
) -> None:
    sender, observer = observed
    pacer.send("VI_1#1", burst(sender), INTERVAL)
    first = pacer.pid
    assert first is not None
    await asyncio.sleep(0.3)
    os.kill(first, signal.SIGKILL)
    await until(lambda: pacer.pid not in (first, None), within=3)
    observer.arrivals()
    await asyncio.sleep(1.0)
    assert len(observer.arrivals()) >= 4, "the new sender repeats the advert"


# --- a real daemon ----------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def test_a_stopped_master_keeps_the_vip_until_its_hold_runs_out(lab: VrrpLab) -> None:
    """SIGSTOP is the longest loop stall there is: 5 s is beyond Master_Down_Interval
    (3.65 s for the peer at 90), and the peer never takes over. After that the
    master runs on for longer than the sender's hold: the loop keeps it alive."""
    d1, d2 = lab.daemon("d1", 100), lab.daemon("d2", 90)
    d1.start()
    d1.wait_event("vrrp.transition", timeout=5)
    deadline = time.monotonic() + 6
    while lab.holder() != ["d1"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.holder() == ["d1"]
    d2.start()
    d2.wait_event("vrrp.transition", timeout=5)
    assert d1.proc is not None
    with OwnershipMonitor(lab.topo, list(lab.routers.values())) as monitor:
        os.kill(d1.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(5)
            assert lab.holder() == ["d1"]
        finally:
            os.kill(d1.proc.pid, signal.SIGCONT)
        time.sleep(12)  # > HOLD_S: the loop keeps the sender going
        assert lab.holder() == ["d1"]
    assert monitor.longest_dual_ownership() == 0
    states = [e["new"] for e in d2.events() if e.get("event") == "vrrp.transition"]
    assert "MASTER" not in states, states
    assert d2.stop() == 0
    assert d1.stop() == 0
