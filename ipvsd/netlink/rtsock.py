"""One rtnetlink request socket for the event loop, without pyroute2 (`ipvsd.netlink.rtmsg`).

Requests are serialised: one is sent, then its replies are read up to the
ack (NLMSG_ERROR) or the end of a dump (NLMSG_DONE). A reply whose sequence
number is not the current request's (a late answer to one whose waiter was
cancelled) is dropped. The socket has NETLINK_EXT_ACK, so the kernel's
reason ("ipv4: Address already assigned") comes with its errno, and
NETLINK_CAP_ACK, so an error does not echo the whole request.

The socket is created in `RtnlSocket.open`, in the network namespace current
for the calling thread then, and stays there.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Self

from ipvsd.errors import KernelError
from ipvsd.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    Link,
    Message,
    decode_link,
    error_of,
    link_request,
    messages,
)
from ipvsd.netlink.rtnl import error_text

__all__ = ["RtnlSocket"]

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
_RECV_SIZE = 1 << 16


class RtnlSocket:
    """A request-only rtnetlink socket. Use `open()`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = asyncio.Lock()
        self._seq = 0
        self._closed = False

    @classmethod
    async def open(cls) -> Self:
        """Open the socket in the calling thread's current network namespace.

        Raises:
            KernelError: the socket could not be opened.
        """
        kind = socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        try:
            sock = socket.socket(socket.AF_NETLINK, kind, socket.NETLINK_ROUTE)
        except OSError as exc:
            raise _error(exc.errno or 0, "", "open rtnetlink socket") from exc
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError as exc:
            sock.close()
            raise _error(exc.errno or 0, "", "open rtnetlink socket") from exc
        return cls(sock)

    def close(self) -> None:
        """Close the socket."""
        if not self._closed:
            self._closed = True
            self._sock.close()

    def next_seq(self) -> int:
        """A sequence number for the next request."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    async def ask(self, data: bytes, seq: int, what: str) -> list[Message]:
        """Send one request (built with `seq`) and return its replies up to the ack or
        the end of the dump (an ack itself is not returned).

        Raises:
            KernelError: the kernel refused (its errno and reason), or the socket failed.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                self._sock.send(data)
                replies: list[Message] = []
                while True:
                    for message in messages(await loop.sock_recv(self._sock, _RECV_SIZE)):
                        if message.seq != seq:
                            continue  # the answer to a request whose waiter was cancelled
                        if message.kind == NLMSG_ERROR:
                            code, text = error_of(message)
                            if code:
                                raise _error(code, text, what)
                            return replies
                        if message.kind == NLMSG_DONE:
                            return replies
                        replies.append(message)
            except OSError as exc:
                raise _error(exc.errno or 0, "", what) from exc

    async def link(self, name: str) -> Link:
        """The link called `name`.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or netlink failed.
        """
        seq = self.next_seq()
        try:
            replies = await self.ask(link_request(seq, name), seq, f"get link {name!r}")
        except KernelError as exc:
            if exc.errno == errno.ENODEV:
                raise KernelError(
                    f"no interface {name!r}", errno=errno.ENODEV, operation="get link"
                ) from None
            raise
        if not replies:
            raise KernelError(f"no interface {name!r}", errno=errno.ENODEV)
        return decode_link(replies[0])

    async def links(self) -> list[Link]:
        """Every link of the namespace.

        Raises:
            KernelError: netlink failed.
        """
        seq = self.next_seq()
        return [decode_link(m) for m in await self.ask(link_request(seq), seq, "dump links")]


#: A request's flags when it wants an ack.
ACKED = NLM_F_REQUEST | NLM_F_ACK


def _error(code: int, text: str, what: str) -> KernelError:
    return KernelError(f"{what}: {error_text(code, text)}", errno=code, operation=what)
