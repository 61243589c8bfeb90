"""The reconcile planner, proven against FakeIpvs (style G4, G6).

Table-driven cases pin the rules of `ipvsd.ipvs.plan` one by one;
hypothesis properties then check that any plan converges, leaves foreign
services alone, never makes the kernel refuse an operation, and counts its
deletes right.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvsd.errors import AlreadyExists, KernelError, NotFound, SchedulerUnavailable
from ipvsd.ipvs.plan import (
    OPERATION_LABELS,
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    IpvsBackend,
    Operation,
    OwnsService,
    Plan,
    guard,
    mh_readds,
    plan,
)
from ipvsd.mh import MH, mh_order
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
    Table,
    fwmark_key,
    make_service,
    parse_endpoint,
)
from tests.fakes.ipvs import FakeIpvs

ALL: OwnsService = lambda key: True  # noqa: E731
NONE: OwnsService = lambda key: False  # noqa: E731

# --- builders ----------------------------------------------------------------


def svc(text: str, protocol: Protocol = Protocol.TCP) -> ServiceKey:
    """``svc("10.0.0.1:80")`` / ``svc("[2001:db8::1]:443", Protocol.UDP)``."""
    address, port = parse_endpoint(text)
    return ServiceKey(Family.of(address), protocol, address, port)


def dk(text: str) -> DestKey:
    return DestKey(*parse_endpoint(text))


def dest(text: str, **attrs: object) -> Dest:
    return Dest(dk(text), DestAttrs(**attrs))  # type: ignore[arg-type]


def service(key: ServiceKey, *dests: Dest, **attrs: object) -> Service:
    return make_service(key, ServiceAttrs(**attrs), dests)  # type: ignore[arg-type]


def table(*services: Service) -> Table:
    return Table.of(services)


WEB = svc("10.0.0.1:80")
WEB6 = svc("[2001:db8::1]:443")
DNS = svc("10.0.0.1:53", Protocol.UDP)
MARK = fwmark_key(Family.INET, 7)
OPERATOR = svc("10.9.9.9:22")  # made by an operator: not ours

FULL = table(
    service(WEB, dest("10.0.1.1:8080", weight=2), dest("10.0.1.2:8080")),
    service(WEB6, dest("[2001:db8::10]:443", forward=ForwardMethod.DR)),
    service(DNS, dest("10.0.1.1:53"), scheduler="rr"),
    service(MARK, dest("10.0.1.3:0"), scheduler="sh"),
)


# --- table-driven planner cases ------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    desired: Table
    actual: Table
    owns: OwnsService
    expected: tuple[Operation, ...]


CASES = [
    Case("empty to empty", Table(), Table(), ALL, ()),
    Case(
        "empty to full, services then dests, each sorted",
        FULL,
        Table(),
        ALL,
        (
            AddService(MARK, ServiceAttrs(scheduler="sh")),
            AddService(WEB, ServiceAttrs()),
            AddService(DNS, ServiceAttrs(scheduler="rr")),
            AddService(WEB6, ServiceAttrs()),
            AddDest(MARK, dk("10.0.1.3:0"), DestAttrs()),
            AddDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=2)),
            AddDest(WEB, dk("10.0.1.2:8080"), DestAttrs()),
            AddDest(DNS, dk("10.0.1.1:53"), DestAttrs()),
            AddDest(WEB6, dk("[2001:db8::10]:443"), DestAttrs(forward=ForwardMethod.DR)),
        ),
    ),
    Case(
        "full to empty when owned: services only, their dests go with them",
        Table(),
        FULL,
        ALL,
        (DeleteService(MARK), DeleteService(WEB), DeleteService(DNS), DeleteService(WEB6)),
    ),
    Case("full to empty when foreign: nothing", Table(), FULL, NONE, ()),
    Case(
        "foreign service untouched, dests included",
        table(service(WEB, dest("10.0.1.1:8080"))),
        table(service(WEB, dest("10.0.1.1:8080")), service(OPERATOR, dest("10.0.2.1:22"))),
        lambda key: key == WEB,
        (),
    ),
    Case(
        "desired services are ours even if owns() says no",
        table(service(WEB, dest("10.0.1.1:8080", weight=5))),
        table(service(WEB, dest("10.0.1.1:8080"), dest("10.0.1.2:8080"))),
        NONE,
        (
            EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=5)),
            DeleteDest(WEB, dk("10.0.1.2:8080")),
        ),
    ),
    Case(
        "weight change is exactly one EditDest",
        table(service(WEB, dest("10.0.1.1:8080", weight=0), dest("10.0.1.2:8080"))),
        table(service(WEB, dest("10.0.1.1:8080"), dest("10.0.1.2:8080"))),
        ALL,
        (EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=0)),),
    ),
    Case(
        "forwarding change is an EditDest",
        table(service(WEB, dest("10.0.1.1:8080", forward=ForwardMethod.DR))),
        table(service(WEB, dest("10.0.1.1:8080"))),
        ALL,
        (EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(forward=ForwardMethod.DR)),),
    ),
    Case(
        "threshold change is an EditDest",
        table(service(WEB, dest("10.0.1.1:8080", upper_threshold=100))),
        table(service(WEB, dest("10.0.1.1:8080"))),
        ALL,
        (EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(upper_threshold=100)),),
    ),
    Case(
        "scheduler change is an EditService, dests untouched",
        table(service(WEB, dest("10.0.1.1:8080"), scheduler="rr")),
        table(service(WEB, dest("10.0.1.1:8080"), scheduler="wlc")),
        ALL,
        (EditService(WEB, ServiceAttrs(scheduler="rr")),),
    ),
    Case(
        "persistence change is an EditService",
        table(service(WEB, flags=ServiceFlag.PERSISTENT, timeout=300)),
        table(service(WEB)),
        ALL,
        (EditService(WEB, ServiceAttrs(flags=ServiceFlag.PERSISTENT, timeout=300)),),
    ),
    Case(
        "dest key change (port) is add then delete",
        table(service(WEB, dest("10.0.1.1:8081"))),
        table(service(WEB, dest("10.0.1.1:8080"))),
        ALL,
        (AddDest(WEB, dk("10.0.1.1:8081"), DestAttrs()), DeleteDest(WEB, dk("10.0.1.1:8080"))),
    ),
    Case(
        "service key change (protocol) is add + dests, then delete",
        table(service(svc("10.0.0.1:80", Protocol.SCTP), dest("10.0.1.1:8080"))),
        table(service(WEB, dest("10.0.1.1:8080"))),
        ALL,
        (
            AddService(svc("10.0.0.1:80", Protocol.SCTP), ServiceAttrs()),
            AddDest(svc("10.0.0.1:80", Protocol.SCTP), dk("10.0.1.1:8080"), DestAttrs()),
            DeleteService(WEB),
        ),
    ),
    Case("adopt: identical tables give an empty plan", FULL, FULL, ALL, ()),
    Case(
        "adopt ignores kernel counters",
        table(service(WEB, dest("10.0.1.1:8080"))),
        table(
            Service(
                WEB,
                ServiceAttrs(),
                {
                    dk("10.0.1.1:8080"): Dest(
                        dk("10.0.1.1:8080"), DestAttrs(), DestCounters(active_conns=12)
                    )
                },
                Stats(conns=99),
            )
        ),
        ALL,
        (),
    ),
    Case(
        "phase order: add/edit services, add/edit dests, delete dests, delete services",
        table(
            service(WEB, dest("10.0.1.1:8080", weight=3), dest("10.0.1.9:8080"), scheduler="rr"),
            service(DNS, dest("10.0.1.1:53")),
        ),
        table(
            service(WEB, dest("10.0.1.1:8080"), dest("10.0.1.2:8080")),
            service(WEB6, dest("[2001:db8::10]:443"), dest("[2001:db8::11]:443")),
            service(OPERATOR),
        ),
        lambda key: key != OPERATOR,
        (
            EditService(WEB, ServiceAttrs(scheduler="rr")),
            AddService(DNS, ServiceAttrs()),
            EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=3)),
            AddDest(WEB, dk("10.0.1.9:8080"), DestAttrs()),
            AddDest(DNS, dk("10.0.1.1:53"), DestAttrs()),
            DeleteDest(WEB, dk("10.0.1.2:8080")),
            DeleteService(WEB6),
        ),
    ),
    Case(
        "mixed-family tunnel dests and fwmark keys sort without TypeError",
        table(
            service(
                MARK,
                dest("[2001:db8::2]:0", forward=ForwardMethod.TUNNEL),
                dest("10.0.1.2:0", forward=ForwardMethod.TUNNEL),
            ),
            service(WEB),
        ),
        table(
            service(
                MARK,
                dest("[2001:db8::1]:0", forward=ForwardMethod.TUNNEL),
                dest("10.0.1.1:0", forward=ForwardMethod.TUNNEL),
            )
        ),
        ALL,
        (
            AddService(WEB, ServiceAttrs()),
            AddDest(MARK, dk("10.0.1.2:0"), DestAttrs(forward=ForwardMethod.TUNNEL)),
            AddDest(MARK, dk("[2001:db8::2]:0"), DestAttrs(forward=ForwardMethod.TUNNEL)),
            DeleteDest(MARK, dk("10.0.1.1:0")),
            DeleteDest(MARK, dk("[2001:db8::1]:0")),
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_plan(case: Case) -> None:
    result = plan(case.desired, case.actual, owns=case.owns)
    assert result.operations == case.expected

    kernel = FakeIpvs(case.actual)
    assert kernel.apply_sync(result.operations).ok
    assert kernel.operations_seen == len(case.expected)
    for key, wanted in case.desired.services.items():
        assert kernel.table.services[key] == wanted
    assert plan(case.desired, kernel.table, owns=case.owns).is_empty()


def test_owns_is_asked_only_about_services_not_desired() -> None:
    asked: list[ServiceKey] = []

    def owns(key: ServiceKey) -> bool:
        asked.append(key)
        return False

    plan(table(service(WEB), service(DNS)), table(service(WEB), service(OPERATOR)), owns=owns)
    assert asked == [OPERATOR]


def test_plan_does_not_depend_on_mapping_order() -> None:
    def reverse(t: Table) -> Table:
        return Table.of(
            [
                Service(s.key, s.attrs, dict(reversed(list(s.dests.items()))))
                for s in reversed(list(t))
            ]
        )

    actual = table(service(WEB6, dest("[2001:db8::10]:443")), service(OPERATOR))
    assert plan(FULL, actual, owns=ALL) == plan(reverse(FULL), reverse(actual), owns=ALL)


def test_weight_edit_keeps_the_dests_counters() -> None:
    busy = Dest(dk("10.0.1.1:8080"), DestAttrs(), DestCounters(active_conns=40))
    kernel = FakeIpvs(table(Service(WEB, ServiceAttrs(), {busy.key: busy}, Stats(conns=7))))
    desired = table(service(WEB, dest("10.0.1.1:8080", weight=0)))

    kernel.apply_sync(plan(desired, kernel.table, owns=ALL))

    after = kernel.table.services[WEB]
    assert after.dests[busy.key].attrs.weight == 0
    assert after.dests[busy.key].counters == DestCounters(active_conns=40)
    assert after.stats == Stats(conns=7)
    assert kernel.operations_seen == 1


# --- Plan helpers and the guard -------------------------------------------------


def test_plan_helpers() -> None:
    result = plan(
        table(service(WEB, dest("10.0.1.1:8080", weight=0)), service(DNS)),
        table(service(WEB, dest("10.0.1.1:8080"), dest("10.0.1.2:8080")), FULL.services[WEB6]),
        owns=ALL,
    )
    assert len(result) == 4
    assert list(result) == list(result.operations)
    assert not result.is_empty()
    assert result.counts() == {
        "add_service": 1,
        "edit_service": 0,
        "delete_service": 1,
        "add_dest": 0,
        "edit_dest": 1,
        "delete_dest": 1,
    }
    assert set(result.counts()) == set(OPERATION_LABELS.values())
    # one DeleteDest, one DeleteService, and the deleted service's one dest
    assert result.implicit_dest_deletes == 1
    assert result.deletes == 3
    assert Plan().is_empty()
    assert Plan().deletes == 0


@pytest.mark.parametrize(
    ("max_deletes", "refused"),
    [(None, False), (100, False), (7, False), (6, True), (0, True)],
)
def test_guard(max_deletes: int | None, refused: bool) -> None:
    truncated_config = table(service(DNS, dest("10.0.1.1:53"), scheduler="rr"))
    result = plan(truncated_config, FULL, owns=ALL)
    assert result.deletes == 3 + 4  # WEB, WEB6, MARK and their 2 + 1 + 1 dests
    reason = guard(result, max_deletes)
    assert (reason is not None) is refused
    if reason is not None:
        assert "deletes 7 objects" in reason
        assert f"max_deletes={max_deletes}" in reason


def test_guard_passes_an_empty_plan_at_zero() -> None:
    assert guard(Plan(), 0) is None
    with pytest.raises(ValueError, match="max_deletes"):
        guard(Plan(), -1)


# --- FakeIpvs semantics -----------------------------------------------------------

SMALL = table(service(WEB, dest("10.0.1.1:8080")))


def fake_case_id(value: object) -> str:
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, int):
        return errno.errorcode[value]
    return type(value).__name__


@pytest.mark.parametrize(
    ("operation", "error_type", "errno_value"),
    [
        (AddService(WEB, ServiceAttrs()), AlreadyExists, errno.EEXIST),
        (EditService(DNS, ServiceAttrs()), NotFound, errno.ESRCH),
        (DeleteService(DNS), NotFound, errno.ESRCH),
        (AddDest(DNS, dk("10.0.1.1:53"), DestAttrs()), NotFound, errno.ESRCH),
        (AddDest(WEB, dk("10.0.1.1:8080"), DestAttrs()), AlreadyExists, errno.EEXIST),
        (EditDest(WEB, dk("10.0.1.2:8080"), DestAttrs()), NotFound, errno.ENOENT),
        (DeleteDest(WEB, dk("10.0.1.2:8080")), NotFound, errno.ENOENT),
        (AddService(DNS, ServiceAttrs(scheduler="nope")), SchedulerUnavailable, errno.ENOENT),
        (EditService(WEB, ServiceAttrs(scheduler="nope")), SchedulerUnavailable, errno.ENOENT),
        (AddDest(WEB, dk("[2001:db8::1]:80"), DestAttrs()), KernelError, errno.EINVAL),
        (AddDest(WEB, dk("10.0.1.2:80"), DestAttrs(lower_threshold=1)), KernelError, errno.ERANGE),
        (EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=-1)), KernelError, errno.ERANGE),
    ],
    ids=fake_case_id,
)
def test_fake_refuses_like_the_kernel(
    operation: Operation, error_type: type[KernelError], errno_value: int
) -> None:
    kernel = FakeIpvs(SMALL)
    result = kernel.apply_sync([operation])
    assert result.applied == 0
    [failure] = result.failures
    assert failure.operation == operation
    assert type(failure.error) is error_type
    assert failure.error.errno == errno_value
    assert kernel.table == SMALL
    assert kernel.operations_seen == 1


def test_fake_continues_after_a_refusal() -> None:
    kernel = FakeIpvs(SMALL)
    result = kernel.apply_sync(
        [AddService(WEB, ServiceAttrs()), AddService(DNS, ServiceAttrs()), DeleteService(WEB)]
    )
    assert result.applied == 2
    assert [type(f.error) for f in result.failures] == [AlreadyExists]
    assert kernel.table == table(service(DNS))
    assert kernel.operations_seen == 3
    assert kernel.failures == list(result.failures)


def test_fake_delete_service_drops_its_dests() -> None:
    kernel = FakeIpvs(SMALL)
    assert kernel.apply_sync([DeleteService(WEB), AddService(WEB, ServiceAttrs())]).ok
    assert kernel.table == table(service(WEB))


def test_fake_finds_fwmark_services_by_family_and_mark() -> None:
    kernel = FakeIpvs(table(service(MARK)))
    udp_mark = replace(MARK, protocol=Protocol.UDP)
    result = kernel.apply_sync([AddService(udp_mark, ServiceAttrs()), DeleteService(udp_mark)])
    assert [type(f.error) for f in result.failures] == [AlreadyExists]
    assert kernel.table == Table()


def test_fake_injected_failure_applies_once() -> None:
    kernel = FakeIpvs(SMALL)
    kernel.fail_next[EditDest] = KernelError("injected", errno=errno.ENOMEM)
    edit = EditDest(WEB, dk("10.0.1.1:8080"), DestAttrs(weight=9))
    first = kernel.apply_sync([AddService(DNS, ServiceAttrs()), edit])
    assert first.applied == 1
    assert [f.error.errno for f in first.failures] == [errno.ENOMEM]
    assert kernel.table.services[WEB] == SMALL.services[WEB]
    assert kernel.apply_sync([edit]).ok
    assert kernel.table.services[WEB].dests[edit.key].attrs.weight == 9


async def test_fake_is_an_async_backend() -> None:
    backend: IpvsBackend = FakeIpvs(SMALL)
    result = await backend.apply([AddDest(WEB, dk("10.0.1.2:8080"), DestAttrs())])
    assert result.ok
    assert result.applied == 1
    dumped = await backend.dump()
    assert dumped.dest_count() == 2
    assert all(d.counters is not None for s in dumped for d in s.dests.values())


# --- hypothesis properties ------------------------------------------------------
#
# Small address/port pools make desired and actual share keys often, so edits,
# dest diffs and deletes all happen, not just "add everything".

V4 = [IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")]
V6 = [IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")]
REAL_V4 = [IPv4Address("10.1.0.1"), IPv4Address("10.1.0.2"), IPv4Address("10.1.0.3")]
REAL_V6 = [IPv6Address("2001:db8:1::1"), IPv6Address("2001:db8:1::2")]


def addresses(
    family: Family, pool4: list[IPv4Address], pool6: list[IPv6Address]
) -> st.SearchStrategy[IPAddress]:
    return st.sampled_from(pool4 if family is Family.INET else pool6)


families = st.sampled_from(Family)

service_keys: st.SearchStrategy[ServiceKey] = st.one_of(
    families.flatmap(
        lambda family: st.builds(
            ServiceKey,
            st.just(family),
            st.sampled_from(Protocol),
            addresses(family, V4, V6),
            st.sampled_from([80, 443]),
        )
    ),
    st.builds(fwmark_key, families, st.integers(1, 2)),
)


@st.composite
def service_attrs(draw: st.DrawFn, family: Family) -> ServiceAttrs:
    timeout = draw(st.sampled_from([0, 300]))
    flags = ServiceFlag.PERSISTENT if timeout else ServiceFlag(0)
    if draw(st.booleans()):
        flags |= draw(st.sampled_from([ServiceFlag.ONEPACKET, ServiceFlag.SCHED1]))
    return ServiceAttrs(
        scheduler=draw(st.sampled_from(["wlc", "rr", "sh", "mh"])),
        flags=flags,
        timeout=timeout,
        netmask=draw(st.sampled_from([32, 24] if family is Family.INET else [128, 64])),
    )


@st.composite
def dest_attrs(draw: st.DrawFn, forward: st.SearchStrategy[ForwardMethod]) -> DestAttrs:
    upper = draw(st.sampled_from([0, 100]))
    return DestAttrs(
        forward=draw(forward),
        weight=draw(st.integers(0, 3)),
        upper_threshold=upper,
        lower_threshold=draw(st.integers(0, upper // 2)) if upper else 0,
    )


@st.composite
def dests(draw: st.DrawFn, service_key: ServiceKey) -> dict[DestKey, Dest]:
    """Dests of the service's family; the other family only with tunnel forwarding."""
    result: dict[DestKey, Dest] = {}
    for _ in range(draw(st.integers(0, 4))):
        family = service_key.family
        forward: st.SearchStrategy[ForwardMethod] = st.sampled_from(ForwardMethod)
        if draw(st.integers(0, 4)) == 0:
            family = Family.INET6 if family is Family.INET else Family.INET
            forward = st.just(ForwardMethod.TUNNEL)
        key = DestKey(
            draw(addresses(family, REAL_V4, REAL_V6)),
            0 if service_key.fwmark else draw(st.sampled_from([80, 8080])),
        )
        result[key] = Dest(key, draw(dest_attrs(forward)))
    return result


