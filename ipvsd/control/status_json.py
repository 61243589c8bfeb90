"""The status contract's one JSON codec (`to_json`, `from_json`) — pure.

The rules are in `ipvsd.control.status`, whose dataclasses this encodes
field by field: a generic walk (`dataclasses.asdict`) was four times slower
on the event loop for 10k services x 4 reals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import UTC, datetime
from ipaddress import ip_address, ip_interface
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar, overload

from ipvsd.control.status import (
    BgpPrefixStatus,
    BgpSession,
    BgpStatus,
    CheckStatus,
    QuorumStatus,
    RealStatus,
    RunningSyncDaemon,
    ServiceStatus,
    StatsView,
    StatusDocument,
    SyncDaemonStatusView,
    TrackedFileStatus,
    TrackedScriptStatus,
    VrrpStatus,
)
from ipvsd.errors import IpvsdError
from ipvsd.model import NO_FLAGS, Family, ForwardMethod, IPAddress, Protocol, ServiceFlag

T = TypeVar("T")


class MalformedStatus(IpvsdError):
    """A status document that does not follow the contract (``path: what is wrong``)."""


_FLAG_LABELS = {
    ServiceFlag.PERSISTENT: "persistent",
    ServiceFlag.HASHED: "hashed",
    ServiceFlag.ONEPACKET: "one-packet",
    ServiceFlag.SCHED1: "flag-1",
    ServiceFlag.SCHED2: "flag-2",
    ServiceFlag.SCHED3: "flag-3",
}
_STATS_FIELDS = tuple(f.name for f in fields(StatsView))
# Looked up rather than read from the enums' properties: 50k reals per status request.
_PROTOCOL_LABELS = {p: p.label for p in Protocol}
_FORWARD_LABELS = {f: f.value for f in ForwardMethod}


def to_json(doc: StatusDocument) -> dict[str, Any]:
    """The document as the contract's JSON object (what ``ipvsd status --json`` prints).

    Decoded from `document_text`, the one encoder: the daemon writes the text of
    10k services x 4 reals from its parts without this dict tree
    (`ipvsd.daemon.status`), through the same functions.
    """
    result: dict[str, Any] = json.loads("".join(document_text(doc)))
    return result


def document_text(doc: StatusDocument, services: Iterable[str] | None = None) -> list[str]:
    """The document as JSON text, in pieces to join (compact, ASCII, as `json.dumps`
    with ``separators=(",", ":")`` spells `to_json`'s object).

    Args:
        doc: the document.
        services: the text of each service (`service_head` + `service_tail`) to
            write instead of ``doc.services``: the daemon's builder writes them.
    """
    if services is None:
        times = _Times()
        services = [_service_text(service, times) for service in doc.services]
    head = {"node": doc.node, "version": doc.version, "vrrp": [_vrrp_json(v) for v in doc.vrrp]}
    tail = {
        "sync_daemon": _sync_json(doc.sync_daemon) if doc.sync_daemon is not None else None,
        "bgp": _bgp_json(doc.bgp) if doc.bgp is not None else None,
    }
    pieces = [_dumps(head)[:-1], ',"services":[']
    first = True
    for service in services:
        if not first:
            pieces.append(",")
        pieces.append(service)
        first = False
    pieces += ["],", _dumps(tail)[1:]]
    return pieces


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _vrrp_json(v: VrrpStatus) -> dict[str, Any]:
    return {
        "name": v.name,
        "state": v.state,
        "interface": v.interface,
        "vrid": v.vrid,
        "priority": v.priority,
        "effective_priority": v.effective_priority,
        "virtual_ipaddresses": [str(vip) for vip in v.virtual_ipaddresses],
        "fault_reason": v.fault_reason,
        "failures": v.failures,
        "master_address": _text(v.master_address),
        "track_scripts": [{"script": t.script, "state": t.state} for t in v.track_scripts],
        "track_files": [
            {"path": t.path, "value": t.value, "weight": t.weight} for t in v.track_files
        ],
        "version": v.version,
        "family": v.family,
        "advert_int": _centiseconds(v.advert_int),
        "master_adver_int": None
        if v.master_adver_int is None
        else _centiseconds(v.master_adver_int),
        "accept_mode": v.accept_mode,
        "accept_mode_error": v.accept_mode_error,
    }


def _bgp_json(bgp: BgpStatus) -> dict[str, Any]:
    return {
        "speaker": bgp.speaker,
        "running": bgp.running,
        "local_as": bgp.local_as,
        "drained": bgp.drained,
        "sessions": [
            {"neighbor": s.neighbor, "remote_as": s.remote_as, "state": s.state, "up": s.up}
            for s in bgp.sessions
        ],
        "announced": list(bgp.announced),
        "prefixes": [
            {"prefix": p.prefix, "announced": p.announced, "reason": p.reason} for p in bgp.prefixes
        ],
    }


def _centiseconds(seconds: float) -> float:
    """Seconds to the centisecond: VRRPv3's unit, and no float noise (0.1, not
    0.10000000000000001)."""
    return round(seconds, 2)


def services_to_json(services: Iterable[ServiceStatus]) -> list[dict[str, Any]]:
    """Services as the contract spells them (also ``ipvsd list --json``)."""
    times = _Times()
    result: list[dict[str, Any]] = json.loads(
        "[" + ",".join(_service_text(service, times) for service in services) + "]"
    )
    return result


# --- the text of services and reals: the daemon writes 10k x 4 of these per request -------


def service_head(
    address: IPAddress | None,
    port: int | None,
    protocol: Protocol,
    fwmark: int | None,
    family: Family,
    scheduler: str,
    flags: ServiceFlag,
    persistence_timeout: int,
    persistence_netmask: int,
    persistence_engine: str | None,
) -> str:
    """A service's text up to its `in_kernel` (what the config says: the daemon writes
    it once per config); `service_tail` ends it."""
    head = {
        "address": _text(address),
        "port": port,
        "protocol": _PROTOCOL_LABELS[protocol],
        "fwmark": fwmark,
        "family": family.label,
        "scheduler": scheduler,
        "flags": [label for flag, label in _FLAG_LABELS.items() if flags & flag] if flags else [],
        "persistence_timeout": persistence_timeout,
        "persistence_netmask": persistence_netmask,
        "persistence_engine": persistence_engine,
    }
    return _dumps(head)[:-1] + ","


def service_tail(
    in_kernel: bool,
    stats: StatsView | None,
    reals: Iterable[str],
    quorum: QuorumStatus | None,
    mh_fingerprint: str | None,
) -> str:
    """The rest of a service's text after `service_head`; `reals` are `real_text`s."""
    return _SERVICE_TAIL % (
        _BOOL[in_kernel],
        stats_text(stats),
        ",".join(reals),
        "null" if quorum is None else _quorum_text(quorum),
        _string(mh_fingerprint),
    )


