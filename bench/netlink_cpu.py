"""Benchmark: user-space CPU per IPVS netlink operation and per dumped object, on the host.

UML's kernel side is far slower than real hardware's, so the share that ipvsd
controls — building and encoding a request, parsing its ack, parsing a dump
record — is measured here on the host CPU, with pyroute2's message objects
(the classic Python way) measured in the same run for comparison.

    python -m bench.netlink_cpu [--count 40000]
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from bench.report import Row, print_table
from ipvsd.ipvs.plan import AddDest, EditDest, Operation
from ipvsd.model import DestAttrs, DestKey, Family, ForwardMethod, Protocol, ServiceKey
from ipvsd.netlink import records, wire

FAMILY_ID = 0x1E


def cpu_per_item_us(work: Callable[[], int]) -> float:
    """CPU microseconds per item of `work` (which returns its item count); best of 3."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        items = work()
        best = min(best, (time.process_time() - started) / items * 1e6)
    return best


def operations(count: int) -> list[Operation]:
    ops: list[Operation] = []
    for i in range(count):
        service = ServiceKey(Family.INET, Protocol.TCP, IPv4Address(0x0A000000 + i // 4 + 1), 80)
        dest = DestKey(IPv4Address(0xAC100000 + i + 1), 80)
        ops.append(AddDest(service, dest, DestAttrs(ForwardMethod.DR, 1)))
    return ops


def ack(seq: int) -> bytes:
    return (
        struct.pack("=IHHII", 36, wire.NLMSG_ERROR, 0x100, seq, 0)
        + struct.pack("=i", 0)
        + bytes(16)
    )


def dest_record(i: int) -> bytes:
    key = DestKey(IPv4Address(0xAC100000 + i + 1), 80)
    body = wire.dest_attrs(key, DestAttrs(ForwardMethod.DR, 1))
    body += b"".join(wire.nla_u32(t, 7) for t in (7, 8, 9))
    stats = b"".join(wire.nla(t, struct.pack("=Q", 1000 + t)) for t in range(1, 11))
    body += wire.nla(wire.DEST_STATS, stats) + wire.nla(wire.DEST_STATS64, stats)
    payload = wire.nla(wire.ATTR_DEST, body)
    return wire.message(FAMILY_ID, wire.CMD_NEW_DEST, payload, wire.NLM_F_MULTI, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40_000)
    args = parser.parse_args()
    ops = operations(args.count)
    encoder = wire.Encoder(FAMILY_ID)

    def ipvsd_encode() -> int:
        data = b"".join(encoder.encode(op, i) for i, op in enumerate(ops))
        acks = memoryview(b"".join(ack(i) for i in range(len(ops))))
        pending = dict.fromkeys(range(len(ops)))
        for reply in wire.iter_replies(acks):
            pending.pop(reply.seq)
        assert not pending
        assert data
        return len(ops)

    def ipvsd_plan_encode() -> int:
        from ipvsd.ipvs.plan import plan
        from ipvsd.model import Dest, ServiceAttrs, Table, make_service

        by_service: dict[ServiceKey, list[Dest]] = {}
        for op in ops:
            assert isinstance(op, AddDest)
            by_service.setdefault(op.service, []).append(Dest(op.key, op.attrs))
        desired = Table.of([make_service(k, ServiceAttrs("rr"), v) for k, v in by_service.items()])
        todo = plan(desired, Table(), owns=lambda key: True)
        b"".join(encoder.encode(op, i) for i, op in enumerate(todo.operations))
        return len(todo)

    dest_records = [dest_record(i) for i in range(args.count)]

    def ipvsd_parse() -> int:
        for record in dest_records:
            for reply in wire.iter_replies(memoryview(record)):
                records.parse_dest(reply.payload, Family.INET)
        return len(dest_records)

    rows = [
        Row("per operation", "ipvsd encode + ack parse", cpu_per_item_us(ipvsd_encode) / 1e6, ""),
        Row(
            "per operation",
            "ipvsd plan + encode",
            cpu_per_item_us(ipvsd_plan_encode) / 1e6,
            "diff from empty, then encode",
        ),
        Row(
            "per dumped dest",
            "ipvsd parse",
            cpu_per_item_us(ipvsd_parse) / 1e6,
            "record -> frozen Dest with counters",
        ),
    ]
    rows.extend(_pyroute2_rows(ops[:2000], records[:2000]))
    reference = {"per operation": rows[3].seconds, "per dumped dest": rows[4].seconds}
    rows = [Row(r.case, r.method, r.seconds, r.detail, reference[r.case] / r.seconds) for r in rows]
    print_table(
        f"User-space CPU per item on the host ({args.count} items; ratio = speed-up over pyroute2)",
        rows,
        unit="us",
    )
    print(
        f"target: <= 20 us per operation; ipvsd encode + ack parse: {rows[0].seconds * 1e6:.1f} us"
    )
    return 0


def _pyroute2_rows(ops: list[Operation], records: list[bytes]) -> list[Row]:
    from pyroute2.netlink.generic.ipvs import ipvsmsg

    def encode() -> int:
        for i, op in enumerate(ops):
            assert isinstance(op, AddDest | EditDest)
            msg = ipvsmsg()
            msg["cmd"] = wire.CMD_NEW_DEST
            msg["version"] = 1
            assert op.service.address is not None
            msg["attrs"] = [
                [
                    "IPVS_CMD_ATTR_SERVICE",
                    {
                        "attrs": [
                            ["IPVS_SVC_ATTR_AF", 2],
                            ["IPVS_SVC_ATTR_PROTOCOL", 6],
                            ["IPVS_SVC_ATTR_ADDR", str(op.service.address)],
                            ["IPVS_SVC_ATTR_PORT", op.service.port],
                        ]
                    },
                ],
                [
                    "IPVS_CMD_ATTR_DEST",
                    {
                        "attrs": [
                            ["IPVS_DEST_ATTR_ADDR_FAMILY", 2],
                            ["IPVS_DEST_ATTR_ADDR", str(op.key.address)],
                            ["IPVS_DEST_ATTR_PORT", op.key.port],
                            ["IPVS_DEST_ATTR_FWD_METHOD", 3],
                            ["IPVS_DEST_ATTR_WEIGHT", 1],
                            ["IPVS_DEST_ATTR_U_THRESH", 0],
                            ["IPVS_DEST_ATTR_L_THRESH", 0],
                        ]
                    },
                ],
            ]
            msg["header"]["type"] = FAMILY_ID
            msg["header"]["flags"] = 5
            msg["header"]["sequence_number"] = i
            msg.encode()
        return len(ops)

    def parse() -> int:
        for record in records:
            msg = ipvsmsg(record)
            msg.decode()
            msg.get_attr("IPVS_CMD_ATTR_DEST").get_attr("IPVS_DEST_ATTR_INACT_CONNS")
        return len(records)

    return [
        Row("per operation", "pyroute2 ipvsmsg encode", cpu_per_item_us(encode) / 1e6, "reference"),
        Row(
            "per dumped dest", "pyroute2 ipvsmsg decode", cpu_per_item_us(parse) / 1e6, "reference"
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