@st.composite
def services(draw: st.DrawFn, key: ServiceKey) -> Service:
    attrs = draw(service_attrs(key.family))
    drawn = draw(dests(key))
    if attrs.scheduler == MH:  # as `ipvsd.desired` builds it: the kernel's list order
        drawn = {dest.key: dest for dest in mh_order(drawn.values())}
    return Service(key, attrs, drawn)


@st.composite
def tables(draw: st.DrawFn) -> Table:
    keys = draw(st.lists(service_keys, max_size=6, unique=True))
    return Table({key: draw(services(key)) for key in keys})


@st.composite
def mutated(draw: st.DrawFn, base: Table) -> Table:
    """`base` after drift: services dropped or changed, dests dropped/changed/added, extras."""
    result: dict[ServiceKey, Service] = {}
    for original in base:
        match draw(st.sampled_from(["keep", "drop", "attrs", "dests"])):
            case "keep":
                result[original.key] = original
            case "drop":
                pass
            case "attrs":
                result[original.key] = replace(
                    original, attrs=draw(service_attrs(original.key.family))
                )
            case _:
                kept = {
                    key: value
                    if draw(st.booleans())
                    else replace(value, attrs=draw(dest_attrs(st.just(value.attrs.forward))))
                    for key, value in original.dests.items()
                    if draw(st.integers(0, 3))
                }
                result[original.key] = replace(
                    original, dests={**draw(dests(original.key)), **kept}
                )
    for extra in draw(tables()):
        result.setdefault(extra.key, extra)
    return Table(result)


