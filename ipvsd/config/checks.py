"""Configuration rules that relate several fields or objects, each reported at its line.

Theory of operation
-------------------
`ipvsd.config.model` validates each field on its own. The rules
here need more than one field or more than one object:

- a service is ``address`` + ``port`` *or* ``fwmark``; ``family`` and a
  non-TCP ``protocol`` only make sense for fwmark services, and the
  persistence netmask range depends on the family;
- services are unique by their kernel key (`ServiceKey`), reals by `DestKey`
  within their service; a duplicate is reported on the *second* object's
  line, and the message names the first one's line;
- a real has its service's address family unless it is forwarded by
  ``tunnel`` (IPIP/GUE can carry IPv4 in IPv6 and back); DR and tunnel
  cannot change the destination port;
- the sorry server is not also a real, and keeps the port under DR / tunnel;
  ``hysteresis`` needs ``quorum``;
- a service written with ``group`` names an existing ``ipvs.service_groups``
  entry and has no address, port or fwmark of its own; group names are
  unique; a member address appears once in its group; the member services
  are unique like any others (and are checked through the first member);
- a real's lower threshold is not above its upper one (the kernel refuses
  that with ERANGE, even when the upper one is 0, "no limit");
- a check's ``retry_interval`` is not above its ``interval`` (for a real, in
  its merged check);
- a real's merged check (`merge_check`) is complete: it has a type, exec
  checks have a command, only exec checks have ``dynamic_weight``, only udp
  checks a payload or reply rules (one payload), only dns checks an
  ``expected_answer`` (an address of the ``query_type``'s family), only
  smtp checks a ``helo_name``, only http/https checks ``digest`` and
  ``urls``, only https checks a client certificate (and ``client_key`` only
  with ``client_cert``), and port checks (udp, dns and smtp too) have
  a port to connect to;
- so do the service's and a real's ``checks``, each at its own index (each
  is a whole check: nothing is merged into them);
- VRRP instance names are unique; an (interface, vrid, address family) is
  one virtual router (RFC 3768 §5.3.3; RFC 5798 §5.2.3: IPv4 and IPv6 VRIDs
  are separate spaces, as keepalived has them), so two instances cannot
  share it; a VIP belongs to one instance;
- sync groups and the sync daemon name existing instances; an instance is in
  at most one sync group (as in keepalived);
- VRRP script names are unique, an instance's ``track_scripts`` name existing
  scripts, each once, and a script's ``user`` exists on this host (the
  script runs as that user's uid);
- an instance's ``track_files`` are absolute paths, each once;
- an instance's ``advert_int`` fits its ``version``: whole seconds for VRRPv2,
  centisecond steps up to 40.95 s for VRRPv3; an instance is one address family
  (its first VIP's: the other VIPs, advertised or excluded, the unicast peers
  and source too), IPv6 needs VRRPv3, an IPv6 VIP has no broadcast address;
- ``initial_state: master`` has ``preempt`` and no ``preempt_delay`` (keepalived
  clears nopreempt and preempt_delay with ``state MASTER``);
- ``ha_suspend`` is for a service whose address (each member's) is a VIP;
- an instance's ``track_services`` name services of ``ipvs.services`` (a
  group's members by their own key), each once.

`check_parts` takes the parts of the config that validated on their own, with
their list indices, so that it still runs when validation rejected something
elsewhere: the user sees every problem in one pass. Instance names are taken
from the raw data, so a sync group naming an instance whose *other* fields
are wrong is not reported as naming an unknown instance.
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from ipvsd.config.expand import members_of
from ipvsd.config.groups import parse_member
from ipvsd.config.model import (
    BgpConfig,
    CheckConfig,
    RealConfig,
    ServiceConfig,
    ServiceGroupConfig,
    SyncDaemonConfig,
    SyncGroupConfig,
    TunnelConfig,
    VrrpInstanceConfig,
    VrrpScriptConfig,
)
from ipvsd.config.types import ADVERT_INT_V3_MAX, PORT_CHECKS, CheckType
from ipvsd.config.yaml_lines import FieldPath, Lines, locate
from ipvsd.errors import ConfigIssue
from ipvsd.model import (
    DestKey,
    Family,
    ForwardMethod,
    IPAddress,
    Protocol,
    ServiceKey,
    TunnelChecksum,
    TunnelType,
    parse_service_spec,
)

VRRP_V2 = 2
IPV6 = 6
_CENTISECOND_SLACK = 1e-6
"""How far from a whole centisecond a float may be (``0.07 * 100`` is 7.000000000000001)."""
_UDP_FIELDS = ("payload", "payload_hex", "require_reply", "reply_regex")
_HTTP_FIELDS = ("digest", "urls")
_HTTPS_FIELDS = ("client_cert", "client_key")
_TYPE_FIELDS = (
    "dynamic_weight",
    *_UDP_FIELDS,
    "expected_answer",
    "helo_name",
    *_HTTP_FIELDS,
    *_HTTPS_FIELDS,
)
"""Fields of one check type: a real that changes the type does not inherit a problem."""


@dataclass(frozen=True, slots=True)
class ServicePart:
    """A service that validated, perhaps after dropping its invalid reals.

    Attributes:
        index: its position in ``ipvs.services``.
        service: the validated service.
        real_indices: the position in the file of each of ``service.reals``.
    """

    index: int
    service: ServiceConfig
    real_indices: Sequence[int]

    @classmethod
    def whole(cls, index: int, service: ServiceConfig) -> ServicePart:
        """A service that validated with all its reals."""
        return cls(index, service, range(len(service.reals)))


@dataclass(frozen=True, slots=True)
class Parts:
    """The pieces of a config that validated on their own, with their list indices.

    Attributes:
        instances: ``vrrp.instances`` items.
        instance_names: name → index of every raw instance that has a string name.
        sync_groups: ``vrrp.sync_groups`` items.
        services: ``ipvs.services`` items.
        sync_daemon: ``ipvs.sync_daemon``, if set and valid.
        scripts: ``vrrp.scripts`` items.
        script_names: name → index of every raw script that has a string name.
        service_groups: ``ipvs.service_groups`` items.
        group_names: name → index of every raw service group that has a string name.
        bgp: the ``bgp`` section, if set and valid.
    """

    instances: Sequence[tuple[int, VrrpInstanceConfig]] = ()
    instance_names: Mapping[str, int] = field(default_factory=dict)
    sync_groups: Sequence[tuple[int, SyncGroupConfig]] = ()
    services: Sequence[ServicePart] = ()
    sync_daemon: SyncDaemonConfig | None = None
    scripts: Sequence[tuple[int, VrrpScriptConfig]] = ()
    script_names: Mapping[str, int] = field(default_factory=dict)
    service_groups: Sequence[tuple[int, ServiceGroupConfig]] = ()
    group_names: Mapping[str, int] = field(default_factory=dict)
    bgp: BgpConfig | None = None


def check_parts(parts: Parts, path: str, lines: Lines) -> list[ConfigIssue]:
    """Apply the cross-field rules.

    Args:
        parts: what to check.
        path: the config file's name, for the issues.
        lines: where each field is written.

    Returns:
        One issue per broken rule, in discovery order.
    """
    report = _Report(path, lines)
    if parts.bgp is not None:
        _check_bgp(parts.bgp, report)
    _check_instances(parts.instances, report)
    _check_sync_groups(parts.sync_groups, parts.instance_names, report)
    _check_scripts(parts, report)
    if (
        parts.sync_daemon is not None
        and parts.sync_daemon.vrrp_instance not in parts.instance_names
    ):
        report.add(
            ("ipvs", "sync_daemon", "vrrp_instance"),
            _unknown_instance(parts.sync_daemon.vrrp_instance, parts.instance_names),
        )
    group = parts.sync_daemon.group if parts.sync_daemon is not None else None
    if group is not None and not group.is_multicast:
        report.add(("ipvs", "sync_daemon", "group"), f"{group} is not a multicast address")
    members = _check_service_groups(parts.service_groups, report)
    vips = {address for _, instance in parts.instances for address in instance.owned_addresses}
    suspended: set[tuple[ServiceKey, IPAddress]] = set()
    services: dict[ServiceKey, FieldPath] = {}
    for part in parts.services:
        service = part.service
        base: FieldPath = ("ipvs", "services", part.index)
        if service.group is not None:
            expanded = _group_services(service, base, members, parts.group_names, report)
            if not expanded:
                continue
            where: FieldPath = (*base, "group")
        elif not _check_shape(service, base, report):
            continue
        else:
            expanded, where = [service], base
        for one in expanded:
            key = one.key
            if key in services:
                report.add(
                    where, f"duplicate service {key} (first on {report.at(services[key], where)})"
                )
            else:
                services[key] = where
        # The members share the service's settings and reals: check them once.
        _check_service(expanded[0], base, part.real_indices, report)
        if service.ha_suspend:
            _check_ha_suspend(expanded, (*base, "ha_suspend"), vips, report)
            suspended.update((one.key, one.address) for one in expanded if one.address is not None)
    _check_track_services(parts.instances, services, bool(parts.services), report)
    _check_suspend_deadlock(parts.instances, dict(suspended), report)
    return report.issues


def _check_ha_suspend(
    services: Sequence[ServiceConfig], where: FieldPath, vips: Set[IPAddress], report: _Report
) -> None:
    """``ha_suspend`` follows the instance that has the service's address as a VIP."""
    for service in services:
        if service.address is None:
            report.add(where, "a fwmark service has no address whose VRRP instance to follow")
            return
        if service.address not in vips:
            report.add(
                where,
                f"{service.address} is no VIP of vrrp.instances: no MASTER would ever "
                "resume the checks",
            )
            return


