"""keepalived's vrrp_instance and vrrp_sync_group → ipvsd's ``vrrp``. Pure.

What converts (keepalived → ipvsd ``vrrp.instances[]``): ``interface``,
``virtual_router_id`` → ``vrid``, ``priority``, ``advert_int``,
``state MASTER`` → ``initial_state: master`` (``state BACKUP``: the default),
``nopreempt``/``preempt`` → ``preempt``, ``preempt_delay``,
``authentication { auth_type PASS; auth_pass }`` → ``auth_pass``,
``unicast_src_ip`` → ``unicast_src``, ``unicast_peer {}`` →
``unicast_peers``, ``virtual_ipaddress {}`` / ``virtual_ipaddress_excluded {}``
→ ``virtual_ipaddresses`` / ``virtual_ipaddresses_excluded`` (IPv4 or IPv6, of
the family of the first one, as keepalived; with ``dev``, ``scope``,
``label``, ``brd``), ``version`` and ``global_defs``' ``vrrp_version`` →
``version`` (an IPv6 instance is VRRPv3, as keepalived makes it), ``accept``
(ipvsd's default), ``no_accept`` → ``accept_mode: false`` (enforced after
IPVS, where keepalived's rule drops the virtual services' traffic too:
docs/vrrp-v3.md), ``virtual_routes {}`` /
``virtual_rules {}`` (`ipvsd.importers.keepalived_addresses`), ``use_vmac
[NAME]`` → ``vmac`` (``vmac_interface``; not with unicast peers),
``track_interface {}`` → ``track_interfaces``,
``track_script {}`` / ``track_file {}`` → ``track_scripts`` / ``track_files``
(`ipvsd.importers.keepalived_tracking`, with ``vrrp_script`` and the
top-level ``track_file``), ``dont_track_primary``, ``notify`` (a program
without arguments), ``notify_master`` / ``notify_backup`` / ``notify_fault``
/ ``notify_stop`` (the command line split into argv: keepalived runs them
without a shell too), ``garp_master_delay`` / ``garp_master_repeat`` /
``garp_master_refresh`` → ``garp_delay`` / ``garp_repeat`` /
``garp_refresh``, and a ``vrrp_sync_group``'s ``group {}`` and notify
programs → ``vrrp.sync_groups[]``.

keepalived's rules for ``state MASTER`` (``vrrp_complete_init``) are kept, each
dropped keyword reported: without ``priority`` it means priority 255; it
clears ``nopreempt`` and ``preempt_delay``; a non-owner with AH
authentication, or in a sync group that has a non-owner member, starts as
BACKUP after all (`settle_sync_states`).

What changes meaning, and is reported: ``state BACKUP`` with priority 255
(ipvsd's owner starts as MASTER at once, keepalived's waits
Master_Down_Interval), a fractional
VRRPv2 ``advert_int`` (rounded up to whole seconds) or a VRRPv3 one finer than
a centisecond or above 40.95 s (rounded and capped as keepalived does),
AH authentication, the user a notify program runs
as (ipvsd runs them as root), ``garp_master_refresh_repeat`` other than 1,
and the keywords of `ipvsd.importers.keepalived_keywords`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from ipvsd.config.model import SyncGroupConfig, VrrpInstanceConfig
from ipvsd.importers import keepalived_addresses as addresses
from ipvsd.importers import keepalived_keywords as keywords
from ipvsd.importers.keepalived_ledger import (
    Ledger,
    argument,
    flag,
    integer,
    number,
    seconds,
)
from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.keepalived_tracking import (
    TRACK_NODES,
    FileDecl,
    program_line,
    script_argv,
    track_files,
    track_scripts,
)
from ipvsd.importers.report import ordered

OWNER_PRIORITY = 255  # RFC 3768 §5.3.4
V3_MAX_ADVERT_INT = 40.95  # 12 bits of centiseconds (RFC 5798 §5.2.5)
_ADVERT_INT = "_advert_int"  # the raw value and its node, until the version is known
_VERSION_NODE = "_version_node"
_SLACK = 1e-9  # float noise: 0.015 * 100 is 1.4999999999999998
AUTH_PASS_MAX = 8  # VRRPv2 authentication data is 8 bytes (RFC 3768 §5.3.10)
NOTIFY_STATES = ("notify_master", "notify_backup", "notify_fault", "notify_stop")


@dataclass(frozen=True, slots=True)
class VrrpDefaults:
    """What instances take from outside their block: defaults from ``global_defs``, and
    the top-level declarations they track by name.

    Attributes:
        interface: ``default_interface``, for an instance that names none.
        version: ``vrrp_version``, for an IPv4 instance that says no ``version``.
        garp_delay: ``vrrp_garp_master_delay`` (None: ipvsd's default, also 5 s).
        garp_repeat: ``vrrp_garp_master_repeat`` (None: ipvsd's default, also 5).
        garp_refresh: ``vrrp_garp_master_refresh`` (None: ipvsd's default, also off).
        scripts: the names of the converted ``vrrp_script`` blocks.
        files: the converted top-level ``track_file`` blocks, by name.
    """

    interface: str | None = None
    version: int = 2
    garp_delay: float | None = None
    garp_repeat: int | None = None
    garp_refresh: int | None = None
    scripts: frozenset[str] = frozenset()
    files: Mapping[str, FileDecl] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Instance:
    """A converted vrrp_instance.

    Attributes:
        data: its ``vrrp.instances[]`` item.
        vip_nodes: the node of each of its ``virtual_ipaddresses`` and
            ``virtual_ipaddresses_excluded`` entries, by list.
        sync_interface: its ``lvs_sync_daemon_interface`` (keepalived 1.x's
            way to run the connection-sync daemon with this instance), if any.
        sync_node: the node of that keyword.
        track_nodes: each ``track_scripts`` / ``track_files`` entry with its node.
        state_node: the ``state MASTER`` that made ``initial_state: master``.
    """

    data: dict[str, Any]
    vip_nodes: Mapping[str, Sequence[Node]] = field(default_factory=dict)
    sync_interface: str | None = None
    sync_node: Node | None = None
    track_nodes: tuple[tuple[dict[str, Any], Node], ...] = ()
    state_node: Node | None = None


def instance(ledger: Ledger, node: Node, defaults: VrrpDefaults) -> Instance | None:
    """One ``vrrp_instance NAME { ... }``; None (reported) when it cannot be converted."""
    if not node.args:
        ledger.drop_block(node, "has no name: not converted")
        return None
    data: dict[str, Any] = {"name": node.args[0]}
    sync: tuple[str, Node] | None = None
    for child in ledger.block(node):
        handled = _instance_keyword(ledger, child, data, defaults)
        if handled:
            continue
        if child.directive == "lvs_sync_daemon_interface":
            name = argument(ledger, child)
            if name is not None:
                ledger.take(child)
                sync = (name, child)
        elif child.directive in keywords.VRRP_INSTANCE:
            _reported(ledger, child, keywords.VRRP_INSTANCE[child.directive])
        else:
            unknown(ledger, child, "vrrp_instance")
    track_nodes = tuple(data.pop(TRACK_NODES, ()))
    vip_nodes = addresses.settle_vips(ledger, data, data.get("interface", defaults.interface) or "")
    if data.get("vmac") and data.get("unicast_peers"):
        vmac_node = next(c for c in node.children or () if c.directive == "use_vmac")
        ledger.report(vmac_node, "ipvsd runs a vmac with multicast adverts only: not converted")
        del data["vmac"]
        data.pop("vmac_interface", None)
    state_node = _initial_state(ledger, node, data)
    missing = _complete(ledger, node, data, defaults)
    if missing is not None:
        ledger.drop_block(node, f"not converted: {missing}")
        return None
    ledger.take(node)
    result = ordered(data, VrrpInstanceConfig)
    sync_interface, sync_node = sync if sync is not None else (None, None)
    return Instance(result, vip_nodes, sync_interface, sync_node, track_nodes, state_node)


def _initial_state(ledger: Ledger, node: Node, data: dict[str, Any]) -> Node | None:
    """keepalived's ``state`` rules (``vrrp_complete_init``); the ``state MASTER`` node
    when ``initial_state: master`` stays."""
    states = [c for c in node.children or () if c.directive == "state" and c.args]
    if data.get("initial_state") != "master":
        if data.get("priority") == OWNER_PRIORITY and any(c.args[0] == "BACKUP" for c in states):
            ledger.report(
                states[-1],
                "ipvsd's owner (priority 255) starts as MASTER at once (RFC 3768 §6.4.1); "
                "keepalived's with state BACKUP waits Master_Down_Interval first",
            )
        return None
    master = next(c for c in states if c.args[0] == "MASTER")
    data.setdefault("priority", OWNER_PRIORITY)  # keepalived: no priority + MASTER = owner
    # keepalived: "nopreempt / preempt delay will not work with initial state MASTER".
    for key, directives in (
        ("preempt", ("nopreempt", "preempt")),
        ("preempt_delay", ("preempt_delay",)),
    ):
        if data.get(key) is False or (key == "preempt_delay" and data.get(key)):
            del data[key]
            last = [c for c in node.children or () if c.directive in directives][-1]
            ledger.report(last, "keepalived ignores it with state MASTER: not converted")
    if data["priority"] != OWNER_PRIORITY and _uses_ah(node):
        del data["initial_state"]
        ledger.report(
            master,
            "keepalived starts a non-owner with AH authentication as BACKUP (state MASTER "
            "cleared): not converted",
        )
        return None
    return master


def _uses_ah(node: Node) -> bool:
    return any(
        grand.directive == "auth_type" and grand.args[:1] == ("AH",)
        for child in node.children or ()
        if child.directive == "authentication"
        for grand in child.children or ()
    )


def settle_sync_states(
    ledger: Ledger, groups: Sequence[Mapping[str, Any]], instances: Sequence[Instance]
) -> None:
    """keepalived (``vrrp_complete_init``) starts every member of a sync group as BACKUP
    unless all of them are owners (priority 255) with state MASTER: drop
    ``initial_state: master`` there, reporting its ``state MASTER``."""
    by_name = {item.data["name"]: item for item in instances}
    for group in groups:
        members = [by_name[name] for name in group["instances"] if name in by_name]
        if all(
            m.data.get("initial_state") == "master" and m.data["priority"] == OWNER_PRIORITY
            for m in members
        ):
            continue
        for member in members:
            if member.data.pop("initial_state", None) is not None and member.state_node:
                ledger.report(
                    member.state_node,
                    f"keepalived starts the members of sync group '{group['name']}' as "
                    "BACKUP: only owners (priority 255) that all say state MASTER keep it: "
                    "not converted",
                )


def _complete(
    ledger: Ledger, node: Node, data: dict[str, Any], defaults: VrrpDefaults
) -> str | None:
    """Fill in keepalived's defaults that differ from ipvsd's; say what is missing."""
    if "interface" not in data:
        if defaults.interface is None:
            return "no interface (and no default_interface in global_defs)"
        data["interface"] = defaults.interface
    if "vrid" not in data:
        return "no virtual_router_id"
    if not data.get("virtual_ipaddresses"):
        return "no virtual_ipaddress (an ipvsd instance owns at least one)"
    data.setdefault("priority", 100)
    _settle_version(ledger, data, defaults)
    data.setdefault("advert_int", 1)
    if defaults.garp_delay is not None:
        data.setdefault("garp_delay", defaults.garp_delay)
    if defaults.garp_repeat is not None:
        data.setdefault("garp_repeat", defaults.garp_repeat)
    if defaults.garp_refresh:
        data.setdefault("garp_refresh", defaults.garp_refresh)
    return None


def _instance_keyword(
    ledger: Ledger, child: Node, data: dict[str, Any], defaults: VrrpDefaults
) -> bool:
    """Convert one keyword of a vrrp_instance block; False when it is not one of these."""
    match child.directive:
        case "state":
            _state(ledger, child, data)
        case "interface":
            _set(ledger, child, data, "interface", argument(ledger, child))
        case "virtual_router_id":
            _set(ledger, child, data, "vrid", integer(ledger, child, 1, 255))
        case "priority":
            _set(ledger, child, data, "priority", integer(ledger, child, 1, 255))
        case "advert_int":
            value = seconds(ledger, child)
            if value is not None:
                data[_ADVERT_INT] = (value, child)
        case "version":
            _version(ledger, child, data)
        case "accept":
            ledger.take(child)  # ipvsd's accept_mode default
        case "no_accept":
            _set(ledger, child, data, "accept_mode", False)
        case "nopreempt":
            _set(ledger, child, data, "preempt", False)
        case "preempt":
            _set(ledger, child, data, "preempt", flag(ledger, child))
        case "preempt_delay":
            delay = seconds(ledger, child)
            if delay is not None and delay > 1000:
                ledger.report(child, f"'{child.args[0]}' is more than 1000 s: ignored")
                delay = None
            _set(ledger, child, data, "preempt_delay", None if delay is None else number(delay))
        case "authentication":
            _authentication(ledger, child, data)
        case "virtual_ipaddress":
            addresses.vips(ledger, child, data, "virtual_ipaddresses")
        case "virtual_ipaddress_excluded":
            addresses.vips(ledger, child, data, "virtual_ipaddresses_excluded")
        case "virtual_routes" | "virtual_rules":
            addresses.routing(ledger, child, data)
        case "use_vmac":
            _use_vmac(ledger, child, data)
        case "unicast_src_ip":
            _set(ledger, child, data, "unicast_src", _address(ledger, child))
        case "unicast_peer":
            _peers(ledger, child, data)
        case "track_interface":
            _track_interfaces(ledger, child, data)
        case "track_script":
            track_scripts(ledger, child, data, dict.fromkeys(defaults.scripts))
        case "track_file":
            track_files(ledger, child, data, defaults.files)
        case "dont_track_primary":
            _set(ledger, child, data, "dont_track_primary", True)
        case "notify":
            _notify(ledger, child, data)
        case _ if child.directive in NOTIFY_STATES:
            notify_state(ledger, child, data)
        case "garp_master_refresh":
            _set(ledger, child, data, "garp_refresh", integer(ledger, child, 0, 86400))
        case "garp_master_refresh_repeat":
            refresh_repeat(ledger, child)
        case "garp_master_delay":
            delay = seconds(ledger, child)
            _set(ledger, child, data, "garp_delay", None if delay is None else number(delay))
        case "garp_master_repeat":
            _set(ledger, child, data, "garp_repeat", integer(ledger, child, 0, 255))
        case _:
            return False
    return True


def _set(ledger: Ledger, node: Node, data: dict[str, Any], key: str, value: Any) -> None:
    """``data[key] = value`` and `node` converted, unless `value` is None (reported)."""
    if value is not None:
        data[key] = value
        ledger.take(node)


def _reported(ledger: Ledger, node: Node, message: str) -> None:
    """A keyword ipvsd does not support: its block goes with it."""
    if node.children is not None:
        ledger.drop_block(node, message)
    else:
        ledger.report(node, message)


def unknown(ledger: Ledger, node: Node, where: str) -> None:
    """A keyword keepalived 2.2 does not accept here (a typo, or a newer keepalived)."""
    _reported(ledger, node, f"not a keepalived 2.2 keyword in {where}: ignored")


def _state(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    state = argument(ledger, node)
    if state == "MASTER":
        _set(ledger, node, data, "initial_state", "master")
    elif state == "BACKUP" and data.get("initial_state") == "master":
        # keepalived: "state previously set as MASTER - ignoring BACKUP"
        ledger.report(node, "after state MASTER, which keepalived keeps: ignored")
    elif state == "BACKUP":
        ledger.take(node)  # ipvsd's default
    elif state is not None:
        ledger.report(node, f"'{state}' is not MASTER or BACKUP: ignored")


def _settle_version(ledger: Ledger, data: dict[str, Any], defaults: VrrpDefaults) -> None:
    """``version`` and ``advert_int`` once the whole block is read: keepalived makes an
    IPv6 instance VRRPv3 (``vrrp_complete_instance``), others take ``version``, else
    ``vrrp_version``; the interval is in the version's unit."""
    node: Node | None = data.pop(_VERSION_NODE, None)
    version = data.get("version", defaults.version)
    if _family(data) == 6:
        if version != 3 and node is not None:
            ledger.report(
                node,
                "VRRPv2 is IPv4 only (RFC 3768); this IPv6 instance speaks VRRPv3, as "
                "keepalived's does with vrrp_strict",
            )
        version = 3
    if version == 3:
        data["version"] = 3
    else:
        data.pop("version", None)  # ipvsd's default
    raw = data.pop(_ADVERT_INT, None)
    if raw is not None:
        _advert_int(ledger, raw[1], data, raw[0], version)


def _family(data: dict[str, Any]) -> int:
    first = addresses.entry_ip(data["virtual_ipaddresses"][0])
    return ip_address(first).version


def _advert_int(
    ledger: Ledger, node: Node, data: dict[str, Any], value: float, version: int
) -> None:
    if version == 3:
        # keepalived rounds to the nearest centisecond and caps at 40.95 s.
        centiseconds = max(1, math.floor(value * 100 + 0.5 + _SLACK))
        result = min(centiseconds / 100, V3_MAX_ADVERT_INT)
        data["advert_int"] = number(result)
        change = f"advert_int {result:g} (was {value:g})"
        if value > V3_MAX_ADVERT_INT:
            ledger.report(node, f"VRRPv3 adverts at most 40.95 s: {change}, as keepalived sets it")
        elif abs(result - value) > _SLACK:
            ledger.report(
                node, f"VRRPv3 adverts are in centiseconds: {change}, as keepalived rounds it"
            )
        else:
            ledger.take(node)
        return
    whole = max(1, math.ceil(value))
    if whole > 255:
        ledger.report(node, f"'{node.args[0]}' is more than 255 s: ignored")
        return
    data["advert_int"] = whole
    if whole != value:
        ledger.report(
            node, f"VRRPv2 adverts are in whole seconds: advert_int {whole} (was {value:g})"
        )
    else:
        ledger.take(node)


def _version(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    version = argument(ledger, node)
    if version in ("2", "3"):
        data["version"] = int(version)
        data[_VERSION_NODE] = node
        ledger.take(node)
    elif version is not None:
        ledger.report(node, f"'{version}' is not VRRP version 2 or 3: ignored")


def _address(ledger: Ledger, node: Node, index: int = 0) -> str | None:
    text = argument(ledger, node, index)
    if text is None:
        return None
    try:
        return str(ip_address(text))
    except ValueError:
        ledger.report(node, f"'{text}' is not an IP address: ignored")
        return None


def _authentication(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    kind: str | None = None
    password: tuple[Node, str] | None = None
    for child in ledger.block(node):
        if child.directive == "auth_type":
            kind = argument(ledger, child)
        elif child.directive == "auth_pass":
            text = argument(ledger, child)
            if text is not None:
                password = (child, text)
        else:
            unknown(ledger, child, "authentication")
    if kind == "AH":
        ledger.drop_block(
            node,
            "AH authentication is not supported (RFC 3768 removed it): adverts go out "
            "without authentication, which peers still using AH refuse",
        )
        return
    if kind != "PASS" or password is None:
        ledger.drop_block(node, "needs auth_type PASS and an auth_pass: not converted")
        return
    child, text = password
    ledger.take_all(node)
    sent = text.encode()[:AUTH_PASS_MAX].decode(errors="ignore")  # keepalived cuts bytes
    data["auth_pass"] = sent
    if sent != text:
        ledger.report(
            child,
            f"longer than {AUTH_PASS_MAX} bytes: cut to '{sent}', as keepalived sends it",
        )


def _use_vmac(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    """``use_vmac [NAME]`` → ``vmac: true`` (and ``vmac_interface``); keepalived's
    default name, ``vrrp.VRID``, is ipvsd's too."""
    if len(node.args) > 1:
        ledger.report(node, f"{' '.join(node.args)}: not understood: ignored")
        return
    data["vmac"] = True
    if node.args:
        data["vmac_interface"] = node.args[0]
    ledger.take(node)


def _peers(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    peers: list[str] = data.setdefault("unicast_peers", [])
    ledger.take(node)
    for child in ledger.block(node):
        try:
            peers.append(str(ip_address(child.directive)))
        except ValueError:
            ledger.report(child, "not an IP address: ignored")
            continue
        if child.args:
            ledger.report(child, f"{' '.join(child.args)}: not supported (no TTL checks): ignored")
        else:
            ledger.take(child)


def _track_interfaces(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    tracked: list[dict[str, Any]] = data.setdefault("track_interfaces", [])
    ledger.take(node)
    for child in ledger.block(node):
        entry: dict[str, Any] = {"interface": child.directive}
        args = list(child.args)
        if args[:1] == ["weight"]:
            weight = integer(ledger, child, -254, 254, index=1)
            if weight is None:
                continue
            entry["weight"] = weight
            args = args[2:]
        if args == ["reverse"]:
            ledger.report(
                child,
                "reverse: not supported: ipvsd applies the weight the usual way (added while "
                "up if > 0, while down if < 0)",
            )
        elif args:
            ledger.report(child, f"{' '.join(args)}: not understood: ignored")
        else:
            ledger.take(child)
        tracked.append(entry)


def _notify(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    argv = script_argv(node)
    if not argv:
        ledger.report(node, "has no program: ignored")
    elif len(argv) > 1:
        ledger.report(
            node,
            "ipvsd runs notify programs without arguments of their own (as `PROGRAM TYPE "
            "NAME STATE PRIORITY`): not converted; use a wrapper script",
        )
    else:
        data["notify"] = argv[0]
        ledger.take(node)


def notify_state(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    """``notify_master "COMMAND LINE" [USER [GROUP]]`` → an argv list. keepalived splits
    the command line itself and runs it without a shell, as ipvsd does."""
    program_line(
        ledger,
        node,
        data,
        empty="has no program: ignored",
        user="runs as {user} in keepalived; ipvsd runs notify programs as root: "
        "converted without the user",
    )


def refresh_repeat(ledger: Ledger, node: Node) -> None:
    """``garp_master_refresh_repeat N``: ipvsd's refresh is one GARP per VIP."""
    repeat = integer(ledger, node, 1, 255)
    if repeat == 1:
        ledger.take(node)
    elif repeat is not None:
        ledger.report(node, "ipvsd sends one GARP per VIP per garp_refresh: ignored")


def sync_group(ledger: Ledger, node: Node, known: Mapping[str, Node]) -> dict[str, Any] | None:
    """One ``vrrp_sync_group NAME { group { ... } }``; `known`: the converted instances."""
    if not node.args:
        ledger.drop_block(node, "has no name: not converted")
        return None
    members: list[str] = []
    programs: dict[str, Any] = {}
    for child in ledger.block(node):
        if child.directive == "group":
            ledger.take(child)
            for member in ledger.block(child):
                for name in member.words:
                    if name in known:
                        members.append(name)
                        ledger.take(member)
                    else:
                        ledger.report(
                            member, f"{name}: no converted vrrp_instance of that name: left out"
                        )
        elif child.directive == "notify":
            _notify(ledger, child, programs)
        elif child.directive in NOTIFY_STATES:
            notify_state(ledger, child, programs)
        elif child.directive in keywords.VRRP_SYNC_GROUP:
            _reported(ledger, child, keywords.VRRP_SYNC_GROUP[child.directive])
        elif child.directive in known:
            ledger.report(
                child,
                "an instance name outside `group { }` (keepalived 1.x syntax), which keepalived "
                "2.2 ignores too: left out",
            )
        else:
            unknown(ledger, child, "vrrp_sync_group")
    if not members:
        ledger.drop_block(node, "no converted instance in its group: not converted")
        return None
    ledger.take(node)
    return ordered({"name": node.args[0], "instances": members, **programs}, SyncGroupConfig)
