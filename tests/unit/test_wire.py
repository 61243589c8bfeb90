"""The IPVS message codec: bytes checked against pyroute2's decoder and golden hex."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import sys
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink import nla as pyroute2_nla
from pyroute2.netlink.generic.ipvs import ipvsmsg

from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Stats,
    TunnelChecksum,
    TunnelType,
    fwmark_key,
)
from ipvsd.netlink import records, wire, wire_daemon

V4 = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80)
V6 = ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::200"), 53)
FWM = fwmark_key(Family.INET, 7)


def decode(data: bytes) -> ipvsmsg:
    msg = ipvsmsg(data)
    msg.decode()
    return msg


def test_new_service_decodes_identically_with_pyroute2() -> None:
    attrs = ServiceAttrs("rr", ServiceFlag.PERSISTENT | ServiceFlag.SCHED2, 300, 24)
    payload = wire.nla(wire.ATTR_SERVICE, wire.service_attrs(V4, attrs))
    msg = decode(wire.message(0x42, wire.CMD_NEW_SERVICE, payload, wire.NLM_F_REQUEST, 9))
    assert msg["cmd"] == wire.CMD_NEW_SERVICE
    assert msg["header"]["sequence_number"] == 9
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_AF") == 2
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == 6
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") == "192.168.1.200"
    assert svc.get_attr("IPVS_SVC_ATTR_PORT") == 80
    assert svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "rr"
    assert svc.get_attr("IPVS_SVC_ATTR_FLAGS") == {"flags": 0x11, "mask": 0xFFFFFFFF}
    assert svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 300
    # pyroute2 types NETMASK as an IPv4 address: the mask must be in network order.
    assert svc.get_attr("IPVS_SVC_ATTR_NETMASK") == "255.255.255.0"


def test_ipv6_and_fwmark_identities() -> None:
    msg = decode(
        wire.message(
            1, wire.CMD_DEL_SERVICE, wire.nla(wire.ATTR_SERVICE, wire.service_identity(V6)), 1, 1
        )
    )
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_AF") == 10
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") == "2001:db8::200"
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == 17
    msg = decode(
        wire.message(
            1, wire.CMD_DEL_SERVICE, wire.nla(wire.ATTR_SERVICE, wire.service_identity(FWM)), 1, 1
        )
    )
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_FWMARK") == 7
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") is None


def test_new_dest_decodes_identically_with_pyroute2() -> None:
    key = DestKey(ip_address("192.168.1.30"), 8080)
    payload = wire.nla(wire.ATTR_SERVICE, wire.service_identity(V4)) + wire.nla(
        wire.ATTR_DEST, wire.dest_attrs(key, DestAttrs(ForwardMethod.DR, 5, 100, 10))
    )
    msg = decode(wire.message(1, wire.CMD_NEW_DEST, payload, 5, 3))
    dest = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert dest.get_attr("IPVS_DEST_ATTR_ADDR") == "192.168.1.30"
    assert dest.get_attr("IPVS_DEST_ATTR_PORT") == 8080
    assert dest.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 3
    assert dest.get_attr("IPVS_DEST_ATTR_WEIGHT") == 5
    assert dest.get_attr("IPVS_DEST_ATTR_U_THRESH") == 100
    assert dest.get_attr("IPVS_DEST_ATTR_L_THRESH") == 10
    assert dest.get_attr("IPVS_DEST_ATTR_ADDR_FAMILY") == 2


# An edit of one real's weight, as bytes (seq 7, family id 0x1e): the message
# a health drain sends. Golden so any change to the layout is deliberate.
GOLDEN_SET_DEST = (
    "8c0000001e00050007000000000000000601000030000100060001000200000006000200"  # hdr, genl, svc
    "0600000014000300c0a801c8000000000000000000000000060004000050000048000200"  # addr, port; dest
    "14000100c0a8011e000000000000000000000000060002000050000006000b0002000000"  # addr, port, af
    "0800030000000000080004000000000008000500000000000800060000000000"  # fwd, weight, u/l thresh
)


def test_golden_set_dest() -> None:
    key = DestKey(ip_address("192.168.1.30"), 80)
    payload = wire.nla(wire.ATTR_SERVICE, wire.service_identity(V4)) + wire.nla(
        wire.ATTR_DEST, wire.dest_attrs(key, DestAttrs(ForwardMethod.NAT, 0))
    )
    data = wire.message(0x1E, wire.CMD_SET_DEST, payload, 5, 7)
    assert data.hex() == GOLDEN_SET_DEST
    assert len(data) == struct.unpack_from("=I", data)[0]


def _stats_attr(attr_type: int, values: list[int]) -> bytes:
    return wire.nla(
        attr_type,
        b"".join(wire.nla(i + 1, struct.pack("=Q", value)) for i, value in enumerate(values)),
    )


def test_parse_service_record_with_stats64() -> None:
    attrs = ServiceAttrs("wlc", ServiceFlag.PERSISTENT, 600, 24)
    body = wire.service_attrs(V4, attrs)
    # The kernel reports HASHED on every live service: it must not leak into attrs.
    body = body.replace(struct.pack("=II", 1, 0xFFFFFFFF), struct.pack("=II", 3, 0xFFFF))
    body += _stats_attr(wire.SVC_STATS64, list(range(1, 11)))
    record = wire.nla(wire.ATTR_SERVICE, body)
    service = records.parse_service(memoryview(record))
    assert service.key == V4
    assert service.attrs == attrs
    assert service.stats == Stats(*range(1, 11))


def test_stats_parse_the_same_in_any_layout() -> None:
    """Any layout the kernel may write: the usual one, padding (architectures
    that align u64s), another order, 32-bit counters."""
    values = [50, 1, 2, 3, 4, 5, 6, 7, 8, 2**40]
    usual = _stats_attr(wire.SVC_STATS64, values)[4:]
    attrs = [wire.nla(i + 1, struct.pack("=Q", v)) for i, v in enumerate(values)]
    padded = wire.nla(11, b"") + b"".join(attrs)  # IPVS_STATS_ATTR_PAD first
    reordered = b"".join(reversed(attrs))
    narrow = b"".join(
        wire.nla(i + 1, struct.pack("=I", v & 0xFFFFFFFF)) for i, v in enumerate(values)
    )
    expected = Stats(*values)
    assert records.parse_stats(memoryview(usual)) == expected
    assert records.parse_stats(memoryview(padded)) == expected
    assert records.parse_stats(memoryview(reordered)) == expected
    # 32-bit counters: 2**40 (outbps) reads as 0.
    assert records.parse_stats(memoryview(narrow)) == dataclasses.replace(expected, outbps=0)
    # Right size, other headers: read as what they say.
    mangled = bytearray(usual)
    struct.pack_into("=H", mangled, 2, 5)  # the first counter says it is OUTBYTES
    assert records.parse_stats(memoryview(bytes(mangled))).conns == 0


def test_parse_dest_record_with_counters() -> None:
    key = DestKey(ip_address("2001:db8::30"), 80)
    body = wire.dest_attrs(key, DestAttrs(ForwardMethod.TUNNEL, 3))
    body += wire.nla_u32(wire.DEST_ACTIVE_CONNS, 4) + wire.nla_u32(wire.DEST_INACT_CONNS, 25)
    body += wire.nla_u32(wire.DEST_PERSIST_CONNS, 2)
    body += _stats_attr(wire.DEST_STATS64, [50, 1, 2, 3, 4, 0, 0, 0, 0, 0])
    dest = records.parse_dest(memoryview(wire.nla(wire.ATTR_DEST, body)), Family.INET)
    assert dest == Dest(key, DestAttrs(ForwardMethod.TUNNEL, 3))
    assert dest.counters == DestCounters(4, 25, 2, Stats(50, 1, 2, 3, 4))


@pytest.mark.parametrize("prefix", [0, 1, 8, 24, 31, 32])
def test_ipv4_netmask_round_trip(prefix: int) -> None:
    value = wire.netmask_value(Family.INET, prefix)
    assert wire.netmask_prefix(Family.INET, value) == prefix
    assert struct.pack("=I", value)[0] == (0xFF if prefix >= 8 else (0xFF << (8 - prefix)) & 0xFF)


def test_replies_split_and_error_code() -> None:
    ack = struct.pack("=IHHII", 36, wire.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", -17) + bytes(16)
    done = struct.pack("=IHHII", 20, wire.NLMSG_DONE, 2, 6, 0) + bytes(4)
    replies = list(wire.iter_replies(memoryview(ack + done)))
    assert [(r.msg_type, r.seq, r.error) for r in replies] == [(2, 5, -17), (3, 6, 0)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    for parse in (
        lambda: list(wire.iter_replies(memoryview(data))),
        lambda: records.parse_service(memoryview(data)),
        lambda: records.parse_dest(memoryview(data), 2),
        lambda: records.parse_service(memoryview(wire.nla(wire.ATTR_SERVICE, data))),
        lambda: records.parse_dest(memoryview(wire.nla(wire.ATTR_DEST, data)), 10),
    ):
        with contextlib.suppress(wire.WireError):
            parse()


# --- connection-sync daemons ------------------------------------------------------------

# The IPVS_CMD_ATTR_DAEMON bodies ipvsadm 1.31 sent to Linux 6.1 (strace -xx in UML) for
# `--start-daemon master --mcast-interface eth0 --syncid 51` and for `--start-daemon backup
# --mcast-interface eth0 --syncid 7 --sync-maxlen 1000 --mcast-group 239.1.2.3
# --mcast-port 8850 --mcast-ttl 3`. ipvsadm sets NLA_F_NESTED on the outer attribute;
# the kernel parses it either way (nla_parse_nested_deprecated).
IPVSADM_MASTER_BODY = "08000100010000000900020065746830000000000800030033000000"
IPVSADM_BACKUP_BODY = (
    "08000100020000000900020065746830000000000800030007000000"
    "06000400e803000006000700922200000500080003000000"  # maxlen, port (host order), ttl
    "08000500ef010203"  # group
)


def _daemon_body(data: bytes) -> bytes:
    """The nested daemon attribute's value inside a whole request."""
    attrs = list(wire.iter_attrs(memoryview(data)[wire.HEADER_LEN :]))
    assert [attr_type for attr_type, _ in attrs] == [wire.ATTR_DAEMON]
    return bytes(attrs[0][1])


