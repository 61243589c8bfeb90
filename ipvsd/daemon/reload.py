"""The reload policy: when a new config is refused before anything changes.

A reload (SIGHUP, ``ipvsd reload``) first parses and validates the file — a
bad one is refused with its ``PATH:LINE: field: message`` errors. A valid
one is then checked against what runs:

1. services in a config that had none need IPVS in the kernel; without it
   the reload is refused (the running daemon stays a pure VRRP daemon);
2. ``ipvs.max_deletes`` (seesaw's rate limit on deletions): the plan the new
   desired table would cause now, against a fresh dump, must not delete more
   services than that. A kernel error while checking refuses the reload, since
   the guard could not be evaluated.

Only when every check passes does the daemon apply the config; nothing is
touched before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ipvsd.config import Config
from ipvsd.daemon.components import Components
from ipvsd.daemon.ports import IpvsKernel
from ipvsd.desired import desired_table
from ipvsd.errors import IpvsUnavailable, KernelError


async def refusal(
    new: Config, parts: Components, open_ipvs: Callable[[], Awaitable[IpvsKernel]]
) -> str | None:
    """Why `new` must not be applied over the running `parts`, or None when it may.

    Args:
        new: the validated config the operator asked for.
        parts: what runs now.
        open_ipvs: opens an IPVS connection (to find out whether IPVS exists).

    Returns:
        One line for the operator (also logged and counted as a failed reload).
    """
    if new.ipvs.services and parts.reconciler is None:
        try:
            client = await open_ipvs()
        except IpvsUnavailable as exc:
            return str(exc)
        client.close()
    if parts.reconciler is not None and new.ipvs.max_deletes is not None:
        try:
            _plan, refused = await parts.reconciler.preview(
                desired_table(new), new.ipvs.max_deletes
            )
        except KernelError as exc:
            return f"cannot check the reload against the kernel: {exc}"
        return refused
    return None
