"""Interface addresses over rtnetlink: the only place VIPs are written.

VRRP needs three things from the kernel's addresses, and this adapter gives
them typed (style G5: netlink stays inside ``ipvsd/netlink/``, the kernel's
refusals become `KernelError`). Link state, the fourth, is `netlink.links`.

* **VIPs** are ordinary interface addresses with a label
  (``ip addr add 10.0.0.100/24 dev eth1 label eth1:vrrp51``), as keepalived
  adds them. `add` and `remove` are idempotent, because the runner re-applies
  them at every transition and at startup (vrrp-notes §1.7: remove stale VIPs
  before entering Backup): EEXIST on add and EADDRNOTAVAIL on delete mean
  "already so".
* **IPv6 VIPs** are added with IFA_F_NODAD, as keepalived adds them
  (``netlink_ipaddress``, ``keepalived/vrrp/vrrp_ipaddress.c``): without it
  the kernel first runs duplicate address detection, and the VIP stays
  ``tentative`` (unusable as a source, its NAs not sent by the kernel) for
  about a second (RetransTimer x DupAddrDetectTransmits) after every
  failover; and a VIP still held by the old master during a split brain
  would go ``dadfailed`` for good. VRRP is the duplicate detection here.
  IPv6 addresses have no labels (the kernel ignores IFA_LABEL for them and
  keepalived refuses one), so the label is not sent.
* **The VRRP source address** is the interface's primary IPv4 address
  (RFC 3768 §5.2.1); the equal-priority tie-break compares it (§6.4.3).
  `primary_ipv4` skips secondary addresses and the caller's VIPs: a VIP in its
  own subnet (a /32, say) is not flagged secondary by the kernel.

Requests go through one raw rtnetlink socket (`ipvsd.netlink.rtsock`, not
pyroute2: it is on the way to the first VRRP state, issue 14), created in
`AddressManager.open`; it stays in the network namespace that was current
for the calling thread then. Use one manager from the event loop's thread.

Label rule: the kernel accepts any label of at most 15 bytes (IFNAMSIZ - 1;
longer ones fail policy validation with ERANGE). The rule that a label starts
with the interface name followed by ``:`` is iproute2's and the legacy alias
ioctls', and `add` enforces it so that ``ifconfig``-era tools and
``ip addr show label eth1:*`` keep working.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import structlog

from ipvsd.errors import KernelError
from ipvsd.netlink.rtmsg import (
    IFADDRMSG,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_NEWADDR,
    Address,
    address_request,
    decode_address,
    request,
)
from ipvsd.netlink.rtsock import RtnlSocket

__all__ = ["IFNAMSIZ", "AddressManager", "add_request", "vip_label"]

log = structlog.get_logger("ipvsd.netlink.addresses")

#: Longest interface name or address label, in bytes (the kernel's IFNAMSIZ minus the NUL).
IFNAMSIZ = 15

IFA_F_SECONDARY = 0x01
_FOREVER = 0xFFFFFFFF  # INFINITY_LIFE_TIME
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: "Already so" on delete.
_ABSENT = (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH)

Vip = IPv4Interface | IPv6Interface


def vip_label(interface: str, vrid: int) -> str:
    """The address label for VRRP instance ``vrid``'s VIPs on ``interface``.

    ``eth1:vrrp51`` when it fits in 15 bytes, then shorter forms
    (``enp0s31f6:v51``, ``:51``), and the bare interface name (the kernel's
    default label) for a 13-15 character interface name.
    """
    for label in (f"{interface}:vrrp{vrid}", f"{interface}:v{vrid}", f"{interface}:{vrid}"):
        if len(label.encode()) <= IFNAMSIZ:
            return label
    return interface


def check_label(interface: str, label: str) -> None:
    """Refuse a label the tools would not show next to ``interface``.

    Raises:
        ValueError: longer than 15 bytes, or not ``interface`` / ``interface:...``.
    """
    if len(label.encode()) > IFNAMSIZ:
        raise ValueError(f"address label {label!r} is longer than {IFNAMSIZ} bytes")
    if label != interface and not label.startswith(f"{interface}:"):
        raise ValueError(
            f"address label {label!r} must be {interface!r} or start with '{interface}:'"
        )


def add_request(
    seq: int,
    index: int,
    vip: Vip,
    label: str,
    *,
    scope: int = 0,
    broadcast: IPv4Address | None = None,
) -> bytes:
    """The RTM_NEWADDR (create, exclusive, acked) that adds a VIP to link `index`.

    IPv4: address, prefix length, label, scope and the broadcast if given.
    IPv6: the same without label or broadcast, with IFA_F_NODAD (also in the
    IFA_FLAGS attribute, as ``ip addr add ... nodad`` sends it), and
    deprecated (``preferred_lft 0``, valid forever). Linux sources the host's
    own connections from the newest address of a prefix: a VIP in the
    segment's /64 would source the director's health checks, and DR reals,
    which hold the VIP on lo, would answer themselves. A deprecated address
    is never picked as a source (RFC 6724 rule 3) and still receives.
    """
    v6 = vip.version == 6
    return address_request(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        index,
        vip,
        scope=scope,
        ifa_flags=IFA_F_NODAD if v6 else 0,
        lifetimes=(0, _FOREVER) if v6 else None,
        label=None if v6 else label,
        broadcast=None if v6 or broadcast is None else broadcast.packed,
    )


class AddressManager:
    """VIPs and primary addresses of one network namespace. Use `open()`.

    Requests are serialised on one rtnetlink socket.
    """

    def __init__(self, sock: RtnlSocket) -> None:
        self._sock = sock

    @classmethod
    async def open(cls) -> AddressManager:
        """Open the socket in the calling thread's current network namespace.

        Raises:
            KernelError: the socket could not be opened.
        """
        return cls(await RtnlSocket.open())

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    async def __aenter__(self) -> AddressManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _index(self, interface: str) -> int:
        """The ifindex the address requests need.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or netlink failed.
        """
        return (await self._sock.link(interface)).index

    async def _dump(self, index: int, interface: str, family: int) -> list[Address]:
        """Each address of ``family`` on link `index`, in kernel order."""
        seq = self._sock.next_seq()
        body = IFADDRMSG.pack(family, 0, 0, 0, index)
        what = f"dump addresses of {interface!r}"
        replies = await self._sock.ask(
            request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, body), seq, what
        )
        found = (decode_address(message) for message in replies)
        return [a for a in found if a is not None and a.index == index]

    async def add(
        self,
        interface: str,
        vip: Vip,
        label: str,
        *,
        scope: int = 0,
        broadcast: IPv4Address | None = None,
    ) -> bool:
        """Add ``vip`` to ``interface`` with ``label``; nothing if it is already there.

        Args:
            interface: e.g. ``eth1``.
            vip: address and prefix length, e.g. ``10.0.0.100/24``; an IPv6
                VIP is added with ``nodad`` (see the module docstring).
            label: e.g. ``eth1:vrrp51`` (see `vip_label`); checked, but not
                sent for IPv6.
            scope: RT_SCOPE_* (0 global, 253 link, 254 host ...).
            broadcast: the IFA_BROADCAST address; None: none (as ``ip addr add``).

        Returns:
            True if the address was added, False if it was already present.

        Raises:
            ValueError: a label that is too long or not prefixed by ``interface``.
            KernelError: no such interface, or the kernel refused.
        """
        check_label(interface, label)
        index = await self._index(interface)
        seq = self._sock.next_seq()
        message = add_request(seq, index, vip, label, scope=scope, broadcast=broadcast)
        try:
            await self._sock.ask(message, seq, f"add {vip} to {interface!r}")
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        log.info("netlink.vip_added", interface=interface, vip=str(vip), label=label, scope=scope)
        return True

    async def remove(self, interface: str, vip: Vip) -> bool:
        """Remove ``vip`` (address and prefix length) from ``interface``; nothing if absent.

        Returns:
            True if the address was removed, False if it was not there.

        Raises:
            KernelError: no such interface, or the kernel refused.
        """
        index = await self._index(interface)
        seq = self._sock.next_seq()
        message = address_request(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, index, vip)
        try:
            await self._sock.ask(message, seq, f"remove {vip} from {interface!r}")
        except KernelError as exc:
            if exc.errno in _ABSENT:
                return False
            raise
        log.info("netlink.vip_removed", interface=interface, vip=str(vip))
        return True

    async def has(self, interface: str, vip: Vip) -> bool:
        """Whether ``interface`` carries ``vip`` with the same prefix length.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        family = socket.AF_INET6 if vip.version == 6 else socket.AF_INET
        return any(found.address == vip for found in await self._dump(index, interface, family))

    async def link_local_ipv6(self, interface: str) -> IPv6Address | None:
        """The interface's link-local IPv6 address: the VRRPv3 IPv6 source (RFC 5798 §5.1.2.1).

        The first one the kernel lists that has finished duplicate address
        detection (not ``tentative``, not ``dadfailed``): the kernel refuses a
        tentative source (EINVAL). None until there is one; keepalived stays in
        FAULT meanwhile ("no IPv6 address for interface").

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        for found in await self._dump(index, interface, socket.AF_INET6):
            ip = found.address.ip
            if ip.is_link_local and not found.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
                assert isinstance(ip, IPv6Address)
                return ip
        return None

    async def primary_ipv4(
        self, interface: str, *, exclude: Collection[IPv4Address] = ()
    ) -> IPv4Address | None:
        """The interface's primary IPv4 address: the VRRP source (RFC 3768 §5.2.1).

        The first address the kernel lists that is not flagged secondary and is
        not in ``exclude``.

        Args:
            interface: e.g. ``eth1``.
            exclude: addresses never to pick; pass every VIP configured on the
                interface (a VIP in a subnet of its own is a kernel "primary").

        Returns:
            The address, or None when the interface has no suitable IPv4 address.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        skip = set(exclude)
        for found in await self._dump(index, interface, socket.AF_INET):
            ip = found.address.ip
            if not found.flags & IFA_F_SECONDARY and ip not in skip:
                assert isinstance(ip, IPv4Address)
                return ip
        return None