_SERVICE_TAIL = '"in_kernel":%s,"stats":%s,"reals":[%s],"quorum":%s,"mh_fingerprint":%s}'


def _service_text(s: ServiceStatus, times: _Times) -> str:
    head = service_head(
        s.address,
        s.port,
        s.protocol,
        s.fwmark,
        s.family,
        s.scheduler,
        s.flags,
        s.persistence_timeout,
        s.persistence_netmask,
        s.persistence_engine,
    )
    reals = [_real_text(real, times) for real in s.reals]
    return head + service_tail(s.in_kernel, s.stats, reals, s.quorum, s.mh_fingerprint)


def _quorum_text(q: QuorumStatus) -> str:
    quorum = "null" if q.quorum is None else f"{q.quorum:d}"
    return (
        f'{{"up":{_BOOL[q.up]},"live_weight":{q.live_weight:d},"quorum":{quorum},'
        f'"hysteresis":{q.hysteresis:d}}}'
    )


def real_head(address: IPAddress, port: int) -> str:
    """A real's text up to its `forward` (its identity: the daemon writes it once per
    config); `real_text` ends it."""
    return f'{{"address":"{address}","port":{port:d},'


def real_text(
    head: str,
    forward: ForwardMethod,
    weight: int,
    configured_weight: int | None,
    health: str | None,
    health_reason: str | None,
    health_since: str | None,
    health_checks: tuple[CheckStatus, ...] | None,
    drained: bool,
    in_kernel: bool,
    sorry: bool,
    active_conns: int,
    inactive_conns: int,
    persistent_conns: int,
    upper_threshold: int | None,
    lower_threshold: int | None,
    stats: StatsView | None,
) -> str:
    """A real's text: `real_head` and `RealStatus`'s fields in order (`health_since`
    already written by `time_text`)."""
    return _REAL % (
        head,
        _FORWARD_TEXT[forward],
        weight,
        "null" if configured_weight is None else f"{configured_weight:d}",
        _string(health),
        _string(health_reason),
        "null" if health_since is None else f'"{health_since}"',
        "null" if health_checks is None else _checks_text(health_checks),
        _BOOL[drained],
        _BOOL[in_kernel],
        _BOOL[sorry],
        active_conns,
        inactive_conns,
        persistent_conns,
        "null" if upper_threshold is None else f"{upper_threshold:d}",
        "null" if lower_threshold is None else f"{lower_threshold:d}",
        stats_text(stats),
    )


