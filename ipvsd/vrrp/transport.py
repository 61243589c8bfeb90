"""VRRP's sockets: raw IPv4 protocol 112 for adverts, AF_PACKET for gratuitous ARP.

This is the I/O edge of VRRP (style G1): it moves bytes and nothing else. The
codec (`vrrp.packet`) validates and decodes what `VrrpSocket.recv` returns,
and encodes what `VrrpSocket.send` sends. Everything runs on the asyncio loop
with non-blocking sockets and ``loop.add_reader``; there are no threads.

Advert socket (`VrrpSocket`), one per interface, set up as keepalived sets up
its own (``keepalived/vrrp/vrrp.c`` ``open_vrrp_*_socket``, ``vrrp_if.c``):

* ``SOCK_RAW`` protocol 112 **without** IP_HDRINCL: the kernel builds the IP
  header, with IP_TTL and IP_MULTICAST_TTL 255 (RFC 3768 §5.2.3, also in
  unicast mode), IP_TOS 0xc0 and no DF bit (IP_PMTUDISC_DONT), which is the
  header keepalived writes by hand (vrrp-notes §1.1).
* SO_BINDTODEVICE: only this interface's packets are received, and sends
  leave through it whatever the routing table says.
* IP_MULTICAST_IF (``ip_mreqn`` with the ifindex) and IP_ADD_MEMBERSHIP of
  224.0.0.18 on the interface (vrrp-notes §1.7). Without the membership the
  kernel does not deliver the group's packets at all. IP_MULTICAST_ALL 0 makes
  the socket see only groups *it* joined; in unicast mode it therefore sees no
  multicast at all (keepalived rejects multicast adverts in unicast mode).
* IP_MULTICAST_LOOP 0: our own adverts are not delivered back to us, or to
  any other socket of this namespace.
* Receiving a raw IPv4 socket yields the whole IP packet, header included,
  which the codec needs for the TTL check (RFC 3768 §7.1).

The source address. RFC 3768 §5.2.1 requires the interface's primary address.
``bind(2)`` would set it, but a raw socket bound to an address only receives
packets *addressed to* that address (``raw_v4_match`` compares the bound
address with the destination), so it would stop receiving 224.0.0.18.
keepalived avoids this with a second, send-only socket. Here each send carries
an ``IP_PKTINFO`` control message with ``ipi_spec_dst`` = the source, which
raw sockets honour like a bind but per packet (`VrrpSocket.bind_source`).

Sharing. Several VRRP instances (VRIDs) on one interface share its socket: a
raw socket receives every protocol-112 packet on the interface anyway.
`vrrp.relink.InterfaceEndpoint` shares them; run **one reader task per socket** that
decodes each packet and routes it to the instance by VRID (the decoded advert
carries it). Two readers on one socket would steal each other's packets. The
header's destination tells multicast from unicast adverts, which the receiver
must check (a multicast socket also receives unicast adverts addressed to us).

Errors. A send on a link that is down, or gone, is expected (the instance is
in FAULT and keepalived still "sends" its priority-0 advert there): sends
return False, count the failure, and log at debug. A failure on a link that
is up logs a warning. Which case it is comes from the interface's flags at the
time of the failure, not from the errno (see `_link_down`). Note that on a link
that is administratively up but has lost its carrier, an IP send *succeeds*:
the kernel drops the packet later, silently.

Opening a socket raises `KernelError`. If an interface is deleted and created
again, open new sockets: memberships and the bound device belong to the old
ifindex (`vrrp.relink` does this).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

import structlog

from ipvsd.errors import KernelError
from ipvsd.netlink.links import is_up
from ipvsd.vrrp.packet import VRRP_GROUP
from ipvsd.vrrp.sockets import (
    ANY,
    IP_PKTINFO,
    open_advert_socket,
    open_error,
)

__all__ = [
    "AdvertSocket",
    "GarpSender",
    "ReceivedPacket",
    "VrrpSocket",
]

log = structlog.get_logger("ipvsd.vrrp.transport")

SIOCGIFFLAGS = 0x8913
_RECV_SIZE = 65535


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    """One packet from a `VrrpSocket`.

    Attributes:
        packet: the whole IPv4 packet, header included (TTL, source and
            destination are in it), for `vrrp.packet` to validate.
        source: the sender's address, as the kernel reported it.
    """

    packet: bytes
    source: IPv4Address


def _link_down(sock: socket.socket, interface: str) -> bool:
    """Whether ``interface`` is down or gone, asked through ``sock`` (so in its namespace).

    Used after a failed send to tell the expected (link down: FAULT) from the
    surprising; errnos alone cannot: a down link gives ENETUNREACH for IP and
    ENETDOWN for packet sockets, a lost carrier ENOBUFS for packet sockets, and
    a source address that is not local also gives ENETUNREACH.
    """
    request = struct.pack("16sH14x", interface.encode()[:15], 0)
    try:
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
    except OSError:
        return True  # no such interface (any more)
    flags: int = struct.unpack_from("H", reply, 16)[0]
    return not is_up(flags)


def _log_send_error(
    event: str, sock: socket.socket, interface: str, exc: OSError, **fields: object
) -> None:
    """Log a failed send as ``event``: at debug if the link is down or gone, else a warning."""
    code = exc.errno or 0
    link_down = _link_down(sock, interface)
    report = log.debug if link_down else log.warning
    report(
        event,
        link_down=link_down,
        interface=interface,
        **fields,
        error=os.strerror(code),
        errno=code,
    )


class _Readable:
    """Wait for a non-blocking socket to become readable, via ``loop.add_reader``.

    `close` (called before the socket is closed) unregisters the reader and
    wakes the waiter: a stale registration would make the loop's selector
    refuse the next socket that reuses the file descriptor number.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._fd = sock.fileno()
        self._waiting: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        if self._waiting is not None:
            raise RuntimeError("another task is already reading this socket")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(self._fd, ready)
        self._waiting = (loop, waiter)
        try:
            await waiter
        finally:
            self.close()

    def close(self) -> None:
        if self._waiting is None:
            return
        loop, waiter = self._waiting
        self._waiting = None
        loop.remove_reader(self._fd)
        if not waiter.done():
            waiter.set_result(None)


