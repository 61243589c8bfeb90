"""Dump records parse the same whichever way they are read (`ipvsd.netlink.records`).

The compiled way (one unpack per record of a known layout) must give exactly
what the general walk gives, for the kernel's real records and for every
layout variation a kernel may send; a record of the same length but another
structure must never be read through a layout compiled for the first.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvsd.model import DestCounters, DestKey, Family, ForwardMethod, Protocol, Stats
from ipvsd.netlink import records, wire
from ipvsd.netlink.layout import compile_layout

RECORDS = Path(__file__).parent.parent / "data" / "ipvs" / "uml-6.1-records.txt"


@pytest.fixture(autouse=True)
def fresh_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test compiles its own layouts: what one test compiled must not
    decide which way another test's records are read."""
    monkeypatch.setattr(records, "_DEST_LAYOUTS", records._Layouts(records._compile_dest))
    monkeypatch.setattr(records, "_SERVICE_LAYOUTS", records._Layouts(records._compile_service))


def _kernel_records(kind: str) -> list[memoryview]:
    lines = RECORDS.read_text().splitlines()
    return [
        memoryview(bytes.fromhex(line.split()[1])) for line in lines if line.startswith(f"{kind} ")
    ]


def test_the_kernels_records_read_the_same_both_ways() -> None:
    services = _kernel_records("service")
    dests = _kernel_records("dest")
    for record in services:
        for _ in range(2):  # the second read goes through the compiled layout
            assert records.parse_service(record) == records.walk_service(record)
    for record in dests:
        family = Family.INET6 if bytes(record[8:10]) == b"\xfd\x00" else Family.INET
        for _ in range(2):
            parsed = records.parse_dest(record, family)
            assert parsed == records.walk_dest(record, family)
            assert parsed.counters == records.walk_dest(record, family).counters
    v4 = {records.parse_dest(record, Family.INET).key for record in dests[:2]}
    assert v4 == {DestKey(IPv4Address("10.9.1.1"), 80), DestKey(IPv4Address("10.9.1.2"), 80)}
    keys = {records.parse_service(record).key for record in services}
    assert {(key.protocol, key.address, key.port) for key in keys} == {
        (Protocol.TCP, IPv4Address("10.9.0.1"), 80),
        (Protocol.TCP, IPv6Address("fd00::1"), 80),
    }


def test_the_kernels_padded_counters_are_one_layout() -> None:
    """UML pads each u64 counter with an IPVS_STATS_ATTR_PAD: the layout holds them."""
    record = _kernel_records("dest")[0]
    layout = compile_layout(
        record,
        nested=frozenset({(wire.ATTR_DEST,), (wire.ATTR_DEST, wire.DEST_STATS64)}),
    )
    pads = [path for path in layout.sizes if path[1:] == (wire.DEST_STATS64, 11)]
    assert pads, "this kernel's STATS64 has PAD attributes"
    assert layout.fields(record) is not None
    assert layout.sizes[(wire.ATTR_DEST, wire.DEST_STATS64, wire.SVC_STATS64 - 2)] == 8


# --- every layout variation, both ways -------------------------------------------------------

_U32 = st.integers(0, 2**32 - 1)
_U64 = st.integers(0, 2**64 - 1)


class _Structure(TypedDict):
    """Which attributes the drawn dest records carry, and how."""

    family_attr: bool
    tunnel: bool
    stats: str
    pad: bool
    trailer: bytes


