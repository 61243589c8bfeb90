"""The IPVS generic-netlink client: dumps, batched changes, timeouts, counters.

`IpvsClient` implements `reconcile.IpvsBackend` over one netlink socket.
`resolve_family_id` finds the IPVS family id (and thereby loads ip_vs); the
messages themselves are packed by `wire` (see its docstring for why). No
pyroute2 on this path: importing it alone took ~1.75 s of a start in UML.

Batching: the kernel runs each generic-netlink request synchronously inside
``sendmsg``, in order, so many requests are packed into one ``send`` and the
answers are read afterwards, matched by sequence number. Only the last
request of a batch asks for an ack (NLM_F_ACK): ``netlink_rcv_skb`` acks a
request that fails whether it asked or not, so the answers are the errors of
the failed requests and then the last one's ack, which ends the batch. A batch
that succeeds is one read, not one per request (inside UML each read is an
expensive system call: 40,000 of them at 10,000 x 4). A request that fails
does not stop the ones after it in the batch; each failure is reported with
its operation. Big batches are sent from a worker thread so
the event loop keeps running while the kernel works through them (inside UML a
batch of a few hundred operations takes a noticeable fraction of a second).
Reading never waits, though: the kernel has queued the replies by the time
``send`` returns. So the reads of a dump or of a batch's acks, the parse of each
record and the encoding of a batch give the loop a turn every couple of
milliseconds (`ipvsd.loopslice`), or a whole dump would be one callback.

Errors are translated at this boundary (``_kernel_error``): EEXIST →
`AlreadyExists`, ENOENT/ESRCH → `NotFound`, ENOENT on a service add/edit →
`SchedulerUnavailable`, a missing family → `IpvsUnavailable`. The sync-daemon
commands follow the same map: starting a daemon of a role that runs already is
EEXIST, stopping one that does not run is ESRCH (start_sync_thread /
stop_sync_thread, ip_vs_sync.c; measured in tests/kernel/test_sync_daemon.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from ipvsd.errors import (
    AlreadyExists,
    IpvsUnavailable,
    KernelError,
    NotFound,
    SchedulerUnavailable,
)
from ipvsd.ipvs.plan import (
    AddDest,
    AddService,
    ApplyResult,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Operation,
    OperationFailed,
    same_batch,
)
from ipvsd.loopslice import LoopSlice
from ipvsd.model import Service, ServiceKey, Table
from ipvsd.netlink import records, wire, wire_daemon
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState

if TYPE_CHECKING:
    from ipvsd.netlink.table_reader import BlockingTableReader

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
#: Seconds the family lookup may take (loading ip_vs included).
FAMILY_TIMEOUT_S = 10.0
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

#: Operations per sendmsg. Bounded by the socket's send buffer (each message is
#: ~100 bytes) and by the receive buffer that must hold every ack of a batch.
DEFAULT_BATCH_SIZE = 512
#: Batches at least this big are sent from a worker thread (see module docstring).
THREAD_SEND_THRESHOLD = 32
#: Bytes read per datagram. The kernel's largest IPVS datagram is a dump's skb,
#: at most 32 KiB (``netlink_recvmsg`` caps ``max_recvmsg_len`` at
#: SKB_WITH_OVERHEAD(32768); tests/kernel/test_ipvs_adapter.py); acks are small.
#: Not more: the buffer is zero-filled at every open, and inside UML each fresh
#: page is a fault (the 1 MiB buffers of before cost 20-60 ms each to start).
RECV_SIZE = 64 << 10
_BUFFER_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Timeouts:
    """IPVS connection timeouts in seconds (``ipvsadm --set tcp tcpfin udp``); 0 = unchanged."""

    tcp: int = 0
    tcpfin: int = 0
    udp: int = 0


@dataclass(frozen=True, slots=True)
class IpvsInfo:
    version: str
    conn_tab_size: int


def family_request(name: str, seq: int) -> bytes:
    """CTRL_CMD_GETFAMILY for generic-netlink family `name` (what ``genl ctrl get`` sends)."""
    payload = wire.nla_str(CTRL_ATTR_FAMILY_NAME, name)
    return wire.message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, payload, wire.NLM_F_REQUEST, seq)


def family_id_from(datagram: bytes) -> int:
    """The family id in the kernel's answer to `family_request`.

    Raises:
        IpvsUnavailable: the kernel has no such family (ENOENT; ENOTSUP).
        KernelError: another refusal, or an answer without the id.
    """
    for reply in wire.iter_replies(memoryview(datagram)):
        if reply.msg_type == wire.NLMSG_ERROR and reply.error:
            if -reply.error in (errno.ENOENT, errno.ENOTSUP):
                raise IpvsUnavailable()
            code = -reply.error
            text = f"generic netlink lookup of IPVS failed: {os.strerror(code)}"
            raise KernelError(text, errno=code)
        for attr_type, value in wire.iter_attrs(reply.payload):
            if reply.msg_type == GENL_ID_CTRL and attr_type == CTRL_ATTR_FAMILY_ID:
                return wire.uint_value(value)
    raise KernelError("generic netlink lookup of IPVS: no family id in the answer")


async def resolve_family_id() -> int:
    """The IPVS generic-netlink family id (the lookup also loads ip_vs on demand).

    One request on a socket of its own, not pyroute2's lookup: importing
    pyroute2 cost ~1.75 s of every start inside UML, and nothing else on the
    IPVS path needs it. The kernel loads ip_vs for an unknown family name
    itself (``ctrl_getfamily``: ``request_module``), as it did for pyroute2.

    Raises:
        IpvsUnavailable: the kernel has no IPVS.
        KernelError: netlink failed.
    """
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
            sock.settimeout(FAMILY_TIMEOUT_S)  # one round trip: not worth an await
            sock.bind((0, 0))
            sock.send(family_request("IPVS", 1))
            return family_id_from(sock.recv(65536))
    except OSError as exc:
        raise KernelError(f"generic netlink lookup of IPVS failed: {exc}") from exc


def _kernel_error(code: int, operation: Operation | None, what: str) -> KernelError:
    """Translate a negative errno from an ack into the error tree (style G5)."""
    err = -code
    text = os.strerror(err)
    if operation is not None:
        what = describe(operation)
    if err == errno.EEXIST:
        return AlreadyExists(f"{what}: already exists", errno=err, operation=what)
    if err == errno.ENOENT and isinstance(operation, AddService | EditService):
        name = operation.attrs.scheduler
        if operation.attrs.pe_name:
            name = f"{name}' or persistence engine '{operation.attrs.pe_name}"
        return SchedulerUnavailable(name, operation=what)
    if err in (errno.ENOENT, errno.ESRCH):
        return NotFound(f"{what}: not found", errno=err, operation=what)
    return KernelError(f"{what}: {text} (errno {err})", errno=err, operation=what)


def describe(operation: Operation) -> str:
    """A short human description of an operation, for errors and logs."""
    match operation:
        case AddService(key=key) | EditService(key=key) | DeleteService(key=key):
            verb = type(operation).__name__.removesuffix("Service").lower()
            return f"{verb} service {key}"
        case (
            AddDest(service=svc, key=key)
            | EditDest(service=svc, key=key)
            | DeleteDest(service=svc, key=key)
        ):
            verb = type(operation).__name__.removesuffix("Dest").lower()
            return f"{verb} real {key} of {svc}"
        case _:
            assert_never(operation)


def open_socket() -> socket.socket:
    """A bound generic-netlink socket with room for a big table's dump or a batch's acks."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        for option, fallback in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER_BYTES)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, fallback, _BUFFER_BYTES)
        # Acks without a copy of the request: keeps a big batch's acks small.
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def dump_request(family_id: int, cmd: int, payload: bytes, seq: int) -> bytes:
    return wire.message(family_id, cmd, payload, wire.NLM_F_REQUEST | wire.NLM_F_DUMP, seq)


