"""Every netlink operation of the IPVS client, and every error translation, on a real kernel."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from ipaddress import ip_address

import pytest

from ipvsd.config.types import SCHEDULERS
from ipvsd.control.render import ipvsadm_table
from ipvsd.control.status import services_from_table
from ipvsd.errors import AlreadyExists, NotFound, SchedulerUnavailable
from ipvsd.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Operation,
    plan,
)
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Table,
    TunnelChecksum,
    TunnelType,
    fwmark_key,
    make_service,
)
from ipvsd.netlink.ipvs import RECV_SIZE, IpvsClient, Timeouts
from ipvsd.netlink.table_reader import BlockingTableReader

V4 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.20.0.1"), 80)
V6 = ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::1"), 53)
SCTP = ServiceKey(Family.INET, Protocol.SCTP, ip_address("10.20.0.2"), 3868)
FWM = fwmark_key(Family.INET, 7)
FWM6 = fwmark_key(Family.INET6, 8)
R1 = DestKey(ip_address("10.20.1.1"), 80)
R2 = DestKey(ip_address("10.20.1.2"), 8080)
R6 = DestKey(ip_address("2001:db8::2"), 53)


def ipvsadm(*args: str) -> str:
    return subprocess.run(["ipvsadm", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
async def client() -> AsyncIterator[IpvsClient]:
    ipvsadm("-C")
    async with await IpvsClient.open() as ipvs:
        yield ipvs
    ipvsadm("-C")


async def test_add_every_kind_of_service_and_dest(client: IpvsClient) -> None:
    ops: list[Operation] = [
        AddService(V4, ServiceAttrs("rr", ServiceFlag.PERSISTENT, 300, 24)),
        AddService(V6, ServiceAttrs("sh", ServiceFlag.SCHED1 | ServiceFlag.SCHED2, 0, 128)),
        AddService(SCTP, ServiceAttrs("wlc")),
        AddService(FWM, ServiceAttrs("wrr")),
        AddService(FWM6, ServiceAttrs("mh", ServiceFlag.PERSISTENT, 60, 64)),
        AddDest(V4, R1, DestAttrs(ForwardMethod.NAT, 3, 100, 10)),
        AddDest(V4, R2, DestAttrs(ForwardMethod.DR, 1)),
        AddDest(V6, R6, DestAttrs(ForwardMethod.TUNNEL, 2)),
        AddDest(SCTP, R1, DestAttrs(ForwardMethod.NAT, 1)),
        AddDest(FWM, DestKey(ip_address("10.20.1.3"), 0), DestAttrs(ForwardMethod.DR, 4)),
        # IPVS allows a real of the other family only with tunnelling.
        AddDest(FWM6, DestKey(ip_address("10.20.1.4"), 0), DestAttrs(ForwardMethod.TUNNEL, 1)),
    ]
    result = await client.apply(ops)
    assert result.ok, result.failures
    assert result.applied == len(ops)
    table = await client.dump()
    assert table.services[V4].attrs == ServiceAttrs("rr", ServiceFlag.PERSISTENT, 300, 24)
    assert table.services[V6].attrs.flags == ServiceFlag.SCHED1 | ServiceFlag.SCHED2
    assert table.services[FWM6].attrs.netmask == 64
    assert table.services[V4].dests[R1].attrs == DestAttrs(ForwardMethod.NAT, 3, 100, 10)
    assert table.services[V6].dests[R6].attrs.forward is ForwardMethod.TUNNEL
    assert table.dest_count() == 6
    listing = ipvsadm("-Ln")
    assert "TCP  10.20.0.1:80 rr persistent 300 mask 255.255.255.0" in listing
    assert "SCTP 10.20.0.2:3868 wlc" in listing
    assert "FWM  7 wrr" in listing
    # Scheduler flags named as ipvsadm names them (sh/mh: by meaning, else flag-N).
    ours = ipvsadm_table(services_from_table(table)).splitlines()
    line = "UDP  [2001:db8::1]:53 sh (sh-fallback,sh-port)"
    assert line in listing.splitlines()
    assert line in ours
    assert re.search(r"-> 10\.20\.1\.1:80\s+Masq\s+3\s", listing)
    reader = await BlockingTableReader.open(timeout_s=5)
    try:
        assert reader.dump() == await client.dump(), "the scrape's reader sees another table"
    finally:
        reader.close()


async def test_the_blocking_reader_reads_a_table_bigger_than_one_datagram(
    client: IpvsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The /metrics thread's reader: many datagrams per dump, from a thread, twice.
    No datagram of the kernel's is bigger than 32 KiB: `RECV_SIZE` holds any."""
    services = [
        make_service(
            ServiceKey(
                Family.INET, Protocol.TCP, ip_address(f"10.30.{n // 250}.{n % 250 + 1}"), 80
            ),
            ServiceAttrs("wlc"),
            [
                Dest(DestKey(ip_address(f"10.31.0.{r}"), 80), DestAttrs(ForwardMethod.DR))
                for r in range(1, 5)
            ],
        )
        for n in range(600)
    ]
    result = await client.apply(plan(Table.of(services), Table.of([]), owns=bool).operations)
    assert result.ok, result.failures
    reader = await BlockingTableReader.open(timeout_s=5)
    try:
        first = await asyncio.to_thread(reader.dump)
        second = await asyncio.to_thread(reader.dump)
    finally:
        reader.close()
    assert len(first.services) == 600
    assert first.dest_count() == 2400
    assert first == second == await client.dump()
    bare = await client.dump(with_stats=False)  # the reconciler's read
    assert bare == first
    assert all(service.stats is None for service in bare.services.values())
    sizes: list[int] = []
    read = client._recv

    async def measured() -> memoryview:
        data = await read()
        sizes.append(len(data))
        return data

    monkeypatch.setattr(client, "_recv", measured)
    assert len(await client.dump_services()) == 600  # on the loop, through `_recv`
    assert len(sizes) > 1
    assert max(sizes) <= 32768 < RECV_SIZE