def test_new_daemon_bytes_are_ipvsadms() -> None:
    master = wire_daemon.SyncDaemon(wire_daemon.SyncState.MASTER, "eth0", 51)
    data = wire.message(
        0x1E,
        wire.CMD_NEW_DAEMON,
        wire.nla(wire.ATTR_DAEMON, wire_daemon.daemon_attrs(master)),
        wire.NLM_F_REQUEST | wire.NLM_F_ACK,
        3,
    )
    assert data[16:20] == bytes((wire.CMD_NEW_DAEMON, 1, 0, 0))
    assert _daemon_body(data).hex() == IPVSADM_MASTER_BODY
    backup = wire_daemon.SyncDaemon(
        wire_daemon.SyncState.BACKUP,
        "eth0",
        7,
        sync_maxlen=1000,
        mcast_group=ip_address("239.1.2.3"),
        mcast_port=8850,
        mcast_ttl=3,
    )
    assert wire_daemon.daemon_attrs(backup).hex() == IPVSADM_BACKUP_BODY


def test_del_daemon_carries_only_the_state() -> None:
    body = wire_daemon.daemon_state_attrs(wire_daemon.SyncState.BACKUP)
    assert list((t, bytes(v)) for t, v in wire.iter_attrs(memoryview(body))) == [
        (wire_daemon.DAEMON_STATE, struct.pack("=I", 2))
    ]


