"""Builds the status document (``ipvsd status``) from the daemon's parts.

Built from the running config, a kernel dump taken for this request (so the
connection numbers are the kernel's at that moment), the health of each real
and the VRRP instances' states. The result is the typed contract of
`ipvsd.control.status`; the control socket encodes it with its one encoder.

Rules:

1. Services are listed as configured, in config order, with the config's
   scheduler and persistence (what the reconciler keeps the kernel at).
2. Reals are listed as configured, with what the kernel has now (``weight``,
   counters, thresholds) next to what the config says
   (``configured_weight``). A real the kernel does not hold (fresh and not
   yet healthy, or removed on failure) shows weight 0 and no connections.
3. A real without a health check is ``up``, with no reason and no time; a
   checked one is what its tracker says, ``unknown`` until the first
   verdict, with the latest check's reason (``health_reason``) and the time
   it got its health (``health_since``, UTC to the second: the last change,
   or the start of its checks); a real with several checks also has each
   one's latest outcome (``health_checks``).
4. A dest in the kernel that is not a configured real is the sorry server:
   it is listed after the reals, with ``sorry`` set and no configured weight.
5. Each service has its quorum (`QuorumStatus`) as the health manager last
   computed it; None before the first computation.
6. ``sync_daemon`` is None unless ``ipvs.sync_daemon`` is configured; then
   it holds the resolved target, the role that should run, the kernel's
   daemons read for this request (None when unreadable) and the last error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ipvsd.config.model import Config, ServiceConfig
from ipvsd.control.status import (
    BgpStatus,
    CheckStatus,
    QuorumStatus,
    RunningSyncDaemon,
    StatusDocument,
    SyncDaemonStatusView,
    VrrpStatus,
)
from ipvsd.control.status_json import (
    document_text,
    from_json,
    real_head,
    real_text,
    service_head,
    service_tail,
    unix_time_text,
)
from ipvsd.health.policy import has_check
from ipvsd.health.quorum import QuorumState
from ipvsd.health.tracker import Health, HealthRecord
from ipvsd.mh import MH, known_last_weights, service_fingerprint
from ipvsd.model import Dest, DestKey, ForwardMethod, RealId, ServiceKey, Table

if TYPE_CHECKING:  # only attributes are read: the asyncio module is not imported at run time
    from ipvsd.ipvs.sync_daemon import SyncDaemonStatus

VrrpView = VrrpStatus
"""The name the composition root builds VRRP instances' status with."""

_UP, _UNKNOWN = Health.UP.value, Health.UNKNOWN.value


def status_document_steps(**arguments: Any) -> Generator[None, None, StatusDocument]:
    """The status document, built stepwise: `status_text_steps` (the same arguments)
    decoded by `ipvsd.control.status_json.from_json`, as ``ipvsd status`` reads it."""
    pieces = yield from status_text_steps(**arguments)
    return from_json(json.loads("".join(pieces)))