def _check_suspend_deadlock(
    instances: Sequence[tuple[int, VrrpInstanceConfig]],
    suspended: Mapping[ServiceKey, IPAddress],
    report: _Report,
) -> None:
    """An instance in FAULT for a service whose checks wait for it to be MASTER: never."""
    for index, instance in instances:
        own = instance.owned_addresses
        for position, track in enumerate(instance.track_services):
            key = parse_service_spec(track.service)
            if track.weight == 0 and suspended.get(key) in own:
                report.add(
                    ("vrrp", "instances", index, "track_services", position, "weight"),
                    f"0 (FAULT without quorum) on {key}, whose checks ha_suspend pauses "
                    "until this instance is MASTER: it would never leave FAULT; use a "
                    "negative weight, or drop ha_suspend",
                )


def _check_track_services(
    instances: Sequence[tuple[int, VrrpInstanceConfig]],
    services: Mapping[ServiceKey, FieldPath],
    any_service: bool,
    report: _Report,
) -> None:
    """An instance's ``track_services`` name configured services, each once."""
    for index, instance in instances:
        tracked: dict[ServiceKey, FieldPath] = {}
        for position, track in enumerate(instance.track_services):
            where: FieldPath = ("vrrp", "instances", index, "track_services", position, "service")
            key = parse_service_spec(track.service)
            if key in tracked:
                report.add(where, f"{key} is already tracked (line {report.line(tracked[key])})")
            elif key not in services and (services or not any_service):
                # (with services but none valid, they were reported where they are)
                report.add(where, f"no service {key} in ipvs.services")
            tracked.setdefault(key, where)


