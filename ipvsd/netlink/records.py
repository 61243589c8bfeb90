"""IPVS dump records → `ipvsd.model` services and dests (pure).

Two ways to one result:

* the general walk reads a record attribute by attribute, whatever order,
  sizes or extra attributes a kernel sends;
* the compiled way (`ipvsd.netlink.layout`) unpacks a record in one call when
  it has the layout of an earlier record of the same length, which is every
  record but the first of a dump. A 10,000 x 4 scrape parses 50,000 records;
  the walk cost 24 µs per dest record natively on the UML kernel's layout,
  the compiled way about 5, most of it building the model objects.

A layout is only compiled where its values mean what the walk would read
(sizes checked once, at compile time); anything else, including every
malformed record, takes the walk, which raises `WireError` for it. Both ways
end in the same constructors (`_service`, `_dest`), and the tests parse each
record both ways.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from socket import ntohs
from typing import Any

from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Family,
    ForwardMethod,
    IPAddress,
    Protocol,
    Service,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Stats,
    TunnelChecksum,
    TunnelType,
)
from ipvsd.netlink.layout import Path, RecordLayout, compile_layout
from ipvsd.netlink.wire import (
    ATTR_DEST,
    ATTR_SERVICE,
    DEST_ACTIVE_CONNS,
    DEST_ADDR,
    DEST_ADDR_FAMILY,
    DEST_FWD_METHOD,
    DEST_INACT_CONNS,
    DEST_L_THRESH,
    DEST_PERSIST_CONNS,
    DEST_PORT,
    DEST_STATS,
    DEST_STATS64,
    DEST_TUN_FLAGS,
    DEST_TUN_PORT,
    DEST_TUN_TYPE,
    DEST_U_THRESH,
    DEST_WEIGHT,
    SVC_ADDR,
    SVC_AF,
    SVC_FLAGS,
    SVC_FWMARK,
    SVC_NETMASK,
    SVC_PE_NAME,
    SVC_PORT,
    SVC_PROTOCOL,
    SVC_SCHED_NAME,
    SVC_STATS,
    SVC_STATS64,
    SVC_TIMEOUT,
    WireError,
    iter_attrs,
    netmask_prefix,
    string_value,
    uint_value,
)

_BE16 = struct.Struct("!H")
_FLAGS = struct.Struct("=II")  # ip_vs_flags: flags, then a mask (which only requests use)
_STATS_TYPES = range(1, 11)  # IPVS_STATS_ATTR_CONNS .. IPVS_STATS_ATTR_OUTBPS


# --- the general walk -----------------------------------------------------------------------


def parse_stats(value: memoryview) -> Stats:
    """IPVS_STATS_ATTR_* (1..10) → Stats; PAD and unknown attributes are ignored."""
    values = [0] * 10
    for attr_type, attr_value in iter_attrs(value):
        if 1 <= attr_type <= 10:
            values[attr_type - 1] = uint_value(attr_value)
    return Stats(*values)


def parse_service(payload: memoryview, *, with_stats: bool = True) -> Service:
    """A GET_SERVICE dump record → Service (without dests).

    Raises:
        WireError: the record is malformed.
    """
    compiled = _SERVICE_LAYOUTS.fields(payload)
    if compiled is None:
        return walk_service(payload, with_stats=with_stats)
    try:
        return _compiled_service(*compiled, with_stats)
    except (ValueError, struct.error) as exc:
        raise WireError(f"malformed service record: {exc}") from exc


def parse_dest(payload: memoryview, service_family: int, *, with_stats: bool = True) -> Dest:
    """A GET_DEST dump record → Dest (with counters).

    Raises:
        WireError: the record is malformed.
    """
    compiled = _DEST_LAYOUTS.fields(payload)
    if compiled is None:
        return walk_dest(payload, service_family, with_stats=with_stats)
    try:
        return _compiled_dest(*compiled, service_family, with_stats)
    except (ValueError, struct.error) as exc:
        raise WireError(f"malformed dest record: {exc}") from exc


def walk_service(payload: memoryview, *, with_stats: bool = True) -> Service:
    """`parse_service` the general way, attribute by attribute."""
    for attr_type, value in iter_attrs(payload):
        if attr_type == ATTR_SERVICE:
            try:
                return _parse_service_attrs(value, with_stats)
            except (ValueError, struct.error) as exc:
                raise WireError(f"malformed service record: {exc}") from exc
    raise WireError("service record without IPVS_CMD_ATTR_SERVICE")


def walk_dest(payload: memoryview, service_family: int, *, with_stats: bool = True) -> Dest:
    """`parse_dest` the general way, attribute by attribute."""
    for attr_type, value in iter_attrs(payload):
        if attr_type == ATTR_DEST:
            try:
                return _parse_dest_attrs(value, service_family, with_stats)
            except (ValueError, struct.error) as exc:
                raise WireError(f"malformed dest record: {exc}") from exc
    raise WireError("dest record without IPVS_CMD_ATTR_DEST")


def _parse_service_attrs(buf: memoryview, with_stats: bool) -> Service:
    family = protocol = port = fwmark = timeout = netmask = flags = 0
    addr: memoryview | None = None
    scheduler = pe_name = ""
    stats: Stats | None = None
    stats32: memoryview | None = None
    for attr_type, value in iter_attrs(buf):
        if attr_type == SVC_AF:
            family = uint_value(value)
        elif attr_type == SVC_PROTOCOL:
            protocol = uint_value(value)
        elif attr_type == SVC_ADDR:
            addr = value
        elif attr_type == SVC_PORT:
            port = _be16(value)
        elif attr_type == SVC_FWMARK:
            fwmark = uint_value(value)
        elif attr_type == SVC_SCHED_NAME:
            scheduler = string_value(value)
        elif attr_type == SVC_FLAGS:
            flags = _FLAGS.unpack_from(value)[0]
        elif attr_type == SVC_TIMEOUT:
            timeout = uint_value(value)
        elif attr_type == SVC_NETMASK:
            netmask = uint_value(value)
        elif attr_type == SVC_PE_NAME:
            pe_name = string_value(value)
        elif with_stats and attr_type == SVC_STATS64:
            stats = parse_stats(value)
        elif with_stats and attr_type == SVC_STATS:
            stats32 = value
    if stats is None and stats32 is not None:
        stats = parse_stats(stats32)  # kernels before 4.1 have no STATS64
    return _service(
        family, protocol, addr, port, fwmark, scheduler, flags, timeout, netmask, pe_name, stats
    )


def _parse_dest_attrs(buf: memoryview, family: int, with_stats: bool) -> Dest:
    addr: memoryview | None = None
    port = fwd = weight = u_thresh = l_thresh = active = inactive = persistent = 0
    tun_type = tun_port = tun_flags = 0
    stats: Stats | None = None
    stats32: memoryview | None = None
    for attr_type, value in iter_attrs(buf):
        if attr_type == DEST_ADDR:
            addr = value
        elif attr_type == DEST_PORT:
            port = _be16(value)
        elif attr_type == DEST_FWD_METHOD:
            fwd = uint_value(value)
        elif attr_type == DEST_WEIGHT:
            weight = uint_value(value)
        elif attr_type == DEST_U_THRESH:
            u_thresh = uint_value(value)
        elif attr_type == DEST_L_THRESH:
            l_thresh = uint_value(value)
        elif attr_type == DEST_ACTIVE_CONNS:
            active = uint_value(value)
        elif attr_type == DEST_INACT_CONNS:
            inactive = uint_value(value)
        elif attr_type == DEST_PERSIST_CONNS:
            persistent = uint_value(value)
        elif attr_type == DEST_ADDR_FAMILY:
            family = uint_value(value)
        elif attr_type == DEST_TUN_TYPE:
            tun_type = uint_value(value[:1])
        elif attr_type == DEST_TUN_PORT:
            tun_port = _be16(value)
        elif attr_type == DEST_TUN_FLAGS:
            tun_flags = uint_value(value[:2])
        elif with_stats and attr_type == DEST_STATS64:
            stats = parse_stats(value)
        elif with_stats and attr_type == DEST_STATS:
            stats32 = value
    if stats is None and stats32 is not None:
        stats = parse_stats(stats32)
    return _dest(
        addr,
        family,
        port,
        fwd,
        weight,
        u_thresh,
        l_thresh,
        active,
        inactive,
        persistent,
        tun_type,
        tun_port,
        tun_flags,
        stats,
    )


# --- the model objects, whichever way the values were read -----------------------------------


def _service(
    family: int,
    protocol: int,
    addr: memoryview | bytes | None,
    port: int,
    fwmark: int,
    scheduler: str,
    flags: int,
    timeout: int,
    netmask: int,
    pe_name: str,
    stats: Stats | None,
) -> Service:
    fam = Family(family)
    if fwmark:
        key = ServiceKey(fam, Protocol.TCP, None, 0, fwmark)
    else:
        if addr is None:
            raise WireError("service record without address or fwmark")
        key = ServiceKey(fam, Protocol(protocol), _address(family, addr), port)
    attrs = ServiceAttrs(
        scheduler=scheduler,
        flags=ServiceFlag(flags & ~ServiceFlag.HASHED),
        timeout=timeout,
        netmask=netmask_prefix(fam, netmask),
        pe_name=pe_name,
    )
    return Service(key, attrs, {}, stats)


def _dest(
    addr: memoryview | bytes | None,
    family: int,
    port: int,
    fwd: int,
    weight: int,
    u_thresh: int,
    l_thresh: int,
    active: int,
    inactive: int,
    persistent: int,
    tun_type: int,
    tun_port: int,
    tun_flags: int,
    stats: Stats | None,
) -> Dest:
    if addr is None:
        raise WireError("dest record without address")
    counters = DestCounters(active, inactive, persistent, stats if stats is not None else Stats())
    if tun_type or tun_port or tun_flags:
        attrs = DestAttrs(
            ForwardMethod.from_kernel(fwd),
            weight,
            u_thresh,
            l_thresh,
            TunnelType(tun_type),
            tun_port,
            TunnelChecksum(tun_flags),
        )
    else:  # every NAT / DR real and plain IPIP: no enum lookups on the dump's hot path
        attrs = DestAttrs(ForwardMethod.from_kernel(fwd), weight, u_thresh, l_thresh)
    return Dest(DestKey(_address(family, addr), port), attrs, counters)


def _be16(value: memoryview) -> int:
    return int(_BE16.unpack_from(value)[0])


def _address(family: int, value: memoryview | bytes) -> IPAddress:
    if family == Family.INET6:
        return IPv6Address(bytes(value[:16]))
    return IPv4Address(bytes(value[:4]))


# --- the compiled way ------------------------------------------------------------------------

# What a field reads where the layout has no such attribute (`RecordLayout.picker`).
_DEFAULTS = (0, None, b"")
_ZERO, _NONE, _EMPTY = range(3)
# A kernel writes a few layouts (one per record length); more means something odd.
_MAX_LAYOUTS = 16
_UINT_SIZES = frozenset({1, 2, 4, 8})


@dataclass(frozen=True, slots=True)
class _Compiled:
    layout: RecordLayout
    scalars: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    stats: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None


class _Layouts:
    """The compiled layouts of one kind of record, by record length."""

    def __init__(self, compile_record: Callable[[memoryview], _Compiled | None]) -> None:
        self._compile = compile_record
        # None: a length whose layout the compiled way cannot read.
        self._by_length: dict[int, _Compiled | None] = {}

    def fields(self, record: memoryview) -> tuple[_Compiled, tuple[Any, ...]] | None:
        """The record's compiled reader and its fields (defaults appended), or None."""
        try:
            compiled = self._by_length[len(record)]
        except KeyError:
            if len(self._by_length) >= _MAX_LAYOUTS:
                return None
            # Threads may race here; both compile the same layout.
            compiled = self._by_length[len(record)] = self._compile(record)
        if compiled is None:
            return None
        fields = compiled.layout.fields(record)
        return None if fields is None else (compiled, fields + _DEFAULTS)