def _dump_record(body: bytes) -> memoryview:
    return memoryview(wire.nla(wire.ATTR_DAEMON, body))


def test_parse_daemon_record_as_the_kernel_dumps_it() -> None:
    # ip_vs_genl_dump_daemon puts every field, the defaults filled in.
    body = (
        wire.nla_u32(wire_daemon.DAEMON_STATE, 1)
        + wire.nla_str(wire_daemon.DAEMON_MCAST_IFN, "eth1")
        + wire.nla_u32(wire_daemon.DAEMON_SYNC_ID, 51)
        + wire.nla_u16(wire_daemon.DAEMON_SYNC_MAXLEN, 1472)
        + wire.nla_u16(wire_daemon.DAEMON_MCAST_PORT, 8848)
        + wire.nla_u8(wire_daemon.DAEMON_MCAST_TTL, 1)
        + wire.nla(wire_daemon.DAEMON_MCAST_GROUP, bytes((224, 0, 0, 81)))
    )
    daemon = wire_daemon.parse_daemon(_dump_record(body))
    assert daemon == wire_daemon.SyncDaemon(
        wire_daemon.SyncState.MASTER, "eth1", 51, 1472, ip_address("224.0.0.81"), 8848, 1
    )
    assert daemon.satisfies(wire_daemon.SyncDaemon(wire_daemon.SyncState.MASTER, "eth1", 51))
    assert not daemon.satisfies(wire_daemon.SyncDaemon(wire_daemon.SyncState.BACKUP, "eth1", 51))
    assert not daemon.satisfies(wire_daemon.SyncDaemon(wire_daemon.SyncState.MASTER, "eth1", 52))
    assert not daemon.satisfies(wire_daemon.SyncDaemon(wire_daemon.SyncState.MASTER, "eth2", 51))
    assert not daemon.satisfies(
        wire_daemon.SyncDaemon(wire_daemon.SyncState.MASTER, "eth1", 51, mcast_port=1)
    )


