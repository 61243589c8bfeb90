"""VRRPv2 (RFC 3768): the virtual routers that own the VIPs.

Pure cores: `packet` (codec and receive checks), `machine` (the RFC 6.4
state machine), `sync_group`, `arp` (gratuitous-ARP frames), `relink`
(what a re-created interface means for its sockets), `backoff` (restart
waits of supervised tasks).
I/O: `transport` (raw sockets), `instance` (one virtual router's runner),
`router` (every instance with the sockets and link watch they share),
`notify` (notify programs, queued per instance), `ports` (the kernel
edges as Protocols).
"""
