"""Human tables in the layout operators know from ``ipvsadm -Ln``.

Both render the typed status contract (`ipvsd.control.status`):
`ipvsadm_table` the kernel's services (``ipvsd list``, from
`services_from_table`), `status_text` the daemon's status document
(``ipvsd status``), which adds the daemon's version and node, the VRRP
instances (and the master each one follows) and, per real, the configured
weight and the health verdict. One `service_line` writes the service row of
both, so a service feature (persistence, its mask, an IPv6 fwmark) shows in
both tables or in neither.

A real that is not up gets a second line under its row, saying since when
and why (the latest check's reason): ``down since 2026-03-01 13:03:04 CET
(4m10s ago): connection refused``. It is a line of its own, not two more
columns, so that the real rows keep ipvsadm's columns (scripts cut them by
whitespace) and a long reason does not widen every row. A real with
several checks then gets one more line per check (``smtp failed: HELO
answered 554``). Times are shown in
the zone of the ``now`` the caller passes (the CLI: local time, as
journalctl shows the log); this module reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ipvsd.control.status import (
    BgpStatus,
    QuorumStatus,
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


_VRRP_HEADER = (
    "Instance",
    "State",
    "Interface",
    "VRID",
    "VRRP",
    "AdvertInt",
    "Priority",
    "EffPriority",
    "Master",
    "VIPs",
)
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


def status_text(doc: StatusDocument, *, now: datetime | None = None) -> str:
    """The daemon's status for humans: version and node, VRRP instances, then services
    like ``ipvsadm -Ln``.

    Args:
        doc: the status document (``ipvsd status --json``, decoded).
        now: the current time (aware); health changes are shown in its zone
            and with their age. None: in UTC, without the age.

    Returns:
        Lines without a trailing newline: ``ipvsd VERSION on NODE``; the VRRP
        table (Master: the master's address as this director sees it), then
        ``NAME tracks: ...`` for an instance that tracks scripts (their state)
        or files (their value and weight); each
        service row as `service_line`'s; each real with Forward, Weight (the
        kernel's now), CfgWeight, Health (``,drained`` when an operator
        drained it), ActiveConn, InActConn and PersistConn, and when it is not
        up a line saying since when and why. ``-`` stands for a value the
        document does not have.
    """
    sync = _sync_daemon_lines(doc.sync_daemon)
    head = f"ipvsd {doc.version} on {doc.node}"
    services = _service_lines(doc.services, now)
    bgp = _bgp_lines(doc.bgp)
    return "\n".join([head, "", *_vrrp_lines(doc.vrrp), *sync, *bgp, "", *services])


def _bgp_lines(bgp: BgpStatus | None) -> list[str]:
    """BGP mode: the speaker, one row per session, one per VIP (announced or why not)."""
    if bgp is None:
        return []
    speaker = bgp.speaker.removesuffix(" ready.") if bgp.running else "not running"
    drained = ", director drained (ipvsd undrain --all)" if bgp.drained else ""
    lines = ["", f"BGP: AS {bgp.local_as}, speaker {speaker}{drained}"]
    rows = [("Neighbor", "AS", "Session")]
    rows += [(s.neighbor, str(s.remote_as), s.state) for s in bgp.sessions]
    lines += _grid(rows, (0, 0, 0))
    rows = [("Prefix", "Announced", "Why")]
    rows += [(p.prefix, "yes" if p.announced else "no", p.reason) for p in bgp.prefixes]
    return [*lines, *_grid(rows, (0, 0, 0))]


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
            f"v{v.version}/{v.family}",
            _advert_int(v),
            str(v.priority),
            str(v.effective_priority),
            _cell(v.master_address),
            ",".join(str(vip) for vip in v.virtual_ipaddresses),
        )
        for v in instances
    ]
    return [*_grid([_VRRP_HEADER, *rows], (0,) * len(_VRRP_HEADER)), *_tracked_lines(instances)]


def _advert_int(v: VrrpStatus) -> str:
    """Ours (v3: to the centisecond), then the master's in brackets if a v3 BACKUP follows
    another one (RFC 5798 §6.4.2)."""
    if v.version == 2:
        return f"{v.advert_int:g}s"
    text = f"{v.advert_int:.2f}s"
    learned = v.master_adver_int
    if learned is not None and round(learned, 2) != round(v.advert_int, 2):
        text += f"({learned:.2f}s)"
    return text


def _tracked_lines(instances: Sequence[VrrpStatus]) -> list[str]:
    """One line per instance that tracks scripts or files: each with its state or value."""
    lines = []
    for v in instances:
        tracked = [f"script {t.script} {t.state}" for t in v.track_scripts]
        tracked += [f"file {t.path} = {_cell(t.value)} (weight {t.weight})" for t in v.track_files]
        if tracked:
            lines.append(f"{v.name} tracks: {', '.join(tracked)}")
    return lines


def _service_lines(services: Sequence[ServiceStatus], now: datetime | None) -> list[str]:
    if not services:
        return ["IPVS: no services configured"]
    rows = [[_real_row(real) for real in service.reals] for service in services]
    widths = _widths([_REAL_HEADER, *(row for reals in rows for row in reals)], _REAL_MIN_WIDTHS)
    lines = ["Prot LocalAddress:Port Scheduler Flags", "  -> " + _line(_REAL_HEADER, widths)]
    for service, reals in zip(services, rows, strict=True):
        lines.append(service_line(service))
        if service.quorum is not None and not service.quorum.up:
            lines.append(_quorum_line(service.quorum))
        for real, row in zip(service.reals, reals, strict=True):
            lines.append("  -> " + _line(row, widths))
            if real.health not in ("up", None):
                lines.extend(_health_line(real, now))
    return lines


def _quorum_line(quorum: QuorumStatus) -> str:
    """``  quorum lost: live weight 1 of 4`` under a service without quorum."""
    needed = "any real up" if quorum.quorum is None else str(quorum.quorum)
    return f"  quorum lost: live weight {quorum.live_weight}, quorum {needed}"


_DETAIL_INDENT = " " * 7
"""Under the real's address in its row (``  -> ``), so the line reads as the real's."""


def _health_line(real: RealStatus, now: datetime | None) -> list[str]:
    """``down since 2026-03-01 13:03:04 CET (4m10s ago): connection refused``, indented."""
    if real.health_since is None and real.health_reason is None:
        return []  # a document from a daemon that did not say
    text = f"{_DETAIL_INDENT}{real.health}"
    if real.health_since is not None:
        since = real.health_since if now is None else real.health_since.astimezone(now.tzinfo)
        text += f" since {since:%Y-%m-%d %H:%M:%S %Z}"
        if now is not None:
            text += f" ({format_age((now - real.health_since).total_seconds())} ago)"
    lines = [f"{text}: {real.health_reason or 'no check has finished yet'}"]
    for check in real.health_checks or ():  # a real with several checks: each one's verdict
        verdict = "passed" if check.ok else "failed"
        lines.append(f"{_DETAIL_INDENT}  {check.type} {verdict}: {check.reason}")
    return lines


def format_age(seconds: float) -> str:
    """A duration as ``45s``, ``4m10s``, ``3h05m`` or ``2d04h`` (two units at most).

    Negative ages (the CLI's clock a little behind the daemon's) are ``0s``.
    """
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


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
