"""A parsed keepalived.conf → the equivalent ipvsd config, and a report. Pure.

Theory of operation
-------------------
`convert` takes the directive tree of `ipvsd.importers.keepalived_parse`,
includes already expanded (`ipvsd.importers.sources`), and reads it in
keepalived's order of dependencies: ``global_defs`` (defaults for the
instances, the sync daemon, the IPVS timeouts), ``virtual_server_group``
(read before the virtual servers that use them), the ``vrrp_instance``
blocks (`ipvsd.importers.keepalived_vrrp`), the ``vrrp_sync_group`` blocks
that name them, and the ``virtual_server`` blocks
(`ipvsd.importers.keepalived_lvs`, `ipvsd.importers.keepalived_checks`).

Three promises:

1. **Nothing is dropped silently.** Every directive is converted or
   reported (`ipvsd.importers.keepalived_ledger.Ledger` checks the whole
   tree at the end), including keywords keepalived 2.2 does not know.
2. **keepalived's behaviour is kept where ipvsd can express it**, defaults
   included: ``on_failure: remove`` unless ``inhibit_on_failure``, check
   timing (``delay_loop`` 60 s, ``connect_timeout`` 5 s, ``rise: 1``,
   ``fall: retry + 1``, ``retry_interval: delay_before_retry``),
   ``cleanup_on_exit: true`` (keepalived deletes its virtual servers when it
   stops). These are written out, with comments.
3. **The output passes ``ipvsd check-config``**: `ipvsd.importers.settle`
   runs ipvsd's own validation and drops (and reports) what it refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import Any

from ipvsd.config.groups import parse_member
from ipvsd.config.model import IpvsConfig, SyncDaemonConfig, TimeoutsConfig
from ipvsd.importers import keepalived_addresses as addresses
from ipvsd.importers import keepalived_groups
from ipvsd.importers import keepalived_keywords as keywords
from ipvsd.importers import keepalived_lvs as lvs
from ipvsd.importers import keepalived_tracking as tracking
from ipvsd.importers import keepalived_vrrp as vrrp
from ipvsd.importers.keepalived_ledger import Ledger, argument, integer, number, seconds
from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.report import Conversion, Notes, ordered
from ipvsd.importers.settle import settle

__all__ = ["convert"]

_READ_EARLIER = frozenset(
    {
        "global_defs",
        "virtual_server_group",
        "vrrp_script",
        "track_file",
        "vrrp_track_file",
        "vrrp_instance",
    }
)
_TIMEOUT_MAX = 31 * 86400  # LVS_MAX_TIMEOUT; ipvsd's own limit is checked by settle


@dataclass(slots=True)
class _Globals:
    """What ``global_defs`` says that the conversion uses."""

    node_name: str | None = None
    vrrp: vrrp.VrrpDefaults = field(default_factory=vrrp.VrrpDefaults)
    timeouts: tuple[Node, dict[str, Any]] | None = None
    sync_daemon: tuple[Node, dict[str, Any]] | None = None
    flush_on_stop: Node | None = None


def convert(
    nodes: Sequence[Node], *, unmatched_includes: Mapping[Node, str] | None = None
) -> Conversion:
    """Convert a keepalived configuration.

    Args:
        nodes: its top-level directives, includes expanded (each include
            directive followed by what it included).
        unmatched_includes: include directives that read nothing, with the
            reason, to be reported.

    Returns:
        The ipvsd config data, its comments, the report and every directive's outcome.
    """
    ledger = Ledger(nodes, unmatched_includes)
    notes = Notes()
    origins: dict[int, Node] = {}
    top = list(ledger.directives(nodes))
    settings = _Globals()
    groups = keepalived_groups.Groups()
    scripts: list[dict[str, Any]] = []
    files: dict[str, tracking.FileDecl] = {}
    for node in top:
        if node.directive == "global_defs":
            _global_defs(ledger, node, settings)
        elif node.directive == "virtual_server_group":
            keepalived_groups.group(ledger, node, groups)
        elif node.directive == "vrrp_script":
            script = tracking.script(ledger, node)
            if script is not None:
                scripts.append(script)
                origins[id(script)] = node
        elif node.directive in ("track_file", "vrrp_track_file"):
            declared = tracking.track_file(ledger, node)
            if declared is not None:
                files.setdefault(*declared)
    settings.vrrp = replace(
        settings.vrrp, scripts=frozenset(s["name"] for s in scripts), files=files
    )
    alive: list[object] = []
    instances: list[vrrp.Instance] = []
    known: dict[str, Node] = {}
    for node in top:
        if node.directive == "vrrp_instance":
            item = vrrp.instance(ledger, node, settings.vrrp)
            if item is not None:
                instances.append(item)
                known.setdefault(item.data["name"], node)
                origins[id(item.data)] = node
                origins.update((id(entry), child) for entry, child in item.track_nodes)
                alive.append(item.data)
    _one_owner_per_vip(ledger, instances)
    sync_groups = []
    built = lvs.Built()
    for node in top:
        if node.directive == "vrrp_sync_group":
            group = vrrp.sync_group(ledger, node, known)
            if group is not None:
                sync_groups.append(group)
                origins[id(group)] = node
                alive.append(group)
        elif node.directive == "virtual_server":
            lvs.virtual_server(ledger, node, groups, built, notes)
        elif node.directive not in _READ_EARLIER:
            _root_keyword(ledger, node)
    keepalived_groups.unused_groups(ledger, groups)
    vrrp.settle_sync_states(ledger, sync_groups, instances)
    _ha_suspend_needs_a_vip(ledger, built, instances)
    origins.update(built.origins)
    ipvs = _ipvs(ledger, settings, instances, known, built.services, notes, origins, alive)
    if built.groups:
        ipvs["service_groups"] = list(built.groups.values())
        reordered = ordered(ipvs, IpvsConfig)
        ipvs.clear()  # in place: the notes are kept by the dict's identity
        ipvs.update(reordered)
    data: dict[str, Any] = {}
    if settings.node_name is not None:
        data["node_name"] = settings.node_name
        notes.add(data, "node_name", "keepalived router_id")
    data["vrrp"] = {"instances": [item.data for item in instances]}
    if scripts:
        data["vrrp"]["scripts"] = scripts
    data["vrrp"]["sync_groups"] = sync_groups
    data["ipvs"] = ipvs
    settle(data, origins, lambda node, message: ledger.report(node, f"{message}: not converted"))
    reports, outcomes = ledger.finish()
    return Conversion(data, notes.paths(data), reports, outcomes)


def _vip_text(vip: str | dict[str, Any]) -> str:
    """A converted VIP's ``ADDRESS[/PREFIX]``: written as a string, or a mapping's address."""
    return vip if isinstance(vip, str) else str(vip["address"])


def _ha_suspend_needs_a_vip(
    ledger: Ledger, built: lvs.Built, instances: Sequence[vrrp.Instance]
) -> None:
    """ipvsd refuses ``ha_suspend`` on an address no instance has as a VIP (no MASTER
    would ever resume the checks); keepalived then checks all the time: so does ipvsd."""
    vips = {
        ip_address(_vip_text(vip).partition("/")[0])
        for item in instances
        for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded")
        for vip in item.data.get(key, ())
    }
    for service in built.services:
        if not service.get("ha_suspend"):
            continue
        if "group" in service:
            members = built.groups[service["group"]]["members"]
            addresses = [a for m in members for a, _, _ in parse_member(m).endpoints()]
        else:
            addresses = [ip_address(service["address"]) if "address" in service else None]
        if all(address in vips for address in addresses):
            continue
        del service["ha_suspend"]
        ledger.report(
            built.origins[id(service)],
            "ha_suspend: the address is no VIP of a converted vrrp_instance: ignored "
            "(the reals are checked all the time, as keepalived then does)",
        )


def _one_owner_per_vip(ledger: Ledger, instances: Sequence[vrrp.Instance]) -> None:
    """A VIP belongs to the first instance that lists it (ipvsd refuses a shared VIP)."""
    owners: dict[str, str] = {}
    for item in instances:
        for key, nodes in item.vip_nodes.items():
            vips = item.data[key]
            kept = []
            for vip, node in zip(vips, nodes, strict=True):
                owner = owners.setdefault(addresses.entry_ip(vip), item.data["name"])
                if owner == item.data["name"]:
                    kept.append(vip)
                else:
                    ledger.report(node, f"already a VIP of instance {owner}: left out here")
            vips[:] = kept


def _root_keyword(ledger: Ledger, node: Node) -> None:
    message = keywords.ROOT.get(node.directive)
    if message is None:
        vrrp.unknown(ledger, node, "the top level")
    elif node.children is not None:
        ledger.drop_block(node, message)
    else:
        ledger.report(node, message)


def _global_defs(ledger: Ledger, node: Node, settings: _Globals) -> None:
    ledger.take(node)
    for child in ledger.block(node):
        match child.directive:
            case "router_id":
                settings.node_name = argument(ledger, child) or settings.node_name
                ledger.take(child)
            case "default_interface":
                name = argument(ledger, child)
                settings.vrrp = replace(settings.vrrp, interface=name)
                ledger.take(child)
            case "vrrp_garp_master_delay":
                delay = seconds(ledger, child)
                if delay is not None:
                    settings.vrrp = replace(settings.vrrp, garp_delay=number(delay))
                    ledger.take(child)
            case "vrrp_garp_master_repeat":
                repeat = integer(ledger, child, 0, 255)
                if repeat is not None:
                    settings.vrrp = replace(settings.vrrp, garp_repeat=repeat)
                    ledger.take(child)
            case "vrrp_garp_master_refresh":
                refresh = integer(ledger, child, 0, 86400)
                if refresh is not None:
                    settings.vrrp = replace(settings.vrrp, garp_refresh=refresh)
                    ledger.take(child)
            case "vrrp_garp_master_refresh_repeat":
                vrrp.refresh_repeat(ledger, child)
            case "vrrp_version":
                version = argument(ledger, child)
                if version in ("2", "3"):
                    settings.vrrp = replace(settings.vrrp, version=int(version or 2))
                    ledger.take(child)
                elif version is not None:
                    ledger.report(child, f"'{version}' is not VRRP version 2 or 3: ignored")
            case "lvs_timeouts":
                timeouts = _timeouts(ledger, child)
                if timeouts is not None:
                    settings.timeouts = (child, timeouts)
            case "lvs_sync_daemon":
                daemon = _sync_daemon(ledger, child)
                if daemon is not None:
                    settings.sync_daemon = (child, daemon)
            case "lvs_flush_on_stop" | "lvs_flush_onstop":
                settings.flush_on_stop = child
            case _ if child.directive in keywords.GLOBAL_DEFS:
                message = keywords.GLOBAL_DEFS[child.directive]
                if child.children is not None:
                    ledger.drop_block(child, message)
                else:
                    ledger.report(child, message)
            case _:
                vrrp.unknown(ledger, child, "global_defs")


def _timeouts(ledger: Ledger, node: Node) -> dict[str, int] | None:
    """``lvs_timeouts [tcp N] [tcpfin N] [udp N]`` → ``ipvs.timeouts``."""
    values: dict[str, int] = {}
    words = list(node.args)
    while len(words) >= 2 and words[0] in ("tcp", "tcpfin", "udp"):
        name, text = words.pop(0), words.pop(0)
        if not text.isdigit() or int(text) > _TIMEOUT_MAX:
            ledger.report(node, f"{name} '{text}' is not a number of seconds: ignored")
            return None
        values[name] = int(text)
    if words or not values:
        ledger.report(node, "expected `tcp N`, `tcpfin N` and/or `udp N`: ignored")
        return None
    ledger.take(node)
    return ordered(values, TimeoutsConfig)


_SYNC_OPTIONS = {"id": "sync_id", "maxlen": "max_length", "port": "port", "ttl": "ttl"}


def _sync_daemon(ledger: Ledger, node: Node) -> dict[str, Any] | None:
    """``lvs_sync_daemon IF [inst] INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]``."""
    if not node.args:
        ledger.report(node, "has no interface: not converted")
        return None
    daemon: dict[str, Any] = {"interface": node.args[0]}
    words = list(node.args[1:])
    position = 0
    while words:
        word = words.pop(0)
        if word in ("inst", "group", *_SYNC_OPTIONS) and words:
            value = words.pop(0)
            if word == "inst":
                daemon["vrrp_instance"] = value
            elif word == "group":
                try:
                    daemon["group"] = str(ip_address(value))
                except ValueError:
                    ledger.report(node, f"group '{value}' is not an address: not converted")
                    return None
            elif value.isdigit():
                daemon[_SYNC_OPTIONS[word]] = int(value)
            else:
                ledger.report(node, f"{word} '{value}' is not a number: not converted")
                return None
        elif position == 0:
            daemon["vrrp_instance"] = word  # the old positional form
        elif position == 1 and word.isdigit():
            daemon["sync_id"] = int(word)
        else:
            ledger.report(node, f"'{word}' is not understood: not converted")
            return None
        position += 1
    if "vrrp_instance" not in daemon:
        ledger.report(
            node,
            "names no vrrp_instance: not converted (ipvsd switches the sync daemon between "
            "master and backup with an instance's state)",
        )
        return None
    return daemon


def _ipvs(
    ledger: Ledger,
    settings: _Globals,
    instances: Sequence[vrrp.Instance],
    known: Mapping[str, Node],
    services: list[dict[str, Any]],
    notes: Notes,
    origins: dict[int, Node],
    alive: list[object],
) -> dict[str, Any]:
    """The ``ipvs`` section: services, cleanup on stop, timeouts, sync daemon."""
    ipvs: dict[str, Any] = {"services": services}
    if services:
        ipvs["cleanup_on_exit"] = True
        notes.add(
            ipvs,
            "cleanup_on_exit",
            "keepalived deletes its virtual servers when it stops; false keeps them, so "
            "that a restart drops no connection",
        )
    if settings.flush_on_stop is not None:
        flush = settings.flush_on_stop
        if flush.args[:1] == ("VS",) and services:
            ledger.take(flush)
        else:
            ledger.report(
                flush,
                "ipvsd deletes only its own services when it stops (cleanup_on_exit), never "
                "the whole table",
            )
    if settings.timeouts is not None:
        node, ipvs["timeouts"] = settings.timeouts
        origins[id(ipvs["timeouts"])] = node
        alive.append(ipvs["timeouts"])
    daemon = _chosen_sync_daemon(ledger, settings, instances, known)
    if daemon is not None:
        node, data = daemon
        ipvs["sync_daemon"] = ordered(data, SyncDaemonConfig)
        origins[id(ipvs["sync_daemon"])] = node
        alive.append(ipvs["sync_daemon"])
    return ordered(ipvs, IpvsConfig)


def _chosen_sync_daemon(
    ledger: Ledger,
    settings: _Globals,
    instances: Sequence[vrrp.Instance],
    known: Mapping[str, Node],
) -> tuple[Node, dict[str, Any]] | None:
    """global_defs' lvs_sync_daemon, else the first instance's lvs_sync_daemon_interface."""
    chosen = settings.sync_daemon
    for item in instances:
        if item.sync_interface is None or item.sync_node is None:
            continue
        if chosen is None:
            chosen = (
                item.sync_node,
                {"vrrp_instance": item.data["name"], "interface": item.sync_interface},
            )
        else:
            ledger.report(
                item.sync_node,
                "ipvsd runs one sync daemon, already tied to instance "
                f"{chosen[1]['vrrp_instance']}: not converted",
            )
    if chosen is None:
        return None
    node, data = chosen
    if data["vrrp_instance"] not in known:
        ledger.report(
            node, f"no converted vrrp_instance named {data['vrrp_instance']}: not converted"
        )
        return None
    ledger.take(node)
    return chosen
