"""IPVS generic-netlink messages, encoded and decoded with `struct` (pure).

Why not pyroute2's message objects on this path: building and encoding one IPVS
message through ``ipvsmsg`` costs ~240 µs of CPU, and materialising a dump
costs ~29 kB per service (design.md). A director programming 40,000 dests or
exporting them at every scrape cannot afford either, so the hot path packs the
same bytes directly (~3 µs) and parses dumps attribute by attribute into the
frozen `ipvsd.model` records. pyroute2 still resolves the family and stays the
reference: tests check that these bytes decode identically with ``ipvsmsg``.

Layout (include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c)::

    nlmsghdr(len u32, type u16 = family id, flags u16, seq u32, pid u32)
    genlmsghdr(cmd u8, version u8 = 1, reserved u16)
    IPVS_CMD_ATTR_SERVICE (nested IPVS_SVC_ATTR_*)
    IPVS_CMD_ATTR_DEST    (nested IPVS_DEST_ATTR_*)
    IPVS_CMD_ATTR_DAEMON  (nested IPVS_DAEMON_ATTR_*: the sync daemons, `wire_daemon`)

Attributes are (len u16, type u16, value, pad to 4). Ports are big-endian
(except the sync daemon's multicast port), everything else host order.
Addresses are 16-byte ``nf_inet_addr`` unions (the sync daemon's multicast
group: 4 or 16 bytes). The IPv4 persistence netmask is a big-endian mask; the
IPv6 one a prefix length.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import assert_never

from ipvsd.errors import KernelError
from ipvsd.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Operation,
)
from ipvsd.model import (
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    IPAddress,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
)

# Netlink header constants (include/uapi/linux/netlink.h).
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

GENL_VERSION = 1

# IPVS commands.
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_SET_CONFIG = 12
CMD_GET_CONFIG = 13
CMD_GET_INFO = 15
CMD_ZERO = 16
CMD_FLUSH = 17

# IPVS_CMD_ATTR_*
ATTR_SERVICE = 1
ATTR_DEST = 2
ATTR_DAEMON = 3
ATTR_TIMEOUT_TCP = 4
ATTR_TIMEOUT_TCP_FIN = 5
ATTR_TIMEOUT_UDP = 6

# IPVS_SVC_ATTR_*
SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9
SVC_STATS = 10
SVC_PE_NAME = 11
SVC_STATS64 = 12

# IPVS_DEST_ATTR_*
DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ACTIVE_CONNS = 7
DEST_INACT_CONNS = 8
DEST_PERSIST_CONNS = 9
DEST_STATS = 10
DEST_ADDR_FAMILY = 11
DEST_STATS64 = 12
DEST_TUN_TYPE = 13  # Linux 5.2+: tunnel type, GUE port, checksum flags
DEST_TUN_PORT = 14
DEST_TUN_FLAGS = 15

# IPVS_INFO_ATTR_*
INFO_VERSION = 1
INFO_CONN_TAB_SIZE = 2


_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")
_FLAGS = struct.Struct("=II")
_ERRHDR = struct.Struct("=i")
HEADER_LEN = _NLMSGHDR.size + _GENLHDR.size  # 20
_ERROR_LEN = _NLMSGHDR.size + _ERRHDR.size  # an NLMSG_ERROR's header and code
MAX_ERRNO = 4095
"""Largest errno an NLMSG_ERROR may carry, negated (include/linux/err.h)."""

_ZERO12 = bytes(12)
# A dest's identity in one pack: DEST_ADDR (16 bytes), DEST_PORT (big-endian, as bytes),
# DEST_ADDR_FAMILY, each attribute padded to 4 bytes (what `nla`, `nla_be16`, `nla_u16` make).
_DEST_IDENTITY = struct.Struct("=HH16sHH2s2xHHH2x")
# What NEW/SET_DEST carry besides the identity: forwarding method, weight, thresholds.
_DEST_SETTINGS = struct.Struct("=HHIHHIHHIHHI")
_HEADERS = struct.Struct("=IHHIIBBH")


class WireError(KernelError):
    """The kernel sent something this codec cannot parse (a bug or a new kernel).

    A `KernelError`, so a reconcile pass, a scrape or a status request that
    meets one logs and counts it and tries again, as for any kernel refusal,
    instead of ending the daemon.

    The only exception the decoders raise for malformed bytes: every length is
    checked before it is read, and a record's value errors (a short address, an
    unknown family, bytes that are not UTF-8) are turned into this.
    """


def nla(attr_type: int, value: bytes) -> bytes:
    """One attribute, padded to a 4-byte boundary."""
    length = 4 + len(value)
    return _NLA.pack(length, attr_type) + value + bytes(-length & 3)


def nla_u16(attr_type: int, value: int) -> bytes:
    return _NLA.pack(6, attr_type) + _U16.pack(value) + b"\0\0"


def nla_u32(attr_type: int, value: int) -> bytes:
    return _NLA.pack(8, attr_type) + _U32.pack(value)


def nla_u8(attr_type: int, value: int) -> bytes:
    return _NLA.pack(5, attr_type) + bytes((value, 0, 0, 0))


def nla_be16(attr_type: int, value: int) -> bytes:
    return _NLA.pack(6, attr_type) + _BE16.pack(value) + b"\0\0"


def nla_str(attr_type: int, value: str) -> bytes:
    return nla(attr_type, value.encode() + b"\0")


def address_bytes(address: IPAddress) -> bytes:
    """The 16-byte nf_inet_addr union for an address."""
    packed = address.packed
    return packed + _ZERO12 if len(packed) == 4 else packed


def header(family_id: int, cmd: int, payload_len: int, flags: int, seq: int) -> bytes:
    """nlmsghdr + genlmsghdr for a message whose attributes take `payload_len` bytes."""
    return _HEADERS.pack(HEADER_LEN + payload_len, family_id, flags, seq, 0, cmd, GENL_VERSION, 0)


def message(family_id: int, cmd: int, payload: bytes, flags: int, seq: int) -> bytes:
    return header(family_id, cmd, len(payload), flags, seq) + payload


# --- services -----------------------------------------------------------------------------


def service_identity(key: ServiceKey) -> bytes:
    """The attributes that name a service (what DEL/GET and every dest op carry)."""
    if key.fwmark:
        return nla_u16(SVC_AF, key.family) + nla_u32(SVC_FWMARK, key.fwmark)
    assert key.address is not None
    return (
        nla_u16(SVC_AF, key.family)
        + nla_u16(SVC_PROTOCOL, key.protocol)
        + nla(SVC_ADDR, address_bytes(key.address))
        + nla_be16(SVC_PORT, key.port)
    )


def netmask_value(family: Family, prefix: int) -> int:
    """The kernel's NETMASK attribute value for a prefix length."""
    if family is Family.INET6:
        return prefix
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return int.from_bytes(mask.to_bytes(4, "big"), sys.byteorder)


