"""Human tables in the layout operators know from ``ipvsadm -Ln``.

Both render the typed status contract (`ipvsd.control.status`):
`ipvsadm_table` the kernel's services (``ipvsd list``, from
`services_from_table`), `status_text` the daemon's status document
(``ipvsd status``), which adds the VRRP instances and, per real, the
configured weight and the health verdict. One `service_line` writes the
service row of both, so a service feature (persistence, its mask, an IPv6
fwmark) shows in both tables or in neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ipvsd.control.status import (
    RealStatus,
    ServiceStatus,
    StatsView,
    StatusDocument,
    SyncDaemonStatusView,
    VrrpStatus,
)
from ipvsd.model import Family, ForwardMethod, ServiceFlag, format_endpoint

_FORWARD_NAMES = {
    ForwardMethod.NAT: "Masq",
    ForwardMethod.DR: "Route",
    ForwardMethod.TUNNEL: "Tunnel",
}

_FLAG_NAMES = (
    (ServiceFlag.SCHED1, "flag-1"),
    (ServiceFlag.SCHED2, "flag-2"),
    (ServiceFlag.SCHED3, "flag-3"),
    (ServiceFlag.ONEPACKET, "ops"),
)


def service_line(service: ServiceStatus) -> str:
    """The service row as ipvsadm prints it.

    Args:
        service: the service, from the kernel or from the status document.

    Returns:
        E.g. ``TCP  192.168.1.200:80 rr persistent 300``, ``FWM  5 IPv6 wrr``,
        ``UDP  [2001:db8::200]:53 wrr (flag-1,ops) persistent 60 mask /64 pe sip``.
    """
    if service.fwmark:
        head = f"FWM  {service.fwmark}" + (" IPv6" if service.family is Family.INET6 else "")
    else:
        endpoint = format_endpoint(service.address, service.port or 0)
        head = f"{service.protocol.name:<4} {endpoint}"
    parts = [head, service.scheduler]
    flags = [name for flag, name in _FLAG_NAMES if service.flags & flag]
    if flags:
        parts[-1] += f" ({','.join(flags)})"
    if service.flags & ServiceFlag.PERSISTENT:
        parts.append(f"persistent {service.persistence_timeout}")
        full = 32 if service.family is Family.INET else 128
        if service.persistence_netmask != full:
            parts.append(f"mask /{service.persistence_netmask}")
    if service.persistence_engine:
        parts.append(f"pe {service.persistence_engine}")
    return " ".join(parts)


def _stats_columns(stats: StatsView) -> str:
    return " ".join(
        f"{value:>8}"
        for value in (stats.conns, stats.inpkts, stats.outpkts, stats.inbytes, stats.outbytes)
    )


def ipvsadm_table(services: Iterable[ServiceStatus], *, stats: bool = False) -> str:
    """The services as ``ipvsadm -Ln`` (or ``-Ln --stats``) shows them, in the given order.

    Args:
        services: e.g. `ipvsd.control.status.services_from_table` of a kernel dump.
        stats: show the traffic counters instead of the forwarding columns.

    Returns:
        Lines without a trailing newline.
    """
    lines = ["Prot LocalAddress:Port Scheduler Flags"]
    if stats:
        lines.append(
            "  -> RemoteAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
        )
    else:
        lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
    for service in services:
        line = service_line(service)
        if stats and service.stats is not None:
            line = f"{line:<33} {_stats_columns(service.stats)}"
        lines.append(line)
        for real in service.reals:
            endpoint = format_endpoint(real.address, real.port)
            if stats:
                numbers = _stats_columns(real.stats) if real.stats is not None else ""
                lines.append(f"  -> {endpoint:<30} {numbers}")
                continue
            forward = _FORWARD_NAMES[real.forward]
            lines.append(
                f"  -> {endpoint:<28} {forward:<7} {real.weight:<6} "
                f"{real.active_conns:<10} {real.inactive_conns:<10}".rstrip()
            )
    return "\n".join(lines)


_VRRP_HEADER = ("Instance", "State", "Interface", "VRID", "Priority", "EffPriority", "VIPs")
_REAL_HEADER = (
    "RemoteAddress:Port",
    "Forward",
    "Weight",
    "CfgWeight",
    "Health",
    "ActiveConn",
    "InActConn",
    "PersistConn",
)
# ipvsadm -Ln's own column widths, kept as minimums so the familiar layout survives.
_REAL_MIN_WIDTHS = (28, 7, 6, 9, 6, 10, 9, 11)


def status_text(doc: StatusDocument) -> str:
    """The daemon's status for humans: VRRP instances, then services like ``ipvsadm -Ln``.

    Args:
        doc: the status document (``ipvsd status --json``, decoded).

    Returns:
        Lines without a trailing newline; each service row is `service_line`'s,
        each real shows Forward, Weight (the kernel's now), CfgWeight, Health
        (``,drained`` when an operator drained it), ActiveConn, InActConn and
        PersistConn; ``-`` stands for a value the document does not have.
    """
    sync = _sync_daemon_lines(doc.sync_daemon)
    return "\n".join([*_vrrp_lines(doc.vrrp), *sync, "", *_service_lines(doc.services)])


def _sync_daemon_lines(sync: SyncDaemonStatusView | None) -> list[str]:
    """One line when connection sync is configured: wanted vs running, like ipvsadm -L --daemon."""
    if sync is None:
        return []
    wanted = f"{sync.wanted} on {sync.interface}, syncid {sync.sync_id}"
    if sync.running is None:
        now = "unknown"
    else:
        now = ", ".join(f"{d.state} on {d.interface} syncid {d.sync_id}" for d in sync.running)
    line = f"Sync daemon: {wanted} (follows {sync.vrrp_instance}); running: {now or 'none'}"
    return [line, *([f"Sync daemon error: {sync.error}"] if sync.error else [])]


def _vrrp_lines(instances: Sequence[VrrpStatus]) -> list[str]:
    if not instances:
        return ["VRRP: no instances configured"]
    rows = [
        (
            v.name,
            f"{v.state} ({v.fault_reason})" if v.fault_reason else v.state,
            v.interface,
            str(v.vrid),
            str(v.priority),
            str(v.effective_priority),
            ",".join(str(vip) for vip in v.virtual_ipaddresses),
        )
        for v in instances
    ]
    return _grid([_VRRP_HEADER, *rows], (0,) * len(_VRRP_HEADER))


def _service_lines(services: Sequence[ServiceStatus]) -> list[str]:
    if not services:
        return ["IPVS: no services configured"]
    rows = [[_real_row(real) for real in service.reals] for service in services]
    widths = _widths([_REAL_HEADER, *(row for reals in rows for row in reals)], _REAL_MIN_WIDTHS)
    lines = ["Prot LocalAddress:Port Scheduler Flags", "  -> " + _line(_REAL_HEADER, widths)]
    for service, reals in zip(services, rows, strict=True):
        lines.append(service_line(service))
        lines.extend("  -> " + _line(row, widths) for row in reals)
    return lines


def _real_row(real: RealStatus) -> tuple[str, ...]:
    return (
        format_endpoint(real.address, real.port),
        _FORWARD_NAMES[real.forward],
        str(real.weight),
        _cell(real.configured_weight),
        _cell(real.health) + (",drained" if real.drained else ""),
        str(real.active_conns),
        str(real.inactive_conns),
        str(real.persistent_conns),
    )


def _cell(value: object) -> str:
    """A value as a table cell; a missing one (None) is shown as ``-``."""
    return "-" if value is None else str(value)


def _widths(rows: Sequence[Sequence[str]], minimums: Sequence[int]) -> list[int]:
    return [max(minimum, *(len(row[i]) for row in rows)) for i, minimum in enumerate(minimums)]


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True)).rstrip()


def _grid(rows: Sequence[Sequence[str]], minimums: Sequence[int]) -> list[str]:
    widths = _widths(rows, minimums)
    return [_line(row, widths) for row in rows]
