"""Human tables in the layout operators know from ``ipvsadm -Ln``.

`ipvsadm_table` renders a kernel `Table` (``ipvsd list``); `status_text`
renders the daemon's status JSON (``ipvsd status``), which adds the VRRP
instances and, per real, the configured weight and the health verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from ipvsd.model import ForwardMethod, Service, ServiceFlag, Stats, Table

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


def service_line(service: Service) -> str:
    """``TCP  192.168.1.200:80 rr persistent 300`` as ipvsadm prints it."""
    key = service.key
    if key.fwmark:
        head = f"FWM  {key.fwmark}" + (" IPv6" if key.family == 10 else "")
    else:
        head = f"{key.protocol.name:<4} {str(key).split('/', 1)[-1]}"
    parts = [head, service.attrs.scheduler]
    flags = [name for flag, name in _FLAG_NAMES if service.attrs.flags & flag]
    if flags:
        parts[-1] += f" ({','.join(flags)})"
    if service.attrs.flags & ServiceFlag.PERSISTENT:
        parts.append(f"persistent {service.attrs.timeout}")
        full = 32 if key.family == 2 else 128
        if service.attrs.netmask != full:
            parts.append(f"mask /{service.attrs.netmask}")
    if service.attrs.pe_name:
        parts.append(f"pe {service.attrs.pe_name}")
    return " ".join(parts)


def _stats_columns(stats: Stats) -> str:
    return " ".join(
        f"{value:>8}"
        for value in (stats.conns, stats.inpkts, stats.outpkts, stats.inbytes, stats.outbytes)
    )


def ipvsadm_table(table: Table, *, stats: bool = False) -> str:
    """The table as ``ipvsadm -Ln`` (or ``-Ln --stats``) shows it."""
    lines = ["Prot LocalAddress:Port Scheduler Flags"]
    if stats:
        lines.append(
            "  -> RemoteAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
        )
    else:
        lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
    for service in sorted(table, key=lambda svc: svc.key):
        line = service_line(service)
        if stats and service.stats is not None:
            line = f"{line:<33} {_stats_columns(service.stats)}"
        lines.append(line)
        for dest in sorted(service.dests.values(), key=lambda d: d.key):
            counters = dest.counters
            if stats:
                numbers = _stats_columns(counters.stats) if counters else ""
                lines.append(f"  -> {dest.key!s:<30} {numbers}")
                continue
            active = counters.active_conns if counters else 0
            inactive = counters.inactive_conns if counters else 0
            forward = _FORWARD_NAMES[dest.attrs.forward]
            lines.append(
                f"  -> {dest.key!s:<28} {forward:<7} {dest.attrs.weight:<6} "
                f"{active:<10} {inactive:<10}".rstrip()
            )
    return "\n".join(lines)


def service_json(service: Service) -> dict[str, object]:
    """One service as the status JSON contract spells it (kernel view, no health)."""
    key = service.key
    reals = []
    for dest in sorted(service.dests.values(), key=lambda d: d.key):
        counters = dest.counters
        real: dict[str, object] = {
            "address": str(dest.key.address),
            "port": dest.key.port,
            "forward": dest.attrs.forward.value,
            "weight": dest.attrs.weight,
            "upper_threshold": dest.attrs.upper_threshold,
            "lower_threshold": dest.attrs.lower_threshold,
        }
        if counters is not None:
            real.update(
                active_conns=counters.active_conns,
                inactive_conns=counters.inactive_conns,
                persistent_conns=counters.persistent_conns,
                stats=asdict(counters.stats),
            )
        reals.append(real)
    result: dict[str, object] = {
        "address": None if key.address is None else str(key.address),
        "port": key.port if not key.fwmark else None,
        "protocol": key.protocol.label,
        "fwmark": key.fwmark or None,
        "family": "ipv4" if key.family == 2 else "ipv6",
        "scheduler": service.attrs.scheduler,
        "persistence_timeout": service.attrs.timeout,
        "reals": reals,
    }
    if service.stats is not None:
        result["stats"] = asdict(service.stats)
    return result


def table_json(table: Table) -> list[dict[str, object]]:
    return [service_json(service) for service in sorted(table, key=lambda svc: svc.key)]


_FORWARD_LABELS = {method.value: name for method, name in _FORWARD_NAMES.items()}
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


def status_text(status: Mapping[str, Any]) -> str:
    """The daemon's status for humans: VRRP instances, then services like ``ipvsadm -Ln``.

    Args:
        status: the status JSON contract (``ipvsd status --json``).

    Returns:
        Lines without a trailing newline; each real shows Forward, Weight
        (the kernel's now), CfgWeight, Health (``,drained`` when an operator
        drained it), ActiveConn, InActConn and PersistConn.
    """
    sync = _sync_daemon_lines(status.get("sync_daemon"))
    return "\n".join([*_vrrp_lines(status.get("vrrp") or []), *sync, "", *_service_lines(status)])


def _sync_daemon_lines(sync: Mapping[str, Any] | None) -> list[str]:
    """One line when connection sync is configured: wanted vs running, like ipvsadm -L --daemon."""
    if not sync:
        return []
    wanted = f"{sync.get('wanted')} on {sync.get('interface')}, syncid {sync.get('sync_id')}"
    running = sync.get("running")
    if running is None:
        now = "unknown"
    else:
        now = ", ".join(
            f"{d.get('state')} on {d.get('interface')} syncid {d.get('sync_id')}" for d in running
        )
    line = f"Sync daemon: {wanted} (follows {sync.get('vrrp_instance')}); running: {now or 'none'}"
    error = sync.get("error")
    return [line, *([f"Sync daemon error: {error}"] if error else [])]


def _vrrp_lines(instances: Sequence[Mapping[str, Any]]) -> list[str]:
    if not instances:
        return ["VRRP: no instances configured"]
    rows = [
        (
            _cell(instance.get("name")),
            _cell(instance.get("state")),
            _cell(instance.get("interface")),
            _cell(instance.get("vrid")),
            _cell(instance.get("priority")),
            _cell(instance.get("effective_priority")),
            ",".join(str(vip) for vip in instance.get("virtual_ipaddresses") or []),
        )
        for instance in instances
    ]
    return _grid([_VRRP_HEADER, *rows], (0,) * len(_VRRP_HEADER))


def _service_lines(status: Mapping[str, Any]) -> list[str]:
    services: Sequence[Mapping[str, Any]] = status.get("services") or []
    if not services:
        return ["IPVS: no services configured"]
    rows = [[_real_row(real) for real in service.get("reals") or []] for service in services]
    widths = _widths([_REAL_HEADER, *(row for reals in rows for row in reals)], _REAL_MIN_WIDTHS)
    lines = ["Prot LocalAddress:Port Scheduler Flags", "  -> " + _line(_REAL_HEADER, widths)]
    for service, reals in zip(services, rows, strict=True):
        lines.append(_service_head(service))
        lines.extend("  -> " + _line(row, widths) for row in reals)
    return lines


def _service_head(service: Mapping[str, Any]) -> str:
    fwmark = service.get("fwmark")
    if fwmark:
        head = f"FWM  {fwmark}" + (" IPv6" if service.get("family") == "ipv6" else "")
    else:
        protocol = str(service.get("protocol") or "tcp").upper()
        head = f"{protocol:<4} {_endpoint(service.get('address'), service.get('port'))}"
    parts = [head, _cell(service.get("scheduler"))]
    timeout = service.get("persistence_timeout")
    if timeout:
        parts.append(f"persistent {timeout}")
    return " ".join(parts)


def _real_row(real: Mapping[str, Any]) -> tuple[str, ...]:
    health = _cell(real.get("health"))
    if real.get("drained"):
        health += ",drained"
    forward = real.get("forward")
    return (
        _endpoint(real.get("address"), real.get("port")),
        _FORWARD_LABELS.get(str(forward), _cell(forward)),
        _cell(real.get("weight")),
        _cell(real.get("configured_weight")),
        health,
        _cell(real.get("active_conns")),
        _cell(real.get("inactive_conns")),
        _cell(real.get("persistent_conns")),
    )


def _endpoint(address: object, port: object) -> str:
    host = "*" if address is None else str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cell(value: object) -> str:
    """A JSON value as a table cell; a missing one is shown as ``-``."""
    return "-" if value is None else str(value)


def _widths(rows: Sequence[Sequence[str]], minimums: Sequence[int]) -> list[int]:
    return [max(minimum, *(len(row[i]) for row in rows)) for i, minimum in enumerate(minimums)]


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True)).rstrip()


def _grid(rows: Sequence[Sequence[str]], minimums: Sequence[int]) -> list[str]:
    widths = _widths(rows, minimums)
    return [_line(row, widths) for row in rows]