def netmask_prefix(family: Family, value: int) -> int:
    """Inverse of `netmask_value`."""
    if family is Family.INET6:
        return value
    mask = int.from_bytes(_U32.pack(value), "big")
    return bin(mask).count("1")


def service_attrs(key: ServiceKey, attrs: ServiceAttrs) -> bytes:
    """Identity + the full entry NEW/SET_SERVICE require (sched, flags, timeout, netmask)."""
    flags = attrs.flags & ~ServiceFlag.HASHED
    body = (
        service_identity(key)
        + nla_str(SVC_SCHED_NAME, attrs.scheduler)
        + nla(SVC_FLAGS, _FLAGS.pack(flags, 0xFFFFFFFF))
        + nla_u32(SVC_TIMEOUT, attrs.timeout)
        + nla_u32(SVC_NETMASK, netmask_value(key.family, attrs.netmask))
    )
    if attrs.pe_name:
        body += nla_str(SVC_PE_NAME, attrs.pe_name)
    return body


def dest_identity(key: DestKey) -> bytes:
    """DEST_ADDR, DEST_PORT and DEST_ADDR_FAMILY, in one pack (50,000 of them at a big start)."""
    address = key.address.packed
    return _DEST_IDENTITY.pack(
        20,
        DEST_ADDR,
        address,  # `pack` pads an IPv4 address's 4 bytes to the union's 16 with zeros
        6,
        DEST_PORT,
        key.port.to_bytes(2, "big"),
        6,
        DEST_ADDR_FAMILY,
        Family.INET if len(address) == 4 else Family.INET6,
    )


