"""The advert sender: a small process whose only job is to send a MASTER's adverts on time.

Why a process: everything else the daemon does (a reload of 10,000 services,
a scrape, thousands of health checks, a resync) runs on one asyncio loop, and
in one Python process even a thread waits for the GIL behind the loop, a
full garbage collection or a long C call. An advert that is late by more
than Master_Down_Interval - Advertisement_Interval makes the backup take the
VIP while the master still holds it. keepalived keeps VRRP in a process of
its own, apart from its checker, for the same reason. This one is smaller
still: the daemon's VRRP machine keeps every decision (when to become
MASTER, what to advertise, when to resign) and hands this process "send
these datagrams now and then every interval" (`vrrp.pacer.AdvertProcess`).
It sleeps in ``select`` until the next advert is due, sends it, and re-arms.

Protocol, over a SOCK_SEQPACKET socketpair (one JSON object per message):

parent -> child
    ``{"op": "send", "key": K, "interval": S | null, "hold": H, "datagrams": [...]}``
    with the advert socket's fd (SCM_RIGHTS). Send now; repeat every S
    seconds until the next message for K (null: once). Each datagram is
    ``{"payload": HEX, "source": "A.B.C.D" | null, "destination": "A.B.C.D"}``
    (IPv6 addresses for an IPv6 socket, `vrrp.transport6.VrrpSocket6`).
    ``{"op": "alive", "key": K}``: the daemon still wants K (see below).
    ``{"op": "stop", "key": K}``: stop repeating K.
child -> parent (never blocks the child: dropped if the parent is not reading)
    ``{"event": "send_failed", "key": K, "destination": D, "errno": N}`` the
    first failure of a run; ``{"event": "send_recovered", ...}`` after it;
    ``{"event": "late", "key": K, "late_s": S}`` an advert more than
    `LATE_REPORT_S` behind its schedule (the machine starved this process).

A daemon that is alive says so: its VRRP machine's own Adver_Timer sends
"alive" for K every interval, however late. K not heard of for H seconds
is dropped ("expired"): a daemon whose loop is hung (deadlocked, stopped)
must lose the VIP as keepalived's hung VRRP process would, not hold it
forever while its checks and its table stand still. H is far above any
stall of a working loop (`vrrp.pacer.HOLD_S`).

End of file on the socketpair (the daemon exited or died) ends the process
at once, so a dead daemon stops advertising and the backup takes over; the
parent-death signal covers a parent killed before the socket is closed.

This file imports the standard library only: it runs as ``python -I
advertd.py FD``, without the daemon's imports and their memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["AdvertSchedule", "Datagram", "main"]

IP_PKTINFO = 8
PR_SET_PDEATHSIG = 1
MCL_CURRENT = 1
#: An advert this far behind its schedule is reported to the daemon.
LATE_REPORT_S = 0.02
#: Largest control message: 255 VIPs and a few unicast peers fit many times.
MAX_MESSAGE = 1 << 16

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    interval: float
    due: float
    expires: float
    hold: float


class AdvertSchedule(Generic[T]):
    """Which keys are due (pure: values and times in, due values out).

    A key repeats every `interval` from the time it was last put. A key that
    fell more than an interval behind (this process was not scheduled) sends
    once and re-bases on now: a burst of catch-up adverts tells a backup
    nothing a single one does not. A key not put or touched for `hold`
    seconds expires when it is next due (the daemon that wanted it is hung).
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry[T]] = {}

    def put(
        self, key: str, value: T, interval: float | None, now: float, hold: float = float("inf")
    ) -> T | None:
        """`value` was sent now; repeat it every `interval` (None: not at all).

        Returns:
            The value it replaces, if any (its socket is the caller's to close).
        """
        old = self._entries.pop(key, None)
        if interval is not None:
            self._entries[key] = _Entry(value, interval, now + interval, now + hold, hold)
        return None if old is None else old.value

    def touch(self, key: str, now: float) -> bool:
        """The daemon still wants `key`: it expires `hold` seconds from now.

        Returns:
            False if `key` is not repeated (expired, stopped, never put).
        """
        entry = self._entries.get(key)
        if entry is None:
            return False
        entry.expires = now + entry.hold
        return True

    def remove(self, key: str) -> T | None:
        """Stop repeating `key`; returns its value, if it had one."""
        old = self._entries.pop(key, None)
        return None if old is None else old.value

    def values(self) -> Iterator[T]:
        return (entry.value for entry in self._entries.values())

    def next_due(self) -> float | None:
        return min((entry.due for entry in self._entries.values()), default=None)

    def pop_due(self, now: float) -> tuple[list[tuple[str, T, float]], list[tuple[str, T]]]:
        """What is due at `now`: (key, value, lateness) to send, each re-armed one
        interval on, and the (key, value) that expired instead (now removed)."""
        due: list[tuple[str, T, float]] = []
        expired: list[tuple[str, T]] = []
        for key, entry in self._entries.items():
            if entry.due > now:
                continue
            if entry.expires <= now:
                expired.append((key, entry.value))
                continue
            due.append((key, entry.value, now - entry.due))
            entry.due += entry.interval
            if entry.due <= now:
                entry.due = now + entry.interval
        for key, _ in expired:
            del self._entries[key]
        return due, expired


