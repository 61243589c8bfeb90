"""FakeIpvs: an in-memory IPVS table with the kernel's semantics (style G6).

It simulates state rather than recording calls (faucet's ``FakeOFTable``):
tests apply operations and assert on the resulting `table`. Each operation
is checked the way ``ip_vs_genl_set_cmd`` (net/netfilter/ipvs/ip_vs_ctl.c)
checks it, in the same order, with the same errno:

===============  =========================================  ===========================
operation        refused when                               error (errno)
===============  =========================================  ===========================
any but Add-     the service is missing                     NotFound (ESRCH)
Service
AddService       the service exists                         AlreadyExists (EEXIST)
Add/EditService  the scheduler is not loaded                SchedulerUnavailable (ENOENT)
Add/EditDest     dest family != service family and the      KernelError (EINVAL)
                 forwarding method is not tunnel
Add/EditDest     weight < 0 or lower > upper threshold      KernelError (ERANGE)
AddDest          the dest exists                            AlreadyExists (EEXIST)
Edit/DeleteDest  the dest is missing                        NotFound (ENOENT)
===============  =========================================  ===========================

Like a batch of netlink messages each acked on its own, a refused operation
changes nothing and the next one is still applied. DeleteService drops the
service's dests. Fwmark services are looked up by (family, mark) only, as the
kernel does. Edits keep the object's counters; adds start them at zero.
Each dest's ``last_weight`` (what an ``mh`` service's Maglev table is built
from, docs/consistent-hashing.md) is kept as ``__ip_vs_update_dest`` keeps it
(set by an add, and by an edit to a non-zero weight) and read with
`FakeIpvs.last_weights`: a dump does not report it.
Not modelled: the dest trash list, the sync daemon, persistence engines.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ipvsd.errors import AlreadyExists, KernelError, NotFound, SchedulerUnavailable
from ipvsd.ipvs.plan import (
    OPERATION_LABELS,
    AddDest,
    AddService,
    ApplyResult,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Operation,
    OperationFailed,
)
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    ForwardMethod,
    Service,
    ServiceAttrs,
    ServiceKey,
    Stats,
    Table,
    fwmark_key,
)

#: Schedulers of a stock kernel (the ip_vs_* scheduler modules).
KERNEL_SCHEDULERS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
)


@dataclass(slots=True)
class _FakeService:
    attrs: ServiceAttrs
    stats: Stats
    dests: dict[DestKey, Dest] = field(default_factory=dict)
    last_weights: dict[DestKey, int] = field(default_factory=dict)


def _kernel_key(key: ServiceKey) -> ServiceKey:
    # The kernel finds fwmark services by (family, mark) and forces TCP.
    return fwmark_key(key.family, key.fwmark) if key.fwmark else key


def _describe(operation: Operation) -> str:
    label = OPERATION_LABELS[type(operation)]
    match operation:
        case AddService() | EditService() | DeleteService():
            return f"{label} {operation.key}"
        case AddDest() | EditDest() | DeleteDest():
            return f"{label} {operation.service} -> {operation.key}"


class FakeIpvs:
    """An `IpvsBackend` over an in-memory table.

    Attributes:
        operations_seen: operations received so far, accepted or refused.
        failures: every refusal so far, in order.
        fail_next: inject a failure: the next operation of that type is refused
            with that error (and the entry removed) without changing the table.
        schedulers: scheduler names the "kernel" has; others give
            SchedulerUnavailable.
    """

    def __init__(
        self,
        table: Table | None = None,
        *,
        schedulers: Iterable[str] = KERNEL_SCHEDULERS,
    ) -> None:
        self._services: dict[ServiceKey, _FakeService] = {}
        self.schedulers = frozenset(schedulers)
        self.operations_seen = 0
        self.failures: list[OperationFailed] = []
        self.fail_next: dict[type[Operation], KernelError] = {}
        for service in table or ():
            self._services[_kernel_key(service.key)] = _FakeService(
                service.attrs,
                service.stats or Stats(),
                {
                    key: replace(dest, counters=dest.counters or DestCounters())
                    for key, dest in service.dests.items()
                },
                # As if added at their weights (a table from elsewhere: unknown).
                {key: dest.attrs.weight for key, dest in service.dests.items()},
            )

    @property
    def table(self) -> Table:
        """A snapshot of the table, with counters, as a dump would return it."""
        return Table(
            {
                key: Service(key, fake.attrs, dict(fake.dests), fake.stats)
                for key, fake in self._services.items()
            }
        )

    def last_weights(self, key: ServiceKey) -> dict[DestKey, int]:
        """The ``last_weight`` of each dest of service `key`, in the list's order."""
        service = self._services[_kernel_key(key)]
        return {dest_key: service.last_weights[dest_key] for dest_key in service.dests}

    async def dump(self, *, with_stats: bool = True) -> Table:
        """Every service and dest, with counters."""
        return self.table

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        """Apply the operations in order; see `apply_sync`."""
        return self.apply_sync(operations)

    def apply_sync(self, operations: Iterable[Operation]) -> ApplyResult:
        """Apply the operations in order, each accepted or refused on its own."""
        applied = 0
        failures: list[OperationFailed] = []
        for operation in operations:
            self.operations_seen += 1
            error = self.fail_next.pop(type(operation), None) or self._apply_one(operation)
            if error is None:
                applied += 1
            else:
                failures.append(OperationFailed(operation, error))
        self.failures.extend(failures)
        return ApplyResult(applied, tuple(failures))

    def _apply_one(self, operation: Operation) -> KernelError | None:
        what = _describe(operation)
        if isinstance(operation, AddService):
            key = _kernel_key(operation.key)
            if key in self._services:
                return AlreadyExists("service exists", errno=errno.EEXIST, operation=what)
            if operation.attrs.scheduler not in self.schedulers:
                return SchedulerUnavailable(operation.attrs.scheduler, operation=what)
            self._services[key] = _FakeService(operation.attrs, Stats())
            return None

        service_key = _kernel_key(
            operation.service
            if isinstance(operation, AddDest | EditDest | DeleteDest)
            else operation.key
        )
        service = self._services.get(service_key)
        if service is None:
            return NotFound("no such service", errno=errno.ESRCH, operation=what)

        match operation:
            case EditService(attrs=attrs):
                if attrs.scheduler not in self.schedulers:
                    return SchedulerUnavailable(attrs.scheduler, operation=what)
                service.attrs = attrs
            case DeleteService():
                del self._services[service_key]
            case AddDest(key=dest_key, attrs=attrs):
                refused = _check_dest(service_key, dest_key, attrs, what)
                if refused is not None:
                    return refused
                if dest_key in service.dests:
                    return AlreadyExists("dest exists", errno=errno.EEXIST, operation=what)
                # At the head of the list, as the kernel adds (the dump's order).
                service.dests = {dest_key: Dest(dest_key, attrs, DestCounters()), **service.dests}
                service.last_weights[dest_key] = attrs.weight
            case EditDest(key=dest_key, attrs=attrs):
                refused = _check_dest(service_key, dest_key, attrs, what)
                if refused is not None:
                    return refused
                if dest_key not in service.dests:
                    return NotFound("no such dest", errno=errno.ENOENT, operation=what)
                service.dests[dest_key] = replace(service.dests[dest_key], attrs=attrs)
                if attrs.weight:  # the kernel keeps the last non-zero one
                    service.last_weights[dest_key] = attrs.weight
            case DeleteDest(key=dest_key):
                if service.dests.pop(dest_key, None) is None:
                    return NotFound("no such dest", errno=errno.ENOENT, operation=what)
                del service.last_weights[dest_key]
        return None


def _check_dest(
    service: ServiceKey, key: DestKey, attrs: DestAttrs, what: str
) -> KernelError | None:
    if key.family != service.family and attrs.forward is not ForwardMethod.TUNNEL:
        return KernelError(
            "a dest of another family needs tunnel forwarding", errno=errno.EINVAL, operation=what
        )
    if attrs.weight < 0 or attrs.lower_threshold > attrs.upper_threshold:
        return KernelError(
            "weight < 0 or lower threshold > upper threshold", errno=errno.ERANGE, operation=what
        )
    return None