def test_daemon_round_trip_with_an_ipv6_group() -> None:
    daemon = wire_daemon.SyncDaemon(
        wire_daemon.SyncState.BACKUP, "bond0.12", 255, 9000, ip_address("ff02::1:5"), 9999, 4
    )
    assert wire_daemon.parse_daemon(_dump_record(wire_daemon.daemon_attrs(daemon))) == daemon


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "without interface"),
        (
            wire.nla_u32(wire_daemon.DAEMON_STATE, 3)
            + wire.nla_str(wire_daemon.DAEMON_MCAST_IFN, "x"),
            "3",
        ),
    ],
)
def test_bad_daemon_records_raise_wire_error(body: bytes, message: str) -> None:
    with pytest.raises(wire.WireError, match=message):
        wire_daemon.parse_daemon(_dump_record(body))
    with pytest.raises(wire.WireError):
        wire_daemon.parse_daemon(memoryview(wire.nla(wire.ATTR_SERVICE, body)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_daemon_bytes_raise_only_wire_error(data: bytes) -> None:
    for payload in (data, wire.nla(wire.ATTR_DAEMON, data)):
        with contextlib.suppress(wire.WireError):
            wire_daemon.parse_daemon(memoryview(payload))


# pyroute2 0.9.7 types IPVS_CMD_ATTR_DAEMON as raw hex: extend its message class
# with the nested attributes of include/uapi/linux/ip_vs.h, as the reference for
# the daemon codec in both directions.
class IpvsDaemonMsg(ipvsmsg):  # type: ignore[misc]
    # pyroute2 compiles nla_map once per class into name-mangled attributes of
    # nlmsg_base; a subclass inherits the parent's unless told to compile its own.
    _nlmsg_base__compiled_nla = False
    nla_map = tuple(
        (name, "daemon" if name == "IPVS_CMD_ATTR_DAEMON" else kind)
        for name, kind in ipvsmsg.nla_map
    )

    class daemon(pyroute2_nla):  # type: ignore[misc]
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "ip4addr"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ip6addr"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


FULL_DAEMON = wire_daemon.SyncDaemon(
    wire_daemon.SyncState.BACKUP, "eth1", 51, 1472, ip_address("239.1.2.3"), 8850, 3
)


def test_new_daemon_decodes_identically_with_extended_pyroute2() -> None:
    payload = wire.nla(wire.ATTR_DAEMON, wire_daemon.daemon_attrs(FULL_DAEMON))
    msg = IpvsDaemonMsg(wire.message(0x1E, wire.CMD_NEW_DAEMON, payload, wire.NLM_F_REQUEST, 4))
    msg.decode()
    daemon = msg.get_attr("IPVS_CMD_ATTR_DAEMON")
    assert msg["cmd"] == wire.CMD_NEW_DAEMON
    assert {name: daemon.get_attr(name) for name, _ in daemon.nla_map[1:]} == {
        "IPVS_DAEMON_ATTR_STATE": 2,
        "IPVS_DAEMON_ATTR_MCAST_IFN": "eth1",
        "IPVS_DAEMON_ATTR_SYNC_ID": 51,
        "IPVS_DAEMON_ATTR_SYNC_MAXLEN": 1472,
        "IPVS_DAEMON_ATTR_MCAST_GROUP": "239.1.2.3",
        "IPVS_DAEMON_ATTR_MCAST_GROUP6": None,
        "IPVS_DAEMON_ATTR_MCAST_PORT": 8850,
        "IPVS_DAEMON_ATTR_MCAST_TTL": 3,
    }


def test_a_daemon_record_encoded_by_extended_pyroute2_parses_back() -> None:
    msg = IpvsDaemonMsg()
    msg["cmd"] = wire.CMD_GET_DAEMON
    msg["version"] = 1
    msg["attrs"] = [
        (
            "IPVS_CMD_ATTR_DAEMON",
            {
                "attrs": [
                    ("IPVS_DAEMON_ATTR_STATE", 2),
                    ("IPVS_DAEMON_ATTR_MCAST_IFN", "eth1"),
                    ("IPVS_DAEMON_ATTR_SYNC_ID", 51),
                    ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", 1472),
                    ("IPVS_DAEMON_ATTR_MCAST_GROUP", "239.1.2.3"),
                    ("IPVS_DAEMON_ATTR_MCAST_PORT", 8850),
                    ("IPVS_DAEMON_ATTR_MCAST_TTL", 3),
                ]
            },
        )
    ]
    msg.encode()
    record = memoryview(bytes(msg.data))[wire.HEADER_LEN :]
    assert wire_daemon.parse_daemon(record) == FULL_DAEMON


def test_tunnel_dest_settings_decode_with_pyroute2_and_parse_back() -> None:
    gue = DestAttrs(ForwardMethod.TUNNEL, 2, 0, 0, TunnelType.GUE, 6080, TunnelChecksum.REMCSUM)
    key = DestKey(ip_address("10.1.0.9"), 80)
    payload = wire.nla(wire.ATTR_SERVICE, wire.service_identity(V4)) + wire.nla(
        wire.ATTR_DEST, wire.dest_attrs(key, gue)
    )
    msg = decode(wire.message(0x42, wire.CMD_NEW_DEST, payload, wire.NLM_F_REQUEST, 1))
    dest = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert dest.get_attr("IPVS_DEST_ATTR_TUN_TYPE") == 1
    # pyroute2 types the port as host-order uint16; the kernel reads it big-endian.
    assert dest.get_attr("IPVS_DEST_ATTR_TUN_PORT") == int.from_bytes(
        (6080).to_bytes(2, "big"), sys.byteorder
    )
    assert dest.get_attr("IPVS_DEST_ATTR_TUN_FLAGS") == 2
    parsed = records.parse_dest(memoryview(wire.nla(wire.ATTR_DEST, wire.dest_attrs(key, gue))), 2)
    assert parsed.attrs == gue
    # Other methods send no tunnel attributes (kernels before 5.2 know none).
    dr = wire.dest_attrs(key, DestAttrs(ForwardMethod.DR, 1))
    types = {t for t, _ in wire.iter_attrs(memoryview(dr))}
    assert not types & {wire.DEST_TUN_TYPE, wire.DEST_TUN_PORT, wire.DEST_TUN_FLAGS}
