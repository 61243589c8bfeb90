"""keepalived's virtual_server_group, and the service keys a virtual_server header stands for. Pure.

A ``virtual_server_group NAME { ... }`` lists service keys: ``IP PORT``,
``IP-END PORT`` (a range of the last IPv4 byte, in decimal, or of the last
IPv6 group, in hex, as keepalived reads it) and ``fwmark N``: `service_keys`
gives the keys a ``virtual_server`` header stands for, and `member_texts`
writes a group's keys as ipvsd ``service_groups`` members (IPv4 runs of one
/24 and one port as ``A.B.C.D-E:PORT``; IPv6 ranges one address each, as
ipvsd ranges only IPv4; each key once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ipvsd.importers.keepalived_ledger import Ledger, integer
from ipvsd.importers.keepalived_parse import Node

RANGE_MAX = 256  # addresses one virtual_server_group range may expand to


@dataclass(slots=True)
class Groups:
    """The virtual_server_groups: their members' service keys, and which are used."""

    members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


def group(ledger: Ledger, node: Node, groups: Groups) -> None:
    """Read one ``virtual_server_group NAME { IP[-END] PORT | fwmark N ... }``."""
    if not node.args:
        ledger.drop_block(node, "has no name: not converted")
        return
    members: list[dict[str, Any]] = []
    for child in ledger.block(node):
        members.extend(_group_entry(ledger, child))
    groups.members[node.args[0]] = members
    groups.nodes[node.args[0]] = node


def _group_entry(ledger: Ledger, node: Node) -> list[dict[str, Any]]:
    if node.directive == "fwmark":
        mark = integer(ledger, node, 1, 2**32 - 1)
        if mark is None:
            return []
        ledger.take(node)
        return [{"fwmark": mark}]
    port = integer(ledger, node, 0, 65535)
    if port is None:
        return []
    if port == 0:
        ledger.report(node, _PORT_ZERO)
        return []
    addresses = _range(node.directive)
    if addresses is None:
        ledger.report(node, f"not an address or range (up to {RANGE_MAX} addresses): ignored")
        return []
    ledger.take(node)
    return [{"address": address, "port": port} for address in addresses]


def _range(text: str) -> list[str] | None:
    """``10.0.0.3-10`` (last byte) or ``ae00::2-9`` (last group, hex) as addresses."""
    first, dash, last = text.rpartition("-") if "-" in text else (text, "", "")
    try:
        start = ip_address(first if dash else text)
        if not dash:
            return [str(start)]
        # keepalived ranges the last byte of IPv4 (decimal), the last group of IPv6 (hex)
        base, width = (10, 0xFF) if isinstance(start, IPv4Address) else (16, 0xFFFF)
        end_part = int(last, base)
        end = ip_address((int(start) & ~width) | end_part)
        if isinstance(start, IPv6Address):
            end = IPv6Address(int(end))  # ip_address() reads small integers as IPv4
    except ValueError:
        return None
    count = int(end) - int(start) + 1
    if not 1 <= count <= RANGE_MAX or end_part > width:
        return None
    return [str(start + offset) for offset in range(count)]


_PORT_ZERO = (
    "port 0 (every port of a persistent service): ipvsd services have a port; use a fwmark "
    "service for several ports: not converted"
)


def member_texts(keys: list[dict[str, Any]], fwmark_family: str | None) -> list[str]:
    """ipvsd ``members`` for a group's service keys, in order, each key once.

    Args:
        keys: the group's keys (`Groups.members`).
        fwmark_family: ``ipv6`` for the fwmark members of an IPv6 service, else None.
    """
    texts: list[str] = []
    run: list[IPv4Address] = []
    run_port = 0
    seen: set[tuple[Any, ...]] = set()

    def flush() -> None:
        if run:
            last = f"-{int(run[-1]) & 0xFF}" if len(run) > 1 else ""
            texts.append(f"{run[0]}{last}:{run_port}")
            run.clear()

    for key in keys:
        identity = tuple(sorted(key.items()))
        if identity in seen:
            continue
        seen.add(identity)
        if "fwmark" in key:
            flush()
            suffix = f"/{fwmark_family}" if fwmark_family == "ipv6" else ""
            texts.append(f"fwmark:{key['fwmark']}{suffix}")
            continue
        address = ip_address(key["address"])
        if not isinstance(address, IPv4Address):
            flush()
            texts.append(f"[{address}]:{key['port']}")
            continue
        follows = run and key["port"] == run_port and int(address) == int(run[-1]) + 1
        if not (follows and int(address) & 0xFF):  # a range stays within its /24
            flush()
            run_port = key["port"]
        run.append(address)
    flush()
    return texts


def unused_groups(ledger: Ledger, groups: Groups) -> None:
    """Report the groups no virtual_server used (keepalived ignores them too)."""
    for name, node in groups.nodes.items():
        if name not in groups.used:
            ledger.report(node, "no virtual_server uses this group: nothing converted")
        else:
            ledger.take(node)


def service_keys(ledger: Ledger, node: Node, groups: Groups) -> list[dict[str, Any]]:
    """The service keys of a virtual_server header; [] (reported) when unusable."""
    args = node.args
    if len(args) == 2 and args[0] == "group":
        if args[1] not in groups.members:
            ledger.drop_block(node, f"no virtual_server_group named {args[1]}: not converted")
            return []
        groups.used.add(args[1])
        if not groups.members[args[1]]:
            ledger.drop_block(node, f"group {args[1]} has no usable member: not converted")
        return groups.members[args[1]]
    if len(args) == 2 and args[0] == "fwmark":
        mark = integer(ledger, node, 1, 2**32 - 1, index=1)
        if mark is None:
            ledger.drop_block(node, "not converted")
            return []
        return [{"fwmark": mark}]
    if len(args) == 2:
        try:
            address = str(ip_address(args[0]))
            port = int(args[1], 10)
        except ValueError:
            port = -1
        if port == 0:
            ledger.drop_block(node, _PORT_ZERO)
            return []
        if 1 <= port <= 65535:
            return [{"address": address, "port": port}]
    ledger.drop_block(
        node, "expected `IP PORT`, `fwmark N` or `group NAME` (IP addresses only): not converted"
    )
    return []