def status_text_steps(
    *,
    node: str,
    version: str,
    config: Config,
    kernel: Table | None,
    health: Mapping[RealId, HealthRecord],
    drained: Set[RealId],
    vrrp: Sequence[VrrpStatus],
    sync_daemon: SyncDaemonStatus | None = None,
    quorum: Callable[[ServiceKey], QuorumState | None] | None = None,
    bgp: BgpStatus | None = None,
    plan: StatusPlan | None = None,
    desired: Table | None = None,
) -> Generator[None, None, list[str]]:
    """The status document's JSON text (pieces to join), built stepwise: it yields after
    each service, because the daemon spends the work in loop slices (`ipvsd.loopslice`)
    rather than in one stall of VRRP and the checks; `ipvsd.steps.run_steps` builds it
    at once.

    The text is written from the config, the kernel and the health without the
    typed tree (`ipvsd.control.status`) by the codec's own functions
    (`ipvsd.control.status_json.service_head`, `real_text` ...): at 10,000 x 4 the
    tree and its encoding were most of the request.

    Args:
        node: this director's name.
        version: the daemon's version.
        config: the running config.
        kernel: a kernel dump taken for this request; None when IPVS is not
            in use (then no services are listed).
        health: the health of each checked real, with its latest reason and
            since when (`HealthMonitor.records`).
        drained: the reals an operator drained.
        vrrp: the VRRP instances, in the order to show them.
        sync_daemon: the connection-sync controller's status, when configured.
        quorum: the last quorum state of a service (`QuorumBook.state`).
        bgp: BGP mode's status, when configured.
        plan: what of `config` the text needs, kept from an earlier request with
            the same config (`StatusPlan`); None: one for this request alone.
        desired: the reconciler's desired table, whose last weights an ``mh``
            service's fingerprint counts its dests at weight 0 with
            (`ipvsd.mh.known_last_weights`); None: the configured weights only.

    Returns:
        The document's JSON text in pieces (`ipvsd.control.status_json.document_text`).
    """
    services: list[str] = []
    if kernel is not None:
        if plan is None or plan.config is not config:
            plan = StatusPlan(config)
        times = _Times()
        for index, service in enumerate(config.ipvs.services):
            services.append(_service(plan.service(index, service), kernel, health, drained,
                                     times, quorum, desired))  # fmt: skip
            yield
    head = StatusDocument(
        node=node,
        version=version,
        vrrp=tuple(vrrp),
        sync_daemon=_sync_daemon(sync_daemon) if sync_daemon is not None else None,
        bgp=bgp,
    )
    return document_text(head, services)


@dataclass(frozen=True, slots=True)
class _RealPlan:
    key: DestKey
    head: str
    """`real_head`: its address and port as the document writes them."""
    weight: int
    forward: ForwardMethod
    checked: bool


@dataclass(frozen=True, slots=True)
class _ServicePlan:
    config: ServiceConfig
    key: ServiceKey
    head: str
    """`service_head`: what the config says of the service, as the document writes it."""
    reals: tuple[_RealPlan, ...]
    weights: dict[DestKey, int] | None
    """The configured weights, for an ``mh`` service's fingerprint (None: not mh)."""