@st.composite
def table_pairs(draw: st.DrawFn) -> tuple[Table, Table]:
    """(desired, actual): unrelated, or actual as drifted desired."""
    desired = draw(tables())
    actual = draw(st.one_of(tables(), mutated(desired)))
    return desired, actual


PROPERTY = settings(max_examples=200, deadline=None)


def apply_all(kernel: FakeIpvs, desired: Table, owns: OwnsService) -> Plan:
    result = plan(desired, kernel.table, owns=owns)
    applied = kernel.apply_sync(result)
    assert applied.ok, applied.failures  # (c) never EEXIST / ENOENT / ESRCH / EINVAL
    assert applied.applied == len(result)
    return result


def service_of(operation: Operation) -> ServiceKey:
    if isinstance(operation, AddDest | EditDest | DeleteDest):
        return operation.service
    return operation.key


def phase(operation: Operation) -> int:
    match operation:
        case AddService() | EditService():
            return 0
        case AddDest() | EditDest():
            return 1
        case DeleteDest():
            return 2
        case DeleteService():
            return 3


def is_readd(op: Operation, then: Operation) -> bool:
    """A `DeleteDest` followed by the `AddDest` of the same dest (an mh re-add)."""
    return (
        isinstance(op, DeleteDest)
        and isinstance(then, AddDest)
        and (then.service, then.key) == (op.service, op.key)
    )