def dest_settings(attrs: DestAttrs) -> bytes:
    """What NEW/SET_DEST carry besides the identity (`dest_attrs`)."""
    body = _DEST_SETTINGS.pack(
        8,
        DEST_FWD_METHOD,
        attrs.forward.kernel_value,
        8,
        DEST_WEIGHT,
        attrs.weight,
        8,
        DEST_U_THRESH,
        attrs.upper_threshold,
        8,
        DEST_L_THRESH,
        attrs.lower_threshold,
    )
    if attrs.forward is ForwardMethod.TUNNEL:
        # Always for tunnel reals: an edit without them resets the kernel's
        # tunnel settings to IPIP (ip_vs_genl_parse_dest zeroes what is absent).
        # Never for the others, so kernels before 5.2 see nothing new.
        body += (
            nla_u8(DEST_TUN_TYPE, attrs.tunnel_type)
            + nla_be16(DEST_TUN_PORT, attrs.tunnel_port)
            + nla_u16(DEST_TUN_FLAGS, attrs.tunnel_checksum)
        )
    return body


def dest_attrs(key: DestKey, attrs: DestAttrs) -> bytes:
    return dest_identity(key) + dest_settings(attrs)


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One netlink message from the kernel: an ack/error, a dump record, or the dump's end."""

    msg_type: int
    flags: int
    seq: int
    error: int  # negative errno for NLMSG_ERROR (0 = ack), else 0
    payload: memoryview  # genl attributes (after the genl header) for data messages


def iter_replies(buf: memoryview) -> Iterator[Reply]:
    """Split one received datagram into messages.

    Raises:
        WireError: a message overruns the datagram, an NLMSG_ERROR is too
            short for its code or carries no negative errno, or bytes too few
            for a header are left over (the kernel sends whole, aligned
            messages only).
    """
    offset = 0
    end = len(buf)
    while offset + _NLMSGHDR.size <= end:
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if length < _NLMSGHDR.size or offset + length > end:
            raise WireError(f"truncated netlink message (len={length})")
        if msg_type == NLMSG_ERROR:
            if length < _ERROR_LEN:
                raise WireError(f"truncated netlink error reply (len={length})")
            (error,) = _ERRHDR.unpack_from(buf, offset + _NLMSGHDR.size)
            if not -MAX_ERRNO <= error <= 0:
                raise WireError(f"netlink error reply with a bad error code ({error})")
            yield Reply(msg_type, flags, seq, error, buf[offset + 16 : offset + length])
        else:
            yield Reply(msg_type, flags, seq, 0, buf[offset + HEADER_LEN : offset + length])
        offset += (length + 3) & ~3
    if offset < end:
        raise WireError(f"{end - offset} bytes after the last netlink message")


