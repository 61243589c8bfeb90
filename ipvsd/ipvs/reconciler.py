"""The async driver of the pure planner: dump → plan → apply, on change and periodically.

One writer per kernel table: nothing else in ipvsd writes IPVS. Changes of the
desired table (a reload, later health and admin drains) wake the loop at once;
several changes that arrive while a pass runs are coalesced into the next
pass. A periodic pass repairs drift (an operator's ``ipvsadm -C``) and logs
what it repaired. The first pass at start adopts whatever already matches, so
restarting ipvsd touches no connection.

Ownership: services in the desired table are ours; services that were in an
earlier desired table stay ours until they are gone from the kernel, so a
reload that drops a service deletes it. Anything else in the kernel is
foreign and left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ipvsd.errors import KernelError
from ipvsd.ipvs.plan import (
    DeleteService,
    IpvsBackend,
    OwnsService,
    Plan,
    guard,
    plan_steps,
)
from ipvsd.loopslice import LoopSlice
from ipvsd.model import Service, ServiceKey, Table
from ipvsd.netlink.ipvs import describe

log = structlog.get_logger("ipvsd.reconciler")

#: Pass reasons that always read the kernel (see `Reconciler._actual`).
FULL_DUMP_REASONS = frozenset({"start", "resync"})

#: Seconds before a full pass retries after a pass with errors.
RETRY_AFTER_ERROR_S = 2.0

#: How many operations a repair/refusal log event lists by name.
LOGGED_OPERATIONS = 20


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one reconcile pass did."""

    reason: str
    operations: dict[str, int]
    errors: tuple[str, ...]
    duration_s: float

    @property
    def changed(self) -> bool:
        return bool(self.operations)


@dataclass(frozen=True, slots=True)
class _OfferedDump:
    table: Table
    write_generation: int
    started_at: float