_REAL = (
    '%s"forward":%s,"weight":%d,"configured_weight":%s,"health":%s,"health_reason":%s,'
    '"health_since":%s,"health_checks":%s,"drained":%s,"in_kernel":%s,"sorry":%s,'
    '"active_conns":%d,"inactive_conns":%d,"persistent_conns":%d,"upper_threshold":%s,'
    '"lower_threshold":%s,"stats":%s}'
)
_BOOL = {True: "true", False: "false"}
_FORWARD_TEXT = {f: f'"{f.value}"' for f in ForwardMethod}


def _real_text(r: RealStatus, times: _Times) -> str:
    return real_text(
        real_head(r.address, r.port),
        r.forward,
        r.weight,
        r.configured_weight,
        r.health,
        r.health_reason,
        None if r.health_since is None else times[r.health_since],
        r.health_checks,
        r.drained,
        r.in_kernel,
        r.sorry,
        r.active_conns,
        r.inactive_conns,
        r.persistent_conns,
        r.upper_threshold,
        r.lower_threshold,
        r.stats,
    )


def _checks_text(checks: tuple[CheckStatus, ...]) -> str:
    return _dumps([{"type": c.type, "ok": c.ok, "reason": c.reason} for c in checks])


def stats_text(stats: StatsView | None) -> str:
    """Traffic counters as the document writes them (null: none)."""
    if stats is None:
        return "null"
    return _STATS % (
        stats.conns,
        stats.inpkts,
        stats.outpkts,
        stats.inbytes,
        stats.outbytes,
        stats.cps,
        stats.inpps,
        stats.outpps,
        stats.inbps,
        stats.outbps,
    )


_STATS = "{" + ",".join(f'"{f.name}":%d' for f in fields(StatsView)) + "}"