async def test_every_scheduler_the_kernel_has(client: IpvsClient) -> None:
    # Every scheduler the config accepts; twos arrived in Linux 6.6, after this UML kernel.
    schedulers = [name for name in SCHEDULERS if name != "twos"]
    ops = [
        AddService(
            ServiceKey(Family.INET, Protocol.TCP, ip_address("10.21.0.1"), 1000 + i),
            ServiceAttrs(name),
        )
        for i, name in enumerate(schedulers)
    ]
    result = await client.apply(ops)
    assert result.ok, result.failures
    table = await client.dump()
    assert sorted(s.attrs.scheduler for s in table) == sorted(schedulers)


async def test_edits_are_in_place_and_keep_counters(client: IpvsClient) -> None:
    await client.apply([AddService(V4, ServiceAttrs("rr")), AddDest(V4, R1, DestAttrs())])
    result = await client.apply(
        [
            EditService(V4, ServiceAttrs("wlc", ServiceFlag.PERSISTENT, 120, 32)),
            EditDest(V4, R1, DestAttrs(ForwardMethod.DR, 9, 50, 5)),
        ]
    )
    assert result.ok, result.failures
    table = await client.dump()
    assert table.services[V4].attrs == ServiceAttrs("wlc", ServiceFlag.PERSISTENT, 120, 32)
    assert table.services[V4].dests[R1].attrs == DestAttrs(ForwardMethod.DR, 9, 50, 5)
    result = await client.apply([EditService(V4, ServiceAttrs("rr"))])
    assert (await client.dump()).services[V4].attrs == ServiceAttrs("rr")


