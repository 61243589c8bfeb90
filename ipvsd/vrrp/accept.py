"""RFC 5798 §6.1 Accept_Mode False for non-owner MASTERs: one guard all instances share.

Each instance that is MASTER, not the address owner and has ``accept_mode: false``
tells the guard its addresses (`AcceptGuard.hold`); leaving MASTER, it tells it
none. The guard writes the union to the kernel (`ipvsd.netlink.nftables.apply`:
the ``inet ipvsd`` table, replaced whole, deleted when empty). `reset` deletes a
table a killed daemon left behind (the router's start).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from ipvsd.errors import KernelError

__all__ = ["AcceptGuard"]

Ip = IPv4Address | IPv6Address
Writer = Callable[[frozenset[Ip]], None]


class AcceptGuard:
    """The addresses each instance needs dropped, written as one set."""

    def __init__(self, write: Writer, absent: frozenset[int] = frozenset()) -> None:
        """`absent`: errnos of `write` that mean this kernel can have no rules at all."""
        self._write = write
        self._absent = absent
        self._held: dict[str, frozenset[Ip]] = {}
        self._written: frozenset[Ip] | None = None  # unknown until the first write

    @property
    def written(self) -> frozenset[Ip] | None:
        """What the kernel drops now, as far as the guard knows (None: not written yet)."""
        return self._written

    def hold(self, owner: str, addresses: frozenset[Ip]) -> None:
        """`owner`'s addresses to drop from now on (empty: none).

        Raises:
            KernelError: the kernel refused; nothing changed, for `owner` either.
        """
        held = dict(self._held)
        if addresses:
            held[owner] = addresses
        else:
            held.pop(owner, None)
        union = frozenset().union(*held.values())
        if union != self._written:
            self._write(union)
            self._written = union
        self._held = held

    def reset(self) -> None:
        """Drop nothing: delete the table whoever left it.

        Raises:
            KernelError: the kernel refused.
        """
        self._held.clear()
        try:
            self._write(frozenset())
        except KernelError as exc:
            if exc.errno in self._absent:
                self._written = frozenset()  # none here: no need to delete again
            raise
        self._written = frozenset()
