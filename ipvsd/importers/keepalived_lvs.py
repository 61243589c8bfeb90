"""keepalived's virtual_server, virtual_server_group and real_server → ``ipvs.services``. Pure.

What converts: the service key (``IP PORT``, ``fwmark N``, or ``group NAME``:
the virtual_server_group becomes an ``ipvs.service_groups`` entry and the
service is written with ``group``, so that ipvsd, as keepalived, makes one
IPVS service per member and checks each real once), ``lb_algo``/``lvs_sched`` → ``scheduler``, the
scheduler flag keywords (``ops``, ``sh-port``...) → ``scheduler_flags``,
``lb_kind``/``lvs_method`` (and its TUN options) → ``forward`` / ``tunnel``,
``persistence_timeout``, ``persistence_granularity`` →
``persistence_netmask``, ``persistence_engine``, ``protocol``,
``ip_family`` → ``family``, ``sorry_server`` (with ``sorry_server_inhibit``
→ ``inhibit`` and ``sorry_server_lvs_method`` → its ``forward``), ``quorum``,
``hysteresis`` (with keepalived's default quorum 1), ``quorum_up`` /
``quorum_down`` (split like a shell, as keepalived does), ``omega``,
``ha_suspend``, and per
real ``weight``,
``lvs_method``, ``uthreshold``/``lthreshold`` → ``upper_threshold`` /
``lower_threshold``; the checkers through `ipvsd.importers.keepalived_checks`.

Defaults that differ are written out: keepalived removes a failed real
unless ``inhibit_on_failure`` (ipvsd drains by default), so every service
gets an explicit ``on_failure``; checks get their keepalived timing.
keepalived puts a checked real in service before its first check unless
``alpha``, ipvsd only with ``alpha: false``: a service without ``alpha`` gets
``alpha: false``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
from typing import Any

from ipvsd.config.model import RealConfig, ServiceConfig, SorryServerConfig, TunnelConfig
from ipvsd.config.types import PORT_CHECKS, SCHEDULER_FLAGS, SCHEDULERS
from ipvsd.importers import keepalived_keywords as keywords
from ipvsd.importers.keepalived_checks import CHECKERS, Check, Timing, checks, share, timing_keyword
from ipvsd.importers.keepalived_groups import Groups, member_texts, service_keys
from ipvsd.importers.keepalived_ledger import Ledger, argument, flag, integer
from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.keepalived_tracking import program_line, script_argv
from ipvsd.importers.keepalived_vrrp import unknown
from ipvsd.importers.report import Notes, ordered

PERSISTENCE_DEFAULT = 360  # IPVS_SVC_PERSISTENT_TIMEOUT
PERSISTENCE_MAX = 31 * 86400
_FORWARD = {"NAT": "nat", "DR": "dr", "TUN": "tunnel"}
_FLAGS = {"ops": "one-packet", **{name: name for name in SCHEDULER_FLAGS if name != "one-packet"}}


@dataclass(slots=True)
class Built:
    """Services converted from one keepalived file.

    Attributes:
        services: ``ipvs.services`` items.
        groups: ``ipvs.service_groups`` items, by name (from virtual_server_groups).
        origins: ``id(obj)`` → the node each service, real or check came from.
        alive: the objects of `origins` (so that their ids stay theirs).
    """

    services: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``ipvs.service_groups`` items, by name."""
    origins: dict[int, Node] = field(default_factory=dict)
    alive: list[object] = field(default_factory=list)

    def origin(self, obj: dict[str, Any], node: Node) -> None:
        self.origins[id(obj)] = node
        self.alive.append(obj)


@dataclass(slots=True)
class _Real:
    node: Node
    data: dict[str, Any]
    timing: Timing
    checkers: list[Node]
    inhibit: bool | None = None
    check: Check | None = None
    more: list[Check] = field(default_factory=list)
    """Its checks after the first (``checks``)."""


