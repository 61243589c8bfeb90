"""Adapters to the kernel over netlink: the only package that talks to pyroute2.

- `ipvs` — the IPVS generic-netlink client (dump, apply, timeouts, sync
  daemons); `wire` and `wire_daemon` are its message codecs.
- `addresses` — VIPs on interfaces (rtnetlink address writes).
- `routes` — the main routing table, read for the real-behind-a-VIP warning.
"""
