"""Health checking as the daemon runs it: watches from the config, health → desired table.

`HealthManager` owns the `HealthMonitor`, builds one watch per checked real
from the config (a reload keeps the state of reals whose check did not
change: no re-warm-up, no flap), remembers administrative drains, and turns
health and drains into the `desired_table` overrides (`health.policy`).

Health changes reach the reconciler without waiting for its periodic pass,
but coalesced: the changes of one event-loop iteration call `on_change` once,
at the start of the next. The daemon rebuilds the whole desired table on
`on_change` (10,000 services x 4 reals: ~0.4 s on a host), and the first
checks after a start or a reload bring thousands of reals UP within a few
iterations; one rebuild per change would hold the loop, and VRRP's timers
with it, for minutes. Per-real reporting (`on_health`, metrics) stays
immediate: it is cheap.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping

import structlog

from ipvsd.config.model import CheckConfig, Config
from ipvsd.config.types import CheckType
from ipvsd.desired import desired_table
from ipvsd.health.checks import Checker, CheckTarget, target_for, tls_context
from ipvsd.health.monitor import CheckOutcome, HealthMonitor, Watch
from ipvsd.health.policy import effective_check, overrides
from ipvsd.health.tracker import Health
from ipvsd.model import RealId, Table

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
    """

    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        on_health: Callable[[RealId, Health], None] | None = None,
        on_gone: Callable[[RealId], None] | None = None,
        on_check: Callable[[float], None] | None = None,
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
        )
        self.drained: set[RealId] = set()
        """Reals an operator drained (``ipvsd drain``): weight 0 whatever their health."""
        self._held: set[RealId] = set()
        """Reals adopted at weight 0 that have not come UP since: kept in at weight 0."""
        self._config: Config | None = None
        self._configured: set[RealId] = set()
        """The reals of the config in force."""
        self._watched: set[RealId] = set()
        """The reals of the config in force that have a watch."""
        self._tls: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._change_pending = False

    def configure(self, config: Config, adopted: Mapping[RealId, Health] | None = None) -> None:
        """Watch the checked reals of `config`.

        Args:
            config: the (new) configuration.
            adopted: reals found in the kernel at start and the health they
                begin with (`adopted_reals`): UP keeps their weight until
                ``fall`` failures; DOWN (found at weight 0) keeps weight 0
                until ``rise`` successes.
        """
        adopted = adopted or {}
        self._config = config
        self._tls.clear()  # a CA file may have changed on disk
        watches: dict[RealId, Watch[CheckTarget]] = {}
        configured: set[RealId] = set()
        for service in config.ipvs.services:
            key = service.key
            for real in service.reals:
                dest = service.dest_key(real)
                real_id = (key, dest)
                configured.add(real_id)
                check = effective_check(service, real)
                if check is None:
                    continue
                tls = self._tls_for(check) if check.type is CheckType.HTTPS else None
                target = target_for(check, real.address, dest.port, tls=tls)
                watches[real_id] = Watch(real_id, target, check.interval, check.rise, check.fall)
        new = watches.keys() - self._watched
        self.monitor.update(watches, adopted)
        held = self._held | {r for r in new if adopted.get(r) is Health.DOWN}
        self._held = {real_id for real_id in held if self.monitor.health(real_id) is Health.DOWN}
        self.drained &= configured
        self._report(configured, watched=set(watches))

    def _report(self, configured: set[RealId], *, watched: set[RealId]) -> None:
        """Report the reals a configure added, removed, or moved in or out of checking.

        The others' health has not changed (a changed watch keeps its health),
        and was reported when it did: a reload that edits one weight among
        40,000 reals reports nothing. Set operations only, over sets that
        keep their hashes: no walk over the config.
        """
        gone = self._configured - configured
        touched = (configured - self._configured) | ((watched ^ self._watched) & configured)
        self._configured, self._watched = configured, watched
        if self._on_gone is not None:
            for real_id in gone:
                self._on_gone(real_id)
        if self._on_health is not None:
            for real_id in touched:
                health = self.monitor.health(real_id)
                self._on_health(real_id, Health.UP if health is None else health)

    def _tls_for(self, check: CheckConfig) -> ssl.SSLContext:
        """One TLS context per distinct setting: a verifying one costs ~17 ms to build."""
        key = (check.verify_tls, check.ca_file)
        context = self._tls.get(key)
        if context is None:
            context = self._tls[key] = tls_context(check)
        return context

    def desired(self) -> Table:
        """The IPVS table for the current config, health and drains."""
        assert self._config is not None
        extra = overrides(self._config, self.monitor.states(), self.drained, self._held)
        return desired_table(
            self._config, weight_overrides=extra.weights, excluded=extra.excluded, sorry=extra.sorry
        )

    def _checked(self, result: CheckOutcome) -> None:
        if self._on_check is not None:
            self._on_check(result.duration_s)

    def _changed(self, real_id: RealId, health: Health, reason: str) -> None:
        self._held.discard(real_id)
        if self._on_health is not None:
            self._on_health(real_id, health)
        service, dest = real_id
        log.info("health.change", service=str(service), real=str(dest), health=health.value,
                 reason=reason)  # fmt: skip
        if not self._change_pending:
            self._change_pending = True
            asyncio.get_running_loop().call_soon(self._report_change)

    def _report_change(self) -> None:
        self._change_pending = False
        self._on_change()


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
