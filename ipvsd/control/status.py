"""The status document (`ipvsd status --json`, design.md "Contract: status JSON") — pure.

Built from the running config, a kernel dump taken for this request (so the
connection numbers are the kernel's at that moment), the health of each real
and the VRRP instances' states. Reals are listed as configured, with what the
kernel has now (`weight`, counters) next to what the config says
(`configured_weight`); a real the kernel does not hold (fresh and not yet
healthy, or removed on failure) shows weight 0 and no connections. A sorry
server in the kernel is listed too, with ``"sorry": true``.

``sync_daemon`` (beyond the contract's fields, which allows more) is null
unless ``ipvs.sync_daemon`` is configured; then it holds the resolved target,
the role that should run, the kernel's daemons read for this request
(``running``, null when unreadable) and the last error.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING, Any

from ipvsd.config.model import Config, ServiceConfig
from ipvsd.health.policy import RealId, has_check
from ipvsd.health.tracker import Health
from ipvsd.model import Dest, DestKey, Service, Table

if TYPE_CHECKING:  # only attributes are read: the asyncio module stays out of this pure one
    from ipvsd.ipvs.sync_daemon import SyncDaemonStatus


@dataclass(frozen=True, slots=True)
class VrrpView:
    """One instance as status shows it."""

    name: str
    state: str
    interface: str
    vrid: int
    priority: int
    effective_priority: int
    virtual_ipaddresses: tuple[IPv4Interface, ...]


def status_document(
    *,
    node: str,
    version: str,
    config: Config,
    kernel: Table | None,
    health: Mapping[RealId, Health],
    drained: Set[RealId],
    vrrp: list[VrrpView],
    sync_daemon: SyncDaemonStatus | None = None,
) -> dict[str, Any]:
    """The status JSON; `kernel` is None when IPVS is not in use."""
    return {
        "node": node,
        "version": version,
        "vrrp": [
            {
                "name": v.name,
                "state": v.state,
                "interface": v.interface,
                "vrid": v.vrid,
                "priority": v.priority,
                "effective_priority": v.effective_priority,
                "virtual_ipaddresses": [str(vip) for vip in v.virtual_ipaddresses],
            }
            for v in vrrp
        ],
        "services": [_service(service, kernel, health, drained) for service in config.ipvs.services]
        if kernel is not None
        else [],
        "sync_daemon": _sync_daemon(sync_daemon) if sync_daemon is not None else None,
    }


def _sync_daemon(status: SyncDaemonStatus) -> dict[str, Any]:
    target = status.target
    running = None
    if status.running is not None:
        running = [
            {
                "state": daemon.state.name.lower(),
                "interface": daemon.interface,
                "sync_id": daemon.sync_id,
                "mcast_group": str(daemon.mcast_group) if daemon.mcast_group else None,
                "mcast_port": daemon.mcast_port,
                "mcast_ttl": daemon.mcast_ttl,
                "sync_maxlen": daemon.sync_maxlen,
            }
            for daemon in status.running
        ]
    return {
        "vrrp_instance": target.vrrp_instance if target else None,
        "interface": target.interface if target else None,
        "sync_id": target.sync_id if target else None,
        "wanted": status.wanted.name.lower() if status.wanted else None,
        "running": running,
        "error": status.error,
    }


def _service(
    service: ServiceConfig, kernel: Table, health: Mapping[RealId, Health], drained: Set[RealId]
) -> dict[str, Any]:
    key = service.key
    in_kernel: Service | None = kernel.services.get(key)
    dests: Mapping[DestKey, Dest] = in_kernel.dests if in_kernel is not None else {}
    reals = []
    configured: set[DestKey] = set()
    for real in service.reals:
        dest_key = service.dest_key(real)
        configured.add(dest_key)
        real_id = (key, dest_key)
        state = health.get(real_id, Health.UNKNOWN) if has_check(service, real) else Health.UP
        entry = _real(dest_key, dests.get(dest_key), service.forward_of(real).value)
        entry.update(
            configured_weight=real.weight,
            health=state.value,
            drained=real_id in drained,
        )
        reals.append(entry)
    for dest_key, dest in dests.items():
        if dest_key not in configured:
            entry = _real(dest_key, dest, dest.attrs.forward.value)
            entry.update(configured_weight=None, health="up", drained=False, sorry=True)
            reals.append(entry)
    result: dict[str, Any] = {
        "address": None if key.address is None else str(key.address),
        "port": None if key.fwmark else key.port,
        "protocol": key.protocol.label,
        "fwmark": key.fwmark or None,
        "scheduler": service.scheduler,
        "in_kernel": in_kernel is not None,
        "reals": reals,
    }
    if in_kernel is not None and in_kernel.stats is not None:
        stats = in_kernel.stats
        result["stats"] = {
            "conns": stats.conns,
            "inpkts": stats.inpkts,
            "outpkts": stats.outpkts,
            "inbytes": stats.inbytes,
            "outbytes": stats.outbytes,
        }
    return result


def _real(key: DestKey, dest: Dest | None, forward: str) -> dict[str, Any]:
    counters = dest.counters if dest is not None else None
    return {
        "address": str(key.address),
        "port": key.port,
        "forward": dest.attrs.forward.value if dest is not None else forward,
        "weight": dest.attrs.weight if dest is not None else 0,
        "in_kernel": dest is not None,
        "active_conns": counters.active_conns if counters else 0,
        "inactive_conns": counters.inactive_conns if counters else 0,
        "persistent_conns": counters.persistent_conns if counters else 0,
    }