async def test_tunnel_types_ports_and_checksums_round_trip(client: IpvsClient) -> None:
    gue = DestAttrs(ForwardMethod.TUNNEL, 1, 0, 0, TunnelType.GUE, 6080, TunnelChecksum.CSUM)
    gre = DestAttrs(ForwardMethod.TUNNEL, 2, 0, 0, TunnelType.GRE, 0, TunnelChecksum.REMCSUM)
    result = await client.apply(
        [AddService(V4, ServiceAttrs("rr")), AddDest(V4, R1, gue), AddDest(V4, R2, gre)]
    )
    assert result.ok, result.failures
    dests = (await client.dump()).services[V4].dests
    assert (dests[R1].attrs, dests[R2].attrs) == (gue, gre)
    # The classic tool reads the same settings (the GUE port is big-endian on the wire).
    listing = ipvsadm("-Ln", "--tun-info")
    # ipvsadm's TunnelInfo: type:port:flags, "+c" csum, "r+c" remcsum.
    assert re.search(r"-> 10\.20\.1\.1:80\s+Tunnel\s+gue:6080:\+c\s+1\s", listing), listing
    assert re.search(r"-> 10\.20\.1\.2:8080\s+Tunnel\s+gre:r\+c\s+2\s", listing), listing
    # An edit to plain IPIP sends the attributes explicitly: the GUE settings go.
    ipip = DestAttrs(ForwardMethod.TUNNEL, 1)
    assert (await client.apply([EditDest(V4, R1, ipip)])).ok
    assert (await client.dump()).services[V4].dests[R1].attrs == ipip


async def test_delete_dest_and_service(client: IpvsClient) -> None:
    await client.apply(
        [
            AddService(V4, ServiceAttrs("rr")),
            AddDest(V4, R1, DestAttrs()),
            AddDest(V4, R2, DestAttrs()),
        ]
    )
    assert (await client.apply([DeleteDest(V4, R1)])).ok
    assert list((await client.dump()).services[V4].dests) == [R2]
    assert (await client.apply([DeleteService(V4)])).ok
    assert len(await client.dump()) == 0


async def test_errors_are_translated_and_do_not_stop_the_batch(client: IpvsClient) -> None:
    missing = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.20.0.99"), 80)
    ops: list[Operation] = [
        AddService(V4, ServiceAttrs("rr")),
        AddService(V4, ServiceAttrs("rr")),  # EEXIST
        AddService(missing, ServiceAttrs("xyz")),  # unknown scheduler
        EditService(missing, ServiceAttrs("rr")),  # ESRCH
        DeleteService(missing),  # ESRCH
        AddDest(missing, R1, DestAttrs()),  # ESRCH
        AddDest(V4, R1, DestAttrs()),
        AddDest(V4, R1, DestAttrs()),  # EEXIST
        EditDest(V4, R2, DestAttrs()),  # ENOENT
        DeleteDest(V4, R2),  # ENOENT
        AddDest(V4, R2, DestAttrs()),
    ]
    result = await client.apply(ops)
    assert result.applied == 3
    index = {id(op): i for i, op in enumerate(ops)}
    errors = {index[id(f.operation)]: f.error for f in result.failures}
    assert isinstance(errors[1], AlreadyExists)
    assert isinstance(errors[2], SchedulerUnavailable)
    assert str(errors[2]) == "scheduler 'xyz' is not available (no ip_vs_xyz module)"
    assert all(isinstance(errors[i], NotFound) for i in (3, 4, 5))
    assert isinstance(errors[7], AlreadyExists)
    assert isinstance(errors[8], NotFound)
    assert isinstance(errors[9], NotFound)
    assert "10.20.1.2:8080 of 10.20.0.1:80: not found" in str(errors[9])
    assert set((await client.dump()).services[V4].dests) == {R1, R2}