@PROPERTY
@given(pair=table_pairs())
def test_plan_converges(pair: tuple[Table, Table]) -> None:
    desired, actual = pair
    kernel = FakeIpvs(actual)
    result = apply_all(kernel, desired, ALL)
    assert kernel.table == desired
    assert plan(desired, kernel.table, owns=ALL).is_empty()
    ops = result.operations
    readds = [i for i, op in enumerate(ops[:-1]) if is_readd(op, ops[i + 1])]
    assert len(readds) == result.readded_dests
    phases = [1 if i in readds else phase(op) for i, op in enumerate(ops)]
    assert phases == sorted(phases)
    for key, service in desired.services.items():  # mh: the kernel's list is the canonical one
        if service.attrs.scheduler == MH:
            assert list(kernel.table.services[key].dests) == list(service.dests)


@PROPERTY
@given(pair=table_pairs(), data=st.data())
def test_plan_leaves_foreign_services_alone(pair: tuple[Table, Table], data: st.DataObject) -> None:
    desired, actual = pair
    only_kernel = sorted(actual.services.keys() - desired.services.keys(), key=str)
    owned = data.draw(st.sets(st.sampled_from(only_kernel)) if only_kernel else st.just(set()))
    owns: OwnsService = lambda key: key in desired.services or key in owned  # noqa: E731
    kernel = FakeIpvs(actual)

    result = apply_all(kernel, desired, owns)

    after = kernel.table.services
    for key in only_kernel:
        if key in owned:
            assert key not in after
        else:
            assert after[key] == actual.services[key]
    for key, wanted in desired.services.items():
        assert after[key] == wanted
    foreign = set(only_kernel) - owned
    assert not {service_of(op) for op in result} & foreign