AddressT = TypeVar("AddressT", IPv4Address, IPv6Address)
PacketT = TypeVar("PacketT")


class AdvertSocket(Generic[AddressT, PacketT]):
    """What the advert sockets of both families share: the source, sends and
    their failures, the receive loop, closing. `VrrpSocket` is the IPv4 one,
    `vrrp.transport6.VrrpSocket6` the IPv6 one; each has its own ``open``,
    ``send`` (its ancillary data) and `_receive_now` (its packet type)."""

    def __init__(self, sock: socket.socket, interface: str, ifindex: int, unicast: bool) -> None:
        self._sock = sock
        self._readable = _Readable(sock)
        self._source: AddressT | None = None
        self._closed = False
        self.interface = interface
        self.ifindex = ifindex
        self.unicast = unicast
        #: Sends that failed (link down, no route...), for metrics.
        self.send_failures = 0

    @property
    def source(self) -> AddressT | None:
        """The source address adverts are sent from (None: the kernel chooses)."""
        return self._source

    def bind_source(self, ip: AddressT | None) -> None:
        """Send every advert from ``ip`` (IPv4: the primary address, RFC 3768
        §5.2.1; IPv6: the link-local address, RFC 5798 §5.1.2.1).

        Applied per packet with IP_PKTINFO / IPV6_PKTINFO (see the module
        docstrings for why not ``bind(2)``); call it again when the address
        changes. An address that is not local makes sends fail (logged, counted).
        """
        self._source = ip

    def _sendmsg(
        self,
        payload: bytes,
        ancillary: list[tuple[int, int, bytes]],
        address: tuple[str, int] | tuple[str, int, int, int],
        dst: AddressT,
    ) -> bool:
        """`send`'s common part: refuse a closed socket, send, count and log a failure."""
        if self._closed:
            raise KernelError(
                f"VRRP socket on {self.interface!r} is closed", errno=errno.EBADF, operation="send"
            )
        try:
            self._sock.sendmsg([payload], ancillary, 0, address)
        except OSError as exc:
            self.send_failures += 1
            _log_send_error(
                "vrrp.send_failed",
                self._sock,
                self.interface,
                exc,
                dst=str(dst),
                source=str(self._source) if self._source else None,
            )
            return False
        return True

    def report_send_failure(self, code: int, dst: object) -> None:
        """Count and log a send that another process made on this socket (`vrrp.advertd`)."""
        self.send_failures += 1
        _log_send_error(
            "vrrp.send_failed",
            self._sock,
            self.interface,
            OSError(code, os.strerror(code)),
            dst=str(dst),
            source=str(self._source) if self._source else None,
        )

    def fileno(self) -> int:
        return self._sock.fileno()

    def _receive_now(self) -> PacketT | None:
        """One packet from the socket without waiting, or None to drop what came.

        Raises:
            BlockingIOError: nothing to read.
            OSError: the receive failed.
        """
        raise NotImplementedError

    async def recv(self) -> PacketT:
        """The next packet received on the interface.

        Raises:
            KernelError: the socket is closed (errno EBADF) or the receive failed.
            RuntimeError: another task is already waiting in `recv`.
        """
        while not self._closed:
            try:
                packet = self._receive_now()
            except (BlockingIOError, InterruptedError):
                await self._readable.wait()
                continue
            except OSError as exc:
                if self._closed:
                    break
                raise open_error(self.interface, "receive", exc) from exc
            if packet is not None:
                return packet
        raise KernelError(
            f"VRRP socket on {self.interface!r} is closed", errno=errno.EBADF, operation="receive"
        )

    def pending(self) -> list[PacketT]:
        """What the kernel queued and nobody read yet, without waiting.

        A start reads an early socket's queue this way (`ipvsd.vrrp.prelisten`)
        before its instances run; a receive error ends the list, and the
        socket's reader task meets it again and reports it.
        """
        packets: list[PacketT] = []
        while not self._closed:
            try:
                packet = self._receive_now()
            except OSError:  # BlockingIOError: the queue is empty
                break
            if packet is not None:
                packets.append(packet)
        return packets

    async def packets(self) -> AsyncIterator[PacketT]:
        """`recv` in a loop; ends when the socket is closed."""
        while not self._closed:
            try:
                packet = await self.recv()
            except KernelError:
                if self._closed:
                    return
                raise
            yield packet

    def close(self) -> None:
        """Close the socket; a pending `recv` raises, `packets` ends."""
        if self._closed:
            return
        self._closed = True
        self._readable.close()
        self._sock.close()


