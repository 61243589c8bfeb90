"""pyroute2 plumbing shared by the rtnetlink adapters (`addresses`, `links`).

Both adapters send requests on a pyroute2 ``AsyncIPRoute`` of their own and
translate what it raises at the boundary (style G5): a ``NetlinkError`` or a
socket ``OSError`` becomes a `KernelError` carrying the errno and, when the
kernel sent one, its extended-ack text.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, Self

from ipvsd.errors import KernelError

__all__ = ["RtnlClient", "error_text", "get_link", "kernel_error", "open_iproute"]


def error_text(code: int, message: str = "") -> str:
    """The kernel's extended-ack text, else errno's; EPERM says what is missing."""
    detail = message or (os.strerror(code) if code else "")
    if code == errno.EPERM:
        detail += " (needs CAP_NET_ADMIN)"
    return f"{detail} (errno {code})"


def kernel_error(exc: BaseException, what: str) -> KernelError:
    """Translate a pyroute2 NetlinkError or a socket OSError (style G5)."""
    code = int(getattr(exc, "code", 0) or getattr(exc, "errno", 0) or 0)
    # NetlinkError.args is (code, message); the message is the kernel's extended
    # ack text when there is one ("ipv4: Address already assigned").
    args: tuple[object, ...] = exc.args
    message = str(args[1]) if len(args) > 1 and args[1] else ""
    if not code and not message:
        message = str(exc)
    return KernelError(f"{what}: {error_text(code, message)}", errno=code, operation=what)


async def open_iproute() -> Any:
    """An ``AsyncIPRoute`` for requests only, its socket created now.

    The socket stays in the network namespace current for the calling thread
    (pyroute2 keeps its socket per thread: use it from that thread only).

    Raises:
        KernelError: the socket could not be opened.
    """
    from pyroute2 import AsyncIPRoute

    # groups=0: this socket only carries our requests, no broadcasts.
    ipr = AsyncIPRoute(groups=0, ext_ack=True)
    try:
        # pyroute2 creates its socket lazily; bind() creates it here, now.
        await ipr.bind(groups=0)
    except Exception as exc:
        ipr.close()
        raise kernel_error(exc, "open rtnetlink socket") from exc
    return ipr


class RtnlClient:
    """One request-only rtnetlink socket whose requests are serialised. Use `open()`."""

    def __init__(self, ipr: Any) -> None:
        self._ipr = ipr
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls) -> Self:
        """Open the socket in the calling thread's current network namespace.

        Raises:
            KernelError: the socket could not be opened.
        """
        return cls(await open_iproute())

    def close(self) -> None:
        """Close the socket."""
        if self._closed:
            return
        self._closed = True
        self._ipr.close()


async def get_link(ipr: Any, interface: str) -> Any:
    """The kernel's ``ifinfmsg`` for ``interface`` (callers serialise requests on ``ipr``).

    Raises:
        KernelError: no such interface (``errno`` ENODEV), or netlink failed.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        replies = await ipr.link("get", ifname=interface)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            raise KernelError(
                f"no interface {interface!r}", errno=errno.ENODEV, operation="get link"
            ) from None
        raise kernel_error(exc, f"get link {interface!r}") from exc
    except OSError as exc:
        raise kernel_error(exc, f"get link {interface!r}") from exc
    if not replies:
        raise KernelError(f"no interface {interface!r}", errno=errno.ENODEV)
    return replies[0]