@st.composite
def _dest_records(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """Two dest records of one structure (different values), and the service family."""
    six = draw(st.booleans())
    structure: _Structure = {
        "family_attr": draw(st.booleans()),
        "tunnel": draw(st.booleans()),
        "stats": draw(st.sampled_from(["64", "32", "both", "none"])),
        "pad": draw(st.booleans()),
        "trailer": draw(st.sampled_from([b"", wire.nla(99, b"\x01\x02\x03")])),
    }

    def one() -> bytes:
        address = (
            draw(st.binary(min_size=16, max_size=16))
            if six
            else (draw(st.binary(min_size=4, max_size=4)) + bytes(12))
        )
        body = wire.nla(wire.DEST_ADDR, address)
        if structure["family_attr"]:
            body += wire.nla_u16(wire.DEST_ADDR_FAMILY, 10 if six else 2)
        body += wire.nla_be16(wire.DEST_PORT, draw(st.integers(0, 65535)))
        body += wire.nla_u32(wire.DEST_FWD_METHOD, draw(st.sampled_from([0, 2, 3])))
        body += wire.nla_u32(wire.DEST_WEIGHT, draw(st.integers(0, 65535)))
        if structure["tunnel"]:
            body += wire.nla_u8(wire.DEST_TUN_TYPE, draw(st.sampled_from([0, 1, 2])))
            body += wire.nla_be16(wire.DEST_TUN_PORT, draw(st.integers(0, 65535)))
            body += wire.nla_u16(wire.DEST_TUN_FLAGS, draw(st.sampled_from([0, 1, 2])))
        for attr in (
            wire.DEST_U_THRESH,
            wire.DEST_L_THRESH,
            wire.DEST_ACTIVE_CONNS,
            wire.DEST_INACT_CONNS,
            wire.DEST_PERSIST_CONNS,
        ):
            body += wire.nla_u32(attr, draw(_U32))
        if structure["stats"] in ("32", "both"):
            body += wire.nla(
                wire.DEST_STATS,
                b"".join(wire.nla_u32(i, draw(_U32)) for i in range(1, 11)),
            )
        if structure["stats"] in ("64", "both"):
            pad = wire.nla(11, b"") if structure["pad"] else b""
            body += wire.nla(
                wire.DEST_STATS64,
                b"".join(pad + wire.nla(i, struct.pack("=Q", draw(_U64))) for i in range(1, 11)),
            )
        return wire.nla(wire.ATTR_DEST, body) + structure["trailer"]

    return one(), one(), Family.INET6 if six else Family.INET


@settings(max_examples=300, deadline=None)
@given(_dest_records(), st.booleans())
def test_dest_records_read_the_same_both_ways(
    pair: tuple[bytes, bytes, int], with_stats: bool
) -> None:
    first, second, family = pair
    for record in (memoryview(first), memoryview(second), memoryview(first)):
        parsed = records.parse_dest(record, family, with_stats=with_stats)
        walked = records.walk_dest(record, family, with_stats=with_stats)
        assert parsed == walked
        assert parsed.counters == walked.counters


@st.composite
def _service_records(draw: st.DrawFn) -> tuple[bytes, bytes]:
    fwmark = draw(st.booleans())
    scheduler = draw(st.sampled_from(["rr", "wlc", "mh"]))
    stats = draw(st.sampled_from(["64", "32", "none"]))
    pe = draw(st.booleans())

    def one() -> bytes:
        body = wire.nla_u16(wire.SVC_AF, 2)
        if fwmark:
            body += wire.nla_u32(wire.SVC_FWMARK, draw(st.integers(1, 2**32 - 1)))
        else:
            body += wire.nla_u16(wire.SVC_PROTOCOL, draw(st.sampled_from([6, 17, 132])))
            body += wire.nla(wire.SVC_ADDR, draw(st.binary(min_size=4, max_size=4)) + bytes(12))
            body += wire.nla_be16(wire.SVC_PORT, draw(st.integers(0, 65535)))
        body += wire.nla_str(wire.SVC_SCHED_NAME, scheduler)
        body += wire.nla(wire.SVC_FLAGS, struct.pack("=II", draw(st.sampled_from([0, 1, 3])), 0))
        body += wire.nla_u32(wire.SVC_TIMEOUT, draw(_U32))
        body += wire.nla_u32(wire.SVC_NETMASK, 0xFFFFFFFF)
        if pe:
            body += wire.nla_str(wire.SVC_PE_NAME, "sip")
        if stats != "none":
            attr, fmt = (wire.SVC_STATS64, "=Q") if stats == "64" else (wire.SVC_STATS, "=I")
            body += wire.nla(
                attr,
                b"".join(wire.nla(i, struct.pack(fmt, draw(_U32))) for i in range(1, 11)),
            )
        return wire.nla(wire.ATTR_SERVICE, body)

    return one(), one()


@settings(max_examples=200, deadline=None)
@given(_service_records(), st.booleans())
def test_service_records_read_the_same_both_ways(
    pair: tuple[bytes, bytes], with_stats: bool
) -> None:
    for record in (memoryview(pair[0]), memoryview(pair[1]), memoryview(pair[0])):
        parsed = records.parse_service(record, with_stats=with_stats)
        assert parsed == records.walk_service(record, with_stats=with_stats)
        assert parsed.stats == records.walk_service(record, with_stats=with_stats).stats


# --- same length, other structure --------------------------------------------------------------


def _dest_body(first: tuple[int, int], second: tuple[int, int]) -> bytes:
    body = wire.nla(wire.DEST_ADDR, bytes([10, 0, 0, 1]) + bytes(12))
    body += wire.nla_be16(wire.DEST_PORT, 80)
    body += wire.nla_u32(*first) + wire.nla_u32(*second)
    return wire.nla(wire.ATTR_DEST, body)


def test_a_record_of_the_same_length_but_other_order_is_not_read_by_the_layout() -> None:
    """Weight and forwarding method swapped: same length, same sizes, other types."""
    usual = memoryview(_dest_body((wire.DEST_FWD_METHOD, 3), (wire.DEST_WEIGHT, 7)))
    swapped = memoryview(_dest_body((wire.DEST_WEIGHT, 7), (wire.DEST_FWD_METHOD, 3)))
    assert len(usual) == len(swapped)
    for record in (usual, swapped, usual, swapped):
        dest = records.parse_dest(record, Family.INET)
        assert (dest.attrs.forward, dest.attrs.weight) == (ForwardMethod.DR, 7)


def test_a_counter_the_walk_would_read_otherwise_keeps_the_walk() -> None:
    """A 3-byte counter is no struct integer: that layout is never compiled."""
    body = wire.nla(wire.DEST_ADDR, bytes([10, 0, 0, 2]) + bytes(12))
    body += wire.nla(wire.DEST_ACTIVE_CONNS, b"\x01\x02\x03")
    record = memoryview(wire.nla(wire.ATTR_DEST, body))
    for _ in range(2):
        dest = records.parse_dest(record, Family.INET)
        assert dest.counters == DestCounters(0x030201, 0, 0, Stats())
    assert dest.key == DestKey(ip_address("10.0.0.2"), 0)


def test_a_bad_value_in_a_known_layout_is_a_wire_error() -> None:
    """The compiled way raises what the walk raises: WireError, nothing else."""

    def service(family: int) -> memoryview:
        body = wire.nla_u16(wire.SVC_AF, family) + wire.nla_u32(wire.SVC_FWMARK, 7)
        return memoryview(wire.nla(wire.ATTR_SERVICE, body))

    assert records.parse_service(service(2)).key.fwmark == 7  # compiles this layout
    for parse in (records.parse_service, records.walk_service):
        with pytest.raises(wire.WireError, match="malformed service record"):
            parse(service(99))
