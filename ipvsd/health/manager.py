"""Health checking as the daemon runs it: watches from the config, health → desired table.

`HealthManager` owns the `HealthMonitor`, builds one watch per checked real
from the config (a reload keeps the state of reals whose check did not
change: no re-warm-up, no flap), remembers administrative drains, and turns
health and drains into the desired table (`health.policy`, kept per service
by `health.table`).

The event loop that runs all this also times VRRP adverts, and at 10,000
services x 4 reals a walk over the config costs a few tenths of a second on
a host (seconds in User-Mode Linux). So (issue 11 item 7):

- `configure` walks the new config in slices (``ipvsd.loopslice``) and
  changes nothing until its last slice, where it hands the monitor the new
  watches and makes the new table current at once;
- a health change or a drain rebuilds only its service's part of the table;
- health changes reach the reconciler without waiting for its periodic pass,
  but coalesced: the changes of one event-loop iteration call `on_change`
  once, at the start of the next (the first checks after a start bring
  thousands of reals UP within a few iterations);
- a reload reports (`on_health`, `on_gone`) only the reals it added, removed,
  or moved in or out of checking.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import structlog

from ipvsd.config.model import CheckConfig, Config, RealConfig
from ipvsd.config.types import CheckType
from ipvsd.health.changes import change_steps
from ipvsd.health.checks import Checker, CheckTarget, target_for, tls_context
from ipvsd.health.monitor import CheckOutcome, HealthMonitor
from ipvsd.health.notify import RealNotifier
from ipvsd.health.quorum import OnQuorum, QuorumBook
from ipvsd.health.shared import followers, shared_checks, sharers
from ipvsd.health.suspend import suspended_services
from ipvsd.health.table import DesiredTable
from ipvsd.health.tracker import Health, HealthRecord
from ipvsd.loopslice import LoopSlice
from ipvsd.model import DestKey, RealId, ServiceKey, Table

log = structlog.get_logger("ipvsd.health")

#: Checks running at once, at most (file descriptors and CPU stay bounded).
MAX_IN_FLIGHT = 2_000


class HealthManager:
    """Health of every checked real, and the desired IPVS table that follows from it.

    Args:
        on_change: the desired table changed (health; coalesced, see the module
            docstring).
        on_health: the health of a configured real, unchecked ones UP: every
            real once when it enters the config, then at every change.
        on_gone: a real left the config (after its checks stopped).
        on_check: the duration of every check, in seconds.
        on_quorum: a service gained or lost quorum (`ipvsd.health.quorum`), found
            when its part of the desired table is built.
        on_service_gone: a service left the config, with its last quorum state.
    """

    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        on_health: Callable[[RealId, Health], None] | None = None,
        on_gone: Callable[[RealId], None] | None = None,
        on_check: Callable[[float], None] | None = None,
        on_quorum: OnQuorum | None = None,
        on_service_gone: OnQuorum | None = None,
    ) -> None:
        self._on_change = on_change
        self._on_health = on_health
        self._on_gone = on_gone
        self._on_check = on_check
        self.checker = Checker()
        """Runs the checks (tcp ones without a task each: ``ipvsd.health.tcp``)."""
        self.monitor: HealthMonitor[CheckTarget] = HealthMonitor(
            self.checker.check,
            self._changed,
            max_in_flight=MAX_IN_FLIGHT,
            on_result=None if on_check is None else self._checked,
            on_weight=self._weighted,
        )
        self.drained: set[RealId] = set()
        """Reals an operator drained (``ipvsd drain``): weight 0 whatever their health."""
        self._held: set[RealId] = set()
        """Reals adopted at weight 0 that have not come UP since: kept in at weight 0."""
        self.quorum = QuorumBook(on_quorum, on_service_gone)
        """The quorum state of every service (status, metrics, ``omega``)."""
        self._table = DesiredTable(self._health, self._weight, self.quorum)
        self._slice = LoopSlice()
        self._configured: dict[RealId, RealId] = {}
        """The reals of the config in force, each mapped to itself (`change_steps`)."""
        self._tls: dict[tuple[bool, str | None, str | None, str | None], ssl.SSLContext | None]
        self._tls = {}
        self._change_pending = False
        self.notifier = RealNotifier()
        """Runs the reals' ``notify_up`` / ``notify_down`` programs on their changes."""
        self._node_name: str | None = None
        """The config's ``node_name``: smtp checks' default ``helo_name``."""
        self._aliases: dict[RealId, RealId] = {}
        """Reals of service groups that share another real's check (`shared_checks`)."""
        self._sharers: dict[RealId, list[RealId]] = {}
        """The inverse: each watched real → the reals that share its check."""
        self._followers: frozenset[ServiceKey] = frozenset()
        self._config: Config | None = None
        self._masters: set[str] = set()
        """VRRP instances that are MASTER (``ha_suspend``)."""

    async def configure(
        self, config: Config, adopted: Mapping[RealId, Health] | None = None
    ) -> None:
        """Watch the checked reals of `config`, and make the desired table follow it.

        Walks the config in slices of the event loop; until it switches, in
        one step, the config in force stays in force (checks, `desired`).

        Args:
            config: the (new) configuration.
            adopted: reals found in the kernel at start and the health they
                begin with (`adopted_reals`): UP keeps their weight until
                ``fall`` failures; DOWN (found at weight 0) keeps weight 0
                until ``rise`` successes.
        """
        await self._slice.drain(self._configure_steps(config, adopted or {}))

    def _configure_steps(
        self, config: Config, adopted: Mapping[RealId, Health]
    ) -> Generator[None, None, None]:
        self._tls.clear()  # a CA file may have changed on disk
        self._node_name = config.node_name
        aliases = shared_checks(config)
        change = yield from change_steps(
            config, self._configured, self.monitor.watch, self._target, aliases
        )
        initial = _initial_health(config, adopted)

        def health_then(real_id: RealId) -> Health:
            """A real's health once `config` is in force (a changed watch keeps its health)."""
            real_id = aliases.get(real_id, real_id)
            health = self.monitor.health(real_id)
            return initial.get(real_id, Health.UNKNOWN) if health is None else health

        # Until installed, both configs' followers (builds and removals report quorum).
        self._followers = self._followers | followers(aliases)
        built = yield from self._table.build_steps(
            config, self.drained, self._held, health_then, change.configured
        )
        # No yield until the table is installed: the monitor and the table
        # change together, in one step that costs in proportion to the change.
        held = set(self._held)
        if adopted:  # at start: every watch is new
            held.update(r for r in change.watches if adopted.get(r) is Health.DOWN)
        self.monitor.revise(change.watches, change.unwatched, initial)
        self._held = {real_id for real_id in held if self.monitor.health(real_id) is Health.DOWN}
        self.drained.difference_update([r for r in self.drained if r not in change.configured])
        self._configured = change.configured
        self.notifier.configure(change.programs)
        self._aliases, self._sharers = aliases, sharers(aliases)
        self._table.install(built)
        self._followers = followers(aliases)
        self._config = config
        self._suspend()
        yield from self._report_steps(change.fresh + change.moved, change.gone)

    def _target(
        self, checks: tuple[CheckConfig, ...], real: RealConfig, dest: DestKey
    ) -> CheckTarget:
        """The target of a real's first check, carrying its other checks (``also``)."""
        targets = [
            target_for(
                check,
                real.address,
                dest.port,
                tls=self._tls_for(check) if check.type is CheckType.HTTPS else None,
                node_name=self._node_name,
            )
            for check in checks
        ]
        first = targets[0]
        return replace(first, also=tuple(targets[1:])) if len(targets) > 1 else first

    def _report_steps(
        self, touched: Iterable[RealId], gone: Iterable[RealId]
    ) -> Generator[None, None, None]:
        """Report the reals a configure added, removed, or moved in or out of checking.

        The others' health has not changed (a changed watch keeps its health),
        and was reported when it did: a reload that edits one weight among
        40,000 reals reports nothing. One report per step (a start reports
        every real): a real whose health changes before its turn is reported
        by `_changed` first, and here with the same health again.
        """
        if self._on_gone is not None:
            for real_id in gone:  # no longer checked: no late report revives its series
                self._on_gone(real_id)
                yield
        if self._on_health is not None:
            for real_id in touched:
                health = self.health_of(real_id)
                self._on_health(real_id, Health.UP if health is None else health)
                yield

    def _tls_for(self, check: CheckConfig) -> ssl.SSLContext | None:
        """One TLS context per distinct setting: a verifying one costs ~17 ms to build."""
        key = (check.verify_tls, check.ca_file, check.client_cert, check.client_key)
        if key in self._tls:
            return self._tls[key]
        try:
            context: ssl.SSLContext | None = tls_context(check)
        except OSError as exc:  # ssl.SSLError too: a CA or client certificate file
            # No shared context: each check builds its own, fails, and says why.
            log.warning("health.tls_context", ca_file=check.ca_file,
                        client_cert=check.client_cert, error=str(exc))  # fmt: skip
            context = None
        self._tls[key] = context
        return context

    def desired(self) -> Table:
        """The IPVS table for the current config, health and drains."""
        return self._table.table(self.drained, self._held)

    def _health(self, real_id: RealId) -> Health:
        health = self.monitor.health(self._aliases.get(real_id, real_id))
        return Health.UNKNOWN if health is None else health

    def _weight(self, real_id: RealId) -> int | None:
        return self.monitor.weight(self._aliases.get(real_id, real_id))

    def health_of(self, real_id: RealId) -> Health | None:
        """The health of a checked real, through the real whose check it shares; None when
        it is not checked."""
        return self.monitor.health(self._aliases.get(real_id, real_id))

    def vrrp_state(self, instance: str, *, master: bool) -> None:
        """A VRRP instance became MASTER or left it: ``ha_suspend`` pauses or resumes."""
        if master == (instance in self._masters):
            return
        if master:
            self._masters.add(instance)
        else:
            self._masters.discard(instance)
        self._suspend()

    def _suspend(self) -> None:
        """Pause the checks of the ``ha_suspend`` services that no MASTER owns."""
        config = self._config
        if config is None:
            return
        keys = suspended_services(config, self._masters)
        reals: set[RealId] = set()
        active: set[RealId] = set()  # a shared check runs while any member needs it
        for service in config.ipvs.services if keys else ():
            if service.key in keys or service.group is not None:
                paused = service.key in keys
                for real in service.reals:
                    real_id = (service.key, service.dest_key(real))
                    watched = self._aliases.get(real_id, real_id)
                    (reals if paused else active).add(watched)
        reals -= active
        if reals != self.monitor.suspended:
            log.info("health.suspended", services=sorted(str(k) for k in keys), reals=len(reals))
            self.monitor.suspended = frozenset(reals)

    def is_follower(self, key: ServiceKey) -> bool:
        """Whether `key` is a member of a service group other than its first: it shares
        the first member's checks, and the first member's quorum runs the commands."""
        return key in self._followers

    def records(self) -> Mapping[RealId, HealthRecord]:
        """The health records of the checked reals, for status (aliases resolved)."""
        records = self.monitor.records()
        if not self._aliases:
            return records
        return _SharedRecords(records, self._aliases)

    def _checked(self, result: CheckOutcome) -> None:
        if self._on_check is not None:
            self._on_check(result.duration_s)

    def _changed(self, real_id: RealId, health: Health, reason: str) -> None:
        self.notifier.changed(real_id, health)
        self._held.discard(real_id)
        self._table.mark(real_id[0])
        if self._on_health is not None:
            self._on_health(real_id, health)
        for alias in self._sharers.get(real_id, ()):
            self._table.mark(alias[0])
            if self._on_health is not None:
                self._on_health(alias, health)
        service, dest = real_id
        log.info("health.change", service=str(service), real=str(dest), health=health.value,
                 reason=reason)  # fmt: skip
        if not self._change_pending:
            self._change_pending = True
            asyncio.get_running_loop().call_soon(self._report_change)

    def _weighted(self, real_id: RealId, weight: int | None) -> None:
        """An exec check with ``dynamic_weight`` changed the real's weight."""
        self._table.mark(real_id[0])
        for alias in self._sharers.get(real_id, ()):
            self._table.mark(alias[0])
        service, dest = real_id
        shown = "configured" if weight is None else str(weight)
        log.info("health.weight", service=str(service), real=str(dest), weight=shown)
        if not self._change_pending:
            self._change_pending = True
            asyncio.get_running_loop().call_soon(self._report_change)

    def _report_change(self) -> None:
        self._change_pending = False
        self._on_change()


