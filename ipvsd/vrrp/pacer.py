"""Who sends a MASTER's periodic adverts: the loop (`DirectPacer`) or a process (`AdvertProcess`).

The VRRP machine decides every advert: when it becomes MASTER, answers a
priority-0 advert, resigns, or its Adver_Timer fires. The instance runner
hands each one to a pacer as "send this now, then every `advert_int` until
told otherwise" (`AdvertPacer.send`). A pacer that repeats (`AdvertProcess`)
keeps the schedule off the event loop, so a loop busy for seconds with a
10,000-service reload or scrape cannot make the backup take over; the
machine's own Adver_Timer still fires, and the runner skips the advert the
pacer already sent (`AdvertPacer.repeating`) and tells it the loop is
alive (`AdvertPacer.touch`): a pacer not told so for `HOLD_S` stops, so
a hung daemon loses the VIP instead of holding it with a frozen table. A pacer that does not repeat
(`DirectPacer`) sends once: the machine's timer drives every advert, as
before, and that is what tests over fake sockets and a daemon that cannot
start the process use.

`AdvertProcess` runs `ipvsd.vrrp.advertd` (see its docstring for the
protocol). If that process dies, it is started again and told every advert
being repeated; if it cannot be started, sends fall back to the loop. Until
the process has said it runs (its first report, ``memory``: starting an
interpreter and locking its pages took up to half a second on a loaded
host), each advert handed to it goes out from the loop too: a daemon that
starts as the owner or preempts becomes MASTER within Master_Down_Interval,
and its first adverts waiting for the sender kept the old master holding
the VIP for 150 ms at a 0.1 s interval (tests/netns/test_vrrp_v3_ipv6.py).
The sender sends it again when it gets to it: one extra advert, which a
backup only takes as one more.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import structlog

from ipvsd.vrrp import advertd

__all__ = ["AdvertBurst", "AdvertPacer", "AdvertProcess", "AdvertSender", "DirectPacer"]

log = structlog.get_logger("ipvsd.vrrp")

#: How long `AdvertProcess.close` waits for the sender to exit on end of file.
EXIT_WAIT_S = 2.0
#: A loop not heard of for this long is hung: the sender stops its adverts and a
#: backup takes over, as from a dead daemon. Far above the longest stall of a
#: working loop (a 10,000 x 4 reload or scrape), far below "forever".
HOLD_S = 10.0


A = TypeVar("A", IPv4Address, IPv6Address)
A_contra = TypeVar("A_contra", IPv4Address, IPv6Address, contravariant=True)


class AdvertSender(Protocol[A_contra]):
    """What a burst needs of its socket: `vrrp.transport.VrrpSocket` (IPv4) or
    `vrrp.transport6.VrrpSocket6` (IPv6)."""

    def bind_source(self, ip: A_contra | None) -> None: ...

    def send(self, payload: bytes, dst: A_contra) -> bool: ...

    def fileno(self) -> int: ...

    def report_send_failure(self, code: int, dst: object) -> None: ...


@dataclass(frozen=True, slots=True)
class AdvertBurst(Generic[A]):
    """One advert to each destination, from one socket and source, of one family."""

    sock: AdvertSender[A]
    payload: bytes
    source: A | None
    destinations: tuple[A, ...]
    payloads: tuple[bytes, ...] = ()
    """One payload per destination where they differ (a VRRPv3 checksum covers the
    destination, RFC 5798 §5.2.8); empty: `payload` to each."""

    def datagrams(self) -> list[tuple[bytes, A]]:
        """(payload, destination) of each datagram, in order."""
        payloads = self.payloads or (self.payload,) * len(self.destinations)
        return list(zip(payloads, self.destinations, strict=True))

    def send_here(self) -> None:
        """Send from this process (failures are logged and counted by the socket)."""
        # Per send: instances sharing the socket may have different sources.
        self.sock.bind_source(self.source)
        for payload, destination in self.datagrams():
            self.sock.send(payload, destination)


class AdvertPacer(Protocol):
    def send(self, key: str, burst: AdvertBurst[Any], repeat_every: float | None) -> None:
        """Send `burst` now; then every `repeat_every` seconds if the pacer repeats
        (None: once), until the next `send` or `stop` for `key`."""
        ...

    def stop(self, key: str) -> None:
        """Stop repeating `key` (nothing more is sent for it)."""
        ...

    def touch(self, key: str) -> None:
        """The loop is alive and still wants `key` repeated."""
        ...

    def repeating(self, key: str) -> tuple[AdvertBurst[Any], float] | None:
        """What the pacer repeats for `key` and how often; None if it does not."""
        ...

    async def start(self) -> None:
        """Ready to send (before the first instance starts)."""
        ...

    async def close(self) -> None:
        """Send what was handed over, then stop (after the last instance stopped)."""
        ...


class DirectPacer:
    """Sends on the loop, once per `send`: the machine's timer drives repeats."""

    def send(self, key: str, burst: AdvertBurst[Any], repeat_every: float | None) -> None:
        burst.send_here()

    def stop(self, key: str) -> None:
        pass

    def touch(self, key: str) -> None:
        pass

    def repeating(self, key: str) -> tuple[AdvertBurst[Any], float] | None:
        return None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class AdvertProcess:
    """Repeats adverts from the `advertd` process; the loop only tells it what changed."""

    def __init__(self, *, python: str = sys.executable, hold_s: float = HOLD_S) -> None:
        self._python = python
        self._hold_s = hold_s
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._repeating: dict[str, tuple[AdvertBurst[Any], float]] = {}
        self._closing = False
        self._restarting = False
        self._ready = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def ready(self) -> bool:
        """The sender process has reported that it runs (see the module doc)."""
        return self._ready

    async def start(self) -> None:
        """Start the sender; on failure log it and send from the loop instead."""
        self._closing = False
        try:
            self._spawn()
        except OSError as exc:
            log.error("vrrp.advert_sender_unavailable", error=str(exc))

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ready = False
        try:
            self._process = subprocess.Popen(
                [self._python, "-I", str(Path(advertd.__file__)), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        asyncio.get_running_loop().add_reader(ours, self._on_report)
        log.info("vrrp.advert_sender_started", pid=self._process.pid)

    def send(self, key: str, burst: AdvertBurst[Any], repeat_every: float | None) -> None:
        if repeat_every is None:
            self._repeating.pop(key, None)
        else:
            self._repeating[key] = (burst, repeat_every)
        if self._tell(key, burst, repeat_every):
            if not self._ready:
                burst.send_here()  # the sender is still starting: not late (module doc)
            return
        if key in self._repeating:
            return  # a sender restarted meanwhile was told it with the rest
        burst.send_here()  # no sender: the loop's timer drives the repeats

    def stop(self, key: str) -> None:
        if self._repeating.pop(key, None) is not None:
            self._write({"op": "stop", "key": key}, None)

    def touch(self, key: str) -> None:
        if key in self._repeating:
            self._write({"op": "alive", "key": key}, None)

    def repeating(self, key: str) -> tuple[AdvertBurst[Any], float] | None:
        return self._repeating.get(key)

    def _tell(self, key: str, burst: AdvertBurst[Any], repeat_every: float | None) -> bool:
        """Hand the burst to the sender; False if there is none to hand it to."""
        request = {
            "op": "send",
            "key": key,
            "interval": repeat_every,
            "hold": self._hold_s,
            "datagrams": [
                {
                    "payload": payload.hex(),
                    "source": None if burst.source is None else str(burst.source),
                    "destination": str(destination),
                }
                for payload, destination in burst.datagrams()
            ],
        }
        return self._write(request, burst.sock.fileno())

    def _write(self, request: Mapping[str, object], fd: int | None) -> bool:
        control = self._control
        if control is None:
            return False
        try:
            socket.send_fds(control, [json.dumps(request).encode()], [] if fd is None else [fd])
        except OSError as exc:
            # A full socketpair means the sender is not reading (stopped or
            # hung): it cannot be trusted with the schedule any more.
            log.error("vrrp.advert_sender_failed", error=str(exc), pid=self.pid)
            self._restart()
            return False
        return True

    def _on_report(self) -> None:
        control = self._control
        assert control is not None
        while True:
            try:
                message = control.recv(advertd.MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                if not self._closing:
                    log.error("vrrp.advert_sender_died", pid=self.pid, code=self._reap())
                    self._restart()
                return
            self._log_report(message)

    def _log_report(self, message: bytes) -> None:
        try:
            report = json.loads(message)
            event = str(report.pop("event"))
        except (ValueError, KeyError, AttributeError):
            log.error("vrrp.advert_sender_garbled", message=message[:200].decode(errors="replace"))
            return
        if event == "memory":
            self._ready = True
        key = str(report.get("key", ""))
        burst = self._repeating.get(key, (None, 0.0))[0]
        if event == "send_failed" and burst is not None:
            burst.sock.report_send_failure(int(report.get("errno", 0)), report.get("destination"))
            return
        if event == "expired":
            # The next Adver_Timer finds nothing repeating and hands it over again.
            self._repeating.pop(key, None)
        level = log.warning if event in ("late", "bad_request", "expired") else log.info
        level(f"vrrp.advert_sender_{event}", **report)

    def _restart(self) -> None:
        """A new sender, told every advert being repeated (sent now, then on schedule).

        A new sender that fails too is not replaced again: sends go to the
        loop's timer from then on (logged), rather than a restart loop.
        """
        self._detach()
        self._terminate()
        if self._restarting:
            log.error("vrrp.advert_sender_unavailable", error="the restarted sender failed too")
            self._repeating.clear()
            return
        self._restarting = True
        try:
            self._spawn()
            for key, (burst, interval) in list(self._repeating.items()):
                self._tell(key, burst, interval)
        except OSError as exc:
            log.error("vrrp.advert_sender_unavailable", error=str(exc))
            self._detach()
            self._repeating.clear()  # the loop's timer drives them now
        finally:
            self._restarting = False

    def _detach(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            asyncio.get_running_loop().remove_reader(control)
            control.close()

    def _reap(self) -> int | None:
        process = self._process
        if process is None:
            return None
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return None

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def close(self) -> None:
        """Let the sender send what it was told, then end it (end of file)."""
        self._closing = True
        self._repeating.clear()
        self._detach()
        process = self._process
        if process is None:
            return
        try:
            await asyncio.to_thread(process.wait, EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error("vrrp.advert_sender_hung", pid=process.pid)
        self._terminate()