def _stats_picker(
    layout: RecordLayout, prefix: Path, stats64: int, stats32: int
) -> tuple[bool, Callable[[tuple[Any, ...]], tuple[Any, ...]] | None]:
    """(readable, the ten counters' picker): STATS64 if the record has it, else
    STATS, else no picker. Not readable when a counter is not an unsigned int
    of a size the walk reads the same way."""
    for nest in (stats64, stats32):
        base = (*prefix, nest)
        if base in layout.sizes:
            paths = [(*base, attr_type) for attr_type in _STATS_TYPES]
            if any(layout.sizes.get(path, 8) not in _UINT_SIZES for path in paths):
                return False, None
            return True, layout.picker((path, _ZERO) for path in paths)
    return True, None


def _compile(
    record: memoryview,
    nest: int,
    scalars: tuple[tuple[int, int, frozenset[int]], ...],
    stats: tuple[int, int],
) -> _Compiled | None:
    """A compiled reader, if every field of `scalars` — (attribute type, default,
    allowed sizes; empty: raw bytes of any size) — has an allowed size."""
    raw = frozenset((nest, attr) for attr, _, sizes in scalars if not sizes)
    try:
        layout = compile_layout(
            record, nested=frozenset({(nest,), (nest, stats[0]), (nest, stats[1])}), raw=raw
        )
    except WireError:
        return None
    if layout.repeats_nest or (nest,) not in layout.sizes:
        return None
    for attr, _, sizes in scalars:
        size = layout.sizes.get((nest, attr))
        if size is not None and sizes and size not in sizes:
            return None
    readable, counters = _stats_picker(layout, (nest,), *stats)
    if not readable:
        return None
    pick = layout.picker(((nest, attr), default) for attr, default, _ in scalars)
    return _Compiled(layout, pick, counters)