def _initial_health(config: Config, adopted: Mapping[RealId, Health]) -> Mapping[RealId, Health]:
    """The health a real starts with when it starts being checked.

    A real found in the kernel keeps the state it has there (`adopted`);
    otherwise a real of an ``alpha: false`` service starts UP (keepalived
    without ``alpha``: in at its weight until ``fall`` failures), and the
    others UNKNOWN: out until their first success (``alpha``, the default).
    """
    eager = [service for service in config.ipvs.services if not service.alpha]
    if not eager:
        return adopted
    initial = {
        (service.key, service.dest_key(real)): Health.UP
        for service in eager
        for real in service.reals
    }
    initial.update(adopted)
    return initial


def adopted_reals(config: Config, actual: Table) -> dict[RealId, Health]:
    """The configured reals that the kernel already holds, and the health they start with.

    UP for a real the kernel gives traffic; DOWN for one it holds at weight 0
    (drained, or down in the last run): a restart must not hand it traffic
    before ``rise`` successful checks (`tracker` Rule 3).
    """
    found: dict[RealId, Health] = {}
    for service in config.ipvs.services:
        kernel = actual.services.get(service.key)
        if kernel is None:
            continue
        for real in service.reals:
            dest = service.dest_key(real)
            held = kernel.dests.get(dest)
            if held is not None:
                found[(service.key, dest)] = Health.UP if held.attrs.weight else Health.DOWN
    return found


class _SharedRecords(Mapping[RealId, HealthRecord]):
    """`HealthMonitor.records` with the reals of service groups that share a check."""

    __slots__ = ("_aliases", "_records")

    def __init__(self, records: Mapping[RealId, HealthRecord], aliases: Mapping[RealId, RealId]):
        self._records = records
        self._aliases = aliases

    def __getitem__(self, real: RealId) -> HealthRecord:
        return self._records[self._aliases.get(real, real)]

    def get(self, real: RealId, default: Any = None) -> Any:
        return self._records.get(self._aliases.get(real, real), default)

    def __iter__(self) -> Iterator[RealId]:
        yield from self._records
        yield from self._aliases

    def __len__(self) -> int:
        return len(self._records) + len(self._aliases)
