"""Long IPVS work yields to the event loop (issue 11 item 7: adverts never late).

VRRP adverts are timed on the same loop as the IPVS client and the
reconciler. The kernel answers a netlink request inside ``sendmsg``, so during
a dump or a batch's acks the socket always has data and ``sock_recv_into``
returns without suspending: without explicit yields a whole dump is one
callback. `ReadyKernel` reproduces that: it queues every reply inside
``send()``, so a read never waits.

The assertions count heartbeat ticks (a task that only re-schedules itself)
while the work is in progress. They hold however slow the machine is: a
slower run has more time slices and so more ticks. `served_when_ticked` also
checks that the ticks are spread over the work, not bunched at one end.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from itertools import islice
from typing import TypeVar

from ipvsd.ipvs.plan import AddDest, Operation
from ipvsd.ipvs.reconciler import Reconciler
from ipvsd.model import Dest, DestAttrs, DestKey, ServiceAttrs, Table, make_service
from ipvsd.model import parse_service_spec as service_key
from ipvsd.netlink import wire
from ipvsd.netlink.ipvs import IpvsClient
from tests.fakes.ipvs import FakeIpvs

FAMILY_ID = 0x1E
_HDR = struct.Struct("=IHHII")
#: Dump records per datagram (the kernel packs a dump into skbs of ~32 KiB).
RECORDS_PER_DATAGRAM = 64
#: Far fewer than a slice's worth of ticks at any speed: the work below takes
#: tens of milliseconds even on a fast machine, i.e. tens of 2 ms slices.
MIN_TICKS = 3

T = TypeVar("T")


def big_table(services: int, reals: int = 4) -> Table:
    return Table.of(
        [
            make_service(
                service_key(f"{IPv4Address(0x0A000000 + s)}:80"),
                ServiceAttrs("wlc"),
                [
                    Dest(DestKey(IPv4Address(0x0B000000 + s * reals + r), 8080), DestAttrs())
                    for r in range(reals)
                ],
            )
            for s in range(services)
        ]
    )


class ReadyKernel:
    """A non-blocking netlink socket whose "kernel" answers inside `send`, like IPVS.

    Dumps of `table` come back in datagrams of `RECORDS_PER_DATAGRAM` records
    and a done message, each made when it is read (as the kernel fills the next
    skb of a dump when the previous one is read); every other request gets an
    ack of its own if it asks for one (NLM_F_ACK) or fails, as
    ``netlink_rcv_skb`` acks. Nothing is changed by those requests: only the
    reading is under test.

    Attributes:
        served: datagrams handed out by `recv_into` so far.
        failing: errno per request to fail, by its index among the requests
            (not dumps) sent so far.
    """

    def __init__(self, table: Table, failing: dict[int, int] | None = None) -> None:
        self._table = table
        self._by_identity = {wire.service_identity(key): svc for key, svc in table.services.items()}
        self._queue: deque[Iterator[bytes]] = deque()
        self.served = 0
        self.failing = failing or {}
        self._requests = 0

    # --- what IpvsClient and loop.sock_recv_into use of a socket ---

    def send(self, data: bytes) -> int:
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            length, _type, flags, seq, _pid = _HDR.unpack_from(view, offset)
            cmd = view[offset + _HDR.size]
            payload = view[offset + wire.HEADER_LEN : offset + length]
            self._answer(cmd, payload, flags, seq)
            offset += (length + 3) & ~3
        return len(data)

    def recv_into(self, buffer: bytearray) -> int:
        while self._queue:
            datagram = next(self._queue[0], None)
            if datagram is not None:
                break
            self._queue.popleft()
        else:
            raise BlockingIOError  # never happens: every request is answered in send()
        buffer[: len(datagram)] = datagram
        self.served += 1
        return len(datagram)

    def gettimeout(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    # --- the kernel ---

    def _answer(self, cmd: int, payload: memoryview, flags: int, seq: int) -> None:
        records: Iterable[bytes] | None
        if cmd == wire.CMD_GET_SERVICE:
            records = (
                wire.nla(wire.ATTR_SERVICE, wire.service_attrs(svc.key, svc.attrs))
                for svc in self._table
            )
        elif cmd == wire.CMD_GET_DEST:
            (_attr, identity), *_ = wire.iter_attrs(payload)
            dests = self._by_identity[bytes(identity)].dests.values()
            records = (wire.nla(wire.ATTR_DEST, wire.dest_attrs(d.key, d.attrs)) for d in dests)
        else:
            error = self.failing.get(self._requests, 0)
            self._requests += 1
            if flags & wire.NLM_F_ACK or error:
                ack = _HDR.pack(20, wire.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -error)
                self._queue.append(iter([ack]))
            return
        self._queue.append(self._dump(cmd, seq, records))

    def _dump(self, cmd: int, seq: int, records: Iterable[bytes]) -> Iterator[bytes]:
        records = iter(records)
        while chunk := list(islice(records, RECORDS_PER_DATAGRAM)):
            yield b"".join(
                wire.message(FAMILY_ID, cmd, record, wire.NLM_F_MULTI, seq) for record in chunk
            )
        yield _HDR.pack(20, wire.NLMSG_DONE, wire.NLM_F_MULTI, seq, 0) + b"\0\0\0\0"


@asynccontextmanager
async def heartbeat(progress: Callable[[], int]) -> AsyncIterator[list[int]]:
    """A task that ticks whenever the loop lets it; yields `progress()` at each tick."""
    ticks: list[int] = []

    async def beat() -> None:
        while True:
            ticks.append(progress())
            await asyncio.sleep(0)

    task = asyncio.create_task(beat())
    await asyncio.sleep(0)  # the first tick, before the work starts
    try:
        yield ticks
    finally:
        task.cancel()


async def ticks_during(
    work: Callable[[], Awaitable[T]], progress: Callable[[], int] = lambda: 0
) -> tuple[T, list[int]]:
    """Run `work`; return its result and `progress()` at each heartbeat tick during it."""
    async with heartbeat(progress) as ticks:
        before = len(ticks)
        result = await work()
        during = ticks[before:]
    return result, during


def assert_spread(served_when_ticked: list[int], total: int) -> None:
    """Ticks came both in the first and in the second half of `total` datagrams."""
    assert len(served_when_ticked) >= MIN_TICKS, served_when_ticked
    assert min(served_when_ticked) < total // 2 < max(served_when_ticked), served_when_ticked


async def test_a_dump_of_many_services_lets_the_loop_run() -> None:
    table = big_table(1_000)
    kernel = ReadyKernel(table)
    client = IpvsClient(FAMILY_ID, kernel, batch_size=16)  # type: ignore[arg-type]

    dumped, served = await ticks_during(client.dump, lambda: kernel.served)

    assert dumped == table  # the records and their order are read as before
    assert_spread(served, kernel.served)


async def test_reading_the_acks_of_many_changes_lets_the_loop_run() -> None:
    # Batches below THREAD_SEND_THRESHOLD are sent on the loop, so nothing
    # but the encoding of the requests and the reading of acks could yield
    # (one ack a batch: ``test_ipvs_batches``).
    table = big_table(1_000)
    kernel = ReadyKernel(Table())
    client = IpvsClient(FAMILY_ID, kernel, batch_size=16)  # type: ignore[arg-type]
    operations: list[Operation] = [
        AddDest(svc.key, dest.key, dest.attrs) for svc in table for dest in svc.dests.values()
    ]

    result, served = await ticks_during(lambda: client.apply(operations), lambda: kernel.served)

    assert (result.applied, result.failures) == (len(operations), ())
    assert_spread(served, kernel.served)


async def test_planning_a_big_table_lets_the_loop_run() -> None:
    # The dump of FakeIpvs never suspends and an unchanged table sends
    # nothing: the only work in this pass is the plan over 16,000 reals.
    table = big_table(4_000)
    reconciler = Reconciler(FakeIpvs(table), resync_interval_s=60)
    reconciler.set_desired(table, reason="start")

    report, ticks = await ticks_during(lambda: reconciler.reconcile("resync"))

    assert not report.changed
    assert report.errors == ()
    assert len(ticks) >= MIN_TICKS


async def test_previewing_a_reload_of_a_big_table_lets_the_loop_run() -> None:
    table = big_table(4_000)
    reconciler = Reconciler(FakeIpvs(table), resync_interval_s=60)
    reconciler.set_desired(table, reason="start")

    (proposed, refused), ticks = await ticks_during(
        lambda: reconciler.preview(Table(), max_deletes=10)
    )

    assert len(proposed) == 4_000  # every owned service deleted
    assert refused is not None
    assert len(ticks) >= MIN_TICKS