@PROPERTY
@given(pair=table_pairs())
def test_deletes_counts_every_object_that_disappears(pair: tuple[Table, Table]) -> None:
    desired, actual = pair
    kernel = FakeIpvs(actual)
    result = apply_all(kernel, desired, ALL)
    after = kernel.table.services
    gone_services = sum(key not in after for key in actual.services)
    gone_dests = sum(
        key not in after or dest_key not in after[key].dests
        for key, old in actual.services.items()
        for dest_key in old.dests
    )
    assert result.deletes == gone_services + gone_dests


@PROPERTY
@given(t=tables())
def test_plan_of_a_table_against_itself_is_empty(t: Table) -> None:
    assert plan(t, t, owns=ALL).is_empty()
    assert plan(t, FakeIpvs(t).table, owns=ALL).is_empty()


# --- mh: the kernel's list order and last weights (docs/consistent-hashing.md) ---------

MH_SVC = ServiceKey(Family.INET, Protocol.TCP, IPv4Address("10.0.0.50"), 80, 0)
MH_ATTRS = ServiceAttrs(scheduler=MH, flags=ServiceFlag.SCHED2)
R1, R2, R3, R4 = (dk(f"10.0.2.{i}:80") for i in range(1, 5))


def mh_service(*dests: Dest, last: dict[DestKey, int] | None = None) -> Service:
    """An mh service as `ipvsd.desired` builds it (dests in `mh_order`)."""
    return Service(MH_SVC, MH_ATTRS, {d.key: d for d in mh_order(dests)}, last_weights=last or {})