async def test_only_a_batchs_last_request_is_acked_and_every_failure_still_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of 4: only the 4th request of each asks for an ack (``ipvsd.netlink.ipvs``);
    failures first, inside and last in a batch, and last of all, are each reported."""
    ipvsadm("-C")
    missing = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.20.0.99"), 80)
    ops: list[Operation] = [
        AddService(V4, ServiceAttrs("rr")),  # batch 1
        AddService(V4, ServiceAttrs("rr")),  # EEXIST
        AddDest(V4, R1, DestAttrs()),
        AddDest(missing, R1, DestAttrs()),  # ESRCH, last of its batch
        AddDest(V4, R1, DestAttrs()),  # EEXIST, first of batch 2
        AddDest(V4, R2, DestAttrs()),
        AddService(V6, ServiceAttrs("wlc")),
        AddDest(V6, R6, DestAttrs()),
        AddService(SCTP, ServiceAttrs("rr")),  # batch 3
        DeleteService(missing),  # ESRCH, last of all
    ]
    try:
        async with await IpvsClient.open(batch_size=4) as client:
            reads = 0
            read = client._recv

            async def counted() -> memoryview:
                nonlocal reads
                reads += 1
                return await read()

            monkeypatch.setattr(client, "_recv", counted)
            result = await client.apply(ops)
            assert reads == 5  # one datagram per failure, and each batch's last ack
            index = {id(op): i for i, op in enumerate(ops)}
            errors = {index[id(f.operation)]: type(f.error) for f in result.failures}
            assert errors == {1: AlreadyExists, 3: NotFound, 4: AlreadyExists, 9: NotFound}
            assert result.applied == 6
            # Nothing of those batches is left to be read as the next one's answers.
            again = await client.apply([EditDest(V4, R2, DestAttrs(weight=3))])
            assert (again.applied, again.failures) == (1, ())
            table = await client.dump()
        assert set(table.services) == {V4, V6, SCTP}
        assert set(table.services[V4].dests) == {R1, R2}
        assert table.services[V4].dests[R2].attrs.weight == 3
    finally:
        ipvsadm("-C")


async def test_timeouts_get_and_set(client: IpvsClient) -> None:
    before = await client.get_timeouts()
    try:
        await client.set_timeouts(Timeouts(tcp=901, tcpfin=61, udp=301))
        assert await client.get_timeouts() == Timeouts(901, 61, 301)
        assert "Timeout (tcp tcpfin udp): 901 61 301" in ipvsadm("-Ln", "--timeout")
        await client.set_timeouts(Timeouts(tcp=0, tcpfin=62, udp=0))  # 0 = unchanged
        assert await client.get_timeouts() == Timeouts(901, 62, 301)
    finally:
        await client.set_timeouts(before)


async def test_info(client: IpvsClient) -> None:
    info = await client.info()
    assert info.version.startswith("1.2.")
    assert info.conn_tab_size > 0


async def test_zero_counters(client: IpvsClient) -> None:
    await client.apply([AddService(V4, ServiceAttrs("rr"))])
    await client.zero(V4)
    await client.zero()
    assert (await client.dump()).services[V4].stats is not None


async def test_plan_converges_on_the_real_kernel(client: IpvsClient) -> None:
    """The planner's property, on the kernel: apply, re-dump, the next plan is empty."""
    foreign = ServiceKey(Family.INET, Protocol.UDP, ip_address("10.20.9.9"), 9)
    ipvsadm("-A", "-u", "10.20.9.9:9", "-s", "rr")
    await client.apply(
        [
            AddService(V4, ServiceAttrs("rr")),
            AddDest(V4, R1, DestAttrs(weight=5)),
            AddService(SCTP, ServiceAttrs("lc")),
        ]
    )
    desired = Table.of(
        [
            make_service(
                V4,
                ServiceAttrs("wrr"),
                [Dest(R1, DestAttrs(weight=2)), Dest(R2, DestAttrs(ForwardMethod.DR))],
            ),
            make_service(
                FWM,
                ServiceAttrs("rr"),
                [Dest(DestKey(ip_address("10.20.1.5"), 0), DestAttrs(ForwardMethod.DR))],
            ),
            make_service(V6, ServiceAttrs("sh"), [Dest(R6, DestAttrs(ForwardMethod.TUNNEL))]),
        ]
    )
    owned = {V4, SCTP, FWM, V6}
    todo = plan(desired, await client.dump(), owns=owned.__contains__)
    result = await client.apply(todo.operations)
    assert result.ok, result.failures
    actual = await client.dump()
    assert plan(desired, actual, owns=owned.__contains__).is_empty()
    assert SCTP not in actual.services
    assert foreign in actual.services  # not ours: left alone
    assert {k: s for k, s in actual.services.items() if k != foreign} == desired.services
