"""The IPVS table as ipvsd keeps it: what it should be, and keeping the kernel equal to it.

- `plan` — pure: the minimal ordered operations from the kernel's table to
  the desired one, and the delete guard.
- `reconciler` — the async driver: dump, plan, apply; on change and
  periodically; adopts at start.
- `sync_daemon` — the kernel's connection-sync daemon, following a VRRP
  instance's state.

The netlink adapter these drive is `ipvsd.netlink.ipvs`.
"""
