"""The ping and smtp checks' I/O: sockets on the event loop around pure codecs.

Both run as the coroutine checks of ``ipvsd.health.checks`` do: under the
check's one hard deadline (``asyncio.timeout`` in ``checks._run``), naming the
phase they are in (`Progress`), and letting ``OSError`` out for ``_run`` to
turn into a reason (``no route to host (send)``).

ping (keepalived's PING_CHECK): one echo request, up when the echo reply
that answers it arrives. An ICMP datagram ("ping") socket is used when the
kernel lets this process have one (``net.ipv4.ping_group_range`` holds its
group; the kernel then matches replies to the socket by identifier), else a
raw socket (root, or CAP_NET_RAW as the systemd unit grants): with it the
check matches identifier, sequence number and payload itself and skips other
ICMP messages, since a raw socket sees every one the host receives; a filter
(ICMP_FILTER, ICMP6_FILTER) keeps all but echo replies out in the kernel.
Either socket is connected, so the kernel reports an ICMP error for our
request (host or network unreachable, administratively prohibited) as an
error on the socket, and a route of type unreachable or prohibit fails the
send at once. An echo reply with our identifier and sequence number but
another payload is a real answering wrongly: down.

smtp (keepalived's SMTP_CHECK): connect, read the greeting (220), send
``HELO helo_name``, expect 250, send ``QUIT`` and close without waiting for
its answer (the verdict is known). Replies are parsed by ``ipvsd.health.smtp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

from ipvsd.health import icmp, smtp
from ipvsd.health.http import Progress
from ipvsd.health.target import CheckTarget

__all__ = ["ping", "smtp_dialogue"]

_SOL_RAW = 255  # linux/socket.h; Python's socket module has no name for it
_ICMP_FILTER = 1  # linux/icmp.h: a bitmask of ICMP types a raw socket does not receive
_ICMP6_FILTER = 1  # linux/icmpv6.h: eight 32-bit words, a bit set blocks that type
_READ_SIZE = 4096
_PAYLOAD_SIZE = 16


def _icmp_socket(family: int) -> tuple[socket.socket, bool]:
    """A ping socket if the kernel allows one, else a raw one; True when it is raw."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except PermissionError:  # not in net.ipv4.ping_group_range: EACCES
        pass
    sock = socket.socket(family, socket.SOCK_RAW, proto)
    try:
        if family == socket.AF_INET:
            blocked = 0xFFFFFFFF & ~(1 << icmp.ECHO_REPLY[4])
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", blocked))
        else:
            words = [0xFFFFFFFF] * 8
            reply = icmp.ECHO_REPLY[6]
            words[reply >> 5] &= ~(1 << (reply & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
    except BaseException:
        sock.close()
        raise
    return sock, True


async def ping(target: CheckTarget, progress: Progress) -> tuple[bool, str]:
    """One echo request to the target's address; up when its reply comes back.

    Returns:
        Up or not, and the reason.

    Raises:
        OSError: the socket could not be made, the send failed (no route, a
            prohibit route) or an ICMP error came back for the request.
    """
    loop = asyncio.get_running_loop()
    version = target.address.version
    progress.phase = "socket"
    sock, raw = _icmp_socket(target.family)
    with sock:
        sock.setblocking(False)
        if target.source is not None:
            progress.phase = f"bind to {target.source[0]}"
            sock.bind(target.source)
        ident, seq = struct.unpack("!HH", os.urandom(4))
        payload = os.urandom(_PAYLOAD_SIZE)
        progress.phase = "send"
        sock.connect((str(target.address), 0))  # only sets the peer: replies from it alone
        await loop.sock_sendall(sock, icmp.encode_request(version, ident, seq, payload))
        progress.phase = "reply"
        while True:
            data = await loop.sock_recv(sock, _READ_SIZE)
            try:
                echo = icmp.decode_reply(data, version, ip_header=raw and version == 4)
            except icmp.IcmpError:
                continue  # not a message for anyone: wait on for ours
            if echo is None or echo.seq != seq or (raw and echo.ident != ident):
                continue  # another pinger's reply (raw sockets see them all)
            if echo.payload != payload:
                return False, f"echo reply with another payload ({len(echo.payload)} bytes)"
            return True, "echo reply"


async def smtp_dialogue(
    sock: socket.socket, target: CheckTarget, progress: Progress
) -> tuple[bool, str]:
    """Greeting, ``HELO``, ``QUIT`` on a connected socket (the caller closes it).

    Returns:
        Up (220 then 250) or not, and the reason.
    """
    loop = asyncio.get_running_loop()
    reader = smtp.ReplyReader()

    async def reply(phase: str) -> smtp.Reply | None:
        progress.phase = phase
        while True:
            found = reader.next_reply()
            if found is not None:
                return found
            data = await loop.sock_recv(sock, _READ_SIZE)
            if not data:
                return None
            reader.feed(data)

    try:
        greeting = await reply("greeting")
        if greeting is None:
            return False, "connection closed before the greeting"
        if greeting.code != 220:  # RFC 5321 §4.2.2: "Service ready"
            return False, f"greeting {greeting.shown()} (expected 220)"
        progress.phase = "HELO"
        await loop.sock_sendall(sock, smtp.helo(target.helo_name))
        answer = await reply("HELO reply")
    except smtp.SmtpError as exc:
        return False, f"bad SMTP reply: {exc}"
    if answer is None:
        return False, "connection closed after HELO"
    if answer.code != 250:  # RFC 5321 §4.2.2: "Requested action okay"
        return False, f"HELO answered {answer.shown()} (expected 250)"
    progress.phase = "QUIT"
    with contextlib.suppress(OSError):  # one that hangs up after its 250 has still passed
        await loop.sock_sendall(sock, b"QUIT\r\n")
    return True, f"HELO answered {answer.code}"
