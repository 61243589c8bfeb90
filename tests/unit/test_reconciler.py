"""The reconcile loop's bookkeeping (ownership, drift logging, errors) over FakeIpvs."""

from __future__ import annotations

import asyncio
import time
from ipaddress import ip_address
from typing import Any

from structlog.testing import capture_logs

from ipvsd.errors import SchedulerUnavailable
from ipvsd.ipvs.plan import AddService, EditDest
from ipvsd.ipvs.reconciler import Reconciler
from ipvsd.mh import MH, mh_order
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Family,
    Protocol,
    ServiceAttrs,
    ServiceKey,
    Table,
    make_service,
)
from tests.fakes.ipvs import FakeIpvs

A = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)
B = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.2"), 80)
FOREIGN = ServiceKey(Family.INET, Protocol.UDP, ip_address("10.0.0.9"), 53)
R = DestKey(ip_address("10.1.0.1"), 80)


def table(*keys: ServiceKey, weight: int = 1) -> Table:
    return Table.of(
        [make_service(k, ServiceAttrs("rr"), [Dest(R, DestAttrs(weight=weight))]) for k in keys]
    )


async def test_adopts_a_matching_kernel_without_operations() -> None:
    kernel = FakeIpvs(table(A, B))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, B), reason="start")
    with capture_logs() as logs:
        report = await reconciler.reconcile("start")
    assert not report.changed
    assert kernel.operations_seen == 0
    assert logs == []


async def test_service_dropped_by_a_reload_is_deleted_but_foreign_ones_stay() -> None:
    kernel = FakeIpvs(table(A, B, FOREIGN))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, B), reason="start")
    await reconciler.reconcile("start")
    reconciler.set_desired(table(A), reason="reload")
    report = await reconciler.reconcile("reload")
    assert report.operations == {"delete_service": 1}
    assert set(kernel.table.services) == {A, FOREIGN}
    assert not reconciler.owns(B)  # gone from the kernel: no longer tracked


async def test_drift_is_repaired_and_logged() -> None:
    kernel = FakeIpvs(table(A))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, weight=3), reason="start")
    await reconciler.reconcile("start")
    kernel.apply_sync([EditDest(A, R, DestAttrs(weight=9))])  # an operator's edit
    with capture_logs() as logs:
        report = await reconciler.reconcile("resync")
    assert report.operations == {"edit_dest": 1}
    assert kernel.table.services[A].dests[R].attrs.weight == 3
    drift = [log for log in logs if log["event"] == "ipvs.drift_repaired"]
    assert drift[0]["repaired"] == ["edit real 10.1.0.1:80 of 10.0.0.1:80"]


async def test_kernel_refusals_are_logged_counted_and_retried() -> None:
    kernel = FakeIpvs(Table())
    kernel.fail_next[AddService] = SchedulerUnavailable("rr")
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    with capture_logs() as logs:
        first = await reconciler.reconcile("start")
    assert first.errors
    assert any(log["event"] == "ipvs.reconcile_error" for log in logs)
    second = await reconciler.reconcile("resync")
    assert not second.errors
    assert A in kernel.table.services


async def test_guard_refuses_a_plan_that_deletes_too_much() -> None:
    kernel = FakeIpvs(table(A, B))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, B), reason="start")
    await reconciler.reconcile("start")
    _plan, refusal = await reconciler.preview(Table(), max_deletes=1)
    assert refusal is not None
    _plan, refusal = await reconciler.preview(table(A), max_deletes=2)
    assert refusal is None


class CountingFake(FakeIpvs):
    dumps = 0
    with_stats: bool | None = None

    async def dump(self, *, with_stats: bool = True) -> Table:
        self.dumps += 1
        self.with_stats = with_stats
        return await super().dump(with_stats=with_stats)


async def test_change_passes_plan_against_the_believed_table_without_dumping() -> None:
    kernel = CountingFake(Table())
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, B), reason="start")
    await reconciler.reconcile("start")
    assert kernel.dumps == 1
    reconciler.set_desired(table(A, B, weight=0), reason="health")
    report = await reconciler.reconcile("health")
    assert report.operations == {"edit_dest": 2}
    assert kernel.dumps == 1  # one real drained at once, no full dump
    assert kernel.table == table(A, B, weight=0)
    await reconciler.reconcile("resync")
    assert kernel.dumps == 2  # the periodic pass always reads the kernel


async def test_a_refused_operation_makes_the_next_pass_dump_again() -> None:
    kernel = CountingFake(Table())
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    await reconciler.reconcile("start")
    kernel.fail_next[EditDest] = SchedulerUnavailable("rr")
    reconciler.set_desired(table(A, weight=5), reason="reload")
    assert (await reconciler.reconcile("reload")).errors
    dumps = kernel.dumps
    await reconciler.reconcile("reload")
    assert kernel.dumps == dumps + 1
    assert kernel.table == table(A, weight=5)