def kernel_mh(*keys: DestKey, weight: int = 1) -> Table:
    """The kernel's mh service with `keys` in that list order (head first)."""
    return table(Service(MH_SVC, MH_ATTRS, {k: Dest(k, DestAttrs(weight=weight)) for k in keys}))


def w(weight: int) -> DestAttrs:
    return DestAttrs(weight=weight)


def test_mh_fresh_service_adds_in_ascending_order_so_the_list_is_descending() -> None:
    want = table(mh_service(*(Dest(k, w(1)) for k in (R3, R1, R4, R2))))
    result = plan(want, Table(), owns=ALL)
    assert result.operations == (
        AddService(MH_SVC, MH_ATTRS),
        *(AddDest(MH_SVC, k, w(1)) for k in (R1, R2, R3, R4)),
    )
    kernel = FakeIpvs()
    kernel.apply_sync(result)
    assert list(kernel.table.services[MH_SVC].dests) == [R4, R3, R2, R1]
    assert list(want.services[MH_SVC].dests) == [R4, R3, R2, R1]  # the belief models it


def test_mh_real_desired_at_0_is_added_at_its_last_weight_then_zeroed() -> None:
    want = table(mh_service(Dest(R1, w(1)), Dest(R2, w(0)), Dest(R3, w(1)), last={R2: 3}))
    result = plan(want, Table(), owns=ALL)
    assert result.operations[1:] == (
        AddDest(MH_SVC, R1, w(1)),
        AddDest(MH_SVC, R2, w(3)),
        EditDest(MH_SVC, R2, w(0)),
        AddDest(MH_SVC, R3, w(1)),
    )


