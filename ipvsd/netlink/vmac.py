"""The vmac interface of a VRRP instance (``vmac: true``, keepalived's ``use_vmac``).

RFC 3768 §7.3 gives the virtual router a MAC address of its own,
00:00:5e:00:01:VRID; the MASTER answers ARP for the VIPs with it and sends its
adverts from it, so a failover changes which switch port the MAC is behind
(the switches learn it from the first advert) but no client's ARP cache.
Linux can only do this with a second interface, as keepalived does
(``vrrp_vmac.c``): a macvlan on the instance's interface, in private mode
(macvlans of one parent do not talk to each other), carrying that MAC.

Which interface answers ARP then matters, or clients learn the parent's MAC
for the VIPs (keepalived's ``vrrp_if_config.c`` settles the same sysctls):

* on the vmac, ``arp_ignore=1``: answer only for addresses it carries (not
  the parent's); ``accept_local=1`` and ``rp_filter=0``: it has no address of
  its own, and must still take the adverts that arrive on it;
* on the parent, ``arp_ignore=1`` and ``arp_filter=1``: it carries no VIP, so
  it must not answer for one. The parent's values are saved when its first
  vmac is made and restored when its last is removed.

`ensure` adopts a vmac left behind by an earlier run (same parent, same MAC)
instead of failing on it; another interface of that name is an error. After
such a crash the parent's sysctls read are already ours (1), so a stop then
leaves arp_ignore/arp_filter at 1: harmless for a director, and the value a
crashed keepalived leaves too.
Sysctls are written through ``/proc/sys``, which shows the caller's network
namespace.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import structlog

from ipvsd.errors import KernelError
from ipvsd.netlink.rtnl import RtnlClient, get_link, kernel_error

__all__ = ["VmacManager"]

log = structlog.get_logger("ipvsd.netlink.vmac")

_CONF = Path("/proc/sys/net/ipv4/conf")
#: On the vmac: answer ARP only for its own addresses, take packets without an address.
_VMAC_SYSCTLS = {"arp_ignore": "1", "accept_local": "1", "rp_filter": "0"}
#: On the parent: answer ARP for none of the vmac's addresses.
_PARENT_SYSCTLS = {"arp_ignore": "1", "arp_filter": "1"}


class VmacManager(RtnlClient):
    """Makes and removes vmac interfaces. Use `open()`."""

    def __init__(self, ipr: Any, conf: Path = _CONF) -> None:
        super().__init__(ipr)
        self._conf = conf
        #: parent -> (its sysctls before its first vmac, names of its vmacs)
        self._parents: dict[str, tuple[dict[str, str], set[str]]] = {}

    async def ensure(self, parent: str, name: str, mac: str) -> bool:
        """Make `name`, a private macvlan of `parent` with address `mac`, up.

        Returns:
            True if it was made, False if an earlier one was adopted.

        Raises:
            KernelError: no `parent`, an interface `name` that is not such a
                vmac (``errno`` EEXIST), or the kernel refused.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        async with self._lock:
            parent_index = int((await get_link(self._ipr, parent))["index"])
            made = False
            try:
                await self._adopt(name, parent_index, mac)
            except KernelError as exc:
                if exc.errno != errno.ENODEV:
                    raise
                try:
                    await self._ipr.link(
                        "add",
                        ifname=name,
                        kind="macvlan",
                        link=parent_index,
                        macvlan_mode="private",
                        address=mac,
                    )
                except (NetlinkError, OSError) as add:
                    raise kernel_error(add, f"add vmac {name} on {parent!r}") from add
                made = True
            self._configure(parent, name)
            index = int((await get_link(self._ipr, name))["index"])
            try:
                await self._ipr.link("set", index=index, state="up")
            except (NetlinkError, OSError) as exc:
                raise kernel_error(exc, f"set vmac {name} up") from exc
        log.info("netlink.vmac_ready", vmac=name, parent=parent, mac=mac, adopted=not made)
        return made

    async def _adopt(self, name: str, parent_index: int, mac: str) -> None:
        """Check that the existing `name` is the vmac we would make (ENODEV: none).

        Raises:
            KernelError: ENODEV when there is no `name`; EEXIST when it is something else.
        """
        link = await get_link(self._ipr, name)
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        ours = (
            kind == "macvlan"
            and link.get_attr("IFLA_LINK") == parent_index
            and str(link.get_attr("IFLA_ADDRESS")).lower() == mac
        )
        if not ours:
            raise KernelError(
                f"interface {name!r} exists and is not the vmac {mac} (a {kind or 'link'}): "
                "rename it or set vmac_interface",
                errno=errno.EEXIST,
                operation="add vmac",
            )

    def _configure(self, parent: str, name: str) -> None:
        if parent not in self._parents:
            saved = {key: self._read(parent, key) for key in _PARENT_SYSCTLS}
            self._parents[parent] = (saved, set())
        # Every time: a parent made again (a new ifindex) has the defaults again.
        for key, value in _PARENT_SYSCTLS.items():
            self._write(parent, key, value)
        self._parents[parent][1].add(name)
        for key, value in _VMAC_SYSCTLS.items():
            self._write(name, key, value)

    async def remove(self, parent: str, name: str) -> bool:
        """Delete `name`; restore `parent`'s ARP sysctls when it was its last vmac.

        Returns:
            True if it was deleted, False if it was not there.

        Raises:
            KernelError: the kernel refused.
        """
        from pyroute2.netlink.exceptions import NetlinkError

        async with self._lock:
            removed = True
            try:
                await self._ipr.link("del", ifname=name)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise kernel_error(exc, f"delete vmac {name}") from exc
                removed = False
            except OSError as exc:
                raise kernel_error(exc, f"delete vmac {name}") from exc
            saved, names = self._parents.get(parent, ({}, set()))
            names.discard(name)
            if not names and parent in self._parents:
                del self._parents[parent]
                for key, value in saved.items():
                    self._write(parent, key, value)
        log.info("netlink.vmac_removed", vmac=name, parent=parent)
        return removed

    def _read(self, interface: str, key: str) -> str:
        return (self._conf / interface / key).read_text().strip()

    def _write(self, interface: str, key: str, value: str) -> None:
        path = self._conf / interface / key
        try:
            path.write_text(value)
        except OSError as exc:
            # A parent that went away has no sysctls left to restore.
            log.warning("netlink.sysctl_failed", path=str(path), value=value, error=str(exc))
