"""What a keepalived vrrp_instance owns besides its adverts → ipvsd. Pure.

``virtual_ipaddress {}`` and ``virtual_ipaddress_excluded {}`` lines
(``ADDRESS[/PREFIX] [brd B] [dev D] [scope S] [label L] ...``) become
``virtual_ipaddresses`` / ``virtual_ipaddresses_excluded`` entries: the bare
address where no option is given (or ``dev`` is the instance's interface),
else a mapping ``{address, dev, scope, label, broadcast}``. Options ipvsd
does not apply (``peer``, ``-nodad``, ``track_group``...) are reported and
the address converts without them.

``virtual_routes {}`` lines (``[src S] [to] DEST [via|gw G] [dev D] [table T]
[metric M]``) become ``virtual_routes``; a route of another type
(``blackhole``, ``unreachable``...) or in a named table is not converted.
Options that only refine a route (``scope``, ``proto``, ``mtu``...) are
reported and dropped.

``virtual_rules {}`` lines (``[from F|all] [to T|all] table|lookup N
[priority|preference|pref|prio P]``) become ``virtual_rules``. A rule with any
other selector or action (``fwmark``, ``iif``, ``not``, ``goto``...) is not
converted at all: without its selector it would match more traffic than the
operator meant.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_interface
from typing import Any

from ipvsd.config.types import SCOPES
from ipvsd.importers.keepalived_ledger import Ledger
from ipvsd.importers.keepalived_parse import Node

__all__ = ["VIP_KEYS", "entry_ip", "routing", "settle_vips", "vips"]

VIP_NODES = "__vip_nodes__"
"""Key of `data` holding the node of each converted VIP, by list, until `settle_vips`."""
_WITH_VALUE = frozenset(
    {"dev", "brd", "broadcast", "scope", "label", "peer", "preferred_lft", "track_group"}
)
_SCOPE_NAMES = {**SCOPES, "universe": 0} | {str(value): value for value in SCOPES.values()}
_SCOPE_BY_VALUE = {value: name for name, value in SCOPES.items()}
_TABLES = {"main": None, "default": 253, "local": 255}
_ROUTE_TYPES = frozenset(
    {"blackhole", "unreachable", "prohibit", "throw", "local", "broadcast", "anycast", "nat"}
)
_ROUTE_KEYS = ("to", "via", "dev", "src", "table", "metric")
_RULE_KEYS = ("from", "to", "table", "priority")
_RULE_PRIORITY = frozenset({"priority", "preference", "pref", "prio"})
_RULE_IGNORED = frozenset({"no_track", "track_group"})


VIP_KEYS = ("virtual_ipaddresses", "virtual_ipaddresses_excluded")
"""The ipvsd lists keepalived's two VIP blocks convert to."""


def vips(ledger: Ledger, node: Node, data: dict[str, Any], key: str) -> None:
    """One ``virtual_ipaddress`` / ``virtual_ipaddress_excluded`` block into ``data[key]``.

    Call `settle_vips` once the instance's interface is known.
    """
    entries: list[dict[str, Any]] = data.setdefault(key, [])
    nodes: dict[str, list[Node]] = data.setdefault(VIP_NODES, {})
    ledger.take(node)
    for child in ledger.block(node):
        entry = _vip(ledger, child)
        if entry is None:
            continue
        address = entry_ip(entry)
        first = next((entry_ip(e) for k in VIP_KEYS for e in data.get(k, ())), address)
        family, ours = ip_address(address).version, ip_address(first).version
        if family != ours:
            ledger.report(
                child,
                f"IPv{family}, but the instance is IPv{ours} (its first VIP's family, as "
                "keepalived): not converted",
            )
            continue
        if any(entry_ip(other) == address for k in VIP_KEYS for other in data.get(k, ())):
            ledger.report(child, "already a VIP of this instance: converted once")
            continue
        entries.append(entry)
        nodes.setdefault(key, []).append(child)


