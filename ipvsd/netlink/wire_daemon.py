"""IPVS connection-sync daemon messages (NEW/DEL/GET_DAEMON), encoded with `struct`.

The sync daemon is the kernel thread ``ipvsadm --start-daemon`` starts: a
master multicasts its connection table, a backup applies what it receives
(see `ipvsd.ipvs.sync_daemon`). Its requests carry one nested
IPVS_CMD_ATTR_DAEMON; the codec style and helpers are `ipvsd.netlink.wire`'s.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ipvsd.model import IPAddress
from ipvsd.netlink.wire import (
    ATTR_DAEMON,
    WireError,
    iter_attrs,
    nla,
    nla_str,
    nla_u8,
    nla_u16,
    nla_u32,
    string_value,
    uint_value,
)

# IPVS_DAEMON_ATTR_* (SYNC_MAXLEN and later since Linux 4.7)
DAEMON_STATE = 1
DAEMON_MCAST_IFN = 2
DAEMON_SYNC_ID = 3
DAEMON_SYNC_MAXLEN = 4
DAEMON_MCAST_GROUP = 5
DAEMON_MCAST_GROUP6 = 6
DAEMON_MCAST_PORT = 7
DAEMON_MCAST_TTL = 8


class SyncState(enum.IntEnum):
    """A sync daemon's role, as IP_VS_STATE_MASTER / IP_VS_STATE_BACKUP number it."""

    MASTER = 1
    BACKUP = 2


@dataclass(frozen=True, slots=True)
class SyncDaemon:
    """One IPVS connection-sync daemon (``ipvsadm --start-daemon``).

    The kernel runs at most one master and one backup per network namespace.
    The zero / None values of the optional fields ask for the kernel's default
    and are what a request leaves out; a dump reports the values in force.

    Attributes:
        state: master (sends the connection table) or backup (receives it).
        interface: the multicast interface (at most 15 characters).
        sync_id: the SyncID; a backup only takes messages with its own.
        sync_maxlen: UDP payload size; 0: from the interface's MTU.
        mcast_group: multicast group; None: 224.0.0.81.
        mcast_port: base UDP port; 0: 8848.
        mcast_ttl: multicast TTL; 0: 1.
    """

    state: SyncState
    interface: str
    sync_id: int
    sync_maxlen: int = 0
    mcast_group: IPAddress | None = None
    mcast_port: int = 0
    mcast_ttl: int = 0

    def satisfies(self, wanted: SyncDaemon) -> bool:
        """Whether this running daemon is `wanted`, whose defaults match any value.

        `sync_maxlen` is not compared: the kernel clamps and rounds the request
        (1000 runs as 1024 in Linux 6.1), so the running value may differ.
        """
        return (
            self.state is wanted.state
            and self.interface == wanted.interface
            and self.sync_id == wanted.sync_id
            and wanted.mcast_group in (None, self.mcast_group)
            and wanted.mcast_port in (0, self.mcast_port)
            and wanted.mcast_ttl in (0, self.mcast_ttl)
        )


def daemon_attrs(daemon: SyncDaemon) -> bytes:
    """The IPVS_CMD_ATTR_DAEMON body of a NEW_DAEMON request.

    STATE, MCAST_IFN and SYNC_ID are mandatory (ip_vs_genl_new_daemon returns
    EINVAL without them); the others are sent only when set, so kernels older
    than 4.7, which reject unknown attributes, still start a default daemon.
    """
    body = (
        nla_u32(DAEMON_STATE, daemon.state)
        + nla_str(DAEMON_MCAST_IFN, daemon.interface)
        + nla_u32(DAEMON_SYNC_ID, daemon.sync_id)
    )
    # The order ipvsadm (libipvs) uses, so that its bytes are our golden test.
    if daemon.sync_maxlen:
        body += nla_u16(DAEMON_SYNC_MAXLEN, daemon.sync_maxlen)
    if daemon.mcast_port:
        # Host order, unlike every other port in IPVS: the kernel adds the
        # thread number to it before htons() (get_mcast_sockaddr).
        body += nla_u16(DAEMON_MCAST_PORT, daemon.mcast_port)
    if daemon.mcast_ttl:
        body += nla_u8(DAEMON_MCAST_TTL, daemon.mcast_ttl)
    if isinstance(daemon.mcast_group, IPv4Address):
        body += nla(DAEMON_MCAST_GROUP, daemon.mcast_group.packed)  # nla_get_in_addr: as is
    elif isinstance(daemon.mcast_group, IPv6Address):
        body += nla(DAEMON_MCAST_GROUP6, daemon.mcast_group.packed)
    return body


def daemon_state_attrs(state: SyncState) -> bytes:
    """The IPVS_CMD_ATTR_DAEMON body of a DEL_DAEMON request.

    ip_vs_genl_del_daemon reads only STATE (ipvsadm adds an empty MCAST_IFN and
    a SYNC_ID of 0, which the kernel ignores).
    """
    return nla_u32(DAEMON_STATE, state)


def parse_daemon(payload: memoryview) -> SyncDaemon:
    """A GET_DAEMON dump record → SyncDaemon.

    Raises:
        WireError: the record is malformed.
    """
    for attr_type, value in iter_attrs(payload):
        if attr_type == ATTR_DAEMON:
            try:
                return _parse_daemon_attrs(value)
            except (ValueError, struct.error) as exc:
                raise WireError(f"malformed sync daemon record: {exc}") from exc
    raise WireError("sync daemon record without IPVS_CMD_ATTR_DAEMON")


def _parse_daemon_attrs(buf: memoryview) -> SyncDaemon:
    state = sync_id = maxlen = port = ttl = 0
    interface: str | None = None
    group: IPAddress | None = None
    for attr_type, value in iter_attrs(buf):
        if attr_type == DAEMON_STATE:
            state = uint_value(value)
        elif attr_type == DAEMON_MCAST_IFN:
            interface = string_value(value)
        elif attr_type == DAEMON_SYNC_ID:
            sync_id = uint_value(value)
        elif attr_type == DAEMON_SYNC_MAXLEN:
            maxlen = uint_value(value[:2])
        elif attr_type == DAEMON_MCAST_GROUP:
            group = IPv4Address(bytes(value[:4]))
        elif attr_type == DAEMON_MCAST_GROUP6:
            group = IPv6Address(bytes(value[:16]))
        elif attr_type == DAEMON_MCAST_PORT:
            port = uint_value(value[:2])
        elif attr_type == DAEMON_MCAST_TTL:
            ttl = uint_value(value[:1])
    if interface is None:
        raise WireError("sync daemon record without interface")
    return SyncDaemon(SyncState(state), interface, sync_id, maxlen, group, port, ttl)
