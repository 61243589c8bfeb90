"""Malformed kernel bytes: only the codec's `WireError` may escape (issue 11 item 8).

The decoders (`wire.iter_replies`, `iter_attrs`, `parse_service`, `parse_dest`,
`parse_u32_attrs`, `wire_daemon.parse_daemon`) and `IpvsClient`'s reading of
acks get truncated and garbled bytes: hand-made cases first, then hypothesis
over messages and attributes that are *almost* right (lengths near the real
ones, known attribute types with short values), which random bytes rarely hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvsd.errors import KernelError
from ipvsd.netlink import ipvs, records, wire, wire_daemon

_HDR = struct.Struct("=IHHII")


def nlmsg(msg_type: int, body: bytes, *, seq: int = 1, length: int | None = None) -> bytes:
    """A netlink message; `length` overrides the header's length field."""
    real = _HDR.size + len(body)
    return _HDR.pack(real if length is None else length, msg_type, 0, seq, 0) + body


def replies(data: bytes) -> list[wire.Reply]:
    return list(wire.iter_replies(memoryview(data)))


# --- hand-made cases ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"\xef", b"\xef\xff", b"\xef\xff\xff"])
def test_an_error_reply_too_short_for_its_code_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(wire.WireError, match="truncated netlink error"):
        replies(nlmsg(wire.NLMSG_ERROR, body))


def test_a_truncated_error_reply_does_not_read_the_next_message() -> None:
    # Length 16: no error code. Today the code was read from the next message.
    data = nlmsg(wire.NLMSG_ERROR, b"") + nlmsg(wire.NLMSG_DONE, bytes(4), seq=2)
    with pytest.raises(wire.WireError, match="truncated netlink error"):
        replies(data)


def test_a_whole_error_reply_still_decodes() -> None:
    ack = nlmsg(wire.NLMSG_ERROR, struct.pack("=i", -2) + bytes(16), seq=9)
    assert [(r.msg_type, r.seq, r.error) for r in replies(ack)] == [(wire.NLMSG_ERROR, 9, -2)]
    capped = nlmsg(wire.NLMSG_ERROR, struct.pack("=i", 0), seq=3)  # an ack of only the code
    assert [(r.seq, r.error) for r in replies(capped)] == [(3, 0)]


def _service(*attrs: bytes) -> memoryview:
    return memoryview(wire.nla(wire.ATTR_SERVICE, b"".join(attrs)))


def _dest(*attrs: bytes) -> memoryview:
    return memoryview(wire.nla(wire.ATTR_DEST, b"".join(attrs)))


SVC_OK = (
    wire.nla_u16(wire.SVC_AF, 2),
    wire.nla_u16(wire.SVC_PROTOCOL, 6),
    wire.nla(wire.SVC_ADDR, bytes((10, 0, 0, 1)) + bytes(12)),
    wire.nla_be16(wire.SVC_PORT, 80),
)
DEST_OK = (wire.nla(wire.DEST_ADDR, bytes((10, 0, 0, 2)) + bytes(12)),)


@pytest.mark.parametrize(
    "record",
    [
        _service(*SVC_OK[:3], wire.nla(wire.SVC_PORT, b"\x01")),  # a 1-byte port
        _service(*SVC_OK, wire.nla(wire.SVC_FLAGS, b"\x01\x02")),  # flags need 8 bytes
        _service(*SVC_OK[:2], wire.nla(wire.SVC_ADDR, b"\x0a"), SVC_OK[3]),  # 1-byte address
        _service(*SVC_OK, wire.nla(wire.SVC_SCHED_NAME, b"\xff\xfe\0")),  # not UTF-8
        _service(*SVC_OK, wire.nla(wire.SVC_STATS64, b"\x08\x00\x01\x00")),  # nested, cut
        _service(wire.nla_u16(wire.SVC_AF, 99), *SVC_OK[1:]),  # no such family
    ],
)
def test_short_or_bad_service_attributes_are_wire_errors(record: memoryview) -> None:
    with pytest.raises(wire.WireError):
        records.parse_service(record)


@pytest.mark.parametrize(
    "record",
    [
        _dest(*DEST_OK, wire.nla(wire.DEST_PORT, b"")),
        _dest(wire.nla(wire.DEST_ADDR, b"\x0a\x00")),
        _dest(*DEST_OK, wire.nla(wire.DEST_TUN_PORT, b"\x01")),
        _dest(*DEST_OK, wire.nla_u8(wire.DEST_TUN_TYPE, 77)),  # no such tunnel type
        _dest(*DEST_OK, wire.nla(wire.DEST_STATS, b"\x08\x00\x01\x00")),
    ],
)
def test_short_or_bad_dest_attributes_are_wire_errors(record: memoryview) -> None:
    with pytest.raises(wire.WireError):
        records.parse_dest(record, 2)


def test_a_short_u32_attribute_list_is_a_wire_error() -> None:
    with pytest.raises(wire.WireError):
        wire.parse_u32_attrs(memoryview(struct.pack("=HH", 12, 1) + b"\x01"))


# --- the client reading acks from the kernel ------------------------------------------------


@contextlib.contextmanager
def client_and_kernel() -> Iterator[tuple[ipvs.IpvsClient, socket.socket]]:
    """An IpvsClient whose "kernel" is the other end of a datagram socketpair."""
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    client = ipvs.IpvsClient(0x1E, ours, batch_size=16)
    try:
        yield client, kernel
    finally:
        client.close()
        kernel.close()