@dataclass(frozen=True, slots=True)
class Datagram:
    payload: bytes
    ancillary: tuple[tuple[int, int, bytes], ...]
    """IP_PKTINFO / IPV6_PKTINFO with the advert's source address, or nothing."""
    destination: str

    @classmethod
    def from_json(cls, item: dict[str, str | None]) -> Datagram:
        source = item.get("source")
        ancillary: tuple[tuple[int, int, bytes], ...] = ()
        if source and ":" in source:
            # in6_pktinfo; ifindex 0: the socket is bound to its device
            # (vrrp.transport6), which the kernel then sends from.
            pktinfo = socket.inet_pton(socket.AF_INET6, source) + struct.pack("=i", 0)
            ancillary = ((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo),)
        elif source:
            pktinfo = struct.pack("=i4s4s", 0, socket.inet_aton(source), bytes(4))
            ancillary = ((socket.IPPROTO_IP, IP_PKTINFO, pktinfo),)
        return cls(bytes.fromhex(str(item["payload"])), ancillary, str(item["destination"]))


@dataclass(slots=True)
class _Adverts:
    sock: socket.socket
    datagrams: tuple[Datagram, ...]


class _Sender:
    """The process's state: the schedule, the sockets it holds, failing sends."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.schedule: AdvertSchedule[_Adverts] = AdvertSchedule()
        self.failing: set[tuple[str, str]] = set()

    def handle(self, message: bytes, fds: list[int]) -> None:
        request = json.loads(message)
        key = str(request["key"])
        if request["op"] == "stop":
            self._close(self.schedule.remove(key))
            return
        if request["op"] == "alive":
            if not self.schedule.touch(key, time.monotonic()):
                self.report(event="expired", key=key)  # the daemon must hand it over again
            return
        adverts = _Adverts(
            socket.socket(fileno=fds[0]),
            tuple(Datagram.from_json(item) for item in request["datagrams"]),
        )
        fds.clear()
        self.send(key, adverts)
        interval = request["interval"]
        repeat = None if interval is None else float(interval)
        hold = float(request["hold"])
        self._close(self.schedule.put(key, adverts, repeat, time.monotonic(), hold))
        if repeat is None:
            self._close(adverts)

    def send(self, key: str, adverts: _Adverts) -> None:
        for datagram in adverts.datagrams:
            try:
                adverts.sock.sendmsg(
                    [datagram.payload], list(datagram.ancillary), 0, (datagram.destination, 0)
                )
            except OSError as exc:
                if (key, datagram.destination) not in self.failing:
                    self.failing.add((key, datagram.destination))
                    self.report(
                        event="send_failed",
                        key=key,
                        destination=datagram.destination,
                        errno=exc.errno or 0,
                    )
                continue
            if (key, datagram.destination) in self.failing:
                self.failing.discard((key, datagram.destination))
                self.report(event="send_recovered", key=key, destination=datagram.destination)

    def report(self, **fields: object) -> None:
        # The daemon is not reading (or gone): never wait for it.
        with contextlib.suppress(OSError):
            self.control.send(json.dumps(fields).encode(), socket.MSG_DONTWAIT)

    @staticmethod
    def _close(adverts: _Adverts | None) -> None:
        if adverts is not None:
            adverts.sock.close()

    def run(self) -> int:
        while True:
            next_due = self.schedule.next_due()
            timeout = None if next_due is None else max(0.0, next_due - time.monotonic())
            readable, _, _ = select.select([self.control], [], [], timeout)
            if readable:
                message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
                if not message:
                    return 0  # the daemon closed its end or died: stop advertising
                try:
                    self.handle(message, fds)
                except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
                    self.report(event="bad_request", error=f"{type(exc).__name__}: {exc}")
                finally:
                    for fd in fds:
                        os.close(fd)
            due, expired = self.schedule.pop_due(time.monotonic())
            for key, adverts, late in due:
                self.send(key, adverts)
                if late > LATE_REPORT_S:
                    self.report(event="late", key=key, late_s=round(late, 4))
            for key, adverts in expired:
                self._close(adverts)
                self.report(event="expired", key=key)


def _die_with_parent(libc: ctypes.CDLL) -> None:
    # The socketpair's end of file covers a clean exit; SIGKILL of the daemon
    # closes it too, but a stopped (SIGSTOP) daemon does not: then the parent
    # death signal is what would have us outlive it. Best effort.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _lock_in_memory(libc: ctypes.CDLL) -> str | None:
    """Keep this process's pages in RAM (keepalived's ``vrrp_no_swap``); why not, if not.

    An idle sender's pages are the first the kernel reclaims when the daemon
    fills memory (a 10,000-service scrape), and faulting the interpreter back
    in made adverts 300 ms late in UML. Only the current pages: with
    MCL_FUTURE, an allocation beyond RLIMIT_MEMLOCK would fail and end us.
    """
    if libc.mlockall(MCL_CURRENT) == 0:
        return None
    return os.strerror(ctypes.get_errno())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: advertd.py CONTROL_FD (started by ipvsd)", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    _die_with_parent(libc)
    not_locked = _lock_in_memory(libc)
    # systemd's stop signals the whole cgroup and a terminal's ^C the whole
    # process group, this process included. The daemon decides when adverts
    # stop: it resigns with priority 0 through us first, then closes the
    # socketpair, and we exit on its end of file.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[1]))
    sender = _Sender(control)
    sender.report(event="memory", locked=not_locked is None, error=not_locked)
    return sender.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