def iter_attrs(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(type, value) pairs of a flat attribute stream."""
    offset = 0
    end = len(buf)
    while offset + 4 <= end:
        length, attr_type = _NLA.unpack_from(buf, offset)
        if length < 4 or offset + length > end:
            raise WireError(f"truncated netlink attribute (type={attr_type}, len={length})")
        yield attr_type & NLA_TYPE_MASK, buf[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def uint_value(value: memoryview) -> int:
    """An unsigned attribute of 1, 2, 4 or 8 bytes, host order."""
    return int.from_bytes(value, sys.byteorder)


def string_value(value: memoryview | bytes) -> str:
    """A NUL-terminated string attribute."""
    return bytes(value).split(b"\0", 1)[0].decode()


def parse_u32_attrs(payload: memoryview) -> dict[int, int]:
    """A flat list of u32 attributes (GET_CONFIG timeouts, GET_INFO)."""
    return {attr_type: uint_value(value) for attr_type, value in iter_attrs(payload)}


# --- operations ---------------------------------------------------------------------------


class Encoder:
    """Encodes reconcile operations into IPVS requests for one family id.

    The nested service identity is cached per key: every dest operation carries
    it, and a service's dests are usually changed together.
    """

    _CACHE_LIMIT = 100_000

    def __init__(self, family_id: int) -> None:
        self._family = family_id
        self._identities: dict[ServiceKey, bytes] = {}
        self._service_nlas: dict[ServiceKey, bytes] = {}
        self._settings: dict[int, tuple[DestAttrs, bytes]] = {}
        """`dest_settings` by the id of a `DestAttrs` held here (a big table has a handful,
        shared: hashing one costs more than encoding it)."""

    def identity(self, key: ServiceKey) -> bytes:
        cached = self._identities.get(key)
        if cached is None:
            if len(self._identities) >= self._CACHE_LIMIT:
                self._identities.clear()
            cached = self._identities[key] = service_identity(key)
        return cached

    def _service(self, key: ServiceKey) -> bytes:
        """``nla(ATTR_SERVICE, self.identity(key))``, cached likewise."""
        cached = self._service_nlas.get(key)
        if cached is None:
            if len(self._service_nlas) >= self._CACHE_LIMIT:
                self._service_nlas.clear()
            cached = self._service_nlas[key] = nla(ATTR_SERVICE, self.identity(key))
        return cached

    def _dest(self, key: DestKey, attrs: DestAttrs) -> bytes:
        """``nla(ATTR_DEST, dest_attrs(key, attrs))``, the settings' part cached."""
        cached = self._settings.get(id(attrs))
        if cached is None or cached[0] is not attrs:
            if len(self._settings) >= self._CACHE_LIMIT:
                self._settings.clear()
            cached = self._settings[id(attrs)] = (attrs, dest_settings(attrs))
        identity = dest_identity(key)
        settings = cached[1]
        return _NLA.pack(4 + len(identity) + len(settings), ATTR_DEST) + identity + settings

    def encode(self, operation: Operation, seq: int, *, ack: bool = True) -> bytes:
        """The netlink request for one operation; with NLM_F_ACK unless not `ack`
        (the kernel acks a failed request either way)."""
        match operation:  # the dests first: most of a big start's operations
            case AddDest(service=svc, key=key, attrs=attrs):
                cmd, payload = CMD_NEW_DEST, self._service(svc) + self._dest(key, attrs)
            case EditDest(service=svc, key=key, attrs=attrs):
                cmd, payload = CMD_SET_DEST, self._service(svc) + self._dest(key, attrs)
            case DeleteDest(service=svc, key=key):
                cmd = CMD_DEL_DEST
                payload = self._service(svc) + nla(ATTR_DEST, dest_identity(key))
            case AddService(key=key, attrs=attrs):
                cmd, payload = CMD_NEW_SERVICE, nla(ATTR_SERVICE, service_attrs(key, attrs))
            case EditService(key=key, attrs=attrs):
                cmd, payload = CMD_SET_SERVICE, nla(ATTR_SERVICE, service_attrs(key, attrs))
            case DeleteService(key=key):
                cmd, payload = CMD_DEL_SERVICE, self._service(key)
            case _:
                assert_never(operation)
        flags = NLM_F_REQUEST | NLM_F_ACK if ack else NLM_F_REQUEST
        return message(self._family, cmd, payload, flags, seq)