def _check_service_groups(
    groups: Sequence[tuple[int, ServiceGroupConfig]], report: _Report
) -> dict[str, tuple[str, ...]]:
    """Unique names; each member address once in its group. Returns the groups' members."""
    names: dict[str, FieldPath] = {}
    found: dict[str, tuple[str, ...]] = {}
    for index, group in groups:
        base: FieldPath = ("ipvs", "service_groups", index)
        _unique_name(names, group.name, base, "service group", report)
        found.setdefault(group.name, group.members)
        seen: dict[tuple[object, int, int | None], FieldPath] = {}
        for position, text in enumerate(group.members):
            where: FieldPath = (*base, "members", position)
            member = parse_member(text)
            for endpoint in member.endpoints():
                if endpoint in seen:
                    first = report.line(seen[endpoint])
                    address, port, fwmark = endpoint
                    shown = f"fwmark {fwmark}" if fwmark is not None else f"{address} port {port}"
                    report.add(where, f"overlaps an earlier member: {shown} (line {first})")
                    break
                seen[endpoint] = where
    return found


def _group_services(
    service: ServiceConfig,
    base: FieldPath,
    members: Mapping[str, tuple[str, ...]],
    known: Mapping[str, int],
    report: _Report,
) -> list[ServiceConfig]:
    """The member services of a ``group`` service; [] (reported) when there are none."""
    where: FieldPath = (*base, "group")
    assert service.group is not None
    if service.address is not None or service.port is not None or service.fwmark is not None:
        report.add(where, "cannot be combined with address/port/fwmark (the members give them)")
        return []
    if service.group not in members:
        if service.group not in known:  # a known group with bad fields was reported there
            listed = ", ".join(sorted(known)) if known else "ipvs.service_groups is empty"
            report.add(where, f"unknown service group '{service.group}' ({listed})")
        return []
    if service.family is not None:
        report.add((*base, "family"), "does not apply to a group (its members give it)")
    return members_of(service, members[service.group])


class _Report:
    def __init__(self, path: str, lines: Lines) -> None:
        self._path = path
        self._lines = lines
        self.issues: list[ConfigIssue] = []

    def line(self, field: FieldPath) -> int:
        return self._lines.line(field)

    def at(self, first: FieldPath, near: FieldPath) -> str:
        """Where `first` is written, for a message about `near`: ``line N`` in the same
        file, else ``FILE:N`` (one of them is in an included file)."""
        file, line, _ = locate(self._lines, first, self._path)
        same = locate(self._lines, near, self._path)[0] == file
        return f"line {line}" if same else f"{file}:{line}"

    def add(self, field: FieldPath, message: str) -> None:
        file, line, dotted_field = locate(self._lines, field, self._path)
        self.issues.append(ConfigIssue(file, line, dotted_field, message))