_PORT = frozenset({2})
_RAW: frozenset[int] = frozenset()
_DEST_SCALARS = (
    (DEST_ADDR, _NONE, _RAW),
    (DEST_ADDR_FAMILY, _NONE, _UINT_SIZES),
    (DEST_PORT, _ZERO, _PORT),
    (DEST_FWD_METHOD, _ZERO, _UINT_SIZES),
    (DEST_WEIGHT, _ZERO, _UINT_SIZES),
    (DEST_U_THRESH, _ZERO, _UINT_SIZES),
    (DEST_L_THRESH, _ZERO, _UINT_SIZES),
    (DEST_ACTIVE_CONNS, _ZERO, _UINT_SIZES),
    (DEST_INACT_CONNS, _ZERO, _UINT_SIZES),
    (DEST_PERSIST_CONNS, _ZERO, _UINT_SIZES),
    (DEST_TUN_TYPE, _ZERO, frozenset({1})),
    (DEST_TUN_PORT, _ZERO, _PORT),
    (DEST_TUN_FLAGS, _ZERO, frozenset({2})),
)
_SERVICE_SCALARS = (
    (SVC_AF, _ZERO, _UINT_SIZES),
    (SVC_PROTOCOL, _ZERO, _UINT_SIZES),
    (SVC_ADDR, _NONE, _RAW),
    (SVC_PORT, _ZERO, _PORT),
    (SVC_FWMARK, _ZERO, _UINT_SIZES),
    (SVC_SCHED_NAME, _EMPTY, _RAW),
    (SVC_FLAGS, _NONE, _RAW),
    (SVC_TIMEOUT, _ZERO, _UINT_SIZES),
    (SVC_NETMASK, _ZERO, _UINT_SIZES),
    (SVC_PE_NAME, _EMPTY, _RAW),
)