class StatusPlan:
    """What the status text needs of one config, made once and kept while it is in force:
    each service's key and head text, each real's key, head text, weight and whether it
    is checked. A request made them all afresh (40,000 `DestKey`s hashed at 10,000 x 4).

    Filled service by service by the requests that use it (`service`), so the first
    request after a start or a reload also makes it in loop slices.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._services: list[_ServicePlan] = []

    def service(self, index: int, service: ServiceConfig) -> _ServicePlan:
        """The plan of ``config.ipvs.services[index]`` (`service`), made at its first use."""
        if index < len(self._services):
            return self._services[index]
        assert index == len(self._services), "services are planned in config order"
        key = service.key
        reals = tuple(
            _RealPlan(
                dest := service.dest_key(real),
                real_head(dest.address, dest.port),
                real.weight,
                service.forward_of(real),
                has_check(service, real),
            )
            for real in service.reals
        )
        weights = {r.key: r.weight for r in reals} if service.scheduler == MH else None
        head = service_head(
            key.address,
            None if key.fwmark else key.port,
            key.protocol,
            key.fwmark or None,
            key.family,
            service.scheduler,
            service.flags,
            service.persistence_timeout,
            service.netmask,
            service.persistence_engine,
        )
        planned = _ServicePlan(service, key, head, reals, weights)
        self._services.append(planned)
        return planned


def _service(
    plan: _ServicePlan,
    kernel: Table,
    health: Mapping[RealId, HealthRecord],
    drained: Set[RealId],
    times: _Times,
    quorum_of: Callable[[ServiceKey], QuorumState | None] | None,
    desired: Table | None,
) -> str:
    key = plan.key
    service = plan.config
    now = None if quorum_of is None else quorum_of(key)
    quorum = None
    if now is not None:
        quorum = QuorumStatus(now.up, now.live_weight, service.quorum, service.hysteresis)
    in_kernel = kernel.services.get(key)
    dests: Mapping[DestKey, Dest] = in_kernel.dests if in_kernel is not None else {}
    reals = []
    found = 0
    for real in plan.reals:
        dest_key = real.key
        state, reason, since = _UP, None, None
        checks: tuple[CheckStatus, ...] | None = None
        is_drained = False
        if real.checked or drained:
            real_id = (key, dest_key)
            is_drained = real_id in drained
            if real.checked:
                record = health.get(real_id)
                if record is None:  # not watched yet (a reload is switching to it)
                    state = _UNKNOWN
                else:
                    state, reason, since = (
                        record.health.value,
                        record.reason,
                        times[int(record.since)],
                    )
                    if record.checks:
                        checks = tuple(CheckStatus(c.type, c.ok, c.reason) for c in record.checks)
        dest = dests.get(dest_key)
        if dest is not None:
            found += 1
        reals.append(_real(real.head, dest, real.forward, real.weight, state, reason, since,
                           checks, is_drained, False))  # fmt: skip
    if found < len(dests):  # the sorry server (or a real the config no longer has)
        configured = {real.key for real in plan.reals}
        for k, d in dests.items():
            if k not in configured:
                head = real_head(k.address, k.port)
                reals.append(_real(head, d, ForwardMethod.NAT, None, _UP, None, None, None,
                                   False, True))  # fmt: skip
    stats = in_kernel.stats if in_kernel is not None else None
    fingerprint = None
    if in_kernel is not None and plan.weights is not None:
        planned = None if desired is None else desired.services.get(key)
        last_weights = known_last_weights(plan.weights, planned)
        fingerprint = service_fingerprint(dests.values(), last_weights)
    return plan.head + service_tail(in_kernel is not None, stats, reals, quorum, fingerprint)


def _real(
    head: str,
    dest: Dest | None,
    forward: ForwardMethod,
    configured_weight: int | None,
    health: str,
    reason: str | None,
    since: str | None,
    checks: tuple[CheckStatus, ...] | None,
    drained: bool,
    sorry: bool,
) -> str:
    """A real's text: as the kernel holds it, or weight 0 and no connections when it does
    not (`ipvsd.control.status.real_status` for the typed value)."""
    if dest is None:
        return real_text(head, forward, 0, configured_weight, health, reason, since, checks,
                         drained, False, sorry, 0, 0, 0, None, None, None)  # fmt: skip
    attrs, counters = dest.attrs, dest.counters
    if counters is None:
        return real_text(head, attrs.forward, attrs.weight, configured_weight, health, reason,
                         since, checks, drained, True, sorry, 0, 0, 0, attrs.upper_threshold,
                         attrs.lower_threshold, None)  # fmt: skip
    return real_text(head, attrs.forward, attrs.weight, configured_weight, health, reason, since,
                     checks, drained, True, sorry, counters.active_conns, counters.inactive_conns,
                     counters.persistent_conns, attrs.upper_threshold, attrs.lower_threshold,
                     counters.stats)  # fmt: skip


class _Times(dict[int, str]):
    """Unix seconds as the document writes times, each written once: most reals share
    the few times at which their checks began."""

    def __missing__(self, unix_time: int) -> str:
        text = self[unix_time] = unix_time_text(unix_time)
        return text


def _sync_daemon(status: SyncDaemonStatus) -> SyncDaemonStatusView:
    target = status.target
    running = None
    if status.running is not None:
        running = tuple(
            RunningSyncDaemon(
                state=daemon.state.name.lower(),
                interface=daemon.interface,
                sync_id=daemon.sync_id,
                mcast_group=daemon.mcast_group,
                mcast_port=daemon.mcast_port,
                mcast_ttl=daemon.mcast_ttl,
                sync_maxlen=daemon.sync_maxlen,
            )
            for daemon in status.running
        )
    return SyncDaemonStatusView(
        vrrp_instance=target.vrrp_instance if target else None,
        interface=target.interface if target else None,
        sync_id=target.sync_id if target else None,
        wanted=status.wanted.name.lower() if status.wanted else None,
        running=running,
        error=status.error,
    )
