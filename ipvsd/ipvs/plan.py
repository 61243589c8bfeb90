"""Reconcile: the minimal ordered operations that turn the kernel's IPVS table into the desired one.

Theory of operation
-------------------
The table is managed level-triggered. Whatever happened before (a restart, an
operator's ``ipvsadm -C``, a reload, a health change), the reconciler dumps
the kernel, calls `plan(desired, actual, owns=...)` and applies the result.
Drift repair, adoption at start and reloads are therefore the same code.

Rules:

1. Identity is the key (`ServiceKey`, `DestKey`); everything else is an
   attribute. Same key + different attributes → an in-place edit (`EditService`,
   `EditDest`); the kernel keeps the object's connections and counters. A
   weight, forwarding-method, threshold or scheduler change is never a
   delete + add.
2. Unchanged objects produce no operation, so a restart over a table that
   already matches is a no-op: adoption.
3. Only services that `owns()` accepts are touched. Foreign services (made
   by an operator or another tool) are left alone, dests included. Within an
   owned service every dest is ours.
4. Order: add/edit services, add/edit dests, delete dests, delete services.
   Dests never reference a missing service, and deleting a service's dests
   before the service itself is unnecessary (the kernel drops them with it),
   so dests of services being deleted get no operation of their own.
5. Guard rail (seesaw's ``rateLimitVS``): `Plan.deletes` lets the caller
   refuse a plan that would delete more than it expects.
6. ``mh`` services (docs/consistent-hashing.md): the Maglev table depends on
   the kernel's list order of the dests (it adds each at the head) and on
   each one's last non-zero weight, so the planner makes both depend on the
   config alone. The canonical list is `mh_order` (descending `dest_order`),
   built by adding in ascending `dest_order`. A dest desired at weight 0
   whose `Service.last_weights` names a weight is added at that weight and
   set to 0 by the next operation (a pair of the same phase); one already in
   the kernel whose known last weight is another is raised to it and zeroed
   again (`_kernel_last_weight`: a dump does not say it). A dest that
   must sit before a new (or misplaced) one is deleted and added back
   (`Plan.readded_dests`; the kernel keeps its connections through the dest
   trash): the dests left in place are the longest tail of the canonical list
   that the kernel's list already has in that order.

This module is pure: no I/O, no clock, no logging. A 10,000-service table
takes a tenth of a second to plan (more in UML), too long to hold an event
loop that times VRRP adverts, so `plan_steps` is the same diff as a
generator that yields after each service: the reconciler resumes it in
bounded slices (`ipvsd.loopslice`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Protocol as TypingProtocol

from ipvsd.errors import KernelError
from ipvsd.mh import MH, mh_order
from ipvsd.model import (
    DestAttrs,
    DestKey,
    IPAddress,
    Service,
    ServiceAttrs,
    ServiceKey,
    Table,
    dest_order,
)
from ipvsd.steps import run_steps


@dataclass(frozen=True, slots=True)
class AddService:
    key: ServiceKey
    attrs: ServiceAttrs


@dataclass(frozen=True, slots=True)
class EditService:
    key: ServiceKey
    attrs: ServiceAttrs


@dataclass(frozen=True, slots=True)
class DeleteService:
    key: ServiceKey


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    key: DestKey
    attrs: DestAttrs


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    key: DestKey
    attrs: DestAttrs


@dataclass(frozen=True, slots=True)
class DeleteDest:
    service: ServiceKey
    key: DestKey


Operation = AddService | EditService | DeleteService | AddDest | EditDest | DeleteDest

#: Metric/log label of each operation type (`ipvsd_reconcile_operations_total{op}`).
OPERATION_LABELS: dict[type[Operation], str] = {
    AddService: "add_service",
    EditService: "edit_service",
    DeleteService: "delete_service",
    AddDest: "add_dest",
    EditDest: "edit_dest",
    DeleteDest: "delete_dest",
}


@dataclass(frozen=True, slots=True)
class OperationFailed:
    """One operation the kernel refused, and why."""

    operation: Operation
    error: KernelError


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What happened when a list of operations was sent to the kernel."""

    applied: int
    failures: tuple[OperationFailed, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


class IpvsBackend(TypingProtocol):
    """The kernel side of the reconciler: the real netlink client or a fake."""

    async def dump(self, *, with_stats: bool = True) -> Table:
        """Every service and dest in the kernel, with counters unless `with_stats` is False."""
        ...

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        """Send the operations in order; report which ones the kernel refused."""
        ...


OwnsService = Callable[[ServiceKey], bool]


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered operations that turn the kernel's table into the desired one.

    `operations` are in phase order (rule 4): add/edit services, add/edit dests,
    delete dests, delete services; within a phase they are sorted by key, so the
    same two tables always give the same plan. They are sent in order: the
    dests of an ``mh`` service depend on it (rule 6: add order, add-then-zero
    pairs, delete-then-add of a re-added dest), and the phases may not be
    reordered.

    Attributes:
        operations: what to send to the kernel, in order.
        implicit_dest_deletes: dests that disappear with a `DeleteService` in
            this plan and therefore have no `DeleteDest` of their own.
        readded_dests: `DeleteDest` operations followed by an `AddDest` of the
            same dest (rule 6): no dest is gone after them.
    """

    operations: tuple[Operation, ...] = ()
    implicit_dest_deletes: int = 0
    readded_dests: int = 0

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def is_empty(self) -> bool:
        """True when the kernel already matches (nothing to send)."""
        return not self.operations

    @property
    def deletes(self) -> int:
        """Kernel objects this plan removes: services, their dests, and other dests.

        This is the number the guard rail compares, so a service deleted with
        its 40 dests counts 41, not 1.
        """
        counts = self.counts()
        explicit = counts["delete_service"] + counts["delete_dest"] - self.readded_dests
        return explicit + self.implicit_dest_deletes

    def counts(self) -> dict[str, int]:
        """Operations per `OPERATION_LABELS` label, every label present (zeros included)."""
        # Counted in C: a plan of a whole 10,000-service table has 50,000 operations.
        by_type = Counter(map(type, self.operations))
        return {label: by_type[kind] for kind, label in OPERATION_LABELS.items()}


def _address_order(address: IPAddress | None) -> tuple[int, int]:
    # IPv4Address and IPv6Address refuse to compare with each other or with None,
    # so the dataclasses' own ordering raises TypeError on a mixed table.
    if address is None:
        return (0, 0)
    return (address.version, int(address))


def service_order(key: ServiceKey) -> tuple[int, int, int, int, int, int]:
    """Total sort key for service keys (IPv4 and IPv6 addresses and fwmark keys mixed)."""
    return (key.family, key.protocol, *_address_order(key.address), key.port, key.fwmark)


def same_batch(previous: Operation, operation: Operation) -> bool:
    """Whether `operation` must reach the kernel in the same batch as `previous`, the
    one before it: the second half of an ``mh`` pair (rule 6), an add-then-zero or
    a delete-then-add of one dest, microseconds apart in one ``sendmsg`` rather than
    a round trip."""
    match previous, operation:
        case (
            (AddDest(service=s1, key=k1), EditDest(service=s2, key=k2))
            | (EditDest(service=s1, key=k1), EditDest(service=s2, key=k2))
            | (DeleteDest(service=s1, key=k1), AddDest(service=s2, key=k2))
        ):
            return s1 == s2 and k1 == k2
    return False


def mh_readds(canonical: Sequence[DestKey], kernel: Sequence[DestKey]) -> list[DestKey]:
    """The dests to add (or delete and add back), in add order, so that the kernel's
    list `kernel` (the dests kept, in list order) becomes `canonical` (rule 6).

    The dests left in place are the longest tail of `canonical` that `kernel` holds
    in the same relative order; every dest before that tail is added anew after
    the others, from the tail's side to the head's (the kernel adds at the head).
    """
    present = set(kernel)
    j = len(kernel)
    stay = len(canonical)
    while stay > 0 and canonical[stay - 1] in present:
        wanted = canonical[stay - 1]
        j -= 1
        while j >= 0 and kernel[j] != wanted:
            j -= 1
        if j < 0:
            break
        stay -= 1
    return list(reversed(canonical[:stay]))


def _mh_dest_ops(key: ServiceKey, want: Service, have: Service | None) -> list[Operation]:
    """The add and edit operations of an ``mh`` service's dests (rule 6)."""
    canonical = [dest.key for dest in mh_order(want.dests.values())]
    kernel = [] if have is None else [k for k in have.dests if k in want.dests]
    ops: list[Operation] = []
    todo = mh_readds(canonical, kernel)
    for dest_key in todo:
        attrs = want.dests[dest_key].attrs
        if have is not None and dest_key in have.dests:
            ops.append(DeleteDest(key, dest_key))
        last = want.last_weights.get(dest_key, 0) if attrs.weight == 0 else 0
        if last:
            ops.append(AddDest(key, dest_key, replace(attrs, weight=last)))
            ops.append(EditDest(key, dest_key, attrs))
        else:
            ops.append(AddDest(key, dest_key, attrs))
    if have is not None:
        added = set(todo)
        for dest_key in sorted(kernel, key=dest_order):
            if dest_key in added:
                continue
            want_attrs = want.dests[dest_key].attrs
            have_attrs = have.dests[dest_key].attrs
            last = want.last_weights.get(dest_key, 0) if want_attrs.weight == 0 else 0
            if last and last != _kernel_last_weight(have, dest_key, last):
                # Zeroed with another last weight than the config's (a reload changed
                # the weight, or a dynamic weight was the last): raised to it first,
                # as on a director that adds it afresh.
                ops.append(EditDest(key, dest_key, replace(want_attrs, weight=last)))
                ops.append(EditDest(key, dest_key, want_attrs))
                continue
            if have_attrs != want_attrs:
                ops.append(EditDest(key, dest_key, want_attrs))
    return ops


def _kernel_last_weight(have: Service, key: DestKey, unknown: int) -> int:
    """The last non-zero weight of `have`'s dest `key` in the kernel: its weight when
    not 0, else what a believed table says (`Service.last_weights`), else (a dump
    says nothing of it) `unknown`."""
    weight = have.dests[key].attrs.weight
    return weight or have.last_weights.get(key, unknown)


def plan(desired: Table, actual: Table, *, owns: OwnsService) -> Plan:
    """Minimal ordered operations turning `actual` into `desired` for services we own.

    Every service in `desired` is ours by definition; `owns` is asked only about
    services that are in `actual` and not in `desired`, and those it refuses
    (foreign services) get no operation at all. Attributes are compared with
    ``==``; kernel counters never take part (see `ipvsd.model`).

    Args:
        desired: the table we want (config + health overrides + drains).
        actual: the kernel's dump.
        owns: whether a service found only in the kernel is ours to delete.
    """
    return run_steps(plan_steps(desired, actual, owns=owns))


def plan_steps(desired: Table, actual: Table, *, owns: OwnsService) -> Generator[None, None, Plan]:
    """`plan` as a generator: yields after each service, returns the `Plan`.

    The tables must not change until the generator is done, and `owns` must
    answer as it would have when the first step ran.
    """
    upsert_services: list[Operation] = []
    upsert_dests: list[Operation] = []
    delete_dests: list[Operation] = []
    delete_services: list[Operation] = []
    readded = 0

    for key in (yield from _sorted_services(desired.services)):
        yield
        want = desired.services[key]
        have = actual.services.get(key)
        if want.attrs.scheduler == MH:
            if have is None:
                upsert_services.append(AddService(key, want.attrs))
            elif have.attrs != want.attrs:
                upsert_services.append(EditService(key, want.attrs))
            ops = _mh_dest_ops(key, want, have)
            readded += sum(1 for op in ops if isinstance(op, DeleteDest))
            upsert_dests.extend(ops)
            if have is not None:
                delete_dests.extend(
                    DeleteDest(key, dest_key)
                    for dest_key in sorted(have.dests, key=dest_order)
                    if dest_key not in want.dests
                )
            continue
        if have is None:
            upsert_services.append(AddService(key, want.attrs))
            upsert_dests.extend(
                AddDest(key, dest_key, want.dests[dest_key].attrs)
                for dest_key in sorted(want.dests, key=dest_order)
            )
            continue
        if have.attrs != want.attrs:
            upsert_services.append(EditService(key, want.attrs))
        for dest_key in sorted(want.dests.keys() | have.dests.keys(), key=dest_order):
            want_dest = want.dests.get(dest_key)
            have_dest = have.dests.get(dest_key)
            if have_dest is None:
                assert want_dest is not None
                upsert_dests.append(AddDest(key, dest_key, want_dest.attrs))
            elif want_dest is None:
                delete_dests.append(DeleteDest(key, dest_key))
            elif have_dest.attrs != want_dest.attrs:
                upsert_dests.append(EditDest(key, dest_key, want_dest.attrs))

    gone = []
    for key in actual.services:
        if key not in desired.services:
            gone.append(key)
        yield
    implicit_dest_deletes = 0
    for key in (yield from _sorted_services(gone)):
        if owns(key):
            delete_services.append(DeleteService(key))
            implicit_dest_deletes += len(actual.services[key].dests)
        yield

    return Plan(
        (*upsert_services, *upsert_dests, *delete_dests, *delete_services),
        implicit_dest_deletes,
        readded,
    )


def _sorted_services(keys: Collection[ServiceKey]) -> Generator[None, None, list[ServiceKey]]:
    """`keys` in `service_order`, yielding as each sort key is made (the slow part)."""
    decorated = []
    for key in keys:
        decorated.append((service_order(key), key))
        yield
    decorated.sort(key=itemgetter(0))  # distinct keys have distinct orders
    return [key for _order, key in decorated]


def guard(plan: Plan, max_deletes: int | None) -> str | None:
    """Refuse a plan that deletes more than `max_deletes` kernel objects.

    A truncated or mistaken config looks exactly like "delete most services";
    seesaw's ``rateLimitVS`` is the model. The caller applies the plan anyway
    only when forced.

    Args:
        plan: the plan to check.
        max_deletes: the most objects (services + dests, see `Plan.deletes`) a
            plan may delete; None for no limit.

    Returns:
        None when the plan may go ahead, else the reason for refusing it.

    Raises:
        ValueError: max_deletes is negative.
    """
    if max_deletes is None:
        return None
    if max_deletes < 0:
        raise ValueError(f"max_deletes must be >= 0, not {max_deletes}")
    if plan.deletes <= max_deletes:
        return None
    counts = plan.counts()
    return (
        f"plan deletes {plan.deletes} objects, more than max_deletes={max_deletes} "
        f"({counts['delete_service']} services with {plan.implicit_dest_deletes} dests, "
        f"and {counts['delete_dest']} other dests)"
    )
