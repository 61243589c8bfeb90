"""The desired IPVS table, kept per service so that a change rebuilds only its service.

Building the whole table from the config (``ipvsd.desired``) costs ~0.3 s at
10,000 services x 4 reals on a host, ten times that in User-Mode Linux, and
it runs on the event loop that also times VRRP adverts. A health change or a
drain concerns one real, so `DesiredTable` keeps the built `Service` of every
configured service and rebuilds only the ones marked since (issue 11 item 7).

Rules:

1. A new config is built in steps, one service each (`build_steps`, for
   ``ipvsd.loopslice``), into a table of its own, which `install` makes
   current. Until then `table` answers for the config in force, so a drain in
   the middle of a reload takes effect as it would have before the reload
   began. The caller installs in the same step as it hands the health
   monitor the new config's watches, so the two never disagree.
2. `mark` (a real's health changed) rebuilds the service at the next `table`.
   A mark made while a build runs also holds for the table that build makes:
   the service may have been built before the change.
3. The drained and held sets belong to the caller, which changes them in
   place; `table` compares them with the sets it last built from and
   rebuilds the services whose reals entered or left them.
4. Each service built updates its quorum in the `QuorumBook`, which reports
   a transition once (``ipvsd.health.quorum``); `install` forgets the
   services the new config no longer has.
5. The table's service and dest keys are the caller's objects for the same
   reals (`build_steps`' ``ids``), not equal copies: at 10,000 x 4 the
   copies were ~4 MB.

Pure: no clock, no I/O. The caller supplies each real's health.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Set
from dataclasses import dataclass

from ipvsd.config.model import Config, ServiceConfig
from ipvsd.desired import NO_IDS, ServiceBuilder, dest_keys
from ipvsd.health.policy import service_overrides
from ipvsd.health.quorum import QuorumBook
from ipvsd.health.tracker import Health
from ipvsd.model import RealId, Service, ServiceKey, Table


@dataclass(frozen=True, slots=True)
class BuiltTable:
    """A table `DesiredTable.build_steps` built, for `DesiredTable.install`."""

    configured: dict[ServiceKey, ServiceConfig]
    services: dict[ServiceKey, Service]
    ids: Mapping[RealId, RealId]
    build: ServiceBuilder
    drained: frozenset[RealId]
    held: frozenset[RealId]
    marked: set[ServiceKey]
    """Services marked since the build began (Rule 2)."""


class DesiredTable:
    """The desired table of one config, health and drains, rebuilt service by service.

    Args:
        health_of: the health of a checked real (UNKNOWN when not known).
        weight_of: the weight a checked real's checks gave it (None: the configured one);
            the caller `mark`s its service when it changes.
        quorum: the quorum state of the services (Rule 4); None: a book of its own.
    """

    def __init__(
        self,
        health_of: Callable[[RealId], Health],
        weight_of: Callable[[RealId], int | None] | None = None,
        quorum: QuorumBook | None = None,
    ) -> None:
        self._health_of = health_of
        self._weight_of = weight_of
        self.quorum = quorum or QuorumBook()
        """The quorum state of every service of the table."""
        self._configured: dict[ServiceKey, ServiceConfig] = {}
        self._services: dict[ServiceKey, Service] = {}
        self._build = ServiceBuilder()
        self._ids: Mapping[RealId, RealId] = NO_IDS
        """The caller's keys of the reals of the config in force (`build_steps`)."""
        self._dirty: set[ServiceKey] = set()
        self._marked_in_build: set[ServiceKey] | None = None
        """Marks made since `build_steps` began (Rule 2); None when no build runs."""
        self._drained: frozenset[RealId] = frozenset()
        self._held: frozenset[RealId] = frozenset()

    def mark(self, service: ServiceKey) -> None:
        """Rebuild `service` at the next `table` (the health of one of its reals changed)."""
        self._dirty.add(service)
        if self._marked_in_build is not None:
            self._marked_in_build.add(service)

    def build_steps(
        self,
        config: Config,
        drained: Set[RealId],
        held: Set[RealId],
        health_of: Callable[[RealId], Health],
        ids: Mapping[RealId, RealId] = NO_IDS,
    ) -> Generator[None, None, BuiltTable]:
        """Build the table of `config`, yielding after each service (Rule 1).

        One build at a time; `install` its result.

        Args:
            config: the config the table is to follow.
            drained: reals an operator drained (read once, when the build starts).
            held: reals adopted at weight 0 not UP since (read once, likewise).
            health_of: the health of a checked real of `config` as it will be
                once the config is in force (a new real: its initial health).
            ids: the caller's id of every real of `config`, each mapped to itself
                (``ipvsd.health.changes``): the table uses those key objects
                rather than equal copies of its own (Rule 5).
        """
        marked: set[ServiceKey] = set()
        self._marked_in_build = marked
        drained_then, held_then = frozenset(drained), frozenset(held)
        build = ServiceBuilder()
        configured: dict[ServiceKey, ServiceConfig] = {}
        services: dict[ServiceKey, Service] = {}
        try:
            for service in config.ipvs.services:
                key = _service_key(service, ids)
                configured[key] = service
                services[key] = _service(
                    build,
                    service,
                    key,
                    health_of,
                    drained_then,
                    held_then,
                    self._weight_of,
                    self.quorum,
                    ids,
                )
                yield
        except GeneratorExit:  # abandoned half-way: nothing to mark for
            self._marked_in_build = None
            raise
        return BuiltTable(configured, services, ids, build, drained_then, held_then, marked)

    def install(self, built: BuiltTable) -> None:
        """Make `built` the current table; its marked services are rebuilt at the next `table`."""
        self._configured, self._services, self._ids = built.configured, built.services, built.ids
        self._build, self._drained, self._held = built.build, built.drained, built.held
        self._dirty = built.marked
        self._marked_in_build = None
        self.quorum.forget(built.configured.keys())

    def table(self, drained: Set[RealId], held: Set[RealId]) -> Table:
        """The desired table now: the marked services and those of changed drains rebuilt.

        Args:
            drained: reals an operator drained.
            held: reals adopted at weight 0 that have not come UP since.
        """
        for real_id in (drained ^ self._drained) | (held ^ self._held):
            self.mark(real_id[0])
        self._drained, self._held = frozenset(drained), frozenset(held)
        for key in self._dirty:
            service = self._configured.get(key)
            if service is None:  # no longer configured
                continue
            self._services[key] = _service(
                self._build,
                service,
                key,
                self._health_of,
                self._drained,
                self._held,
                self._weight_of,
                self.quorum,
                self._ids,
            )
        self._dirty.clear()
        # A copy: the reconciler plans over it in slices while this one changes.
        return Table(dict(self._services))


def _service(
    build: ServiceBuilder,
    service: ServiceConfig,
    key: ServiceKey,
    health_of: Callable[[RealId], Health],
    drained: Set[RealId],
    held: Set[RealId],
    weight_of: Callable[[RealId], int | None] | None,
    quorum: QuorumBook,
    ids: Mapping[RealId, RealId],
) -> Service:
    dests = dest_keys(service, key, ids)  # once for both (130,000 keys made at 10,000 x 4)
    was_up = quorum.was_up(key)
    rules = service_overrides(service, key, health_of, drained, held, weight_of, was_up, dests)
    quorum.record(key, service, rules.quorum)
    return build(
        service, key, weights=rules.weights, excluded=rules.excluded, sorry=rules.sorry, dests=dests
    )


def _service_key(service: ServiceConfig, ids: Mapping[RealId, RealId]) -> ServiceKey:
    """``service.key``, as the object `ids` has for its first real if it has one (Rule 5)."""
    key = service.key
    if ids and service.reals:
        known = ids.get((key, service.dest_key(service.reals[0])))
        if known is not None:
            return known[0]
    return key
