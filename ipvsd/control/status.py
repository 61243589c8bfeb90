"""The status contract as typed values, and its one JSON codec — pure.

Why one typed contract: the daemon builds a `StatusDocument`
(`ipvsd.daemon.status.status_document_steps`), the control socket sends
`to_json(doc)`, and ``ipvsd status`` decodes it with `from_json` and renders
the same dataclasses (`ipvsd.control.render`). ``ipvsd list`` renders
`ServiceStatus` values built from a kernel dump (`services_from_table`). A
renderer can therefore only read fields the document has: when it read
dict keys, ``ipvsd status`` never showed ``persistent N`` nor ``FWM  5 IPv6``
because the document had neither key.

The JSON codec (`to_json`, `from_json`) is `ipvsd.control.status_json`; its
rules (design.md, "Contract: status JSON"):

1. The contract's field names are kept exactly; the extra fields (``family``,
   ``flags``, ``persistence_*``, ``in_kernel``, ``drained``, ``sorry``,
   ``health_reason``, ``health_since``, ``health_checks``, thresholds, ``stats``,
   ``master_address``, ``sync_daemon``) sit beside them.
2. Values are strings, integers, booleans, lists and null: addresses as
   text, enums as their lower-case labels (``"tcp"``, ``"nat"``, ``"ipv6"``),
   service flags as a list of names, times as RFC 3339 UTC text to the
   second (``"2026-03-01T12:03:04Z"``, what jq's ``fromdate`` reads).
   ``port`` is null for a fwmark service, ``fwmark`` null for the others.
3. The decoder requires the contract's fields and ignores keys it does not
   know. The extra fields are optional and default to what a document
   without them means, so a CLI upgraded before its daemon restarts still
   reads the older daemon's document. A wrong type or value is a
   `MalformedStatus` naming its JSON path (``services[0].reals[1].weight``).

Only the standard library, `ipvsd.model` and `ipvsd.errors` are imported
here (tests/unit/test_status.py checks it): the builder, which needs the
config, health and VRRP, lives in `ipvsd.daemon.status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Interface, IPv6Interface
from typing import TypeVar

from ipvsd.model import (
    NO_FLAGS,
    Dest,
    DestKey,
    Family,
    ForwardMethod,
    IPAddress,
    Protocol,
    Service,
    ServiceFlag,
    ServiceKey,
    Stats,
    Table,
)

T = TypeVar("T")


StatsView = Stats
"""Traffic counters in the status: the kernel dump's own frozen `Stats` value."""


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The latest outcome of one of a real's several checks (``checks``).

    Attributes:
        type: the check's type (``tcp``, ``smtp`` ...).
        ok: it passed.
        reason: why it passed or failed.
    """

    type: str
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RealStatus:
    """One real server of a service.

    Attributes:
        weight: the kernel's weight now (0 when the kernel does not hold it).
        configured_weight: the config's weight; None for a sorry server and
            in ``ipvsd list`` (no config there).
        health: ``up``, ``down`` or ``unknown``; None in ``ipvsd list``.
        health_reason: the latest health check's reason, passed or failed
            (``connection refused``, ``HTTP 503 (expected 200)``, ``timeout
            after 1.0 s (connect)``); None for a real without a check and
            before its first check ends.
        health_since: when the real got its `health` (aware, UTC, whole
            seconds): its last health change, or when its checks began (the
            daemon's start, or the reload that added the check); None for a
            real without a check.
        health_checks: for a real with several checks, each one's latest
            outcome in config order (``health_reason`` joins the failures);
            None for a real with one check or none, and before a round ends.
        drained: an operator drained it (``ipvsd drain``).
        in_kernel: the kernel holds it (a real removed on failure does not).
        sorry: it is the service's sorry server, not a configured real.
        upper_threshold: the kernel's connection limit (None: not in the kernel).
        lower_threshold: the kernel's resume threshold (None: not in the kernel).
        stats: its traffic counters, when the kernel gave them.
    """

    address: IPAddress
    port: int
    forward: ForwardMethod
    weight: int
    configured_weight: int | None = None
    health: str | None = None
    health_reason: str | None = None
    health_since: datetime | None = None
    health_checks: tuple[CheckStatus, ...] | None = None
    drained: bool = False
    in_kernel: bool = True
    sorry: bool = False
    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0
    upper_threshold: int | None = None
    lower_threshold: int | None = None
    stats: StatsView | None = None


@dataclass(frozen=True, slots=True)
class QuorumStatus:
    """A service's quorum (``ipvsd.health.quorum``).

    Attributes:
        up: the service has quorum (false: its sorry server, if any, serves).
        live_weight: the sum of the weights of its live reals.
        quorum: the configured quorum; None: quorum is "any real up".
        hysteresis: the configured hysteresis.
    """

    up: bool
    live_weight: int
    quorum: int | None = None
    hysteresis: int = 0


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One virtual service: ``address``:``port``, or ``fwmark`` (then ``port`` is None).

    Attributes:
        flags: IP_VS_SVC_F_* bits (``persistent`` is shown with its timeout).
        persistence_timeout: seconds a client sticks to its real (0: none).
        persistence_netmask: prefix length grouping clients for persistence.
        persistence_engine: persistence engine (``sip``), or None.
        in_kernel: the kernel holds the service.
        stats: its traffic counters, when the kernel gave them.
        quorum: its quorum; None when not computed yet (or not a daemon's status).
    """

    address: IPAddress | None
    port: int | None
    protocol: Protocol
    fwmark: int | None
    family: Family
    scheduler: str
    flags: ServiceFlag = NO_FLAGS
    persistence_timeout: int = 0
    persistence_netmask: int = 32
    persistence_engine: str | None = None
    in_kernel: bool = True
    stats: StatsView | None = None
    reals: tuple[RealStatus, ...] = ()
    quorum: QuorumStatus | None = None
    mh_fingerprint: str | None = None
    """An ``mh`` service in the kernel: what its Maglev table is built from, hashed
    (`ipvsd.mh.table_fingerprint`). Directors behind ECMP keep moved flows on the same
    real only while it is equal on all of them. None for other schedulers."""


@dataclass(frozen=True, slots=True)
class TrackedScriptStatus:
    """A ``vrrp.scripts`` entry an instance tracks; `state` is ok, failing or unknown
    (not reported yet)."""

    script: str
    state: str


@dataclass(frozen=True, slots=True)
class TrackedFileStatus:
    """A file an instance tracks (``track_files``): its value now (None: not read yet)
    and the instance's weight for it."""

    path: str
    value: int | None
    weight: int


@dataclass(frozen=True, slots=True)
class VrrpStatus:
    """One VRRP instance; `state` is INIT, BACKUP, MASTER or FAULT."""

    name: str
    state: str
    interface: str
    vrid: int
    priority: int
    effective_priority: int
    virtual_ipaddresses: tuple[IPv4Interface | IPv6Interface, ...]
    fault_reason: str | None = None
    """Why the instance is in FAULT (link down, no address, failed, ...); None otherwise."""
    failures: int = 0
    """How often the instance failed (an unexpected error) and was restarted."""
    master_address: IPAddress | None = None
    """The master's address as this director sees it: its own when MASTER; when
    BACKUP, the source of the last advert it accepted from its master (RFC 3768
    §6.4.2: priority at least its own, or any with preempt off); None when not
    known (no such advert yet, the master resigned, INIT, FAULT)."""
    track_scripts: tuple[TrackedScriptStatus, ...] = ()
    """The instance's tracked scripts and their rise/fall state."""
    track_files: tuple[TrackedFileStatus, ...] = ()
    """The instance's tracked files, their values and weights."""
    version: int = 2
    """The VRRP version the instance speaks: 2 (RFC 3768) or 3 (RFC 5798)."""
    family: str = "ipv4"
    """``ipv4`` or ``ipv6``: the instance's address family (its VIPs')."""
    advert_int: float = 1.0
    """The configured advertisement interval, seconds (VRRPv3: whole centiseconds)."""
    master_adver_int: float | None = None
    """VRRPv3: Master_Adver_Interval, the interval of the master a BACKUP follows
    (RFC 5798 §6.4.2), else ``advert_int``; None for VRRPv2."""
    accept_mode: bool = True
    """RFC 5798 §6.1 Accept_Mode as configured: a MASTER accepts packets to its VIPs.
    False on a non-owner MASTER: an nf_tables chain after IPVS drops the rest
    (docs/vrrp-v3.md)."""
    accept_mode_error: str | None = None
    """Why false is not enforced now (the kernel refused the rules); None otherwise."""


@dataclass(frozen=True, slots=True)
class RunningSyncDaemon:
    """A connection-sync daemon the kernel runs; `state` is ``master`` or ``backup``."""

    state: str
    interface: str
    sync_id: int
    mcast_group: IPAddress | None = None
    mcast_port: int = 0
    mcast_ttl: int = 0
    sync_maxlen: int = 0


@dataclass(frozen=True, slots=True)
class SyncDaemonStatusView:
    """Connection sync, when ``ipvs.sync_daemon`` is configured.

    Attributes:
        vrrp_instance: the followed instance (None: no target resolved).
        wanted: the role that should run, ``master`` or ``backup``.
        running: the kernel's daemons now; None when they could not be read.
        error: the last error, or None.
    """

    vrrp_instance: str | None
    interface: str | None
    sync_id: int | None
    wanted: str | None
    running: tuple[RunningSyncDaemon, ...] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StatusDocument:
    """What ``ipvsd status`` shows; `services` is empty when IPVS is not in use."""

    node: str
    version: str
    vrrp: tuple[VrrpStatus, ...] = ()
    services: tuple[ServiceStatus, ...] = ()
    sync_daemon: SyncDaemonStatusView | None = None
    bgp: BgpStatus | None = None
    """BGP mode (``bgp:``); None when it is not configured."""


@dataclass(frozen=True, slots=True)
class BgpSession:
    """A router's BGP session: ``up`` when established, else BIRD's word for its state
    (``Active``, ``Connect``, ``Idle``...; ``down`` while the speaker is not running)."""

    neighbor: str
    remote_as: int
    state: str
    up: bool


@dataclass(frozen=True, slots=True)
class BgpPrefixStatus:
    """A VIP's host route: announced or not, and why."""

    prefix: str
    announced: bool
    reason: str


@dataclass(frozen=True, slots=True)
class BgpStatus:
    """The ``bgp`` object of the status: the speaker, its sessions, the VIPs."""

    speaker: str
    """BIRD's greeting (``BIRD 2.0.12 ready.``); empty while it is not running."""
    running: bool
    local_as: int
    drained: bool
    """The operator drained the whole director (``ipvsd drain --all``)."""
    sessions: tuple[BgpSession, ...]
    prefixes: tuple[BgpPrefixStatus, ...]

    @property
    def announced(self) -> tuple[str, ...]:
        """The prefixes announced now."""
        return tuple(p.prefix for p in self.prefixes if p.announced)


# --- from the kernel (``ipvsd list``; the builder's per-real part) -------------------------


def real_status(
    key: DestKey,
    dest: Dest | None,
    *,
    forward: ForwardMethod | None = None,
    configured_weight: int | None = None,
    health: str | None = None,
    health_reason: str | None = None,
    health_since: datetime | None = None,
    health_checks: tuple[CheckStatus, ...] | None = None,
    drained: bool = False,
    sorry: bool = False,
) -> RealStatus:
    """A real as the kernel holds it, or weight 0 and no connections when it does not.

    Args:
        key: the real's identity.
        dest: the kernel's dest, or None when the kernel does not hold it.
        forward: the forwarding method to show when `dest` is None (default NAT);
            the kernel's method is shown otherwise.
        configured_weight: the config's weight (None: not configured).
        health: the health verdict (None: not known).
        health_reason: the latest check's reason (None: no check ended).
        health_since: when the real got its health (None: not checked).
        health_checks: each check's latest outcome, for a real with several.
        drained: an operator drained it.
        sorry: it is the sorry server.

    Returns:
        The real's status.
    """
    counters = dest.counters if dest is not None else None
    return RealStatus(
        address=key.address,
        port=key.port,
        forward=dest.attrs.forward if dest is not None else forward or ForwardMethod.NAT,
        weight=dest.attrs.weight if dest is not None else 0,
        configured_weight=configured_weight,
        health=health,
        health_reason=health_reason,
        health_since=health_since,
        health_checks=health_checks,
        drained=drained,
        in_kernel=dest is not None,
        sorry=sorry,
        active_conns=counters.active_conns if counters else 0,
        inactive_conns=counters.inactive_conns if counters else 0,
        persistent_conns=counters.persistent_conns if counters else 0,
        upper_threshold=dest.attrs.upper_threshold if dest is not None else None,
        lower_threshold=dest.attrs.lower_threshold if dest is not None else None,
        stats=counters.stats if counters else None,
    )


def services_from_table(table: Table) -> tuple[ServiceStatus, ...]:
    """The kernel's services (``ipvsd list``) ordered by key, their reals by address and port.

    Health and configured weight are unknown here: they are None.
    """
    return tuple(_kernel_service(svc) for svc in sorted(table, key=lambda svc: _order(svc.key)))


def _order(key: ServiceKey) -> tuple[int, int, bool, int, int, int]:
    # ServiceKey's own order compares a fwmark's address (None) with an address and fails.
    number = int(key.address) if key.address is not None else 0
    return (key.family, key.protocol, key.address is not None, number, key.port, key.fwmark)


def _kernel_service(service: Service) -> ServiceStatus:
    key, attrs = service.key, service.attrs
    return ServiceStatus(
        address=key.address,
        port=None if key.fwmark else key.port,
        protocol=key.protocol,
        fwmark=key.fwmark or None,
        family=key.family,
        scheduler=attrs.scheduler,
        flags=attrs.flags,
        persistence_timeout=attrs.timeout,
        persistence_netmask=attrs.netmask,
        persistence_engine=attrs.pe_name or None,
        in_kernel=True,
        stats=service.stats,
        reals=tuple(
            real_status(dest.key, dest) for dest in sorted(service.dests.values(), key=_dest_order)
        ),
    )


def _dest_order(dest: Dest) -> tuple[int, int, int]:
    # A tunnel real may be of the other family (Linux 3.18+): IPv4 and IPv6 do not compare.
    address = dest.key.address
    return (address.version, int(address), dest.key.port)
