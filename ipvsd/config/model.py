"""The configuration model: one frozen, strict model per YAML section (`ipvsd.config.strict`).

Field names are the contract in design.md ("Contract: configuration (YAML)").
Every model forbids unknown keys and is strict: ``"80"`` is not a port, ``1``
is not ``true``. Values are converted at this boundary into the program's own
types (`IPv4Address`, `IPv4Interface`, `Protocol`, `ForwardMethod`, `Family`;
see `ipvsd.config.types`), and sequences are tuples, so a `Config` is
immutable and hashable throughout.

Validation here is per field: types, ranges, address syntax, names from fixed
sets. Rules that relate several fields or objects (fwmark vs address/port,
duplicate services, a real's family, sync groups naming instances) are in
`ipvsd.config.checks`, which can point at the exact line of each object
involved. A `Config` is therefore only fully valid when it comes from
`ipvsd.config.parse_config` / `load_config`.

Durations are seconds, int or float, unless a field says otherwise.

Every field has an attribute docstring: it is the field's description in the
JSON Schema (``ipvsd schema``, `ipvsd.config.schema`), in docs/config.md and in
the ipvsd.yaml(5) man page (`ipvsd.config.reference`), so it is written for
operators: ``null``, not None.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from ipvsd.config.strict import Field, Model, StringOr
from ipvsd.config.types import (
    SCHEDULER_FLAGS,
    VIP_STRING,
    VIPS_LIMITS,
    AdvertInt,
    AsNumber,
    AuthPass,
    BfdInterval,
    BgpHoldTime,
    BgpNeighbors,
    BgpPassword,
    CheckInterval,
    CheckTimeout,
    CheckType,
    CheckTypeName,
    Command,
    Count,
    Destination,
    DnsName,
    DnsType,
    Endpoint,
    FamilyName,
    ForwardName,
    Fwmark,
    GarpDelay,
    GarpRefresh,
    GarpRepeat,
    GroupMembers,
    HexBytes,
    HttpHost,
    HttpPath,
    Hysteresis,
    InitialState,
    Interface,
    IPAny,
    IPv4,
    IpvsTimeout,
    Label,
    Md5Hex,
    Name,
    Names,
    Netmask,
    NonNegative,
    NonZeroByte,
    OnFailure,
    OnFailureName,
    PersistenceEngine,
    PersistenceTimeout,
    Port,
    PortOrZero,
    PreemptDelay,
    ProtocolName,
    Quorum,
    RealAddress,
    Regex,
    ResyncInterval,
    RouteMetric,
    RouteTable,
    RulePriority,
    Scheduler,
    SchedulerFlag,
    Scope,
    ServiceAddress,
    ServiceSpec,
    SocketPath,
    Statuses,
    SyncId,
    Threshold,
    TrackWeight,
    Ttl,
    TunnelChecksumName,
    TunnelTypeName,
    Vip,
    Weight,
)
from ipvsd.interfaces import advert_interface
from ipvsd.model import (
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceFlag,
    ServiceKey,
    TunnelChecksum,
    TunnelType,
    fwmark_key,
)


class _Model(Model):
    """Frozen, strict, no unknown keys; attribute docstrings are the fields' descriptions
    (in the JSON Schema: `ipvsd.config.schema`)."""


class ControlConfig(_Model):
    """The control socket that ``ipvsd status`` / ``reload`` / ``drain`` talk to."""

    socket: SocketPath = "/run/ipvsd/ipvsd.sock"
    """Path of the unix socket, at most 107 bytes (Linux's sun_path is 108 with the NUL)."""
    group: Name | None = None
    """Group that may use the socket besides root (the socket is then 0660); null: root only
    (0600)."""


class MetricsConfig(_Model):
    """The Prometheus endpoint."""

    listen: Endpoint | None = "127.0.0.1:9477"
    """``ADDRESS:PORT`` to serve /metrics on (IPv6 in brackets); null disables it."""


class TrackInterface(_Model):
    """An interface whose link state changes the instance's priority."""

    interface: Interface
    """Interface name, 1-15 bytes (IFNAMSIZ)."""
    weight: TrackWeight = 0
    """keepalived semantics: > 0 is added while the link is up, < 0 while it is down;
    0: link down means FAULT."""


class TrackScript(_Model):
    """A ``vrrp.scripts`` entry whose result changes the instance's priority."""

    script: Name
    """Name of a script in ``vrrp.scripts``."""
    weight: TrackWeight | None = None
    """-254..254, overriding the script's ``weight``; null: the script's. Signs as for
    interfaces: > 0 is added while the script succeeds, < 0 while it fails; 0: failing
    means FAULT (and so does not having reported yet, as in keepalived)."""


class TrackFile(_Model):
    """A file holding an integer that changes the instance's priority (keepalived's
    ``track_file``)."""

    path: Name
    """Absolute path of the file. It is read every 0.5 s as keepalived reads it: the
    leading integer (``0x`` hex and ``0`` octal too); missing, unreadable, empty or not a
    number: 0; outside the 32-bit range: ignored."""
    weight: TrackWeight = 1
    """-254..254 (keepalived's default 1): value * weight, clamped to -254..253, is added to
    the priority, and -254 means FAULT; 0: any non-zero value means FAULT."""


class TrackService(_Model):
    """An ``ipvs.services`` service whose quorum changes the instance's priority."""

    service: ServiceSpec
    """The service as ``ipvsd drain`` names it: ``ADDRESS:PORT`` (tcp), ``udp/ADDRESS:PORT``,
    ``sctp/ADDRESS:PORT`` or ``fwmark:N`` (IPv6 in brackets); a member of a service group
    is named by its own address."""
    weight: TrackWeight = 0
    """-254..254, as for scripts with "has quorum" for "succeeds": > 0 is added while the
    service has quorum, < 0 while it has not; 0: no quorum means FAULT (and so does a
    quorum not computed yet)."""


class VirtualAddress(_Model):
    """A VIP, written as ``ADDRESS[/PREFIX]`` or as this mapping (keepalived's
    ``virtual_ipaddress`` line with ``dev``, ``scope``, ``label`` and ``brd``)."""

    address: Vip
    """``ADDRESS[/PREFIX]``; no prefix means /32. Unicast only (not 0.0.0.0/8, loopback,
    multicast or 255.255.255.255)."""
    dev: Interface | None = None
    """Interface the address is added to; null: the instance's (its ``vmac`` when set)."""
    scope: Scope = 0
    """Address scope: global, site, link, host or nowhere (``ip addr add ... scope``)."""
    label: Label | None = None
    """Address label, e.g. ``eth1:web``: the interface's name, or it followed by ``:``,
    at most 15 bytes; null: ``INTERFACE:vrrpVRID``."""
    broadcast: IPv4 | None = None
    """Broadcast address (``ip addr add ... brd``); null: none."""

    @property
    def ip(self) -> IPv4Address | IPv6Address:
        """The address without its prefix length."""
        return self.address.ip


VirtualAddressEntry = Annotated[
    VirtualAddress, StringOr(VIP_STRING, lambda vip: VirtualAddress(address=vip))
]


class VirtualRoute(_Model):
    """A route the MASTER adds and removes with its VIPs (keepalived's ``virtual_routes``)."""

    to: Destination
    """Destination network ``ADDRESS/PREFIX`` (host bits zero), or ``default``."""
    via: IPv4 | None = None
    """Gateway; null: on-link (then ``dev`` is needed)."""
    dev: Interface | None = None
    """Outgoing interface; null: the kernel finds it from ``via``."""
    src: IPv4 | None = None
    """Preferred source address (often a VIP, which is why the route follows MASTER)."""
    table: RouteTable | None = None
    """Routing table number, 1-4294967295; null: main (254)."""
    metric: RouteMetric | None = None
    """Route metric (priority); null: the kernel's 0."""


class VirtualRule(_Model, populate_by_name=True):
    """A policy-routing rule the MASTER adds and removes with its VIPs (``ip rule``)."""

    from_: Destination | None = Field(default=None, alias="from")
    """Source network the rule matches (``from``); null: any."""
    to: Destination | None = None
    """Destination network the rule matches; null: any."""
    table: RouteTable
    """Routing table the matching packets look up."""
    priority: RulePriority | None = None
    """Rule priority (lower first); null: the kernel picks one below the last rule."""


class VrrpInstanceConfig(_Model):
    """One virtual router: VRRPv2 (RFC 3768, IPv4) or VRRPv3 (RFC 5798, IPv4 or IPv6)."""

    name: Name
    """Instance name, unique: status, logs, the metrics' ``vrrp_instance`` label, the notify
    program's NAME, sync groups and ``ipvs.sync_daemon`` use it."""
    interface: Interface
    """Interface the adverts go out on and the VIPs are added to, 1-15 bytes (IFNAMSIZ)."""
    vrid: NonZeroByte
    """Virtual Router ID, 1-255 (RFC 3768 §5.3.3), unique per interface and address
    family: an IPv4 and an IPv6 instance may share one (RFC 5798 §5.2.3)."""
    priority: NonZeroByte = 100
    """1-254 backup, 255 address owner (RFC 3768 §5.3.4)."""
    version: Literal[2, 3] = 2
    """VRRP version: 2 (RFC 3768, IPv4 only, what keepalived speaks by default) or 3
    (RFC 5798: centisecond intervals, IPv4 or IPv6; keepalived's ``vrrp_version 3``). The
    peers of one virtual router must speak the same version."""
    advert_int: AdvertInt = 1.0
    """Advertisement interval in seconds. Version 2: whole seconds, 1-255 (an 8-bit field,
    RFC 3768 §5.3.7). Version 3: 0.01-40.95 in centisecond steps (12 bits of centiseconds,
    RFC 5798 §5.2.5); a VRRPv3 backup follows the interval its master advertises."""
    accept_mode: bool = True
    """RFC 5798 §6.1 Accept_Mode: a MASTER that is not the address owner accepts packets
    addressed to the VIPs as its own. true is keepalived's default without ``vrrp_strict``.
    false (RFC 5798's default, keepalived's ``no_accept``): while MASTER, a non-owner drops
    what is addressed to its VIPs with an nf_tables chain (table ``inet ipvsd``) that runs
    after IPVS, so IPVS still load-balances the virtual services on them; pings and
    connections to other ports are dropped (neighbour discovery and ICMP errors pass).
    The owner (priority 255) always accepts."""
    preempt: bool = True
    """A BACKUP with a higher priority than the MASTER's takes over (RFC 3768 §6.4.2
    Preempt_Mode); false: it waits until the MASTER stops advertising."""
    preempt_delay: PreemptDelay = 0.0
    """Seconds after start-up during which a higher priority does not preempt, 0-1000
    (keepalived's range); a one-off delay, so 0 is fine."""
    initial_state: InitialState = "backup"
    """``backup``: start in BACKUP and take over after Master_Down_Interval (3 adverts
    and the skew, RFC 3768 §6.4.1). ``master`` (keepalived's ``state MASTER``): still start
    in BACKUP, but wait only one advert interval and 1/256 s before taking over, so a
    director alone on the segment owns the VIPs after ~1 s; a master heard meanwhile is
    followed or preempted as usual, by priority. Not with ``preempt: false`` or a
    ``preempt_delay`` (keepalived ignores them with ``state MASTER``). No effect with
    priority 255 (the owner starts as MASTER) or after start-up: a reload changing it
    applies at the instance's next start. In a sync group the first member to take
    over takes the others along; keepalived ignores ``state MASTER`` there unless every
    member is an owner, and ``ipvsd import keepalived`` converts it so."""
    auth_pass: AuthPass | None = None
    """Simple-text password (auth type 1, RFC 3768 §5.3.6), 1-8 characters."""
    unicast_peers: tuple[IPAny, ...] = ()
    """Send adverts to these addresses, of the instance's family; empty: multicast to
    224.0.0.18 (IPv6: ff02::12)."""
    unicast_src: IPAny | None = None
    """Source address of unicast adverts, of the instance's family; null: the interface's
    primary address."""
    virtual_ipaddresses: Annotated[tuple[VirtualAddressEntry, ...], *VIPS_LIMITS]
    """VIPs, each ``ADDRESS[/PREFIX]`` (no prefix means /32) or a mapping with ``dev``,
    ``scope``, ``label``, ``broadcast``. Added on becoming MASTER, removed on leaving it,
    and listed in the adverts: 1-255 of them (count_ip is 8 bits, RFC 3768 §5.3.5)."""
    virtual_ipaddresses_excluded: tuple[VirtualAddressEntry, ...] = ()
    """VIPs owned like ``virtual_ipaddresses`` (added and removed with MASTER) but not
    listed in the adverts, so any number of them (keepalived's
    ``virtual_ipaddress_excluded``)."""
    virtual_routes: tuple[VirtualRoute, ...] = ()
    """Routes added after the VIPs on becoming MASTER and removed on leaving it (and at
    stop). A route the kernel refuses is logged and counted; the instance goes on."""
    virtual_rules: tuple[VirtualRule, ...] = ()
    """Policy-routing rules added and removed as ``virtual_routes`` are."""
    vmac: bool = False
    """Run the instance on a macvlan of ``interface`` with the virtual router MAC
    00:00:5e:00:01:VRID (RFC 3768 §7.3, keepalived's ``use_vmac``): the VIPs live on it and
    the adverts and gratuitous ARPs leave from it, so the segment's switches and the
    clients' ARP caches need no update on a failover. Made at start, removed at stop;
    ``interface`` then answers no ARP for addresses it does not carry (arp_ignore=1,
    arp_filter=1, restored at stop). Not with ``unicast_peers``."""
    vmac_interface: Interface | None = None
    """Name of the vmac interface; null: ``vrrp.VRID``."""
    track_interfaces: tuple[TrackInterface, ...] = ()
    """Interfaces whose link state changes the priority or puts the instance in FAULT
    (the instance's own ``interface`` is always tracked)."""
    track_scripts: tuple[TrackScript, ...] = ()
    """Scripts of ``vrrp.scripts`` whose results change the priority or put the instance in
    FAULT (keepalived's ``track_script``). The effective priority stays within 1..254 and
    an owner (priority 255) ignores weights."""
    track_files: tuple[TrackFile, ...] = ()
    """Files whose integer value changes the priority or puts the instance in FAULT
    (keepalived's ``track_file``, declared here rather than by name)."""
    track_services: tuple[TrackService, ...] = ()
    """Services whose quorum (``quorum``, else any real up) changes the priority or puts the
    instance in FAULT: a director whose reals are gone gives its VIPs away. Status lists
    them with the tracked scripts, as ``service SERVICE``."""
    notify: Name | None = None
    """Program run as ``notify TYPE NAME STATE PRIORITY`` (keepalived's notify script:
    ``INSTANCE VI_1 MASTER 100``) on every transition; null: none."""
    notify_master: Command | None = None
    """argv of a program run (no shell, no arguments added) when the instance becomes
    MASTER, before ``notify`` (keepalived's notify_master); null: none."""
    notify_backup: Command | None = None
    """argv of a program run when the instance becomes BACKUP (keepalived's notify_backup);
    null: none."""
    notify_fault: Command | None = None
    """argv of a program run when the instance goes to FAULT (keepalived's notify_fault);
    null: none."""
    notify_stop: Command | None = None
    """argv of a program run when the instance stops: ipvsd stops, or a reload removes or
    re-creates it (keepalived's notify_stop); null: none."""
    garp_repeat: GarpRepeat = 5
    """Gratuitous ARPs per burst on becoming MASTER."""
    garp_delay: GarpDelay = 5.0
    """Seconds after becoming MASTER until the second GARP burst; 0: none. A one-off
    delay, so any finite value >= 0 is fine."""
    garp_refresh: GarpRefresh = 0.0
    """Seconds between the gratuitous ARPs (one per VIP) a MASTER keeps sending for its
    VIPs, 1-86400, so that switches and neighbours that forgot them learn them again
    (keepalived's garp_master_refresh); 0: none after the bursts on becoming MASTER."""
    dont_track_primary: bool = False
    """The instance's own ``interface`` going down does not put it in FAULT (keepalived's
    dont_track_primary, for links whose carrier says nothing, e.g. some bonds and VLANs);
    its ``track_interfaces`` still count, the interface naming itself included."""

    @property
    def advert_interface(self) -> str:
        """The interface the adverts, the GARPs and (by default) the VIPs use: the vmac's
        name with ``vmac``, else ``interface``."""
        return advert_interface(
            self.interface, self.vrid, vmac=self.vmac, vmac_interface=self.vmac_interface
        )

    @property
    def family(self) -> Literal["ipv4", "ipv6"]:
        """The instance's address family, its first VIP's (RFC 5798 §5.2: one per
        virtual router)."""
        return "ipv6" if self.virtual_ipaddresses[0].ip.version == 6 else "ipv4"

    @property
    def advert_int_cs(self) -> int:
        """``advert_int`` in centiseconds, VRRPv3's unit (RFC 5798 §5.2.5)."""
        return round(self.advert_int * 100)

    @property
    def owned_addresses(self) -> frozenset[IPv4Address | IPv6Address]:
        """Every address the instance holds while MASTER, advertised or excluded."""
        return frozenset(
            vip.ip for vip in (*self.virtual_ipaddresses, *self.virtual_ipaddresses_excluded)
        )


class VrrpScriptConfig(_Model):
    """A program run periodically whose exit status instances track (keepalived's
    ``vrrp_script``)."""

    name: Name
    """Script name, unique; instances name it in ``track_scripts``."""
    command: Command
    """argv of the program (no shell); exit status 0 means success. It runs in a process
    group of its own, which is killed after ``timeout`` and when the program exits."""
    interval: CheckInterval = 1.0
    """Seconds between the starts of two runs, at least 0.1. A script tracked by several
    instances still runs once per interval; a run never overlaps the next."""
    timeout: CheckTimeout | None = None
    """Seconds a run may take before it is killed and counts as a failure; null: the
    ``interval``."""
    rise: Count = 1
    """Consecutive successes that make a failing script succeed. The first result
    decides at once (keepalived)."""
    fall: Count = 1
    """Consecutive failures that make a succeeding script fail."""
    weight: TrackWeight = 0
    """-254..254, for instances whose ``track_scripts`` entry sets none: > 0 is added to
    the priority while the script succeeds, < 0 while it fails; 0: failing means FAULT."""
    user: Name | None = None
    """Run as this user (its uid, primary group and groups); null: as ipvsd (root)."""


class SyncGroupConfig(_Model):
    """Instances that always change state together (keepalived's vrrp_sync_group)."""

    name: Name
    """Group name, unique."""
    instances: Names
    """Names of its VRRP instances, at least one; an instance is in at most one group.
    One member going MASTER, BACKUP or FAULT takes the others along, and the group stays
    in FAULT while any member is."""
    notify: Name | None = None
    """Program run as ``notify GROUP NAME STATE 0`` once per transition of the group (not once
    per member), as keepalived runs a sync group's notify script; null: none."""
    notify_master: Command | None = None
    """argv of a program run (no shell, no arguments added) once when the group becomes
    MASTER, before ``notify``; null: none."""
    notify_backup: Command | None = None
    """argv of a program run once when the group becomes BACKUP; null: none."""
    notify_fault: Command | None = None
    """argv of a program run once when the group goes to FAULT; null: none."""
    notify_stop: Command | None = None
    """argv of a program run once when the group stops: all its members stopped (ipvsd
    stops), or a reload removed the group; null: none."""


class VrrpConfig(_Model):
    """The ``vrrp`` section; without instances ipvsd owns no VIPs."""

    instances: tuple[VrrpInstanceConfig, ...] = ()
    """The VRRP virtual routers of this director."""
    scripts: tuple[VrrpScriptConfig, ...] = ()
    """Programs whose exit status instances track (``track_scripts``)."""
    sync_groups: tuple[SyncGroupConfig, ...] = ()
    """Instances that change state together (e.g. the client-side VIP and the reals'
    gateway VIP of a NAT director)."""


class UrlConfig(_Model):
    """One URL of an http/https check's ``urls`` (keepalived's ``url`` block)."""

    path: HttpPath = "/"
    """The request target (as the check's ``path``)."""
    expected_status: Statuses | None = None
    """Status codes that mean up (as the check's); null: the check's ``expected_status``."""
    body_regex: Regex | None = None
    """The body must match (``re.search``); null: the check's ``body_regex``."""
    digest: Md5Hex | None = None
    """MD5 of the whole body, 32 hex digits (keepalived's ``digest``, as ``md5sum`` prints
    it); null: the check's ``digest``."""


class CheckConfig(_Model):
    """A health check. Address and port default to the real's."""

    type: CheckTypeName
    """tcp: a connection opens; http/https: a GET of ``path`` is answered with one of
    ``expected_status`` (and a body matching ``body_regex``); exec: ``command`` exits 0;
    udp: a datagram draws no ICMP port unreachable (or the reply ``require_reply`` and
    ``reply_regex`` ask for); dns: a query is answered (``query_name``, ``query_type``,
    ``expected_answer``); ping: an ICMP (ICMPv6) echo request is answered; smtp: the
    server greets with 220 and answers ``HELO`` with 250 (keepalived's SMTP_CHECK); none:
    always up."""
    interval: CheckInterval = 2.0
    """Seconds between the starts of two checks, at least 0.1 (ten checks a second per
    real; more only loads the reals and the daemon: 10,000 reals would make 100,000
    checks a second)."""
    timeout: CheckTimeout = 1.0
    """Seconds one check may take before it counts as failed, at least 0.01 (a round trip
    on a LAN plus a scheduling delay; less fails every check)."""
    rise: Count = 2
    """Consecutive successes that make a down real up."""
    fall: Count = 3
    """Consecutive failures that make an up real down."""
    retry_interval: CheckInterval | None = None
    """Seconds from the start of a failed check to the next one while the real is not down
    yet (fewer than ``fall`` failures in a row), at least 0.1 and at most ``interval``
    (keepalived's ``delay_before_retry``): a failing real goes down ``interval + (fall - 1)
    x retry_interval`` after its last good check, and a down real is checked every
    ``interval`` again. A retry whose failed check overran it starts at once. null:
    ``interval``."""
    port: Port | None = None
    """Port to connect to; null: the real's (required when the real's port is 0)."""
    address: IPAny | None = None
    """Address to connect to; null: the real's."""
    path: HttpPath = "/"
    """http/https: the request target: ``/``, then RFC 3986 path and query characters;
    anything else (spaces, controls, non-ASCII, ``#``) percent-encoded."""
    expected_status: Statuses = (200,)
    """http/https: the status codes that mean up, 100-599: a code (``200``), a range
    (``"200-299"``) or a list of both (``[200, "300-399"]``)."""
    body_regex: Regex | None = None
    """http/https: the body must match (``re.search``)."""
    digest: Md5Hex | None = None
    """http/https: the MD5 of the whole body must be this (32 hex digits, keepalived's
    ``digest``: ``md5sum`` of the page); null: not compared."""
    urls: tuple[UrlConfig, ...] = ()
    """http/https: GET each of these instead of ``path``, one connection each, in order;
    up only when every one passes (keepalived's several ``url`` blocks). Each field left
    out or null is the check's."""
    host: HttpHost | None = None
    """http/https: Host header and TLS server name; null: the address. A host name in
    ASCII (IDNA) or an IP address (IPv6 without brackets), without a port."""
    verify_tls: bool = False
    """https: verify the real's certificate chain (against ``ca_file``) and its name
    (``host``); false: any certificate will do (reals often have self-signed ones)."""
    ca_file: Name | None = None
    """https with verify_tls: CA certificates (PEM file) to trust; null: the system's."""
    client_cert: Name | None = None
    """https: a client certificate (PEM file) to present, for reals that ask for one; it
    may hold the private key too; null: none."""
    client_key: Name | None = None
    """https with client_cert: the certificate's private key (PEM file), when it is not in
    ``client_cert``."""
    command: Command | None = None
    """exec: argv of the command (no shell), required for type exec; exit status 0 means
    up. Its environment: PATH, IPVSD_REAL_ADDRESS and IPVSD_REAL_PORT (the address and port
    to check); it is killed (with its process group) after ``timeout``."""
    dynamic_weight: bool = False
    """exec: the exit status also sets the real's weight (keepalived's ``misc_dynamic``):
    0 up with the configured weight, 1 down, 2 to 255 up with weight status - 2. An
    operator's drain (weight 0) still wins."""
    payload: str | None = None
    """udp: the datagram sent, as text (UTF-8); null: ``payload_hex``, else an empty one."""
    payload_hex: HexBytes | None = None
    """udp: the datagram sent, as hex digits (``0a1bff``; spaces allowed between bytes)."""
    require_reply: bool = False
    """udp: up only when a reply arrives within ``timeout``; false: up unless an ICMP port
    unreachable comes back within it (keepalived's UDP_CHECK)."""
    reply_regex: Regex | None = None
    """udp: a reply must arrive and match (``re.search`` over its bytes, read as
    Latin-1)."""
    query_name: DnsName = "."
    """dns: the name asked for (keepalived's DNS_CHECK default: the root, ``.``)."""
    query_type: DnsType = "SOA"
    """dns: the record type asked for: A, AAAA, NS, CNAME, SOA, PTR, MX, TXT or SRV. Up
    when the reply is NOERROR with at least one answer record of this type (over UDP;
    again over TCP when the UDP reply is truncated)."""
    expected_answer: IPAny | None = None
    """dns, query_type A or AAAA: one answer record must be this address; null: any."""
    source_address: IPAny | None = None
    """tcp/http/https/udp/dns/ping/smtp: local address the check connects (or pings)
    from; null: the kernel's choice."""
    helo_name: HttpHost | None = None
    """smtp: the name sent with ``HELO``; null: ``node_name`` (keepalived's default is its
    router_id or host name)."""


def _field_docs(model: str) -> Mapping[str, str]:
    import sys

    from ipvsd.config.docstrings import attribute_docstrings

    return attribute_docstrings(sys.modules[__name__])[model]


def _describe_overrides(schema: dict[str, Any]) -> None:
    """JSON Schema: each `CheckOverride` field has the description of its `CheckConfig` twin."""
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for name, field in properties.items():
        assert isinstance(field, dict)
        same = _field_docs("CheckConfig")[name]
        field["description"] = f"This real's ``{name}``; null: the service check's. {same}"


class CheckOverride(_Model, schema_extra=_describe_overrides):
    """A real's check fields; each one set replaces the service check's field."""

    type: CheckTypeName | None = None
    interval: CheckInterval | None = None
    timeout: CheckTimeout | None = None
    rise: Count | None = None
    fall: Count | None = None
    retry_interval: CheckInterval | None = None
    port: Port | None = None
    address: IPAny | None = None
    path: HttpPath | None = None
    expected_status: Statuses | None = None
    body_regex: Regex | None = None
    digest: Md5Hex | None = None
    urls: tuple[UrlConfig, ...] | None = None
    host: HttpHost | None = None
    verify_tls: bool | None = None
    ca_file: Name | None = None
    client_cert: Name | None = None
    client_key: Name | None = None
    command: Command | None = None
    dynamic_weight: bool | None = None
    payload: str | None = None
    payload_hex: HexBytes | None = None
    require_reply: bool | None = None
    reply_regex: Regex | None = None
    query_name: DnsName | None = None
    query_type: DnsType | None = None
    expected_answer: IPAny | None = None
    source_address: IPAny | None = None
    helo_name: HttpHost | None = None


def merge_check(base: CheckConfig | None, override: CheckOverride | None) -> CheckConfig | None:
    """The check a real gets: `override`'s non-null fields over `base`.

    Returns None when there is no check at all, or when `override` has no type
    and there is no `base` to take it from (config.checks reports that).
    """
    if override is None:
        return base
    updates: dict[str, Any] = {
        name: getattr(override, name)
        for name in override.model_fields_set
        if getattr(override, name) is not None
    }
    if base is None:
        if override.type is None:
            return None
        base = CheckConfig(type=override.type)
    return base.model_copy(update=updates)


class TunnelConfig(_Model):
    """Encapsulation of ``forward: tunnel`` reals (ipvsadm --tun-type/--tun-port/--tun-*csum).

    Needs Linux 5.2 or later for anything but the default ``ipip``.
    """

    type: TunnelTypeName = TunnelType.IPIP
    """ipip (default), gue (UDP, needs `port`) or gre."""
    port: PortOrZero = 0
    """The real's GUE port (gue only)."""
    checksum: TunnelChecksumName = TunnelChecksum.NONE
    """none, csum or remcsum (gue and gre only)."""


class SorryServerConfig(_Model):
    """Where traffic goes when no real is available."""

    address: RealAddress
    """Unicast, as a real's (the kernel makes it an IPVS destination)."""
    port: PortOrZero = 0
    """0: the service's port."""
    inhibit: bool = False
    """Keep the sorry server in the kernel at weight 0 while it is not in use, instead of
    deleting it (keepalived's ``sorry_server_inhibit``): its connections survive a
    recovery, and it is weight 1 again at once when needed."""
    forward: ForwardName | None = None
    """Forwarding method of the sorry server (keepalived's ``sorry_server_lvs_method``);
    null: the service's ``forward``."""


class RealConfig(_Model):
    """A real server of a service."""

    address: RealAddress
    """Unicast: not unspecified, 0.0.0.0/8, multicast, broadcast, loopback (IPVS does not
    forward to it) or IPv6 link-local (the kernel refuses it)."""
    port: PortOrZero = 0
    """0: the service's port (for fwmark services: the packet's port)."""
    weight: Weight = 1
    """Relative share of new connections, 0-65535; 0: none (established ones go on)."""
    forward: ForwardName | None = None
    """Overrides the service's forwarding method."""
    upper_threshold: Threshold = 0
    """Connections above which the real gets no new ones; 0: no limit (u32)."""
    lower_threshold: Threshold = 0
    """Connections below which it gets new ones again; 0: no limit. At most
    upper_threshold (the kernel refuses a higher one, even when upper is 0)."""
    tunnel: TunnelConfig | None = None
    """Overrides the service's tunnel settings (forward: tunnel only)."""
    check: CheckOverride | None = None
    """Fields that replace those of the service's ``check`` for this real; null: the
    service's check as it is."""
    checks: tuple[CheckConfig, ...] | None = None
    """More checks of this real, replacing the service's ``checks`` (``[]``: none); null:
    the service's ``checks``."""
    notify_up: Command | None = None
    """argv of a program (no shell) run when the real's health becomes up (keepalived's
    ``notify_up``), with IPVSD_SERVICE, IPVSD_REAL_ADDRESS, IPVSD_REAL_PORT and
    IPVSD_HEALTH (``up``) in its environment. It never holds the daemon up: runs of one
    real go one after another, in order, and each is killed with its process group after
    10 seconds; null: none."""
    notify_down: Command | None = None
    """argv of a program run when the real's health becomes down (keepalived's
    ``notify_down``); as ``notify_up``, with IPVSD_HEALTH ``down``; null: none."""


class ServiceConfig(_Model):
    """A virtual service: ``address`` + ``port``, or ``fwmark``."""

    address: ServiceAddress | None = None
    """Virtual address, IPv4 or IPv6, with ``port`` (or ``fwmark`` instead of both).
    Unicast: not unspecified, 0.0.0.0/8, multicast, broadcast or loopback."""
    port: Port | None = None
    """Virtual port, with ``address``."""
    fwmark: Fwmark | None = None
    """Firewall mark that nftables/iptables set on the service's packets, instead of
    ``address`` and ``port`` (ipvsadm -f)."""
    family: FamilyName | None = None
    """Only for fwmark services (default ipv4); otherwise the address's family."""
    group: Name | None = None
    """Name of an ``ipvs.service_groups`` entry, instead of ``address`` / ``port`` /
    ``fwmark``: the service stands for one kernel service per member (each with these
    settings and reals), and each real is checked once for all of them. Each member has
    its own quorum; ``quorum_up`` / ``quorum_down`` run once, on the first member's."""
    protocol: ProtocolName = Protocol.TCP
    """Transport protocol of an address/port service (fwmark services leave it tcp)."""
    scheduler: Scheduler = "wlc"
    """IPVS scheduler (ipvsadm -s): round robin, weighted, least connections, hashing ...
    (the kernel's ip_vs_NAME modules); in BGP mode (``bgp:`` set) the default is ``mh``,
    which gives every director the same table (docs/bgp.md)."""
    scheduler_flags: tuple[SchedulerFlag, ...] = ()
    """ipvsadm -b flags: sh-fallback / mh-fallback (skip unavailable reals), sh-port /
    mh-port (hash the port too), one-packet (UDP: schedule each datagram), flag-1..3."""
    forward: ForwardName = ForwardMethod.NAT
    """Default forwarding method of the reals."""
    tunnel: TunnelConfig | None = None
    """Default tunnel settings of the ``forward: tunnel`` reals."""
    persistence_timeout: PersistenceTimeout = 0
    """Seconds a client sticks to its real, at most 2678400 (31 days, ipvsadm's and
    keepalived's limit: the kernel keeps timeout x HZ in 32 bits); 0: not persistent."""
    persistence_netmask: Netmask | None = None
    """Prefix length grouping clients for persistence, 1-32 (IPv4) or 1-128 (IPv6);
    null: 32 / 128 (each client on its own)."""
    persistence_engine: PersistenceEngine | None = None
    """Persistence engine (``sip``), at most 15 bytes (IP_VS_PENAME_MAXLEN)."""
    check: CheckConfig | None = None
    """Health check of the reals (each real's ``check`` may change fields); null: the reals
    are always up."""
    checks: tuple[CheckConfig, ...] = ()
    """More health checks of the reals, besides ``check`` (keepalived's several checkers
    per real_server): a real is up only while every one of its checks passes. All of a
    real's checks run together, each under its own ``timeout``, every smallest
    ``interval`` of them; the real goes up after the largest ``rise`` of passing rounds
    and down after the smallest ``fall`` of failing ones, retried after the smallest
    ``retry_interval`` (``interval`` for a check without one). Checks of type ``none``
    are skipped."""
    on_failure: OnFailureName = OnFailure.DRAIN
    """A real whose check fails is drained (weight 0: its connections finish, it gets no
    new ones) or removed from the kernel (keepalived's default)."""
    sorry_server: SorryServerConfig | None = None
    """Real that gets the traffic while the service has no quorum (without ``quorum``:
    while no other real is up), instead of the reals; null: none."""
    quorum: Quorum | None = None
    """Least sum of the weights of the live reals (UP, not drained) for the service to
    serve from its reals (keepalived's ``quorum``); below it the service loses quorum:
    ``quorum_down`` runs and the sorry server, if any, takes over. A live weight of 0
    always loses quorum. The service starts with quorum, so losing it at start is a
    transition too. null: quorum is "any real up"."""
    hysteresis: Hysteresis = 0
    """With ``quorum``: quorum is lost below ``quorum - hysteresis`` and regained at
    ``quorum + hysteresis`` (keepalived's ``hysteresis``), so a real flapping at the
    threshold does not flap the service."""
    quorum_up: Command | None = None
    """argv run (no shell, without holding ipvsd up) when the service regains quorum
    (keepalived's ``quorum_up``); null: none."""
    quorum_down: Command | None = None
    """argv run (no shell, without holding ipvsd up) when the service loses quorum
    (keepalived's ``quorum_down``); null: none."""
    alpha: bool = True
    """A real that is checked starts down: it enters the kernel after its first successful
    check (keepalived's ``alpha``, here the default). false: it starts up, in the kernel
    at its weight from the start, until ``fall`` failed checks (keepalived without
    ``alpha``). A real found in the kernel at start keeps the state it has there."""
    ha_suspend: bool = False
    """Pause the checks of the reals while no VRRP instance that has the service's address
    among its VIPs is MASTER, and resume them when one is (keepalived's ``ha_suspend``):
    a BACKUP director does not check. Paused reals keep the health they had. The address
    must be a VIP of ``vrrp.instances`` (not for fwmark services), and that instance may
    not track the service with weight 0 (it would wait in FAULT for checks that wait for
    it to be MASTER)."""
    omega: bool = False
    """When the service leaves the config (a reload) or ipvsd stops, a service that has
    quorum runs its ``quorum_down``, as if it had lost it (keepalived's ``omega``);
    false: nothing runs then. Only ``quorum_down``: keepalived's omega also runs the
    reals' notify_down, which ipvsd does not do then."""
    reals: tuple[RealConfig, ...] = ()
    """The real servers."""

    @property
    def address_family(self) -> Family:
        """The service's address family (from the address, or `family` for fwmark)."""
        if self.address is not None:
            return Family.of(self.address)
        return self.family or Family.INET

    @property
    def flags(self) -> ServiceFlag:
        """IP_VS_SVC_F_* bits: PERSISTENT iff persistence_timeout > 0, plus scheduler_flags."""
        flags = ServiceFlag.PERSISTENT if self.persistence_timeout > 0 else ServiceFlag(0)
        for name in self.scheduler_flags:
            flags |= SCHEDULER_FLAGS[name]
        return flags

    @property
    def netmask(self) -> int:
        """Persistence granularity as a prefix length."""
        if self.persistence_netmask is not None:
            return self.persistence_netmask
        return 32 if self.address_family is Family.INET else 128

    @property
    def key(self) -> ServiceKey:
        """The kernel identity of this service.

        Raises:
            ValueError: the service has neither fwmark nor address and port
                (impossible once config.checks accepted it).
        """
        if self.fwmark is not None:
            return fwmark_key(self.address_family, self.fwmark)
        if self.address is None or self.port is None:
            raise ValueError("a service needs address and port, or fwmark")
        return ServiceKey(Family.of(self.address), self.protocol, self.address, self.port)

    def dest_key(self, real: RealConfig) -> DestKey:
        """The kernel identity of `real`: port 0 stands for the service's port."""
        return DestKey(real.address, real.port or (self.port or 0))

    def forward_of(self, real: RealConfig) -> ForwardMethod:
        """The forwarding method of `real` (its own, else the service's)."""
        return real.forward or self.forward

    def tunnel_of(self, real: RealConfig) -> TunnelConfig | None:
        """The tunnel settings of `real` (its own, else the service's)."""
        return real.tunnel or self.tunnel

    def check_for(self, real: RealConfig) -> CheckConfig | None:
        """The check of `real`: its override merged over the service's check."""
        return merge_check(self.check, real.check)

    def checks_for(self, real: RealConfig) -> tuple[CheckConfig, ...]:
        """Every check of `real` that runs: `check_for`, then its ``checks`` (else the
        service's), without those of type ``none``."""
        first = self.check_for(real)
        more = self.checks if real.checks is None else real.checks
        listed = more if first is None else (first, *more)
        return tuple(check for check in listed if check.type is not CheckType.NONE)


class TimeoutsConfig(_Model):
    """IPVS connection timeouts (``ipvsadm --set``); 0 leaves the kernel's value.

    Each is at most 2147483 seconds: the kernel refuses more than INT_MAX / HZ
    (ip_vs_set_timeout), and HZ can be 1000.
    """

    tcp: IpvsTimeout = 0
    """Seconds an established TCP connection may idle (the kernel's default is 900)."""
    tcpfin: IpvsTimeout = 0
    """Seconds a TCP connection is kept after its FIN (the kernel's default is 120)."""
    udp: IpvsTimeout = 0
    """Seconds a UDP "connection" may idle (the kernel's default is 300)."""


class SyncDaemonConfig(_Model):
    """The IPVS connection-sync daemon: master while the instance is MASTER, else backup."""

    vrrp_instance: Name
    """The VRRP instance it follows: master while that instance is MASTER, else backup."""
    interface: Interface | None = None
    """Multicast interface, 1-15 bytes (IFNAMSIZ); null: the VRRP instance's interface."""
    sync_id: SyncId | None = None
    """Sync ID; null: the VRRP instance's vrid (as keepalived's lvs_sync_daemon)."""
    group: IPAny | None = None
    """Multicast group (IPv4 or IPv6); null: the kernel's 224.0.0.81."""
    port: PortOrZero = 0
    """Base UDP port (the n-th sync thread uses port + n); 0: the kernel's 8848."""
    ttl: Ttl = 0
    """Multicast TTL; 0: the kernel's 1 (the directors share a segment)."""
    max_length: PortOrZero = 0
    """UDP payload size of a sync message; 0: from the interface's MTU (the kernel clamps it)."""


class ServiceGroupConfig(_Model):
    """Addresses one service entry stands for (keepalived's ``virtual_server_group``)."""

    name: Name
    """Group name, unique; services name it in ``group``."""
    members: GroupMembers
    """At least one: ``ADDRESS:PORT`` (IPv6 in brackets), ``A.B.C.D-E:PORT`` (last octet
    D to E, as keepalived's ``10.0.0.1-10 80``) or ``fwmark:N`` (``fwmark:N/ipv6``); each
    address once. The service's ``protocol`` applies to them all."""


class IpvsConfig(_Model):
    """The ``ipvs`` section; without services ipvsd is a pure VRRP daemon."""

    services: tuple[ServiceConfig, ...] = ()
    """The virtual services."""
    service_groups: tuple[ServiceGroupConfig, ...] = ()
    """Named lists of service addresses, for services written with ``group``."""
    resync_interval: ResyncInterval = 30.0
    """Seconds between two periodic reconciles (drift repair), at least 1: each one dumps
    the whole IPVS table (the kernel's changes are not events, so this is the only way
    to see them), or uses the last /metrics scrape's read of it when that began less
    than half an interval ago and no change was written since."""
    cleanup_on_exit: bool = False
    """Delete our services on a graceful stop (default: leave them, drop no connection)."""
    max_deletes: NonNegative | None = None
    """Refuse a reload whose plan deletes more objects than this (``ipvsd reload --force``
    applies it anyway); null: no limit."""
    timeouts: TimeoutsConfig | None = None
    """Connection timeouts (``ipvsadm --set``); null: the kernel's."""
    sync_daemon: SyncDaemonConfig | None = None
    """The IPVS connection-sync daemon, so that established connections survive a failover;
    null: not run."""


class BgpNeighbor(_Model):
    """A BGP router this director announces its VIPs to (a session of the speaker's)."""

    address: IPAny
    """The router's address; the session carries the VIPs of its family only (IPv4 VIPs to
    IPv4 neighbors, IPv6 VIPs to IPv6 neighbors)."""
    remote_as: AsNumber
    """The router's AS number, 1-4294967295 (the same as ``local_as``: iBGP)."""
    password: BgpPassword | None = None
    """TCP MD5 signature key (RFC 2385), 1-80 printable ASCII characters without ``"`` or
    ``\\``; null: none."""
    multihop: Ttl | None = None
    """TTL for a router that is not on a directly connected network (eBGP multihop); null:
    directly connected."""
    local_address: IPAny | None = None
    """This director's address for the session; null: the kernel's choice. BIRD needs it
    for a ``multihop`` session with ``bfd``."""


class BgpConfig(_Model):
    """BGP mode: the service VIPs announced through a BIRD 2 speaker that ipvsd runs
    (docs/bgp.md). A VIP is announced while the daemon is ready, the director is not
    drained (``ipvsd drain --all``) and its services have quorum; withdrawn otherwise,
    on a graceful stop, and when ipvsd dies (the speaker dies with it)."""

    local_as: AsNumber
    """This director's AS number, 1-4294967295."""
    router_id: IPv4 | None = None
    """BGP router ID; null: BIRD's choice (the lowest IPv4 address of an interface)."""
    neighbors: Annotated[tuple[BgpNeighbor, ...], BgpNeighbors]
    """The routers to announce to (at least one)."""
    hold_time: BgpHoldTime = 9
    """BGP hold time in seconds, 3-65535: a router that hears nothing for this long from a
    director whose host died withdraws its routes (keepalives every third of it). With
    ``bfd`` the failure is seen much sooner."""
    bfd: bool = False
    """Watch each session with BFD (RFC 5880), so that a dead host or link is seen in
    ``bfd_interval * bfd_multiplier`` seconds; the routers must run BFD too."""
    bfd_interval: BfdInterval = 0.1
    """Seconds between BFD packets (sent and expected), 0.01-10."""
    bfd_multiplier: NonZeroByte = 3
    """Missed BFD packets after which a session is down, 1-255."""
    next_hop: IPAny | None = None
    """Next hop announced with the VIPs of its family; null: the session's own local
    address (BIRD's ``next hop self``), which is what ECMP over directors wants."""
    require: Literal["all", "any"] = "all"
    """A VIP shared by several services is announced while ``all`` of them have quorum
    (a director that cannot serve one of them leaves the VIP to the others), or while
    ``any`` of them has (a partial failure everywhere keeps the other services up)."""
    bird: Name = "bird"
    """The BIRD 2 daemon: a path, or a name looked up in ``PATH``."""
    run_dir: Name = "/run/ipvsd/bird"
    """Directory of the speaker's generated config (``bird.conf``) and control socket
    (``bird.ctl``); one per director on a host."""
    vip_interface: Interface | None = "lo"
    """Interface that ipvsd adds each announced VIP to (/32, /128), when it is not a local
    address already: IPVS sees only packets for local addresses. ipvsd removes on a
    graceful stop the addresses it added; null: the operator manages them."""
    sloppy_tcp: bool = True
    """Set ``net.ipv4.vs.sloppy_tcp = 1`` at start, so that a director that ECMP hands the
    middle of a TCP flow schedules it (to the same real, with ``mh``) instead of answering
    RST; false: leave the sysctl as it is."""


class Config(_Model):
    """A whole, validated ipvsd configuration."""

    include: tuple[Name, ...] = ()
    """Glob patterns of fragment files (e.g. ``/etc/ipvsd/conf.d/*.yaml``) whose
    ``vrrp.instances``, ``vrrp.scripts``, ``vrrp.sync_groups``, ``ipvs.services`` and
    ``ipvs.service_groups`` items are appended to this file's, in pattern order and
    sorted within a pattern; a relative pattern is relative to this file's directory.
    A fragment holds nothing else and includes nothing; a pattern without wildcards
    must name an existing file; a reload reads the fragments again."""
    node_name: Name
    """This director's name in status and logs (default: the host name)."""
    state_dir: Name = "/var/lib/ipvsd"
    """Directory of the durable admin state (the operator's drains, ``drains.json``);
    read at start, a reload does not move it."""
    control: ControlConfig = Field(default_factory=ControlConfig)
    """The control socket."""
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Prometheus metrics: the kernel's IPVS counters and the daemon's own."""
    vrrp: VrrpConfig = Field(default_factory=VrrpConfig)
    """VRRP: the virtual routers that own the VIPs."""
    ipvs: IpvsConfig = Field(default_factory=IpvsConfig)
    """IPVS: the virtual services and their reals."""
    bgp: BgpConfig | None = None
    """BGP mode: announce the services' VIPs to routers while this director is healthy
    for them (docs/bgp.md); null: no BGP."""