def _check_bgp(bgp: BgpConfig, report: _Report) -> None:
    """One session per router; BIRD's rules that ``bird -p`` would report at start."""
    seen: dict[IPAddress, int] = {}
    for index, neighbor in enumerate(bgp.neighbors):
        base: FieldPath = ("bgp", "neighbors", index)
        first = seen.setdefault(neighbor.address, index)
        if first != index:
            where = report.at(("bgp", "neighbors", first), base)
            report.add((*base, "address"), f"neighbor {neighbor.address} is listed at {where}")
        local = neighbor.local_address
        if local is not None and local.version != neighbor.address.version:
            report.add((*base, "local_address"), f"{local} is not of the neighbor's family")
        if bgp.bfd and neighbor.multihop is not None and local is None:
            report.add(
                (*base, "multihop"),
                "a multihop session with bfd needs local_address (BIRD requires it)",
            )


def _unknown_instance(name: str, known: Mapping[str, int]) -> str:
    if not known:
        return f"unknown VRRP instance '{name}' (vrrp.instances is empty)"
    return f"unknown VRRP instance '{name}' (known: {', '.join(sorted(known))})"


def _unique_name(
    names: dict[str, FieldPath], name: str, base: FieldPath, what: str, report: _Report
) -> None:
    """Report `name` at ``base.name`` if an earlier entry had it; else remember it."""
    if name in names:
        first = report.at(names[name], base)
        report.add((*base, "name"), f"duplicate {what} name '{name}' (first on {first})")
    else:
        names[name] = (*base, "name")


_FAMILY = {"ipv4": "IPv4", "ipv6": "IPv6"}


def _check_instances(instances: Sequence[tuple[int, VrrpInstanceConfig]], report: _Report) -> None:
    names: dict[str, FieldPath] = {}
    routers: dict[tuple[str, int, str], tuple[str, FieldPath]] = {}
    vips: dict[IPv4Address | IPv6Address, tuple[str, FieldPath]] = {}
    for index, instance in instances:
        base: FieldPath = ("vrrp", "instances", index)
        _unique_name(names, instance.name, base, "instance", report)
        router = (instance.interface, instance.vrid, instance.family)
        if router in routers:
            other, where = routers[router]
            report.add(
                (*base, "vrid"),
                f"vrid {instance.vrid} on {instance.interface} is already "
                f"{_FAMILY[instance.family]} instance '{other}' ({report.at(where, base)})",
            )
        else:
            routers[router] = (instance.name, (*base, "vrid"))
        _check_vips(instance, base, vips, report)
        _check_version(instance, base, report)
        _check_family(instance, base, report)
        _check_vmac(instance, base, report)
        _check_initial_state(instance, base, report)
        for position, route in enumerate(instance.virtual_routes):
            if route.via is None and route.dev is None:
                report.add(
                    (*base, "virtual_routes", position),
                    "a route needs 'via' (a gateway) or 'dev' (on-link)",
                )
        for position, rule in enumerate(instance.virtual_rules):
            if rule.from_ is None and rule.to is None:
                report.add(
                    (*base, "virtual_rules", position),
                    "a rule needs 'from' or 'to' (one matching everything would take over "
                    "the host's routing)",
                )


def _check_vips(
    instance: VrrpInstanceConfig,
    base: FieldPath,
    vips: dict[IPv4Address | IPv6Address, tuple[str, FieldPath]],
    report: _Report,
) -> None:
    """Each VIP once across all instances (advertised or excluded); labels the tools show."""
    for name in ("virtual_ipaddresses", "virtual_ipaddresses_excluded"):
        for position, vip in enumerate(getattr(instance, name)):
            vip_path: FieldPath = (*base, name, position)
            if vip.ip in vips:
                other, where = vips[vip.ip]
                report.add(
                    vip_path,
                    f"{vip.ip} is already a VIP of instance '{other}' "
                    f"({report.at(where, vip_path)})",
                )
            else:
                vips[vip.ip] = (instance.name, vip_path)
            dev = vip.dev or instance.advert_interface
            if vip.label is not None and not _label_fits(vip.label, dev):
                # iproute2's and ifconfig's rule; the kernel would take any label.
                report.add(
                    (*vip_path, "label"),
                    f"label '{vip.label}' must be '{dev}' or start with '{dev}:'",
                )


