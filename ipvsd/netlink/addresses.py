"""Interface addresses over rtnetlink: the only place VIPs are written.

VRRP needs three things from the kernel's addresses, and this adapter gives
them typed (style G5: pyroute2 stays inside ``ipvsd/netlink/``, pyroute2's
exceptions become `KernelError`). Link state, the fourth, is `netlink.links`.

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

Requests go through one pyroute2 ``AsyncIPRoute``, created in
`AddressManager.open`; it stays in the network namespace that was current
*for the calling thread* then. pyroute2 keeps its socket per thread, so use
one manager from one thread (the event loop's).

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

from ipvsd.netlink.rtnl import RtnlClient, get_link, kernel_error

__all__ = ["IFNAMSIZ", "AddressManager", "add_request", "vip_label"]

log = structlog.get_logger("ipvsd.netlink.addresses")

#: Longest interface name or address label, in bytes (the kernel's IFNAMSIZ minus the NUL).
IFNAMSIZ = 15

IFA_F_SECONDARY = 0x01
_FOREVER = 0xFFFFFFFF  # INFINITY_LIFE_TIME
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

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
    vip: Vip, label: str, *, scope: int = 0, broadcast: IPv4Address | None = None
) -> dict[str, object]:
    """The pyroute2 ``addr("add", index=..., **request)`` arguments for a VIP.

    IPv4: address, prefix length, label, scope and the broadcast if given.
    IPv6: the same without label or broadcast, with IFA_F_NODAD (in the
    IFA_FLAGS attribute, as ``ip addr add ... nodad`` sends it), and
    deprecated (``preferred_lft 0``, valid forever). Linux sources the host's
    own connections from the newest address of a prefix: a VIP in the
    segment's /64 would source the director's health checks, and DR reals,
    which hold the VIP on lo, would answer themselves. A deprecated address
    is never picked as a source (RFC 6724 rule 3) and still receives.
    """
    request: dict[str, object] = {
        "address": str(vip.ip),
        "prefixlen": vip.network.prefixlen,
        "scope": scope,
    }
    if vip.version == 6:
        request["flags"] = IFA_F_NODAD
        request["IFA_CACHEINFO"] = {
            "ifa_preferred": 0,
            "ifa_valid": _FOREVER,
            "cstamp": 0,
            "tstamp": 0,
        }
        return request
    request["label"] = label
    if broadcast is not None:
        request["broadcast"] = str(broadcast)
    return request


class AddressManager(RtnlClient):
    """VIPs and primary addresses of one network namespace. Use `open()`.

    Requests are serialised on one rtnetlink socket.
    """

    async def __aenter__(self) -> AddressManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _index(self, interface: str) -> int:
        """The ifindex the address requests need.

        Raises:
            KernelError: no such interface (``errno`` ENODEV), or netlink failed.
        """
        async with self._lock:
            return int((await get_link(self._ipr, interface))["index"])

    async def _ipv4(self, index: int, interface: str) -> list[tuple[IPv4Interface, int, str]]:
        """(address/prefix, IFA flags, label) of each IPv4 address, in kernel order."""
        return [
            (IPv4Interface(address), flags, label)
            for address, flags, label in await self._dump(index, interface, socket.AF_INET)
        ]

    async def _ipv6(self, index: int, interface: str) -> list[tuple[IPv6Interface, int]]:
        """(address/prefix, IFA flags) of each IPv6 address, in kernel order."""
        return [
            (IPv6Interface(address), flags)
            for address, flags, _ in await self._dump(index, interface, socket.AF_INET6)
        ]

    async def _dump(self, index: int, interface: str, family: int) -> list[tuple[str, int, str]]:
        """("address/prefix", IFA flags, label) of each address of ``family``."""
        result = []
        async with self._lock:
            try:
                async for msg in await self._ipr.addr("dump", family=family, index=index):
                    if msg["index"] != index:
                        continue
                    address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                    flags = msg.get_attr("IFA_FLAGS")
                    result.append(
                        (
                            f"{address}/{msg['prefixlen']}",
                            int(msg["flags"] if flags is None else flags),
                            str(msg.get_attr("IFA_LABEL") or ""),
                        )
                    )
            except Exception as exc:
                raise kernel_error(exc, f"dump addresses of {interface!r}") from exc
        return result

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
        from pyroute2.netlink.exceptions import NetlinkError

        check_label(interface, label)
        index = await self._index(interface)
        what = f"add {vip} to {interface!r}"
        request = add_request(vip, label, scope=scope, broadcast=broadcast)
        async with self._lock:
            try:
                await self._ipr.addr("add", index=index, **request)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    return False
                raise kernel_error(exc, what) from exc
            except OSError as exc:
                raise kernel_error(exc, what) from exc
        log.info("netlink.vip_added", interface=interface, vip=str(vip), label=label, scope=scope)
        return True

    async def remove(self, interface: str, vip: Vip) -> bool:
        """Remove ``vip`` (address and prefix length) from ``interface``; nothing if absent.

        Returns:
            True if the address was removed, False if it was not there.

        Raises:
            KernelError: no such interface, or the kernel refused.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        index = await self._index(interface)
        what = f"remove {vip} from {interface!r}"
        async with self._lock:
            try:
                await self._ipr.addr(
                    "del", index=index, address=str(vip.ip), prefixlen=vip.network.prefixlen
                )
            except NetlinkError as exc:
                if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                    return False
                raise kernel_error(exc, what) from exc
            except OSError as exc:
                raise kernel_error(exc, what) from exc
        log.info("netlink.vip_removed", interface=interface, vip=str(vip))
        return True

    async def has(self, interface: str, vip: Vip) -> bool:
        """Whether ``interface`` carries ``vip`` with the same prefix length.

        Raises:
            KernelError: no such interface, or netlink failed.
        """
        index = await self._index(interface)
        if vip.version == 6:
            return any(address == vip for address, _ in await self._ipv6(index, interface))
        return any(address == vip for address, _, _ in await self._ipv4(index, interface))

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
        for address, flags in await self._ipv6(index, interface):
            if address.ip.is_link_local and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
                return address.ip
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
        for address, flags, _ in await self._ipv4(index, interface):
            if not flags & IFA_F_SECONDARY and address.ip not in skip:
                return address.ip
        return None