def _compile_dest(record: memoryview) -> _Compiled | None:
    return _compile(record, ATTR_DEST, _DEST_SCALARS, (DEST_STATS64, DEST_STATS))


def _compile_service(record: memoryview) -> _Compiled | None:
    compiled = _compile(record, ATTR_SERVICE, _SERVICE_SCALARS, (SVC_STATS64, SVC_STATS))
    flags_size = None if compiled is None else compiled.layout.sizes.get((ATTR_SERVICE, SVC_FLAGS))
    if flags_size is not None and flags_size < _FLAGS.size:
        return None  # the walk raises for it
    return compiled


_DEST_LAYOUTS = _Layouts(_compile_dest)
_SERVICE_LAYOUTS = _Layouts(_compile_service)


def _compiled_dest(
    compiled: _Compiled, fields: tuple[Any, ...], service_family: int, with_stats: bool
) -> Dest:
    (addr, family, port, fwd, weight, u_thresh, l_thresh, active, inactive, persistent,
     tun_type, tun_port, tun_flags) = compiled.scalars(fields)  # fmt: skip
    counters = compiled.stats(fields) if with_stats and compiled.stats else None
    return _dest(
        addr,
        service_family if family is None else family,
        ntohs(port),
        fwd,
        weight,
        u_thresh,
        l_thresh,
        active,
        inactive,
        persistent,
        tun_type,
        ntohs(tun_port),
        tun_flags,
        None if counters is None else Stats(*counters),
    )


def _compiled_service(compiled: _Compiled, fields: tuple[Any, ...], with_stats: bool) -> Service:
    (family, protocol, addr, port, fwmark, scheduler, flags, timeout, netmask,
     pe_name) = compiled.scalars(fields)  # fmt: skip
    counters = compiled.stats(fields) if with_stats and compiled.stats else None
    return _service(
        family,
        protocol,
        addr,
        ntohs(port),
        fwmark,
        string_value(scheduler),
        0 if flags is None else _FLAGS.unpack_from(flags)[0],
        timeout,
        netmask,
        string_value(pe_name),
        None if counters is None else Stats(*counters),
    )
