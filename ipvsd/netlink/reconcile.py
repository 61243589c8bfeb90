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

This module is pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from ipvsd.errors import KernelError
from ipvsd.model import DestAttrs, DestKey, ServiceAttrs, ServiceKey, Table


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

    async def dump(self) -> Table:
        """Every service and dest in the kernel, with counters."""
        ...

    async def apply(self, operations: Sequence[Operation]) -> ApplyResult:
        """Send the operations in order; report which ones the kernel refused."""
        ...


OwnsService = Callable[[ServiceKey], bool]
