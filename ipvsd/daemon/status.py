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

from collections.abc import Callable, Generator, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ipvsd.config.model import Config, ServiceConfig
from ipvsd.control.status import (
    BgpStatus,
    CheckStatus,
    QuorumStatus,
    RunningSyncDaemon,
    ServiceStatus,
    StatusDocument,
    SyncDaemonStatusView,
    VrrpStatus,
    real_status,
)
from ipvsd.health.policy import has_check
from ipvsd.health.quorum import QuorumState
from ipvsd.health.tracker import Health, HealthRecord
from ipvsd.mh import MH, service_fingerprint
from ipvsd.model import DestKey, RealId, ServiceKey, Table

if TYPE_CHECKING:  # only attributes are read: the asyncio module is not imported at run time
    from ipvsd.ipvs.sync_daemon import SyncDaemonStatus

VrrpView = VrrpStatus
"""The name the composition root builds VRRP instances' status with."""


def status_document_steps(
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
) -> Generator[None, None, StatusDocument]:
    """The status document, built stepwise: it yields after each service, because at
    10,000 services it takes a second of CPU, which the daemon spends in loop slices
    (`ipvsd.loopslice`) rather than in one stall of VRRP and the checks;
    `ipvsd.steps.run_steps` builds it at once.

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

    Returns:
        The typed document (`ipvsd.control.status.to_json` makes it JSON).
    """
    services: list[ServiceStatus] = []
    if kernel is not None:
        times = _Times()
        for service in config.ipvs.services:
            services.append(_service(service, kernel, health, drained, times, quorum))
            yield
    return StatusDocument(
        node=node,
        version=version,
        vrrp=tuple(vrrp),
        services=tuple(services),
        sync_daemon=_sync_daemon(sync_daemon) if sync_daemon is not None else None,
        bgp=bgp,
    )


def _service(
    service: ServiceConfig,
    kernel: Table,
    health: Mapping[RealId, HealthRecord],
    drained: Set[RealId],
    times: _Times,
    quorum_of: Callable[[ServiceKey], QuorumState | None] | None,
) -> ServiceStatus:
    key = service.key
    now = None if quorum_of is None else quorum_of(key)
    quorum = None
    if now is not None:
        quorum = QuorumStatus(now.up, now.live_weight, service.quorum, service.hysteresis)
    in_kernel = kernel.services.get(key)
    dests = in_kernel.dests if in_kernel is not None else {}
    reals = []
    configured: set[DestKey] = set()
    for real in service.reals:
        dest_key = service.dest_key(real)
        configured.add(dest_key)
        real_id = (key, dest_key)
        state, reason, since = Health.UP, None, None
        checks: tuple[CheckStatus, ...] | None = None
        if has_check(service, real):
            record = health.get(real_id)
            if record is None:  # not watched yet (a reload is switching to it)
                state = Health.UNKNOWN
            else:
                state, reason, since = record.health, record.reason, times[int(record.since)]
                if record.checks:
                    checks = tuple(CheckStatus(c.type, c.ok, c.reason) for c in record.checks)
        reals.append(
            real_status(
                dest_key,
                dests.get(dest_key),
                forward=service.forward_of(real),
                configured_weight=real.weight,
                health=state.value,
                health_reason=reason,
                health_since=since,
                health_checks=checks,
                drained=real_id in drained,
            )
        )
    reals.extend(
        real_status(dest_key, dest, health=Health.UP.value, sorry=True)
        for dest_key, dest in dests.items()
        if dest_key not in configured
    )
    stats = in_kernel.stats if in_kernel is not None else None
    fingerprint = None
    if in_kernel is not None and service.scheduler == MH:
        fingerprint = service_fingerprint(dests.values(), configured_weights(service))
    return ServiceStatus(
        address=key.address,
        port=None if key.fwmark else key.port,
        protocol=key.protocol,
        fwmark=key.fwmark or None,
        family=key.family,
        scheduler=service.scheduler,
        flags=service.flags,
        persistence_timeout=service.persistence_timeout,
        persistence_netmask=service.netmask,
        persistence_engine=service.persistence_engine,
        in_kernel=in_kernel is not None,
        stats=stats,
        reals=tuple(reals),
        quorum=quorum,
        mh_fingerprint=fingerprint,
    )


class _Times(dict[int, datetime]):
    """Unix seconds as the document carries times (aware, UTC), each converted once:
    most reals share the few times at which their checks began."""

    def __missing__(self, unix_time: int) -> datetime:
        moment = self[unix_time] = datetime.fromtimestamp(unix_time, UTC)
        return moment


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


def configured_weights(service: ServiceConfig) -> dict[DestKey, int]:
    """Each configured real's kernel key and weight (the mh fingerprint's last weights)."""
    return {service.dest_key(real): real.weight for real in service.reals}