def settle_vips(ledger: Ledger, data: dict[str, Any], interface: str) -> dict[str, list[Node]]:
    """Each VIP entry as ipvsd writes it, now that the instance's interface is known.

    A ``dev`` naming that interface is left out, a label that does not start
    with its interface is reported and left out (ipvsd, as iproute2, refuses
    it), and an entry with nothing but its address becomes the plain string.

    Returns:
        The node of each entry, by list (`VIP_KEYS`), in order.
    """
    nodes: dict[str, list[Node]] = data.pop(VIP_NODES, {})
    for key, key_nodes in nodes.items():
        entries = data[key]
        for index, (entry, node) in enumerate(zip(entries, key_nodes, strict=True)):
            if entry.get("dev") == interface:
                del entry["dev"]
            label, device = entry.get("label"), entry.get("dev", interface)
            if label is not None and label != device and not label.startswith(f"{device}:"):
                ledger.report(node, f"label {label}: must start with '{device}:' in ipvsd: ignored")
                del entry["label"]
            entries[index] = entry["address"] if len(entry) == 1 else entry
    return nodes


def entry_ip(entry: str | dict[str, Any]) -> str:
    """The address of a converted VIP entry, without its prefix."""
    return (entry if isinstance(entry, str) else entry["address"]).partition("/")[0]


def _vip(ledger: Ledger, node: Node) -> dict[str, Any] | None:
    try:
        address = ip_interface(node.directive)
    except ValueError:
        ledger.report(node, "not an address: ignored")
        return None
    entry: dict[str, Any] = {
        "address": node.directive if "/" in node.directive else str(address.ip)
    }
    ignored = []
    for name, value in _options(node.args, _WITH_VALUE):
        match name:
            case "dev" | "label":
                entry[name] = value
            case "scope" if value in _SCOPE_NAMES:
                scope = _SCOPE_BY_VALUE.get(_SCOPE_NAMES[value], "global")
                if scope != "global":
                    entry["scope"] = scope
            case "brd" | "broadcast":
                if not isinstance(address, IPv4Interface):
                    ignored.append(f"{name} {value} (IPv6 has no broadcast)")
                    continue
                broadcast = _broadcast(address, value)
                if broadcast is None:
                    ignored.append(f"{name} {value}")
                elif broadcast:
                    entry["broadcast"] = broadcast
            case _:
                ignored.append(f"{name} {value}".strip())
    if ignored:
        ledger.report(node, f"{', '.join(ignored)}: not supported: ignored")
    else:
        ledger.take(node)
    return entry


def _broadcast(address: IPv4Interface, value: str) -> str | None:
    """``brd``'s address; '' for ``-`` (none); None when not understood."""
    if value == "-":
        return ""
    if value == "+":
        return str(address.network.broadcast_address)
    try:
        return str(IPv4Address(value))
    except ValueError:
        return None


def _options(args: tuple[str, ...], with_value: frozenset[str]) -> Iterator[tuple[str, str]]:
    """keepalived's ``name value`` / ``flag`` words, in order."""
    index = 0
    while index < len(args):
        name = args[index]
        if name in with_value and index + 1 < len(args):
            yield name, args[index + 1]
            index += 2
        else:
            yield name, ""
            index += 1


def _route(ledger: Ledger, node: Node) -> dict[str, Any] | None:
    words = list(node.words)
    if words[0] in _ROUTE_TYPES:
        ledger.report(node, f"{words[0]} routes are not supported: not converted")
        return None
    route: dict[str, Any] = {}
    ignored = []
    pairs = iter(zip(words, [*words[1:], ""], strict=True))
    for word, value in pairs:
        if word in ("to", "src", "via", "gw", "dev", "table", "metric", "preference", "priority"):
            next(pairs, None)  # the value is consumed with its keyword
            problem = _route_field(route, word, value)
            if problem is not None:
                ledger.report(node, f"{problem}: not converted")
                return None
        elif "to" not in route and _network(word) is not None:
            route["to"] = _network(word)
        else:
            ignored.append(word)
    missing = None
    if "to" not in route:
        missing = "no destination"
    elif "via" not in route and "dev" not in route:
        missing = "needs via or dev"
    return _settled(ledger, node, route, missing, ignored, _ROUTE_KEYS)