def dump_records(data: memoryview, seq: int, cmd: int) -> Iterator[memoryview | None]:
    """The records of dump `seq` in one received datagram; None marks the dump's end.

    Raises:
        KernelError: the kernel refused the dump.
        WireError: the datagram is malformed.
    """
    for reply in wire.iter_replies(data):
        if reply.seq != seq:
            continue  # a stale ack of an earlier, abandoned request
        if reply.msg_type == wire.NLMSG_DONE:
            yield None
            return
        if reply.msg_type == wire.NLMSG_ERROR:
            if reply.error:
                raise _kernel_error(reply.error, None, f"dump (command {cmd})")
            yield None
            return
        yield reply.payload


class IpvsClient:
    """Async IPVS client on one generic-netlink socket. Use `open()`.

    Requests on one socket are serialised by a lock (the kernel allows one dump
    at a time per socket); open several clients for parallel dumps.
    """

    def __init__(
        self,
        family_id: int,
        sock: socket.socket,
        batch_size: int,
        reader: BlockingTableReader | None = None,
    ) -> None:
        self._family = family_id
        self._sock = sock
        # Whole-table dumps: from a worker thread, on a blocking socket of their own.
        self._reader = reader
        self._batch_size = batch_size
        self._seq = 0
        self._lock = asyncio.Lock()
        self._buf = bytearray(RECV_SIZE)
        self._encoder = wire.Encoder(family_id)
        # Replies never make a read wait (see `_recv`): long reads and batches
        # give the event loop a turn every slice instead.
        self._slice = LoopSlice()

    @classmethod
    async def open(cls, *, batch_size: int = DEFAULT_BATCH_SIZE) -> IpvsClient:
        """Resolve the family and open the socket.

        Raises:
            IpvsUnavailable: the kernel has no IPVS.
        """
        # Imported here: table_reader builds on this module's socket and dump helpers.
        from ipvsd.netlink.table_reader import DUMP_TIMEOUT_S, BlockingTableReader

        family_id = await resolve_family_id()
        sock = open_socket()
        sock.setblocking(False)
        reader = BlockingTableReader(family_id, open_socket(), DUMP_TIMEOUT_S)
        return cls(family_id, sock, batch_size, reader)

    def close(self) -> None:
        self._sock.close()
        if self._reader is not None:
            self._reader.close()

    async def __aenter__(self) -> IpvsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- low level ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    async def _recv(self) -> memoryview:
        # The kernel answers inside sendmsg, so during a dump or a batch's acks
        # sock_recv_into returns without suspending: every read is a step.
        await self._slice.pause()
        loop = asyncio.get_running_loop()
        try:
            size = await loop.sock_recv_into(self._sock, self._buf)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise KernelError(
                    "netlink receive buffer overflow: acks were lost", errno=exc.errno
                ) from exc
            raise
        return memoryview(self._buf)[:size]

    async def _dump(self, cmd: int, payload: bytes) -> AsyncIterator[memoryview]:
        """Send one dump request and yield each record's attributes as they arrive."""
        seq = self._next_seq()
        self._sock.send(dump_request(self._family, cmd, payload, seq))
        while True:
            data = await self._recv()
            for record in dump_records(data, seq, cmd):
                if record is None:
                    return
                # The caller parses each record: a step of its own.
                await self._slice.pause()
                yield record

    async def _request(self, cmd: int, payload: bytes, what: str) -> list[memoryview]:
        """One request with an ack; returns its data replies (for GET commands)."""
        seq = self._next_seq()
        flags = wire.NLM_F_REQUEST | wire.NLM_F_ACK
        self._sock.send(wire.message(self._family, cmd, payload, flags, seq))
        replies: list[memoryview] = []
        while True:
            data = await self._recv()
            for reply in wire.iter_replies(data):
                if reply.seq != seq:
                    continue
                if reply.msg_type == wire.NLMSG_ERROR:
                    if reply.error:
                        raise _kernel_error(reply.error, None, what)
                    return replies
                replies.append(memoryview(bytes(reply.payload)))

    # --- dumps ----------------------------------------------------------------------------

    async def dump_services(self, *, with_stats: bool = True) -> list[Service]:
        """Every service, without dests."""
        async with self._lock:
            return [
                records.parse_service(record, with_stats=with_stats)
                async for record in self._dump(wire.CMD_GET_SERVICE, b"")
            ]

    async def dump_dests(self, service: Service, *, with_stats: bool = True) -> Service:
        """`service` with its dests filled in from the kernel."""
        payload = wire.nla(wire.ATTR_SERVICE, self._encoder.identity(service.key))
        family = service.key.family
        async with self._lock:
            dests = {}
            async for record in self._dump(wire.CMD_GET_DEST, payload):
                dest = records.parse_dest(record, family, with_stats=with_stats)
                dests[dest.key] = dest
        return Service(service.key, service.attrs, dests, service.stats)

    async def dump(self, *, with_stats: bool = True) -> Table:
        """The whole table: one service dump, then one dest dump per service.

        Read by a worker thread with a blocking socket (`BlockingTableReader`):
        at 10,000 services the read is seconds of CPU, and on the loop, cut in
        2 ms slices between everything else, it took several times as long
        (and kept the collector running over every record).
        """
        if self._reader is not None:
            return await asyncio.to_thread(self._reader.dump, with_stats=with_stats)
        services = await self.dump_services(with_stats=with_stats)
        full = {}
        for service in services:  # built as it goes: one big Table.of would be a stretch
            full[service.key] = await self.dump_dests(service, with_stats=with_stats)
        return Table(full)

    # --- changes --------------------------------------------------------------------------

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        """Send the operations in order, in batches; collect every ack.

        Returns:
            How many were applied and which failed (with translated errors).
        """
        applied = 0
        failures: list[OperationFailed] = []
        async with self._lock:
            start = 0
            while start < len(operations):
                end = min(start + self._batch_size, len(operations))
                # An mh pair is never split between two sends (`same_batch`).
                while end < len(operations) and same_batch(operations[end - 1], operations[end]):
                    end += 1
                ok, failed = await self._apply_batch(operations[start:end])
                applied += ok
                failures.extend(failed)
                start = end
        return ApplyResult(applied, tuple(failures))

    async def _apply_batch(self, batch: Sequence[Operation]) -> tuple[int, list[OperationFailed]]:
        """Send `batch` in one ``send``; only its last request asks for an ack (see above)."""
        pending: dict[int, Operation] = {}
        chunks = []
        last = len(batch) - 1
        seq = 0
        for index, operation in enumerate(batch):
            await self._slice.pause()
            seq = self._next_seq()
            pending[seq] = operation
            chunks.append(self._encoder.encode(operation, seq, ack=index == last))
        final = seq
        data = b"".join(chunks)
        if len(batch) >= THREAD_SEND_THRESHOLD:
            # Netlink requests to the kernel never wait for buffer space, so the
            # non-blocking socket is safe to use from the worker thread.
            await asyncio.to_thread(self._sock.send, data)
        else:
            self._sock.send(data)
        failed: list[OperationFailed] = []
        while final in pending:
            received = await self._recv()
            for reply in wire.iter_replies(received):
                if reply.msg_type != wire.NLMSG_ERROR or reply.seq not in pending:
                    continue
                operation = pending.pop(reply.seq)
                if reply.error:
                    error = _kernel_error(reply.error, operation, "")
                    failed.append(OperationFailed(operation, error))
        return len(batch) - len(failed), failed

    # --- configuration, info, counters ---------------------------------------------------

    async def get_timeouts(self) -> Timeouts:
        async with self._lock:
            replies = await self._request(wire.CMD_GET_CONFIG, b"", "get timeouts")
        values = wire.parse_u32_attrs(replies[0]) if replies else {}
        return Timeouts(
            tcp=values.get(wire.ATTR_TIMEOUT_TCP, 0),
            tcpfin=values.get(wire.ATTR_TIMEOUT_TCP_FIN, 0),
            udp=values.get(wire.ATTR_TIMEOUT_UDP, 0),
        )

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """Set the non-zero timeouts (the kernel leaves a timeout of 0 unchanged)."""
        payload = (
            wire.nla_u32(wire.ATTR_TIMEOUT_TCP, timeouts.tcp)
            + wire.nla_u32(wire.ATTR_TIMEOUT_TCP_FIN, timeouts.tcpfin)
            + wire.nla_u32(wire.ATTR_TIMEOUT_UDP, timeouts.udp)
        )
        async with self._lock:
            await self._request(wire.CMD_SET_CONFIG, payload, "set timeouts")

    async def info(self) -> IpvsInfo:
        async with self._lock:
            replies = await self._request(wire.CMD_GET_INFO, b"", "get info")
        values = wire.parse_u32_attrs(replies[0]) if replies else {}
        version = values.get(wire.INFO_VERSION, 0)
        return IpvsInfo(
            f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}",
            values.get(wire.INFO_CONN_TAB_SIZE, 0),
        )

    async def zero(self, service: ServiceKey | None = None) -> None:
        """Zero the counters of one service (and its dests), or of every service."""
        payload = (
            b"" if service is None else wire.nla(wire.ATTR_SERVICE, self._encoder.identity(service))
        )
        what = f"zero counters of {service}" if service else "zero all counters"
        async with self._lock:
            await self._request(wire.CMD_ZERO, payload, what)

    # --- connection-sync daemons ----------------------------------------------------------

    async def sync_daemons(self) -> list[SyncDaemon]:
        """The running sync daemons (GET_DAEMON): none, a master, a backup, or both."""
        async with self._lock:
            return [
                wire_daemon.parse_daemon(record)
                async for record in self._dump(wire.CMD_GET_DAEMON, b"")
            ]

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        """Start a sync daemon (NEW_DAEMON).

        Raises:
            AlreadyExists: a daemon of that role runs already (whatever its settings).
            KernelError: e.g. ENODEV (no such interface), ENETUNREACH (a master on
                an interface that is down), EINVAL (a real of the other address
                family exists: the sync protocol cannot carry it).
        """
        payload = wire.nla(wire.ATTR_DAEMON, wire_daemon.daemon_attrs(daemon))
        what = (
            f"start {daemon.state.name.lower()} sync daemon"
            f" on {daemon.interface} (sync id {daemon.sync_id})"
        )
        async with self._lock:
            await self._fenced_request(wire.CMD_NEW_DAEMON, payload, what)

    async def stop_sync_daemon(self, state: SyncState) -> None:
        """Stop the sync daemon of one role (DEL_DAEMON).

        Raises:
            NotFound: no daemon of that role runs (ESRCH).
        """
        payload = wire.nla(wire.ATTR_DAEMON, wire_daemon.daemon_state_attrs(state))
        what = f"stop {state.name.lower()} sync daemon"
        async with self._lock:
            # No ack means EINTR (see _fenced_request): kthread_stop() found a
            # thread that had not run yet. stop_sync_thread() has still cleared
            # the daemon and stopped its threads, so that is a successful stop.
            await self._fenced_request(wire.CMD_DEL_DAEMON, payload, what)

    async def _fenced_request(self, cmd: int, payload: bytes, what: str) -> bool:
        """One request followed, in the same ``send``, by a GET_INFO fence.

        netlink_rcv_skb() sends no ack at all when a handler returns -EINTR,
        and DEL_DAEMON does when it stops a sync thread the scheduler has not
        run yet (a stop right after a start: measured in UML, where a fresh
        kthread waits for the caller to sleep). A plain request would then wait
        forever. The kernel handles the messages of one ``send`` in order, so
        the fence's ack arriving first proves the request got no ack.

        Returns:
            True when the request was acked, False when the kernel skipped its ack.

        Raises:
            KernelError: the request's translated error.
        """
        seq = self._next_seq()
        fence = self._next_seq()
        flags = wire.NLM_F_REQUEST | wire.NLM_F_ACK
        self._sock.send(
            wire.message(self._family, cmd, payload, flags, seq)
            + wire.message(self._family, wire.CMD_GET_INFO, b"", flags, fence)
        )
        error: int | None = None  # None: no ack (yet)
        while True:
            data = await self._recv()
            for reply in wire.iter_replies(data):
                if reply.msg_type != wire.NLMSG_ERROR:
                    continue  # the fence's GET_INFO reply
                if reply.seq == seq:
                    error = reply.error
                elif reply.seq == fence:
                    # Read up to the fence even after an error: nothing of this
                    # exchange is left in the socket for the next request.
                    if error:
                        raise _kernel_error(error, None, what)
                    return error is not None