def virtual_server(ledger: Ledger, node: Node, groups: Groups, built: Built, notes: Notes) -> None:
    """One ``virtual_server`` block → one ipvsd service per key it stands for."""
    keys = service_keys(ledger, node, groups)
    if not keys:
        return
    settings: dict[str, Any] = {}
    timing = Timing()
    inhibit: bool | None = None
    real_nodes: list[Node] = []
    sorry_method: tuple[Node, str] | None = None
    sorry_inhibit: Node | None = None
    for child in ledger.block(node):
        updated = timing_keyword(ledger, child, timing)
        if updated is not None:
            timing = updated
        elif child.directive == "real_server":
            real_nodes.append(child)
        elif child.directive == "inhibit_on_failure":
            inhibit = flag(ledger, child)
            ledger.take(child)
        elif child.directive == "protocol" and all("fwmark" in key for key in keys):
            if (argument(ledger, child) or "").lower() == "tcp":
                ledger.take(child)
            elif child.args:
                ledger.report(child, "ignored for fwmark services, as keepalived does")
        elif child.directive == "sorry_server_lvs_method":
            method = argument(ledger, child)
            if method is not None:
                sorry_method = (child, method)
        elif child.directive == "sorry_server_inhibit":
            sorry_inhibit = child
        elif not _service_keyword(ledger, child, settings):
            if child.directive in keywords.VIRTUAL_SERVER:
                ledger.report(child, keywords.VIRTUAL_SERVER[child.directive])
            else:
                unknown(ledger, child, "virtual_server")
    settings.setdefault("forward", "nat")  # keepalived's default lb_kind, and ipvsd's
    if sorry_method is not None:
        _sorry_method(ledger, *sorry_method, settings)
    if sorry_inhibit is not None:
        _sorry_inhibit(ledger, sorry_inhibit, settings)
    if "hysteresis" in settings:
        settings.setdefault("quorum", 1)  # keepalived's default quorum
    reals = [_real(ledger, child, timing) for child in real_nodes]
    present = [real for real in reals if real is not None]
    service = _assemble(ledger, node, settings, present, inhibit, notes)
    ledger.take(node)
    if node.args[0] == "group":
        # One service with `group`: ipvsd makes the kernel services and shares the checks.
        ipv6 = settings.get("family") == "ipv6" or any(":" in r.data["address"] for r in present)
        members = member_texts(keys, "ipv6" if ipv6 else None)
        name = node.args[1]
        if name not in built.groups:
            entry = built.groups[name] = {"name": name, "members": members}
            built.origin(entry, groups.nodes[name])
        keys = [{"group": node.args[1]}]
    for key in keys:
        one = copy.deepcopy(service) if len(keys) > 1 else service
        _keyed(one, key, present)
        built.services.append(one)
        built.origin(one, node)
        for real, draft in zip(one["reals"], present, strict=True):
            built.origin(real, draft.node)
        if "check" in one:
            built.origin(one["check"], node)
        if one is not service:
            notes.copy(service, one)