def _check_version(instance: VrrpInstanceConfig, base: FieldPath, report: _Report) -> None:
    """``advert_int`` in the version's unit."""
    interval = instance.advert_int
    where: FieldPath = (*base, "advert_int")
    if instance.version == VRRP_V2:
        if interval != int(interval) or interval < 1:
            report.add(
                where,
                f"advert_int {interval:g}: VRRPv2 advertises whole seconds; "
                "use version: 3 for sub-second intervals",
            )
        return
    if abs(interval * 100 - round(interval * 100)) > _CENTISECOND_SLACK:
        report.add(
            where,
            f"advert_int {interval:g}: VRRPv3 advertises centisecond steps "
            "(RFC 5798 §5.2.5: 0.01 s units)",
        )
    elif interval > ADVERT_INT_V3_MAX:
        report.add(
            where,
            f"advert_int {interval:g}: VRRPv3 advertises at most {ADVERT_INT_V3_MAX:g} s "
            "(12 bits of centiseconds, RFC 5798 §5.2.5)",
        )
    if instance.auth_pass is not None:
        report.add(
            (*base, "auth_pass"),
            "VRRPv3 has no authentication (RFC 5798 §9 removed it); remove auth_pass",
        )


def _check_family(instance: VrrpInstanceConfig, base: FieldPath, report: _Report) -> None:
    """One address family per instance (RFC 5798 §5.2), IPv6 only with VRRPv3."""
    first = instance.virtual_ipaddresses[0].ip
    family = first.version
    if family == IPV6 and instance.version == VRRP_V2:
        report.add(
            (*base, "virtual_ipaddresses", 0),
            f"{first} is IPv6: VRRPv2 is IPv4 only (RFC 3768); set version: 3 (RFC 5798)",
        )
    mismatch = (
        f"but the instance is IPv{family} (its first VIP, {first}); an instance is one "
        "address family (RFC 5798 §5.2): use one instance per family"
    )
    for name in ("virtual_ipaddresses", "virtual_ipaddresses_excluded"):
        for position, vip in enumerate(getattr(instance, name)):
            path: FieldPath = (*base, name, position)
            if vip.ip.version != family:
                report.add(path, f"{vip.ip} is IPv{vip.ip.version} {mismatch}")
            elif vip.ip.version == IPV6 and vip.broadcast is not None:
                report.add((*path, "broadcast"), "IPv6 has no broadcast address")
    for position, peer in enumerate(instance.unicast_peers):
        if peer.version != family:
            report.add(
                (*base, "unicast_peers", position), f"{peer} is IPv{peer.version} {mismatch}"
            )
    source = instance.unicast_src
    if source is not None and source.version != family:
        report.add((*base, "unicast_src"), f"{source} is IPv{source.version} {mismatch}")


def _check_vmac(instance: VrrpInstanceConfig, base: FieldPath, report: _Report) -> None:
    if not instance.vmac:
        if instance.vmac_interface is not None:
            report.add((*base, "vmac_interface"), "only with vmac: true")
        return
    if instance.unicast_peers:
        report.add(
            (*base, "vmac"),
            f"not with unicast_peers: unicast adverts arrive on {instance.interface}, "
            "not on the vmac",
        )
    if instance.advert_interface == instance.interface:
        report.add((*base, "vmac_interface"), "must not be the instance's interface")
    if instance.family == "ipv6":
        report.add(
            (*base, "vmac"),
            "not for an IPv6 instance yet: its virtual MAC (00:00:5e:00:02:VRID, "
            "RFC 5798 §7.3) and the vmac's own link-local source are not implemented",
        )


def _check_initial_state(instance: VrrpInstanceConfig, base: FieldPath, report: _Report) -> None:
    # keepalived clears nopreempt and preempt_delay with state MASTER ("will not work
    # with initial state MASTER - clearing"); ipvsd refuses rather than ignores them.
    if instance.initial_state != "master":
        return
    if not instance.preempt:
        report.add((*base, "preempt"), "must be true with initial_state: master")
    if instance.preempt_delay:
        report.add((*base, "preempt_delay"), "must be 0 with initial_state: master")


def _label_fits(label: str, interface: str) -> bool:
    return label == interface or label.startswith(f"{interface}:")