class Reconciler:
    """Keeps the kernel's IPVS table equal to the desired table."""

    def __init__(
        self,
        backend: IpvsBackend,
        *,
        resync_interval_s: float,
        on_report: Callable[[PassReport], None] | None = None,
    ) -> None:
        self._backend = backend
        self._on_report = on_report
        self._resync_interval_s = resync_interval_s
        self._desired = Table()
        self._managed: set[ServiceKey] = set()
        self._wake = asyncio.Event()
        self._reason = "start"
        self._lock = asyncio.Lock()
        self._first_pass_done = asyncio.Event()
        self._believed: Table | None = None
        self._write_generation = 0
        self._offered: _OfferedDump | None = None
        # Planning 10,000 services takes a tenth of a second: it runs in slices.
        self._slice = LoopSlice()

    @property
    def desired(self) -> Table:
        return self._desired

    @property
    def first_pass_done(self) -> asyncio.Event:
        """Set once the first pass (adoption) has completed."""
        return self._first_pass_done

    @property
    def write_generation(self) -> int:
        """Read before a dump to `offer_dump` it: it grows when a pass starts
        and when it ends sending operations (odd while it sends)."""
        return self._write_generation

    def offer_dump(self, table: Table, write_generation: int, started_at: float) -> None:
        """A full dump another reader took (the /metrics scrape): the next
        periodic pass may plan against it instead of reading the kernel again.

        At 10,000 services a dump costs seconds of CPU, and Prometheus reads
        the whole table every scrape interval anyway. The dump is as good as
        the pass's own if no pass was sending operations when it began or
        sent any since (`write_generation` even, then and now the same), and
        it is fresh: begun within half the resync interval, so drift is still
        repaired within one and a half intervals. Anything else is dropped
        here or when the pass comes.

        Args:
            table: the dump.
            write_generation: `write_generation` read before the dump began.
            started_at: `time.monotonic()` when the dump began.
        """
        if write_generation == self._write_generation and write_generation % 2 == 0:
            self._offered = _OfferedDump(table, write_generation, started_at)

    def set_desired(self, table: Table, *, reason: str) -> None:
        """Replace the desired table and wake the loop (coalesced)."""
        self._desired = table
        self._managed.update(table.services)
        self._reason = reason
        self._wake.set()

    def prime(self, actual: Table) -> None:
        """Use `actual` (a dump just taken) for the next pass instead of dumping again.

        The daemon dumps once at start to find the reals to adopt; the first
        pass (reason ``adopt``) plans against that same dump.
        """
        self._believed = actual

    def owns(self, key: ServiceKey) -> bool:
        return key in self._managed or key in self._desired.services

    async def preview(self, table: Table, max_deletes: int | None) -> tuple[Plan, str | None]:
        """The plan that `table` would cause now, and the guard's refusal reason if any."""
        actual = await self._backend.dump(with_stats=False)
        owned = self._managed | set(table.services)
        proposed = await self._slice.drain(plan_steps(table, actual, owns=owned.__contains__))
        return proposed, guard(proposed, max_deletes)

    async def reconcile(self, reason: str) -> PassReport:
        """One pass: dump, plan, apply, log. Kernel errors are logged and counted, not raised."""
        async with self._lock:
            started = time.perf_counter()
            desired = self._desired
            errors: list[str] = []
            counts: dict[str, int] = {}
            try:
                actual = await self._actual(reason)
                todo = await self._slice.drain(plan_steps(desired, actual, owns=self._owns_now()))
                self._believed = None
                if not todo.is_empty():
                    counts = {op: n for op, n in todo.counts().items() if n}
                    self._write_generation += 1
                    try:
                        result = await self._backend.apply(todo.operations)
                    finally:
                        self._write_generation += 1
                    errors = [str(failure.error) for failure in result.failures]
                    self._log_changes(reason, todo)
                    refused = {failure.operation for failure in result.failures}
                    # Service deletes are the plan's last phase: no pass over all of it.
                    first_delete = len(todo) - counts.get("delete_service", 0)
                    deleted = {
                        op.key
                        for op in todo.operations[first_delete:]
                        if isinstance(op, DeleteService) and op not in refused
                    }
                    if deleted:
                        actual = Table(await self._without(actual, deleted.__contains__))
                self._forget_deleted(actual)
                if not errors:
                    self._believed = await self._after(desired, actual)
            except KernelError as exc:
                errors.append(str(exc))
            report = PassReport(reason, counts, tuple(errors), time.perf_counter() - started)
        for error in errors[:LOGGED_OPERATIONS]:
            log.error("ipvs.reconcile_error", reason=reason, error=error)
        if report.changed or errors:
            log.info(
                "ipvs.reconcile",
                reason=reason,
                operations=report.operations,
                errors=len(errors),
                duration_s=round(report.duration_s, 3),
            )
        self._first_pass_done.set()
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _owns_now(self) -> OwnsService:
        """`owns` as it answers now, for a plan made in slices.

        A reload may arrive between two slices; the plan must not see it halfway
        (the new table's services as owned but not as desired would be deleted).
        """
        managed = frozenset(self._managed)
        desired = self._desired
        return lambda key: key in managed or key in desired.services

    async def _actual(self, reason: str) -> Table:
        """The kernel's table: dumped, or believed after a clean pass.

        A full dump of 10,000 services takes seconds (one dest dump per
        service), too slow for a health change that must drain one real at
        once. After a pass that applied cleanly the kernel's table is known —
        the owned services equal the desired table just applied, the foreign
        ones are as dumped — so change-driven passes plan against that, and the
        start and the periodic resync dump the kernel for real (drift repair).
        """
        if reason == "resync" and (offered := self._take_offered()) is not None:
            log.debug(
                "ipvs.resync_uses_scrape_dump",
                age_s=round(time.monotonic() - offered.started_at, 3),
            )
            return offered.table
        if reason in FULL_DUMP_REASONS or self._believed is None:
            return await self._backend.dump(with_stats=False)  # planning reads no counter
        return self._believed

    def _take_offered(self) -> _OfferedDump | None:
        """The offered dump if it is still good for a periodic pass (see `offer_dump`)."""
        offered, self._offered = self._offered, None
        if offered is None or offered.write_generation != self._write_generation:
            return None
        if time.monotonic() - offered.started_at > self._resync_interval_s / 2:
            return None
        return offered

    async def _after(self, applied: Table, dumped: Table) -> Table:
        """The kernel's table after `applied` went in cleanly over `dumped`."""
        services = await self._without(dumped, self._owns_now())
        services.update(applied.services)
        return Table(services)

    async def _without(
        self, table: Table, drop: Callable[[ServiceKey], bool]
    ) -> dict[ServiceKey, Service]:
        """`table`'s services but those `drop` accepts, pausing after each service."""
        kept = {}
        for key, service in table.services.items():
            if not drop(key):
                kept[key] = service
            await self._slice.pause()
        return kept

    def _log_changes(self, reason: str, todo: Plan) -> None:
        names = [describe(op) for op in todo.operations[:LOGGED_OPERATIONS]]
        if reason == "resync":
            # Nothing asked for a change, so the kernel drifted (ipvsadm -C, a deleted dest).
            log.warning("ipvs.drift_repaired", operations=len(todo), repaired=names)
        elif reason in ("start", "adopt"):
            log.info("ipvs.start_changes", operations=len(todo), changes=names)

    def _forget_deleted(self, actual: Table) -> None:
        """Stop owning services that left the desired table and are gone from the kernel."""
        stale = self._managed - set(self._desired.services)
        self._managed -= {key for key in stale if key not in actual.services}

    async def run(self) -> None:
        """Reconcile on every change and every resync interval, forever."""
        self._wake.clear()
        reason = self._reason
        while True:
            report = await self.reconcile(reason)
            # After a refused operation (drift under a change pass, a kernel
            # hiccup) retry soon with a full dump instead of a whole interval later.
            wait_s = (
                min(RETRY_AFTER_ERROR_S, self._resync_interval_s)
                if report.errors
                else (self._resync_interval_s)
            )
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
                reason = self._reason
            except TimeoutError:
                reason = "resync"
            # Cleared before the pass reads the desired table: a change that
            # arrives during the pass wakes the next one.
            self._wake.clear()