def test_mh_real_added_by_a_reload_in_the_middle_readds_those_before_it() -> None:
    # Kernel list R4 R2 R1 (canonical without R3); R3 must sit between R4 and R2:
    # R3 is added, then R4 deleted and added back (to the head).
    want = table(mh_service(*(Dest(k, w(1)) for k in (R1, R2, R3, R4))))
    result = plan(want, kernel_mh(R4, R2, R1), owns=ALL)
    assert result.operations == (
        AddDest(MH_SVC, R3, w(1)),
        DeleteDest(MH_SVC, R4),
        AddDest(MH_SVC, R4, w(1)),
    )
    assert result.readded_dests == 1
    assert result.deletes == 0  # a re-add deletes nothing for the guard rail
    kernel = FakeIpvs(kernel_mh(R4, R2, R1))
    kernel.apply_sync(result)
    assert list(kernel.table.services[MH_SVC].dests) == [R4, R3, R2, R1]


def test_mh_real_added_at_the_head_readds_nothing() -> None:
    want = table(mh_service(*(Dest(k, w(1)) for k in (R1, R2, R3, R4))))
    result = plan(want, kernel_mh(R3, R2, R1), owns=ALL)
    assert result.operations == (AddDest(MH_SVC, R4, w(1)),)


def test_mh_readded_drained_real_keeps_its_configured_last_weight() -> None:
    want = table(
        mh_service(Dest(R1, w(1)), Dest(R2, w(1)), Dest(R3, w(0)), Dest(R4, w(2)), last={R3: 2})
    )
    # List R2 R3 R1, R3 drained, R4 not there: R3 is misplaced, R4 new.
    order = (R2, R3, R1)
    kernel = table(Service(MH_SVC, MH_ATTRS, {k: Dest(k, w(0 if k == R3 else 1)) for k in order}))
    result = plan(want, kernel, owns=ALL)
    assert result.operations == (
        DeleteDest(MH_SVC, R3),
        AddDest(MH_SVC, R3, w(2)),
        EditDest(MH_SVC, R3, w(0)),
        AddDest(MH_SVC, R4, w(2)),
    )