def _check_sync_groups(
    groups: Sequence[tuple[int, SyncGroupConfig]], known: Mapping[str, int], report: _Report
) -> None:
    names: dict[str, FieldPath] = {}
    member_of: dict[str, tuple[str, FieldPath]] = {}
    for index, group in groups:
        base: FieldPath = ("vrrp", "sync_groups", index)
        _unique_name(names, group.name, base, "sync group", report)
        for position, name in enumerate(group.instances):
            where: FieldPath = (*base, "instances", position)
            if name not in known:
                report.add(where, _unknown_instance(name, known))
            elif name in member_of:
                other, first_where = member_of[name]
                report.add(
                    where,
                    f"instance '{name}' is already in sync group '{other}' "
                    f"({report.at(first_where, where)})",
                )
            else:
                member_of[name] = (group.name, where)


def _check_scripts(parts: Parts, report: _Report) -> None:
    names: dict[str, FieldPath] = {}
    for index, script in parts.scripts:
        base: FieldPath = ("vrrp", "scripts", index)
        _unique_name(names, script.name, base, "script", report)
        if script.user is not None:
            try:
                pwd.getpwnam(script.user)
            except KeyError:
                report.add((*base, "user"), f"no user '{script.user}' on this host")
    known = parts.script_names
    for index, instance in parts.instances:
        tracked: dict[str, FieldPath] = {}
        for position, track in enumerate(instance.track_scripts):
            where: FieldPath = ("vrrp", "instances", index, "track_scripts", position, "script")
            if track.script not in known:
                listed = ", ".join(sorted(known)) if known else "vrrp.scripts is empty"
                report.add(where, f"unknown script '{track.script}' ({listed})")
            elif track.script in tracked:
                first = report.line(tracked[track.script])
                report.add(where, f"script '{track.script}' is already tracked (line {first})")
            else:
                tracked[track.script] = where
        files: dict[str, FieldPath] = {}
        for position, file in enumerate(instance.track_files):
            at: FieldPath = ("vrrp", "instances", index, "track_files", position, "path")
            if not file.path.startswith("/"):
                report.add(at, f"'{file.path}' is not an absolute path")
            elif file.path in files:
                report.add(
                    at, f"'{file.path}' is already tracked (line {report.line(files[file.path])})"
                )
            else:
                files[file.path] = at


def _check_shape(service: ServiceConfig, base: FieldPath, report: _Report) -> bool:
    """Address + port, or fwmark. False when the service has no usable key."""
    if service.fwmark is not None:
        if service.address is not None or service.port is not None:
            report.add(
                (*base, "fwmark"), "cannot be combined with address/port (use one or the other)"
            )
            return False
        if service.protocol is not Protocol.TCP:
            report.add(
                (*base, "protocol"),
                "does not apply to fwmark services (the mark selects the packets)",
            )
        return True
    if service.address is None and service.port is None:
        report.add(base, "a service needs address and port, or fwmark")
        return False
    if service.address is None:
        report.add((*base, "address"), "is required with port")
        return False
    if service.port is None:
        report.add((*base, "port"), "is required with address")
        return False
    if service.family is not None and service.family is not Family.of(service.address):
        report.add(
            (*base, "family"),
            f"IPv{service.family.version} does not match address {service.address}",
        )
    return True


def _check_service(
    service: ServiceConfig, base: FieldPath, real_indices: Sequence[int], report: _Report
) -> None:
    family = service.address_family
    if service.persistence_netmask is not None:
        limit = 32 if family is Family.INET else 128
        if not 1 <= service.persistence_netmask <= limit:
            report.add(
                (*base, "persistence_netmask"),
                f"must be between 1 and {limit} for an IPv{family.version} service",
            )
    sorry = service.sorry_server
    if (
        sorry is not None
        and Family.of(sorry.address) is not family
        and service.forward is not ForwardMethod.TUNNEL
    ):
        report.add((*base, "sorry_server", "address"), _cross_family(sorry.address, family))
    if sorry is not None:
        _check_sorry(service, base, report)
    if service.hysteresis and service.quorum is None:
        report.add((*base, "hysteresis"), "only with quorum (without it, quorum is any real up)")
    if service.tunnel is not None:
        if any(service.forward_of(real) is ForwardMethod.TUNNEL for real in service.reals):
            _check_tunnel(service.tunnel, (*base, "tunnel"), report)
        elif service.forward is not ForwardMethod.TUNNEL:
            report.add((*base, "tunnel"), "only for forward: tunnel (no real of it tunnels)")
    inherited = _check_problems(service.check) if service.check is not None else []
    for relative, message in inherited:
        report.add((*base, "check", *relative), message)
    _check_client_cert(service.check, (*base, "check"), report)
    _check_list(service.checks, (*base, "checks"), report)
    dests: dict[DestKey, int] = {}
    for index, real in zip(real_indices, service.reals, strict=True):
        dest = service.dest_key(real)
        first = dests.setdefault(dest, index)
        if first != index:
            first_line = report.line((*base, "reals", first))
            message = f"duplicate real {dest} (first on line {first_line})"
            report.add((*base, "reals", index), message)
        _check_real(service, family, real, dest, (*base, "reals", index), inherited, report)


