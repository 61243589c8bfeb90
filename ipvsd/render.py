"""Human tables in the layout operators know from ``ipvsadm -Ln``."""

from __future__ import annotations

from dataclasses import asdict

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
