"""Adapters to the kernel over netlink: the only package that talks to pyroute2.

- `ipvs` — the IPVS generic-netlink client (dump, apply, timeouts, sync
  daemons); `wire` and `wire_daemon` are its message codecs.
- `addresses` — VIPs on interfaces (rtnetlink address writes); `links` —
  link state and the link and address broadcasts. Both on raw rtnetlink:
  `rtmsg` is their codec, `rtsock` their request socket (no pyroute2 on the
  way to the first VRRP state); `delete_addresses` is the early step's.
- `virtual_routes`, `vmac` — an instance's routes and rules, and its vmac
  interface (pyroute2, opened at their first use).
- `routes` — the main routing table, read for the real-behind-a-VIP warning.
"""
