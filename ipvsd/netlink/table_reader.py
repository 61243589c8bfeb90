"""A blocking read of the whole IPVS table, for a thread that may wait on the kernel.

The /metrics endpoint serves each scrape from a thread of its own. Reading the
table there, on a blocking socket of its own, keeps a 10,000-service dump off
the event loop entirely: `IpvsClient.dump` has to yield to the loop every
couple of milliseconds (VRRP, checks and the control socket share it), which
made a big scrape take several times as long as the kernel needs. The GIL is
still shared, but Python hands it over every few milliseconds, and the loop
is the busier of the two only when it has work.

The requests and the parsing are `IpvsClient`'s (`ipvsd.netlink.ipvs`), so the
two readers cannot disagree about the table.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections.abc import Iterator

from ipvsd.errors import KernelError
from ipvsd.gcpause import gc_paused
from ipvsd.model import Service, Table
from ipvsd.netlink import records, wire
from ipvsd.netlink.ipvs import (
    RECV_SIZE,
    dump_records,
    dump_request,
    open_socket,
    resolve_family_id,
)

#: The longest a dump waits for one datagram of the kernel's answer.
DUMP_TIMEOUT_S = 60.0


class BlockingTableReader:
    """Dumps the table on its own netlink socket; safe to call from several threads.

    Use `open()`. Each `dump` holds the reader's lock: the kernel runs one dump
    at a time per socket.
    """

    def __init__(self, family_id: int, sock: socket.socket, timeout_s: float) -> None:
        self._family = family_id
        self._sock = sock
        # The kernel enforces the wait (SO_RCVTIMEO), not Python: a socket
        # with a Python timeout polls before every recv and send, which is one
        # more system call per datagram, 20,000 more per 10,000-service dump,
        # and system calls are what a dump costs under User-Mode Linux.
        sock.setblocking(True)
        wait = struct.pack("@ll", int(timeout_s), int(timeout_s % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
        self._seq = 0
        self._buf = bytearray(RECV_SIZE)
        self._encoder = wire.Encoder(family_id)
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, *, timeout_s: float) -> BlockingTableReader:
        """Resolve the IPVS family (async: pyroute2's lookup) and open the socket.

        Args:
            timeout_s: the longest wait for one datagram of a reply; a dump
                that stalls that long raises `KernelError` (ETIMEDOUT).

        Raises:
            IpvsUnavailable: the kernel has no IPVS.
        """
        return cls(await resolve_family_id(), open_socket(), timeout_s)

    def close(self) -> None:
        self._sock.close()

    def dump(self, *, with_stats: bool = True) -> Table:
        """Every service and dest, with counters: one service dump, then one dest
        dump per service (what ``ipvsadm -Ln --stats`` asks the kernel too).

        Raises:
            KernelError: the kernel refused a dump, or did not answer in time.
            WireError: a reply is malformed.
        """
        # Tens of thousands of records, no reference cycle: see `ipvsd.gcpause`.
        with self._lock, gc_paused():
            services = [
                records.parse_service(record, with_stats=with_stats)
                for record in self._records(wire.CMD_GET_SERVICE, b"")
            ]
            table = {}
            for service in services:
                family = service.key.family
                payload = wire.nla(wire.ATTR_SERVICE, self._encoder.identity(service.key))
                dests = {}
                for record in self._records(wire.CMD_GET_DEST, payload):
                    dest = records.parse_dest(record, family, with_stats=with_stats)
                    dests[dest.key] = dest
                table[service.key] = Service(service.key, service.attrs, dests, service.stats)
        return Table(table)

    def _records(self, cmd: int, payload: bytes) -> Iterator[memoryview]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        self._sock.send(dump_request(self._family, cmd, payload, seq))
        while True:
            try:
                size = self._sock.recv_into(self._buf)
            except (BlockingIOError, TimeoutError) as exc:  # SO_RCVTIMEO ran out
                raise KernelError(
                    "IPVS dump: the kernel did not answer", errno=errno.ETIMEDOUT
                ) from exc
            for record in dump_records(memoryview(self._buf)[:size], seq, cmd):
                if record is None:
                    return
                yield record