def test_mh_adoption_of_a_list_in_another_order_makes_it_canonical() -> None:
    want = table(mh_service(*(Dest(k, w(1)) for k in (R1, R2, R3, R4))))
    kernel = FakeIpvs(kernel_mh(R1, R2, R3, R4))  # added the other way round
    result = plan(want, kernel.table, owns=ALL)
    assert result.readded_dests == 3
    kernel.apply_sync(result)
    assert list(kernel.table.services[MH_SVC].dests) == [R4, R3, R2, R1]
    assert plan(want, kernel.table, owns=ALL).is_empty()


@pytest.mark.parametrize(
    ("kernel", "added"),
    [
        ("", "1234"),
        ("4321", ""),
        ("421", "34"),  # 3 new, 4 before it
        ("431", "234"),  # 2 new between 3 and 1
        ("321", "4"),
        ("1234", "234"),  # reversed: only the tail "1" stays
        ("4231", "34"),  # 3 misplaced
        ("42", "1234"),  # 1 new at the tail: everything is added anew
        ("3", "1234"),
    ],
)
def test_mh_readds_keep_the_longest_canonical_tail(kernel: str, added: str) -> None:
    # Each digit names a dest: "1" is R1 ... "4" is R4.
    dest = {"1": R1, "2": R2, "3": R3, "4": R4}
    digit = {key: d for d, key in dest.items()}
    canonical = [dest[d] for d in "4321"]
    readds = mh_readds(canonical, [dest[d] for d in kernel])
    assert "".join(digit[key] for key in readds) == added


def test_mh_zeroed_real_gets_the_configs_last_weight_when_the_kernels_is_known() -> None:
    # R2 at 0 (down) in the table believed after a pass, last weight 1; a reload makes
    # its configured weight 3: raised to 3 and zeroed, as a fresh director adds it.
    believed = Service(
        MH_SVC,
        MH_ATTRS,
        {k: Dest(k, w(0 if k == R2 else 1)) for k in (R2, R1)},
        last_weights={R2: 1},
    )
    want = table(mh_service(Dest(R1, w(1)), Dest(R2, w(0)), last={R2: 3}))
    result = plan(want, table(believed), owns=ALL)
    assert result.operations == (EditDest(MH_SVC, R2, w(3)), EditDest(MH_SVC, R2, w(0)))
    # A dump does not say the last weight: nothing to do.
    dumped = table(
        Service(MH_SVC, MH_ATTRS, {k: Dest(k, w(0 if k == R2 else 1)) for k in (R2, R1)})
    )
    assert plan(want, dumped, owns=ALL).is_empty()


def test_mh_real_zeroed_from_a_dynamic_weight_gets_its_configured_last_weight() -> None:
    up = Service(MH_SVC, MH_ATTRS, {k: Dest(k, w(7 if k == R2 else 1)) for k in (R2, R1)})
    want = table(mh_service(Dest(R1, w(1)), Dest(R2, w(0)), last={R2: 3}))
    assert plan(want, table(up), owns=ALL).operations == (
        EditDest(MH_SVC, R2, w(3)),
        EditDest(MH_SVC, R2, w(0)),
    )