def _service_keyword(ledger: Ledger, node: Node, settings: dict[str, Any]) -> bool:
    """A virtual_server keyword that sets one of the service's own fields."""
    match node.directive:
        case "lb_algo" | "lvs_sched":
            name = argument(ledger, node)
            if name in SCHEDULERS:
                settings["scheduler"] = name
                ledger.take(node)
            elif name is not None:
                ledger.report(node, f"unknown scheduler '{name}': the service uses wlc")
        case (
            "ops"
            | "flag-1"
            | "flag-2"
            | "flag-3"
            | "sh-port"
            | "sh-fallback"
            | "mh-port"
            | ("mh-fallback")
        ):
            settings.setdefault("scheduler_flags", []).append(_FLAGS[node.directive])
            ledger.take(node)
        case "lb_kind" | "lvs_method":
            _forward(ledger, node, settings)
        case "persistence_timeout":
            value = integer(ledger, node, 1, PERSISTENCE_MAX) if node.args else PERSISTENCE_DEFAULT
            if value is not None:
                settings["persistence_timeout"] = value
                ledger.take(node)
        case "persistence_granularity":
            _granularity(ledger, node, settings)
        case "persistence_engine":
            _set(ledger, node, settings, "persistence_engine", argument(ledger, node))
        case "protocol":
            name = (argument(ledger, node) or "").lower()
            if name in ("tcp", "udp", "sctp"):
                settings["protocol"] = name
                ledger.take(node)
            elif node.args:
                ledger.report(node, f"unknown protocol '{node.args[0]}': the service uses tcp")
        case "ip_family":
            family = {"inet": "ipv4", "inet6": "ipv6"}.get(argument(ledger, node) or "")
            _set(ledger, node, settings, "family", family)
        case "sorry_server":
            _sorry(ledger, node, settings)
        case "quorum":
            _set(ledger, node, settings, "quorum", integer(ledger, node, 1, 2**32 - 1))
        case "hysteresis":
            _set(ledger, node, settings, "hysteresis", integer(ledger, node, 0, 2**32 - 1))
        case "quorum_up" | "quorum_down":
            _set(ledger, node, settings, node.directive, script_argv(node) or None)
        case "omega" | "ha_suspend":
            _set(ledger, node, settings, node.directive, flag(ledger, node))
        case _:
            return False
    return True