def _string(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def _sync_json(sync: SyncDaemonStatusView) -> dict[str, Any]:
    running = None
    if sync.running is not None:
        running = [
            {
                "state": d.state,
                "interface": d.interface,
                "sync_id": d.sync_id,
                "mcast_group": _text(d.mcast_group),
                "mcast_port": d.mcast_port,
                "mcast_ttl": d.mcast_ttl,
                "sync_maxlen": d.sync_maxlen,
            }
            for d in sync.running
        ]
    return {
        "vrrp_instance": sync.vrrp_instance,
        "interface": sync.interface,
        "sync_id": sync.sync_id,
        "wanted": sync.wanted,
        "running": running,
        "error": sync.error,
    }


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def unix_time_text(seconds: int) -> str:
    """Unix seconds as the document writes a time (`_Times` spells a datetime so)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")[:19] + "Z"


class _Times(dict[datetime, str]):
    """Times as the document writes them, each formatted once per document.

    RFC 3339 in UTC to the second, ``2026-03-01T12:03:04Z`` (a naive time is
    taken as UTC). Most reals share a few distinct times (those whose checks
    began with the daemon): formatting each of 40,000 took a third of the
    encoding's time.
    """

    def __missing__(self, moment: datetime) -> str:
        utc = moment.astimezone(UTC) if moment.utcoffset() else moment
        text = self[moment] = utc.isoformat(timespec="seconds")[:19] + "Z"
        return text


def _utc_time(text: str) -> datetime:
    """An RFC 3339 time (any offset; none means UTC), in UTC."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def from_json(data: object) -> StatusDocument:
    """Decode the contract's JSON object (``ipvsd status`` on the client side).

    Args:
        data: the parsed JSON (the ``result`` of a ``status`` answer).

    Returns:
        The document; unknown keys are ignored, missing extras take their defaults.

    Raises:
        MalformedStatus: a contract field is missing, or a value has the wrong
            type or is not one of the allowed values; the message names its path.
    """
    doc = _Object(data, "")
    sync = doc.child("sync_daemon")
    bgp = doc.child("bgp")
    return StatusDocument(
        node=doc.required("node", str),
        version=doc.required("version", str),
        vrrp=tuple(_vrrp(item) for item in doc.items("vrrp")),
        services=tuple(_service(item) for item in doc.items("services")),
        sync_daemon=_sync(sync) if sync is not None else None,
        bgp=_bgp(bgp) if bgp is not None else None,
    )


def _bgp(b: _Object) -> BgpStatus:
    return BgpStatus(
        speaker=b.required("speaker", str),
        running=b.required("running", bool),
        local_as=b.required("local_as", int),
        drained=b.required("drained", bool),
        sessions=tuple(
            BgpSession(
                s.required("neighbor", str),
                s.required("remote_as", int),
                s.required("state", str),
                s.required("up", bool),
            )
            for s in b.items("sessions")
        ),
        prefixes=tuple(
            BgpPrefixStatus(
                p.required("prefix", str), p.required("announced", bool), p.required("reason", str)
            )
            for p in b.items("prefixes")
        ),
    )


def _vrrp(v: _Object) -> VrrpStatus:
    vips = v.required("virtual_ipaddresses", list)
    return VrrpStatus(
        name=v.required("name", str),
        state=v.required("state", str),
        interface=v.required("interface", str),
        vrid=v.required("vrid", int),
        priority=v.required("priority", int),
        effective_priority=v.required("effective_priority", int),
        virtual_ipaddresses=tuple(
            v.parse(f"virtual_ipaddresses[{i}]", vip, ip_interface) for i, vip in enumerate(vips)
        ),
        fault_reason=v.optional("fault_reason", str),
        failures=v.optional("failures", int, 0),
        master_address=v.optional_parsed("master_address", ip_address),
        track_scripts=tuple(
            TrackedScriptStatus(t.required("script", str), t.required("state", str))
            for t in (v.items("track_scripts") if v.optional("track_scripts", list) else [])
        ),
        track_files=tuple(
            TrackedFileStatus(
                t.required("path", str), t.nullable("value", int), t.required("weight", int)
            )
            for t in (v.items("track_files") if v.optional("track_files", list) else [])
        ),
        version=v.optional("version", int, 2),
        family=v.optional("family", str, "ipv4"),
        advert_int=v.optional("advert_int", float, 1.0),
        master_adver_int=v.optional("master_adver_int", float),
        accept_mode=v.optional("accept_mode", bool, True),
        accept_mode_error=v.optional("accept_mode_error", str),
    )


def _service(s: _Object) -> ServiceStatus:
    address = s.nullable("address", str)
    parsed = s.parse("address", address, ip_address) if address is not None else None
    fwmark = s.nullable("fwmark", int)
    family_label = s.optional("family", str)
    if family_label is None:  # an older document: the address says it, else a fwmark is IPv4
        family = Family.INET if parsed is None else Family.of(parsed)
    else:
        family = s.choose("family", family_label, _FAMILIES)
    timeout = s.optional("persistence_timeout", int, 0)
    flags = ServiceFlag.PERSISTENT if timeout else NO_FLAGS  # an older document has no flags
    if s.optional("flags", list) is not None:
        flags = NO_FLAGS
        for label in s.strings("flags"):  # a flag this version does not know is left out
            flags |= _FLAGS.get(label, NO_FLAGS)
    stats = s.child("stats")
    return ServiceStatus(
        address=parsed,
        port=s.nullable("port", int),
        protocol=s.choose("protocol", s.required("protocol", str), _PROTOCOLS),
        fwmark=fwmark,
        family=family,
        scheduler=s.required("scheduler", str),
        flags=flags,
        persistence_timeout=timeout,
        persistence_netmask=s.optional(
            "persistence_netmask", int, 32 if family is Family.INET else 128
        ),
        persistence_engine=s.optional("persistence_engine", str),
        in_kernel=s.optional("in_kernel", bool, True),
        stats=_stats(stats) if stats is not None else None,
        reals=tuple(_real(item) for item in s.items("reals")),
        quorum=_quorum(quorum) if (quorum := s.child("quorum")) is not None else None,
        mh_fingerprint=s.optional("mh_fingerprint", str),
    )


def _quorum(q: _Object) -> QuorumStatus:
    return QuorumStatus(
        up=q.required("up", bool),
        live_weight=q.required("live_weight", int),
        quorum=q.nullable("quorum", int),
        hysteresis=q.optional("hysteresis", int, 0),
    )


_PROTOCOLS = {label: p for p, label in _PROTOCOL_LABELS.items()}
_FORWARDS = {label: f for f, label in _FORWARD_LABELS.items()}
_FAMILIES = {family.label: family for family in Family}
_FLAGS = {label: flag for flag, label in _FLAG_LABELS.items()}


def _real(r: _Object) -> RealStatus:
    stats = r.child("stats")
    return RealStatus(
        address=r.parse("address", r.required("address", str), ip_address),
        port=r.required("port", int),
        forward=r.choose("forward", r.required("forward", str), _FORWARDS),
        weight=r.required("weight", int),
        configured_weight=r.nullable("configured_weight", int),
        health=r.nullable("health", str),
        health_reason=r.optional("health_reason", str),
        health_since=r.optional_parsed("health_since", _utc_time),
        health_checks=tuple(
            CheckStatus(c.required("type", str), c.required("ok", bool), c.required("reason", str))
            for c in r.items("health_checks")
        )
        if r.optional("health_checks", list) is not None
        else None,
        drained=r.optional("drained", bool, False),
        in_kernel=r.optional("in_kernel", bool, True),
        sorry=r.optional("sorry", bool, False),
        active_conns=r.required("active_conns", int),
        inactive_conns=r.required("inactive_conns", int),
        persistent_conns=r.required("persistent_conns", int),
        upper_threshold=r.optional("upper_threshold", int),
        lower_threshold=r.optional("lower_threshold", int),
        stats=_stats(stats) if stats is not None else None,
    )


def _stats(s: _Object) -> StatsView:
    return StatsView(*(s.optional(name, int, 0) for name in _STATS_FIELDS))


def _sync(s: _Object) -> SyncDaemonStatusView:
    running = None
    if s.optional("running", list) is not None:
        running = tuple(_running(d) for d in s.items("running"))
    return SyncDaemonStatusView(
        vrrp_instance=s.optional("vrrp_instance", str),
        interface=s.optional("interface", str),
        sync_id=s.optional("sync_id", int),
        wanted=s.optional("wanted", str),
        running=running,
        error=s.optional("error", str),
    )


def _running(d: _Object) -> RunningSyncDaemon:
    group = d.optional("mcast_group", str)
    return RunningSyncDaemon(
        state=d.required("state", str),
        interface=d.required("interface", str),
        sync_id=d.required("sync_id", int),
        mcast_group=d.parse("mcast_group", group, ip_address) if group is not None else None,
        mcast_port=d.optional("mcast_port", int, 0),
        mcast_ttl=d.optional("mcast_ttl", int, 0),
        sync_maxlen=d.optional("sync_maxlen", int, 0),
    )


_KINDS: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


class _Object:
    """Typed reads of one JSON object; every error names the value's path."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise MalformedStatus(f"{path or 'status'}: expected an object, got {_json_type(data)}")
        self._data: dict[str, object] = data
        self._path = path

    def at(self, key: str) -> str:
        """The JSON path of `key` in this object, for error messages."""
        return f"{self._path}.{key}" if self._path else key

    def required(self, key: str, kind: type[T]) -> T:
        """A field that must be there and not null."""
        if key not in self._data:
            raise MalformedStatus(f"{self.at(key)}: missing")
        return self._typed(key, self._data[key], kind)

    def nullable(self, key: str, kind: type[T]) -> T | None:
        """A field that must be there and may be null."""
        if key not in self._data:
            raise MalformedStatus(f"{self.at(key)}: missing")
        value = self._data[key]
        return None if value is None else self._typed(key, value, kind)

    @overload
    def optional(self, key: str, kind: type[T]) -> T | None: ...
    @overload
    def optional(self, key: str, kind: type[T], default: T) -> T: ...
    def optional(self, key: str, kind: type[T], default: T | None = None) -> T | None:
        """An extra field: absent or null means `default`."""
        value = self._data.get(key)
        return default if value is None else self._typed(key, value, kind)

    def child(self, key: str) -> _Object | None:
        """An optional object field; None when absent or null."""
        value = self._data.get(key)
        return None if value is None else _Object(value, self.at(key))

    def items(self, key: str) -> list[_Object]:
        """The objects of a required list."""
        path = self.at(key)
        return [_Object(item, f"{path}[{i}]") for i, item in enumerate(self.required(key, list))]

    def strings(self, key: str) -> list[str]:
        """The strings of a required list."""
        values = self.required(key, list)
        return [self._typed(f"{key}[{i}]", value, str) for i, value in enumerate(values)]

    def choose(self, key: str, label: str, choices: dict[str, T]) -> T:
        """The value a label names (an enum's), or an error listing the labels."""
        if label not in choices:
            raise MalformedStatus(f"{self.at(key)}: {label!r} is not one of {', '.join(choices)}")
        return choices[label]

    def optional_parsed(self, key: str, parser: Callable[[str], T]) -> T | None:
        """An extra field in text that `parser` reads (an address, a time); None when absent."""
        value = self._data.get(key)
        return None if value is None else self.parse(key, value, parser)

    def parse(self, key: str, value: object, parser: Callable[[str], T]) -> T:
        """A value in text: `parser` (ip_address, IPv4Interface, a time) turns it into one."""
        text = self._typed(key, value, str)
        try:
            return parser(text)
        except ValueError as exc:
            raise MalformedStatus(f"{self.at(key)}: {exc}") from None

    def _typed(self, key: str, value: object, kind: type[T]) -> T:
        # bool is an int in Python, not in JSON: true is no weight.
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise MalformedStatus(f"{self.at(key)}: expected {_KINDS[kind]}, got {_json_type(value)}")


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