def _check_sorry(service: ServiceConfig, base: FieldPath, report: _Report) -> None:
    """The sorry server is a dest of its own: not a real, and DR/tunnel keep the port."""
    sorry = service.sorry_server
    assert sorry is not None
    where: FieldPath = (*base, "sorry_server")
    dest = DestKey(sorry.address, sorry.port or (service.port or 0))
    if any(service.dest_key(real) == dest for real in service.reals):
        # One kernel dest cannot be both: its weight would follow two rules.
        report.add(where, f"{dest} is also a real of the service")
    forward = sorry.forward or service.forward
    port = service.port
    if forward is not ForwardMethod.NAT and port is not None and sorry.port not in (0, port):
        report.add(
            (*where, "port"),
            f"forward {forward.value} cannot change the port: use {port} (or 0), or forward: nat",
        )


def _check_tunnel(tunnel: TunnelConfig, where: FieldPath, report: _Report) -> None:
    """Each tunnel type takes only its own options."""
    kind = tunnel.type.name.lower()
    if tunnel.type is TunnelType.GUE and tunnel.port == 0:
        report.add((*where, "type"), "gue needs the real's GUE UDP port: set tunnel.port")
    if tunnel.type is not TunnelType.GUE and tunnel.port != 0:
        report.add((*where, "port"), f"only for type gue (this tunnel is {kind})")
    if tunnel.type is TunnelType.IPIP and tunnel.checksum is not TunnelChecksum.NONE:
        report.add((*where, "checksum"), "only for type gue or gre (ipip has no checksum option)")


def _check_real(
    service: ServiceConfig,
    family: Family,
    real: RealConfig,
    dest: DestKey,
    real_path: FieldPath,
    inherited: list[tuple[FieldPath, str]],
    report: _Report,
) -> None:
    """Family, port and merged check of one real; `inherited`: its service check's problems."""
    forward = service.forward_of(real)
    if forward is not ForwardMethod.TUNNEL and Family.of(dest.address) is not family:
        report.add((*real_path, "address"), _cross_family(dest.address, family))
    # DR rewrites only the MAC, tunnel encapsulates: neither can change the port.
    port = service.port
    if forward is not ForwardMethod.NAT and port is not None and real.port not in (0, port):
        report.add(
            (*real_path, "port"),
            f"forward {forward.value} cannot change the port: use {port} (or 0), or forward: nat",
        )
    if real.lower_threshold > real.upper_threshold:  # ip_vs_add_dest() / ip_vs_edit_dest()
        hint = "; 0 means no upper limit, so leave both 0" if real.upper_threshold == 0 else ""
        report.add(
            (*real_path, "lower_threshold"),
            f"must not be above upper_threshold ({real.upper_threshold}): "
            f"the kernel refuses it (ERANGE){hint}",
        )
    if real.tunnel is not None:
        if forward is ForwardMethod.TUNNEL:
            _check_tunnel(real.tunnel, (*real_path, "tunnel"), report)
        else:
            report.add(
                (*real_path, "tunnel"),
                f"only for forward: tunnel (this real is forward: {forward.value})",
            )
    if real.checks is not None:
        _check_list(real.checks, (*real_path, "checks"), report)
    if dest.port == 0:
        more = service.checks if real.checks is None else real.checks
        for position, extra in enumerate(more):
            if extra.type in PORT_CHECKS and extra.port is None:
                report.add(
                    (*real_path, "port"),
                    f"is 0 (the packet's port), so the {extra.type.value} check "
                    f"(checks[{position}]) needs its port",
                )
    if real.check is None and service.check is None:
        return
    check = service.check_for(real)
    if real.check is not None:
        if check is None:
            report.add(
                (*real_path, "check", "type"),
                "is required (the service has no check to inherit it from)",
            )
        written = real.check.model_fields_set
        if "client_cert" in written or "client_key" in written:
            _check_client_cert(check, (*real_path, "check"), report)
        for relative, message in _check_problems(check) if check is not None else []:
            if (relative, message) in inherited:  # already reported on the service
                continue
            if relative[0] in _TYPE_FIELDS and relative[0] not in written:
                continue  # the service check's, of the type the real replaced: unused
            report.add((*real_path, "check", *relative), message)
    if check is not None and check.type in PORT_CHECKS and check.port is None and dest.port == 0:
        report.add(
            (*real_path, "port"),
            f"is 0 (the packet's port), so the {check.type.value} check needs check.port",
        )