class VrrpSocket(AdvertSocket[IPv4Address, ReceivedPacket]):
    """The raw protocol-112 socket of one interface. Use `open()`."""

    @classmethod
    def open(cls, interface: str, *, unicast: bool = False) -> VrrpSocket:
        """Open and configure the socket in the current network namespace.

        Synchronous, so that a caller can open it inside ``lab.netns.in_netns``.

        Args:
            interface: the interface VRRP runs on, e.g. ``eth1``.
            unicast: unicast-peer mode: do not join 224.0.0.18 (and so receive
                no multicast adverts at all).

        Raises:
            KernelError: no such interface, no CAP_NET_RAW, or a socket option failed.
        """
        sock, ifindex = open_advert_socket("ipv4", interface, unicast=unicast)
        log.debug("vrrp.socket_opened", interface=interface, ifindex=ifindex, unicast=unicast)
        return cls(sock, interface, ifindex, unicast)

    def send(self, payload: bytes, dst: IPv4Address = VRRP_GROUP) -> bool:
        """Send one VRRP message (no IP header: the kernel adds it).

        Args:
            payload: the encoded advert.
            dst: 224.0.0.18, or a peer's address in unicast mode.

        Returns:
            True if the kernel took the packet; False if the send failed. A link
            down or gone is logged at debug, anything else as a warning.

        Raises:
            KernelError: the socket is closed (errno EBADF): a bug in the caller.
        """
        ancillary = []
        if self._source is not None:
            pktinfo = struct.pack("=i4s4s", 0, self._source.packed, ANY)
            ancillary.append((socket.IPPROTO_IP, IP_PKTINFO, pktinfo))
        return self._sendmsg(payload, ancillary, (str(dst), 0), dst)

    def _receive_now(self) -> ReceivedPacket:
        data, address = self._sock.recvfrom(_RECV_SIZE)
        return ReceivedPacket(data, IPv4Address(address[0]))


class GarpSender:
    """Sends gratuitous ARP frames on one interface. Use `open()`.

    An ``AF_PACKET``/``SOCK_RAW`` socket with protocol 0, so it receives nothing;
    frames come from `vrrp.arp.gratuitous_arp`, or `vrrp.ndisc.unsolicited_na`
    for IPv6 VIPs (whole Ethernet frames either way).
    """

    def __init__(self, sock: socket.socket, interface: str) -> None:
        self._sock = sock
        self.interface = interface
        #: Bursts cut short by a failed send, for metrics.
        self.send_failures = 0

    @classmethod
    def open(cls, interface: str) -> GarpSender:
        """Open the packet socket, bound to ``interface``, in the current namespace.

        Raises:
            KernelError: no such interface, or no CAP_NET_RAW.
        """
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        except OSError as exc:
            raise open_error(interface, "open packet socket", exc) from None
        try:
            sock.bind((interface, 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise open_error(interface, "bind packet socket", exc) from None
        return cls(sock, interface)

    def send_burst(self, frames: Sequence[bytes], count: int = 5) -> int:
        """Send each frame ``count`` times, back to back (keepalived: 5, no interval).

        Rounds, as keepalived's ``vrrp_send_link_update`` does: every frame once,
        then every frame again, ``count`` rounds. The first failure ends the
        burst: on a link that is down every later send would fail the same way.

        Returns:
            How many frames were sent.
        """
        sent = 0
        for _ in range(count):
            for frame in frames:
                try:
                    # The frame's own EtherType: ARP, or IPv6 for `ndisc` NAs.
                    ethertype = int.from_bytes(frame[12:14], "big")
                    self._sock.sendto(frame, (self.interface, ethertype))
                except OSError as exc:
                    self.send_failures += 1
                    _log_send_error("vrrp.garp_failed", self._sock, self.interface, exc, sent=sent)
                    return sent
                sent += 1
        return sent

    def close(self) -> None:
        self._sock.close()