def _set(ledger: Ledger, node: Node, data: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        if node.args:
            ledger.report(node, f"'{node.args[0]}' is not understood: ignored")
        return
    data[key] = value
    ledger.take(node)


def _forward(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    """``lvs_method NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]``.

    Sets ``forward`` (and ``tunnel``) of a service's or a real's `data`.
    """
    method = _FORWARD.get(argument(ledger, node) or "")
    if method is None:
        if node.args:
            ledger.report(node, f"'{node.args[0]}' is not NAT, DR or TUN: ignored")
        return
    options = list(node.args[1:])
    tunnel: dict[str, Any] = {}
    while options:
        word = options.pop(0)
        if word in ("type", "port") and options:
            value = options.pop(0)
            tunnel[word] = int(value) if word == "port" and value.isdigit() else value
        elif word in ("nocsum", "csum", "remcsum"):
            tunnel["checksum"] = "none" if word == "nocsum" else word
        else:
            ledger.report(node, f"tunnel option '{word}' is not understood: ignored")
            return
    if tunnel and method != "tunnel":
        ledger.report(node, "tunnel options on a method other than TUN: ignored")
        return
    data["forward"] = method
    if tunnel:
        data["tunnel"] = ordered(tunnel, TunnelConfig)
    ledger.take(node)


def _granularity(ledger: Ledger, node: Node, settings: dict[str, Any]) -> None:
    """An IPv4 netmask (dotted) or an IPv6 prefix length → a prefix length."""
    text = argument(ledger, node)
    if text is None:
        return
    prefix: int | None = None
    if "." in text:
        try:
            mask = int(IPv4Address(text))
        except ValueError:
            mask = -1
        inverted = ~mask & 0xFFFFFFFF
        if mask > 0 and inverted & (inverted + 1) == 0:  # ones then zeros
            prefix = 32 - inverted.bit_length()
    elif text.isdigit() and 1 <= int(text) <= 128:
        prefix = int(text)
    if prefix is None:
        ledger.report(
            node, f"'{text}' is not a netmask of leading ones or a prefix length: ignored"
        )
        return
    settings["persistence_netmask"] = prefix
    settings.setdefault("persistence_timeout", PERSISTENCE_DEFAULT)
    ledger.take(node)


def _sorry(ledger: Ledger, node: Node, settings: dict[str, Any]) -> None:
    try:
        address = str(ip_address(node.args[0]))
        port = int(node.args[1], 10) if len(node.args) > 1 else 0
    except (IndexError, ValueError):
        ledger.report(node, "expected `IP [PORT]`: ignored")
        return
    settings["sorry_server"] = ordered({"address": address, "port": port}, SorryServerConfig)
    ledger.take(node)


_NO_SORRY = "the virtual_server has no sorry_server: ignored"


def _sorry_method(ledger: Ledger, node: Node, method: str, settings: dict[str, Any]) -> None:
    """``sorry_server_lvs_method`` → ``sorry_server.forward`` (when not the service's)."""
    forward = _FORWARD.get(method)
    sorry = settings.get("sorry_server")
    if forward is None:
        ledger.report(node, f"'{method}' is not NAT, DR or TUN: ignored")
    elif sorry is None:
        ledger.report(node, _NO_SORRY)
    else:
        if forward != settings["forward"]:
            settings["sorry_server"] = ordered({**sorry, "forward": forward}, SorryServerConfig)
        ledger.take(node)


def _sorry_inhibit(ledger: Ledger, node: Node, settings: dict[str, Any]) -> None:
    """``sorry_server_inhibit`` → ``sorry_server.inhibit``."""
    on = flag(ledger, node)
    sorry = settings.get("sorry_server")
    if on is None:
        return
    if sorry is None:
        ledger.report(node, _NO_SORRY)
        return
    if on:
        settings["sorry_server"] = ordered({**sorry, "inhibit": True}, SorryServerConfig)
    ledger.take(node)


def _real(ledger: Ledger, node: Node, outer: Timing) -> _Real | None:
    try:
        address = str(ip_address(node.args[0]))
        port = int(node.args[1], 10) if len(node.args) > 1 else 0
        if not 0 <= port <= 65535:
            raise ValueError(port)
    except (IndexError, ValueError):
        ledger.drop_block(node, "expected `real_server IP [PORT]`: not converted")
        return None
    data: dict[str, Any] = {"address": address, "port": port, "weight": 1}
    draft = _Real(node, data, Timing(), [])
    for child in ledger.block(node):
        updated = timing_keyword(ledger, child, draft.timing)
        if updated is not None:
            draft.timing = updated
        elif child.directive in CHECKERS:
            draft.checkers.append(child)
        elif not _real_keyword(ledger, child, draft):
            if child.directive in keywords.REAL_SERVER:
                ledger.report(child, keywords.REAL_SERVER[child.directive])
            else:
                unknown(ledger, child, "real_server")
    draft.timing = draft.timing.under(outer)
    converted = checks(ledger, draft.checkers, draft.timing)
    if port == 0 and any(_needs_port(check) for check in converted):
        ledger.report(
            draft.checkers[0],
            "no port to connect to (the real has none, and no connect_port): not converted; "
            "the real is always up",
        )
        converted = []
    if converted:
        draft.check, *draft.more = converted
    ledger.take(node)
    return draft


PORT_CHECK_NAMES = frozenset(kind.value for kind in PORT_CHECKS)


def _needs_port(check: Check) -> bool:
    return check.fields["type"] in PORT_CHECK_NAMES and "port" not in check.fields


def _real_keyword(ledger: Ledger, node: Node, draft: _Real) -> bool:
    data = draft.data
    match node.directive:
        case "weight":
            _set(ledger, node, data, "weight", integer(ledger, node, 0, 65535))
        case "lvs_method":
            _forward(ledger, node, data)
        case "uthreshold":
            _set(ledger, node, data, "upper_threshold", integer(ledger, node, 0, 2**32 - 1))
        case "lthreshold":
            _set(ledger, node, data, "lower_threshold", integer(ledger, node, 0, 2**32 - 1))
        case "inhibit_on_failure":
            draft.inhibit = flag(ledger, node)
            ledger.take(node)
        case "notify_up" | "notify_down":
            _notify(ledger, node, data)
        case _:
            return False
    return True


def _notify(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    """``notify_up "COMMAND LINE" [user [group]]``: keepalived splits the command like a
    shell; ipvsd runs it as root, with the real in its environment."""
    program_line(
        ledger,
        node,
        data,
        empty="has no command: ignored",
        user="ipvsd runs notify programs as root: user {user} ignored "
        "(run the command through runuser/setpriv to drop privileges)",
    )


def _assemble(
    ledger: Ledger,
    node: Node,
    settings: dict[str, Any],
    reals: Sequence[_Real],
    inhibit: bool | None,
    notes: Notes,
) -> dict[str, Any]:
    """The service's fields (without its key), its check and its reals."""
    service = dict(settings)
    service.setdefault("scheduler", "wlc")  # IPVS_DEF_SCHED, also ipvsd's
    for real in reals:
        if real.data.get("forward") == service["forward"] and "tunnel" not in real.data:
            del real.data["forward"]
    base, overrides = share([real.check for real in reals])
    if base is not None:
        service["check"] = base.fields
        for key, text in base.notes.items():
            notes.add(base.fields, key, text)
    if not all(real.timing.alpha for real in reals if real.check is not None):
        # keepalived puts a checked real in service before its first check unless alpha.
        service["alpha"] = False
    service["on_failure"] = _on_failure(ledger, reals, inhibit, service, notes)
    # The same further checkers on every real: written once, as the service's checks.
    lists = [[more.fields for more in real.more] for real in reals]
    shared = bool(lists and lists[0]) and all(each == lists[0] for each in lists)
    if shared:
        service["checks"] = [copy.deepcopy(fields) for fields in lists[0]]
        for fields, more in zip(service["checks"], reals[0].more, strict=True):
            for key, text in more.notes.items():
                notes.add(fields, key, text)
    service["reals"] = []
    for real, own in zip(reals, overrides, strict=True):
        if own is not None:
            real.data["check"] = own.fields
            for key, text in own.notes.items():
                notes.add(own.fields, key, text)
        if real.more and not shared:
            real.data["checks"] = [more.fields for more in real.more]
            for more in real.more:
                for key, text in more.notes.items():
                    notes.add(more.fields, key, text)
        service["reals"].append(ordered(real.data, RealConfig))
    return service


def _on_failure(
    ledger: Ledger,
    reals: Sequence[_Real],
    inhibit: bool | None,
    service: dict[str, Any],
    notes: Notes,
) -> str:
    """keepalived removes a failed real unless inhibit_on_failure: ipvsd's choice is per service."""
    choices = [real.inhibit if real.inhibit is not None else bool(inhibit) for real in reals]
    drain = choices.count(True) > len(choices) / 2 if choices else bool(inhibit)
    policy = "drain" if drain else "remove"
    for real, choice in zip(reals, choices, strict=True):
        if choice != drain:
            ledger.report(
                real.node,
                f"inhibit_on_failure {'on' if choice else 'off'} for this real only: ipvsd "
                f"sets on_failure per service, and this one's is {policy}",
            )
    notes.add(
        service,
        "on_failure",
        "keepalived: inhibit_on_failure (weight 0)"
        if drain
        else "keepalived removes a failed real (no inhibit_on_failure)",
    )
    return policy


def _keyed(service: dict[str, Any], key: Mapping[str, Any], reals: Sequence[_Real]) -> None:
    """Put the key first; fwmark services take their family and drop the protocol."""
    fields = dict(key)
    if "group" in key:
        service.pop("family", None)  # the members give it
        service.setdefault("protocol", "tcp")
    elif "fwmark" in key:
        family = service.pop("family", None)
        if family is None and reals and ":" in reals[0].data["address"]:
            family = "ipv6"
        if family is not None:
            fields["family"] = family
        service.pop("protocol", None)
    else:
        service.pop("family", None)
        service.setdefault("protocol", "tcp")
    merged = ordered({**fields, **service}, ServiceConfig)
    service.clear()
    service.update(merged)