def _cross_family(address: IPAddress, family: Family) -> str:
    return (
        f"{address} is IPv{address.version} but the service is "
        f"IPv{family.version} (only forward: tunnel can cross families)"
    )


def _check_list(checks: Sequence[CheckConfig], where: FieldPath, report: _Report) -> None:
    """The rules of `_check_problems` for each whole check of a ``checks`` list."""
    for position, check in enumerate(checks):
        for relative, message in _check_problems(check):
            report.add((*where, position, *relative), message)
        _check_client_cert(check, (*where, position), report)


def _check_client_cert(check: CheckConfig | None, where: FieldPath, report: _Report) -> None:
    """An https check's client certificate loads (read here, as the check would load it).

    Called where the certificate is written (a service's check, a real's override or a
    ``checks`` entry), not for each real that inherits it: loading one costs a
    millisecond or so, and a big config has 40,000 reals.
    """
    if check is None or check.type is not CheckType.HTTPS or check.client_cert is None:
        return
    problem = _client_cert_problem(check.client_cert, check.client_key)
    if problem is not None:
        report.add((*where, "client_cert"), problem)


def _client_cert_problem(cert: str, key: str | None) -> str | None:
    """Why a check could not present this certificate; None: it looks loadable.

    Only reads the files (a pure core imports no ``ssl``): a certificate PEM block,
    and a private key block in `key`, else in `cert`. A key that does not match
    its certificate shows at the first check, as a TLS failure reason.
    """
    try:
        with open(cert, "rb") as file:
            text = file.read(_PEM_LIMIT)
        if key is not None:
            with open(key, "rb") as file:
                key_text = file.read(_PEM_LIMIT)
        else:
            key_text = text
    except OSError as exc:
        return f"cannot read {exc.filename}: {(exc.strerror or str(exc)).lower()}"
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return f"{cert} holds no PEM certificate"
    if not _PEM_KEY.search(key_text):
        return f"{key or cert} holds no PEM private key" + ("" if key else " (set client_key)")
    return None


_PEM_LIMIT = 1 << 20
_PEM_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def _check_problems(check: CheckConfig) -> list[tuple[FieldPath, str]]:
    """Rules within one (merged) check, as (path relative to the check, message)."""
    problems: list[tuple[FieldPath, str]] = []
    retry = check.retry_interval
    if retry is not None and retry > check.interval:
        # A retry later than the next check would find a failed real down later than
        # no retry_interval at all.
        problems.append(
            (
                ("retry_interval",),
                f"{retry:g} s must not be above interval ({check.interval:g} s)",
            )
        )
    if check.type is CheckType.EXEC and not check.command:
        problems.append((("command",), "is required for type exec"))
    if check.dynamic_weight and check.type is not CheckType.EXEC:
        problems.append(
            (("dynamic_weight",), f"only for type exec (this check is {check.type.value})")
        )
    if check.type is CheckType.UDP:
        if check.payload is not None and check.payload_hex is not None:
            problems.append((("payload_hex",), "cannot be combined with payload (use one)"))
    else:
        for name in _UDP_FIELDS:
            if getattr(check, name):
                problems.append(((name,), f"only for type udp (this check is {check.type.value})"))
    if check.type not in (CheckType.HTTP, CheckType.HTTPS):
        for name in _HTTP_FIELDS:
            if getattr(check, name):
                problems.append(
                    ((name,), f"only for type http or https (this check is {check.type.value})")
                )
    if check.type is not CheckType.HTTPS:
        for name in _HTTPS_FIELDS:
            if getattr(check, name) is not None:
                problems.append(
                    ((name,), f"only for type https (this check is {check.type.value})")
                )
    elif check.client_key is not None and check.client_cert is None:
        problems.append((("client_key",), "needs client_cert (the certificate it is the key of)"))

    if check.helo_name is not None and check.type is not CheckType.SMTP:
        problems.append((("helo_name",), f"only for type smtp (this check is {check.type.value})"))
    expected = check.expected_answer
    if expected is not None:
        wanted = "A" if expected.version == 4 else "AAAA"
        if check.type is not CheckType.DNS:
            problems.append(
                (("expected_answer",), f"only for type dns (this check is {check.type.value})")
            )
        elif check.query_type != wanted:
            problems.append(
                (
                    ("expected_answer",),
                    f"an IPv{expected.version} address needs query_type {wanted} "
                    f"(not {check.query_type})",
                )
            )
    return problems