async def test_run_retries_soon_with_a_full_dump_after_a_refusal() -> None:
    kernel = CountingFake(Table())
    kernel.fail_next[AddService] = SchedulerUnavailable("rr")
    reconciler = Reconciler(kernel, resync_interval_s=3600)
    reconciler.set_desired(table(A), reason="start")
    task = asyncio.get_running_loop().create_task(reconciler.run())
    try:
        for _ in range(60):  # the retry comes after RETRY_AFTER_ERROR_S, not an hour
            await asyncio.sleep(0.1)
            if A in kernel.table.services:
                break
        assert A in kernel.table.services
        assert kernel.dumps >= 2
    finally:
        task.cancel()


async def test_a_resync_plans_against_a_fresh_scrape_dump_instead_of_dumping_again() -> None:
    """The /metrics scrape reads the whole table anyway: drift repair uses that read."""
    kernel = CountingFake(table(A))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A, weight=3), reason="start")
    await reconciler.reconcile("start")
    dumps = kernel.dumps
    kernel.apply_sync([EditDest(A, R, DestAttrs(weight=9))])  # an operator's edit
    generation = reconciler.write_generation
    scraped = await kernel.dump()  # as the scrape's own reader would see it
    reconciler.offer_dump(scraped, generation, time.monotonic())
    report = await reconciler.reconcile("resync")
    assert report.operations == {"edit_dest": 1}  # the drift, seen in the scrape's dump
    assert kernel.dumps == dumps + 1  # the scrape's read only, no dump of the pass's own
    assert kernel.table.services[A].dests[R].attrs.weight == 3
    await reconciler.reconcile("resync")
    assert kernel.dumps == dumps + 2  # an offer serves one pass


async def test_a_scrape_dump_taken_across_a_change_is_not_used() -> None:
    kernel = CountingFake(Table())
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    await reconciler.reconcile("start")
    generation = reconciler.write_generation
    scraped = await kernel.dump()  # the scrape began before the reload's pass
    reconciler.set_desired(table(A, B), reason="reload")
    await reconciler.reconcile("reload")
    reconciler.offer_dump(scraped, generation, time.monotonic())
    dumps = kernel.dumps
    report = await reconciler.reconcile("resync")
    assert kernel.dumps == dumps + 1
    assert report.operations == {}  # the stale read would have re-added B


async def test_a_scrape_dump_older_than_half_the_resync_interval_is_not_used() -> None:
    kernel = CountingFake(table(A))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    await reconciler.reconcile("start")
    reconciler.offer_dump(await kernel.dump(), reconciler.write_generation, time.monotonic() - 31)
    dumps = kernel.dumps
    await reconciler.reconcile("resync")
    assert kernel.dumps == dumps + 1


async def test_change_passes_ignore_a_scrape_dump() -> None:
    kernel = CountingFake(Table())
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    await reconciler.reconcile("start")
    reconciler.offer_dump(Table(), reconciler.write_generation, time.monotonic())
    reconciler.set_desired(table(A, weight=0), reason="health")
    report = await reconciler.reconcile("health")
    assert report.operations == {"edit_dest": 1}  # planned against the believed table


async def test_a_scrape_dump_begun_while_a_pass_sends_is_not_used() -> None:
    kernel = CountingFake(Table())
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    seen: list[int] = []
    apply = kernel.apply

    async def apply_and_look(operations: Any) -> Any:
        seen.append(reconciler.write_generation)  # a scrape beginning now
        return await apply(operations)

    kernel.apply = apply_and_look  # type: ignore[method-assign]
    await reconciler.reconcile("start")
    reconciler.offer_dump(Table(), seen[0], time.monotonic())  # half-applied: A missing
    dumps = kernel.dumps
    report = await reconciler.reconcile("resync")
    assert kernel.dumps == dumps + 1
    assert report.operations == {}


async def test_the_reconciler_reads_the_kernel_without_counters() -> None:
    """Planning compares attributes only; parsing 50,000 counter sets was the dump's bulk."""
    kernel = CountingFake(table(A))
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(table(A), reason="start")
    await reconciler.reconcile("start")
    assert kernel.with_stats is False
    kernel.with_stats = None
    await reconciler.preview(table(A), max_deletes=None)
    assert kernel.with_stats is False


async def test_mh_reload_passes_keep_the_kernels_list_canonical_without_dumping() -> None:
    # A change pass plans against the believed table: for an mh service it must be
    # the kernel's list order (`ipvsd.mh.mh_order`), or a reload that adds a real in
    # the middle would skip the re-adds (docs/consistent-hashing.md).
    def mh(*last_octets: int) -> Table:
        dests = [Dest(DestKey(ip_address(f"10.1.0.{i}"), 80), DestAttrs()) for i in last_octets]
        return Table.of([make_service(A, ServiceAttrs(MH), mh_order(dests))])

    kernel = FakeIpvs()
    reconciler = Reconciler(kernel, resync_interval_s=60)
    reconciler.set_desired(mh(1, 2, 4), reason="start")
    await reconciler.reconcile("start")
    reconciler.set_desired(mh(1, 2, 3, 4), reason="reload")
    report = await reconciler.reconcile("reload")
    assert report.operations == {"add_dest": 2, "delete_dest": 1}  # 3, then 4 re-added
    listed = [str(key.address) for key in kernel.table.services[A].dests]
    assert listed == ["10.1.0.4", "10.1.0.3", "10.1.0.2", "10.1.0.1"]
    assert (await reconciler.reconcile("resync")).operations == {}
