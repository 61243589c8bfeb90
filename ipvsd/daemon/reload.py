"""The reload policy: when a new config is refused before anything changes.

A reload (SIGHUP, ``ipvsd reload [--force]``) first parses and validates the
file — a bad one is refused with its ``PATH:LINE: field: message`` errors.
A valid one is then checked against what runs, and refused (nothing touched)
when:

1. it configures services and the kernel has no IPVS (the running daemon
   stays a pure VRRP daemon);
2. it removes every VRRP instance while some run — a truncated file looks
   exactly like that, and it would drop every VIP — unless forced;
3. the plan the new desired table would cause now, against a fresh dump,
   deletes more kernel objects than ``ipvs.max_deletes`` (seesaw's rate
   limit on deletions) — unless forced; a kernel error while checking
   refuses the reload, since the guard could not be evaluated;
4. a new or changed VRRP instance names an interface this host does not
   have, as its own or as a VIP's or route's ``dev`` (the instance could not
   run; at start the same instance would wait in FAULT for the interface, but
   a reload is an operator at a prompt who wants to be told now).

``--force`` lifts 2 and 3 only; SIGHUP never forces. Only when every check
passes does the daemon apply the config (`ipvsd.daemon.root`), and a failure
while applying rolls back to the running config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from ipvsd.config import Config
from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.daemon.components import Components
from ipvsd.daemon.ports import IpvsKernel
from ipvsd.desired import desired_table
from ipvsd.errors import IpvsUnavailable, KernelError

FORCE_HINT = "`ipvsd reload --force` applies it anyway"


async def refusal(
    new: Config,
    parts: Components,
    open_ipvs: Callable[[], Awaitable[IpvsKernel]],
    *,
    interface_exists: Callable[[str], Awaitable[bool]],
    force: bool = False,
) -> str | None:
    """Why `new` must not be applied over the running `parts`, or None when it may.

    Args:
        new: the validated config the operator asked for.
        parts: what runs now.
        open_ipvs: opens an IPVS connection (to find out whether IPVS exists).
        interface_exists: whether this host has a network interface of that name.
        force: the operator insists (``ipvsd reload --force``): rules 2 and 3 pass.

    Returns:
        One line for the operator (also logged and counted as a failed reload).
    """
    if new.ipvs.services and parts.reconciler is None:
        try:
            client = await open_ipvs()
        except IpvsUnavailable as exc:
            return str(exc)
        client.close()
    running = parts.config.vrrp.instances
    if running and not new.vrrp.instances and not force:
        names = ", ".join(instance.name for instance in running)
        return (
            f"the new config has no VRRP instance: reloading would stop {names} and drop "
            f"every VIP; {FORCE_HINT}"
        )
    if parts.reconciler is not None and new.ipvs.max_deletes is not None and not force:
        try:
            _plan, refused = await parts.reconciler.preview(
                desired_table(new), new.ipvs.max_deletes
            )
        except KernelError as exc:
            return f"cannot check the reload against the kernel: {exc}"
        if refused:
            return f"{refused}; {FORCE_HINT}"
    return await _missing_interface(new, parts, interface_exists)


async def _missing_interface(
    new: Config, parts: Components, interface_exists: Callable[[str], Awaitable[bool]]
) -> str | None:
    running = {instance.name: instance for instance in parts.config.vrrp.instances}
    for index, instance in enumerate(new.vrrp.instances):
        if running.get(instance.name) == instance:
            continue  # unchanged: it runs, or waits in FAULT, as it did before
        for field, name in _interfaces(instance):
            if not await interface_exists(name):
                return (
                    f"vrrp.instances.{index}.{field}: no interface {name!r} on "
                    f"this host (instance {instance.name}); nothing was changed"
                )
    return None


def _interfaces(instance: VrrpInstanceConfig) -> Iterator[tuple[str, str]]:
    """(field, interface) of each interface `instance` names: its own, its VIPs' and its
    routes' ``dev`` (a vmac is made by the instance, so it is not one)."""
    yield "interface", instance.interface
    for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded", "virtual_routes"):
        for position, entry in enumerate(getattr(instance, key)):
            if entry.dev is not None and entry.dev != instance.advert_interface:
                yield f"{key}.{position}.dev", entry.dev