async def _answer(kernel: socket.socket, reply: Callable[[int], bytes]) -> None:
    """Read one request datagram and send `reply(its seq)`."""
    loop = asyncio.get_running_loop()
    request = await loop.sock_recv(kernel, 65536)
    (seq,) = struct.unpack_from("=I", request, 8)
    kernel.send(reply(seq))


@pytest.mark.parametrize(
    "reply",
    [
        lambda seq: nlmsg(wire.NLMSG_ERROR, b"", seq=seq),  # no error code
        lambda seq: nlmsg(wire.NLMSG_ERROR, b"\xfe\xff", seq=seq),  # half of one
        lambda seq: nlmsg(wire.NLMSG_ERROR, b"", seq=seq, length=4096),  # longer than sent
        lambda seq: _HDR.pack(36, wire.NLMSG_ERROR, 0, seq, 0)[:10],  # a cut header
    ],
)
async def test_a_malformed_ack_is_a_wire_error_not_struct_error(
    reply: Callable[[int], bytes],
) -> None:
    with client_and_kernel() as (client, kernel):
        answered = asyncio.create_task(_answer(kernel, reply))
        with pytest.raises(wire.WireError):
            async with asyncio.timeout(2):
                await client.set_timeouts(ipvs.Timeouts(tcp=900, tcpfin=120, udp=300))
        await answered


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (-1, KernelError),
        (-4095, KernelError),  # MAX_ERRNO: "Unknown error 4095", still the kernel's
        (-4096, wire.WireError),
        (-(2**31), wire.WireError),  # os.strerror(2**31) would raise OverflowError
        (1, wire.WireError),
        (2**31 - 1, wire.WireError),
    ],
)
async def test_an_error_code_out_of_errno_range_is_a_wire_error(
    code: int, error: type[Exception]
) -> None:
    with client_and_kernel() as (client, kernel):
        answered = asyncio.create_task(
            _answer(kernel, lambda seq: nlmsg(wire.NLMSG_ERROR, struct.pack("=i", code), seq=seq))
        )
        with pytest.raises(error):
            async with asyncio.timeout(2):
                await client.zero()
        await answered


def test_trailing_bytes_too_few_for_a_header_are_a_wire_error() -> None:
    ack = nlmsg(wire.NLMSG_ERROR, struct.pack("=i", 0))
    assert len(replies(ack)) == 1
    with pytest.raises(wire.WireError, match="3 bytes after the last netlink message"):
        replies(ack + b"\0\0\0")


# --- hypothesis: almost-right messages and attributes ---------------------------------------

_MSG_TYPES = st.sampled_from([wire.NLMSG_ERROR, wire.NLMSG_DONE, 0x1E, 0x10, 0])


@st.composite
def netlink_datagrams(draw: st.DrawFn) -> bytes:
    """One to three messages, each with a length field near (or at) the truth."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.binary(max_size=40))
        real = _HDR.size + len(body)
        length = draw(st.sampled_from([real, real - 1, real + 1, 16, 17, 19, 20, 0, 4, 65535]))
        out += _HDR.pack(length, draw(_MSG_TYPES), 0, 1, 0) + body
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


_SERVICE_TYPES = list(range(0, 14))
_DEST_TYPES = list(range(0, 17))
_DAEMON_TYPES = list(range(0, 10))


@st.composite
def attributes(draw: st.DrawFn, types: list[int]) -> bytes:
    """Known attribute types with values of every short length (and some nested)."""
    out = b""
    for _ in range(draw(st.integers(0, 8))):
        attr_type = draw(st.sampled_from(types))
        if draw(st.integers(0, 4)) == 0:
            value = draw(attributes(list(range(0, 12))))  # a nested list (stats)
        else:
            value = draw(st.binary(max_size=20))
        attr = wire.nla(attr_type, value)
        if draw(st.integers(0, 9)) == 0:  # a length field that lies
            attr = struct.pack("=HH", draw(st.integers(0, 64)), attr_type) + attr[4:]
        out += attr
    return out


@settings(max_examples=500, deadline=None)
@given(netlink_datagrams())
def test_near_miss_datagrams_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        for reply in wire.iter_replies(memoryview(data)):
            with contextlib.suppress(wire.WireError):
                wire.parse_u32_attrs(reply.payload)


@settings(max_examples=500, deadline=None)
@given(attributes(_SERVICE_TYPES), st.sampled_from([2, 10, 0, 7]))
def test_near_miss_services_raise_only_wire_error(body: bytes, family: int) -> None:
    with contextlib.suppress(wire.WireError):
        records.parse_service(memoryview(wire.nla(wire.ATTR_SERVICE, body)))
    with contextlib.suppress(wire.WireError):
        records.parse_service(
            memoryview(wire.nla(wire.ATTR_SERVICE, wire.nla_u16(wire.SVC_AF, family) + body))
        )


@settings(max_examples=500, deadline=None)
@given(attributes(_DEST_TYPES), st.sampled_from([2, 10, 0, 7]))
def test_near_miss_dests_raise_only_wire_error(body: bytes, family: int) -> None:
    with contextlib.suppress(wire.WireError):
        records.parse_dest(memoryview(wire.nla(wire.ATTR_DEST, body)), family)


@settings(max_examples=500, deadline=None)
@given(attributes(_DAEMON_TYPES))
def test_near_miss_daemons_raise_only_wire_error(body: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire_daemon.parse_daemon(memoryview(wire.nla(wire.ATTR_DAEMON, body)))