def _route_field(route: dict[str, Any], word: str, value: str) -> str | None:
    """Set one route field from keepalived's ``word value``; the problem, if any."""
    match word:
        case "to":
            network = _network(value)
            if network is None:
                return f"'{value}' is not an IPv4 network"
            route["to"] = network
        case "src" | "via" | "gw":
            try:
                route["src" if word == "src" else "via"] = str(IPv4Address(value))
            except ValueError:
                return f"{word} '{value}' is not an IPv4 address"
        case "dev":
            route["dev"] = value
        case "table":
            table = _table(value)
            if table is False:
                return f"table '{value}': only numbered tables (and main) convert"
            if table is not None:
                route["table"] = table
        case _:
            if not value.isdigit():
                return f"{word} '{value}' is not a number"
            route["metric"] = int(value)
    return None


def _network(text: str) -> str | None:
    """``default`` or an exact IPv4 network (a bare address is a /32)."""
    if text == "default":
        return text
    try:
        return str(IPv4Network(text))
    except ValueError:
        return None


def _table(text: str) -> int | bool | None:
    """A table number; None for main (the default); False when not a number ipvsd takes."""
    if text in _TABLES:
        return _TABLES[text]
    if text.isdigit() and 1 <= int(text) < 2**32:
        return int(text)
    return False


def _rule(ledger: Ledger, node: Node) -> dict[str, Any] | None:
    words = list(node.words)
    rule: dict[str, Any] = {}
    ignored = []
    index = 0
    while index < len(words):
        word = words[index]
        value = words[index + 1] if index + 1 < len(words) else ""
        if word in _RULE_IGNORED:
            ignored.append(word)
            index += 2 if word == "track_group" else 1
            continue
        problem = _rule_field(rule, word, value)
        if problem is not None:
            ledger.report(node, f"{problem}: not converted")
            return None
        index += 2
    missing = None
    if "table" not in rule:
        missing = "no table (only rules that look up a table convert)"
    elif "from" not in rule and "to" not in rule:
        missing = "matches all traffic"
    return _settled(ledger, node, rule, missing, ignored, _RULE_KEYS)


def _settled(
    ledger: Ledger,
    node: Node,
    entry: dict[str, Any],
    missing: str | None,
    ignored: list[str],
    keys: tuple[str, ...],
) -> dict[str, Any] | None:
    """A parsed route or rule: reported and None if `missing` says what it lacks,
    else in ipvsd's key order (options it drops reported)."""
    if missing is not None:
        ledger.report(node, f"{missing}: not converted")
        return None
    if ignored:
        ledger.report(node, f"{' '.join(ignored)}: not supported: ignored")
    else:
        ledger.take(node)
    return {key: entry[key] for key in keys if key in entry}


def _rule_field(rule: dict[str, Any], word: str, value: str) -> str | None:
    if word in ("from", "to"):
        if value == "all":
            return None
        network = _network(value)
        if network is None or network == "default":
            return f"{word} '{value}' is not an IPv4 network"
        rule[word] = network
    elif word in ("table", "lookup"):
        table = _table(value)
        if table is False:
            return f"table '{value}': only numbered tables (and main) convert"
        rule["table"] = 254 if table is None else table
    elif word in _RULE_PRIORITY and value.isdigit():
        rule["priority"] = int(value)
    else:
        # fwmark, iif, oif, tos, not, goto...: a narrower or other rule than ipvsd's.
        return f"{word}: not supported (without it the rule would match other traffic)"
    return None


_ROUTING = {"virtual_routes": _route, "virtual_rules": _rule}


def routing(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    """A ``virtual_routes`` or ``virtual_rules`` block into the list of that name."""
    convert = _ROUTING[node.directive]
    converted: list[dict[str, Any]] = data.setdefault(node.directive, [])
    ledger.take(node)
    for child in ledger.block(node):
        entry = convert(ledger, child)
        if entry is not None:
            converted.append(entry)
