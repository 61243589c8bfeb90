"""The first thing ``ipvsd run`` does: take the host lock and remove stale VIPs.

Theory of operation
-------------------
A director whose ipvsd died as MASTER (SIGKILL, OOM, a crash) keeps its VIPs
on the interface, while the peer, hearing no adverts, takes them over: both
answer ARP for them (split brain) until the restarted daemon removes them.
The VRRP machine removes them at Startup (vrrp-notes §1.7, keepalived
likewise), but Startup comes after the config is validated and the daemon's
modules are imported: ~0.5 s on the host, seconds in UML. So `begin` does
the same removal first, before anything heavy is imported:

1. **Lock** (`ipvsd.daemon.lock`): a second ``ipvsd run`` must not remove the
   running daemon's VIPs. The daemon keeps this lock.
2. **Read only what is needed** from the config file: per instance of
   ``vrrp.instances``, its interface, VRID, ``vmac``/``vmac_interface``,
   priority, and the addresses of ``virtual_ipaddresses`` and
   ``virtual_ipaddresses_excluded`` (with their ``dev``) — with libyaml's C
   parser, composing only the top-level ``vrrp`` value (`_vrrp_section`),
   and stopping there unless a ``vrrp`` key appears again further down (a
   second one makes the config invalid: nothing is removed then). A 10,000
   x 4 config is not read twice this way: its services come after ``vrrp``,
   or there is no ``vrrp`` (no parse at all); a config with ``vrrp`` after
   more than `SKIP_BUDGET` events of other sections is left to Startup.
3. **Delete** each such address with the prefix length written, from the
   interface the instance adds it to (``dev``, else the instance's advert
   interface), on one raw rtnetlink socket (`ipvsd.netlink.delete_addresses`).
4. **Listen**: open the advert sockets the Backups will use (`open_listeners`,
   with `ipvsd.vrrp.sockets`), so the kernel queues adverts while the rest
   loads, and the VRRP runtime starts as of then (`ipvsd.vrrp.prelisten`).

Why read the file rather than a cache of the VIP list written by the last
successful load: the file is what this daemon is about to run, so it is right
when the config changed since the last run (a cache would have to prove it is
not stale, across ``include`` fragments too), and reading ``vrrp`` with the C
parser costs about a millisecond.

What is removed, and why that is always safe: an address is removed only if
this config names it as a VIP (or excluded VIP) of an instance on that
interface with that prefix length, and this process holds the host lock, so no
ipvsd of this host is MASTER for it. The daemon's own Startup would remove the
same addresses a moment later (``RemoveVips``): this only does it sooner.
Kept, as the machine keeps them: the VIPs of an address owner (priority 255),
which becomes MASTER at Startup (RFC 3768 §6.4.1). Not covered here (the
daemon's Startup removes them as before): instances in ``include``
fragments, and any config the minimal read does not understand (an alias to
an anchor outside ``vrrp``, a value of an unexpected type): then nothing is
removed here. If the rest of the config turns out invalid, the daemon exits;
the addresses removed were this config's VIPs, and a director whose VRRP
daemon does not run must not hold them.

This module imports the standard library, PyYAML, `ipvsd.netlink.delete_addresses`
and `ipvsd.vrrp.sockets` only (`tests/unit/test_startup_imports.py`).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    StreamStartEvent,
)

from ipvsd.daemon.lock import DEFAULT_RUNTIME_DIR, HostLock
from ipvsd.errors import IpvsdError, KernelError
from ipvsd.interfaces import advert_interface
from ipvsd.netlink.delete_addresses import ABSENT, delete_addresses
from ipvsd.vrrp.sockets import open_advert_socket

#: RFC 3768 §5.3.4: the address owner (`ipvsd.vrrp.machine.OWNER_PRIORITY`,
#: not imported: that module is not needed this early).
OWNER_PRIORITY = 255
DEFAULT_PRIORITY = 100
#: Events skipped before ``vrrp`` at most (~20 ms on the host): a config that has
#: its services first is not parsed twice; its stale VIPs wait for Startup.
SKIP_BUDGET = 20_000
#: A second top-level ``vrrp`` key in block style starts a line.
_BLOCK_KEY = re.compile(r"^[\"']?vrrp[\"']?[ \t]*:", re.MULTILINE)

_Parser: Any = yaml.SafeLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    _Parser = CParser


class _Reader(_Parser, Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
    """libyaml's events; PyYAML's composer and safe constructor for the one value kept."""

    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


class Unreadable(Exception):
    """The minimal read cannot tell the VIPs for sure: remove nothing early."""


@dataclass(frozen=True, slots=True)
class StaleVip:
    """A configured VIP that must not be on its interface before VRRP says MASTER."""

    instance: str
    interface: str
    address: IPv4Interface | IPv6Interface


def _vrrp_section(text: str) -> object:
    """The top-level ``vrrp`` value (None if absent), composed from the C parser's events.

    Raises:
        Unreadable: not a mapping at the top, ``vrrp`` twice, ``vrrp`` after
            more than `SKIP_BUDGET` events, or YAML the composer refuses (e.g.
            an alias to an anchor outside ``vrrp``).
    """
    if "vrrp" not in text:
        return None  # a pure IPVS director: nothing to parse
    reader: Any = _Reader(text)
    try:
        for expected in (StreamStartEvent, DocumentStartEvent):
            if not isinstance(reader.get_event(), expected):
                raise Unreadable("the config is not a mapping")
        top = reader.get_event()
        if not isinstance(top, MappingStartEvent):
            raise Unreadable("the config is not a mapping")
        found: object = None
        seen = False
        skipped = [0]
        while not reader.check_event(MappingEndEvent):
            key = reader.get_event()
            if not isinstance(key, ScalarEvent):
                raise Unreadable("a top-level key that is not a string")
            if key.value != "vrrp":
                _skip_value(reader, skipped)
                continue
            if seen:
                raise Unreadable("vrrp is written twice")
            seen = True
            found = reader.construct_document(reader.compose_node(None, None))
            rest = _after_line(text, reader.peek_event().start_mark.line)
            if not _key_again(rest, flow=bool(top.flow_style)):
                return found  # the rest (services) need not be parsed
        return found
    except yaml.YAMLError as exc:
        raise Unreadable(str(exc)) from None
    finally:
        dispose = getattr(reader, "dispose", None)
        if dispose is not None:
            dispose()


def _key_again(rest: str, *, flow: bool) -> bool:
    """Whether `rest` may hold a second top-level ``vrrp`` key (conservative)."""
    return "vrrp" in rest if flow else _BLOCK_KEY.search(rest) is not None


def _skip_value(reader: Any, skipped: list[int]) -> None:
    """Consume one value's events; `skipped` counts them against `SKIP_BUDGET`."""
    depth = 0
    while True:
        event = reader.get_event()
        skipped[0] += 1
        if skipped[0] > SKIP_BUDGET:
            raise Unreadable("vrrp comes after the services: left to the daemon's Startup")
        if isinstance(event, CollectionStartEvent):
            depth += 1
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        elif not isinstance(event, ScalarEvent | AliasEvent):
            raise Unreadable(f"unexpected {type(event).__name__}")
        if depth == 0:
            return


def _after_line(text: str, line: int) -> str:
    """The text from the start of 0-based `line` (counting "\\n"; YAML's other line
    breaks only make this start earlier, so the check after it is conservative)."""
    start = 0
    for _ in range(line):
        found = text.find("\n", start)
        if found < 0:
            return ""
        start = found + 1
    return text[start:]


def configured_vips(text: str) -> list[StaleVip]:
    """The addresses the daemon's Startup would remove, read from config text.

    Raises:
        Unreadable: the minimal read cannot tell them for sure.
    """
    return _configured_vips(_vrrp_section(text))


def _configured_vips(vrrp: object) -> list[StaleVip]:
    if vrrp is None:
        return []
    instances = _get(vrrp, list, "instances", [])
    return [vip for item in instances for vip in _instance_vips(item)]


def _get(mapping: object, kind: type, key: str, default: Any = None) -> Any:
    """``mapping[key]`` if it has the type the model wants; `default` if absent or null."""
    if not isinstance(mapping, dict):
        raise Unreadable("a mapping was expected")
    value = mapping.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise Unreadable(f"{key}: unexpected {type(value).__name__}")
    return value


def _instance_vips(item: object) -> Iterator[StaleVip]:
    name = _get(item, str, "name", "")
    if _get(item, int, "priority", DEFAULT_PRIORITY) == OWNER_PRIORITY:
        return  # RFC 3768 §6.4.1: the owner becomes MASTER at Startup and keeps them
    interface = _get(item, str, "interface")
    if interface is None:
        raise Unreadable(f"{name}: no interface")
    own = advert_interface(
        interface,
        _get(item, int, "vrid", 0),
        vmac=_get(item, bool, "vmac", False),
        vmac_interface=_get(item, str, "vmac_interface"),
    )
    for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded"):
        for entry in _get(item, list, key, []):
            address, dev = entry, None
            if isinstance(entry, dict):
                address, dev = _get(entry, str, "address"), _get(entry, str, "dev")
            if not isinstance(address, str):
                raise Unreadable(f"{name}: {key}: an address that is not a string")
            try:
                parsed = ip_interface(address)
            except ValueError:
                raise Unreadable(f"{name}: {key}: {address!r}") from None
            yield StaleVip(name, dev or own, parsed)


@dataclass(frozen=True, slots=True)
class ListenTarget:
    """An advert socket the VRRP runtime will use: its interface, family and mode."""

    interface: str
    family: str  # "ipv4" | "ipv6", as `ipvsd.vrrp.relink.Family`
    unicast: bool


@dataclass(frozen=True, slots=True)
class EarlySocket:
    """An advert socket opened before the daemon loaded, and when (`time.monotonic`)."""

    target: ListenTarget
    sock: socket.socket
    ifindex: int
    opened_at: float


def listen_targets(text: str) -> list[ListenTarget]:
    """The advert sockets this config's Backups will listen on, read from config text.

    Not the address owner's (it is Master at once) nor a ``vmac``'s (the runtime
    makes that interface). Each socket once.

    Raises:
        Unreadable: the minimal read cannot tell them for sure.
    """
    return _listen_targets(_vrrp_section(text))


def _listen_targets(vrrp: object) -> list[ListenTarget]:
    if vrrp is None:
        return []
    targets = (_listen_target(item) for item in _get(vrrp, list, "instances", []))
    return list(dict.fromkeys(target for target in targets if target is not None))


def _listen_target(item: object) -> ListenTarget | None:
    if _get(item, int, "priority", DEFAULT_PRIORITY) == OWNER_PRIORITY:
        return None
    if _get(item, bool, "vmac", False) or not _get(item, list, "virtual_ipaddresses", []):
        return None
    # RFC 5798 §5.2: one family per virtual router, its first VIP's.
    first = next(_instance_vips(item))
    family = "ipv6" if first.address.version == 6 else "ipv4"
    unicast = bool(_get(item, list, "unicast_peers", []))
    return ListenTarget(_get(item, str, "interface"), family, unicast)


@dataclass
class EarlyStart:
    """What `begin` did: the lock it holds for the daemon, the VIPs it removed.

    Attributes:
        lock: held (pass it to the daemon), unless `error` says why not.
        error: the lock could not be taken (another ipvsd runs): nothing was removed.
        removed: the stale VIPs that were on their interface and are gone.
        listening: the advert sockets the VRRP runtime will use, opened right
            after the removal so that the kernel queues adverts while the
            daemon loads (`ipvsd.vrrp.prelisten` hands them to the runtime);
            empty when the minimal read could not tell them.
        skipped: why the minimal read or the removal did nothing (then the
            daemon's Startup removes them, later), or "" (also when the file
            cannot be read: the daemon's load says so).
        elapsed_s: from `begin`'s call to its end.
    """

    lock: HostLock
    error: IpvsdError | None = None
    removed: list[StaleVip] = field(default_factory=list)
    listening: list[EarlySocket] = field(default_factory=list)
    skipped: str = ""
    elapsed_s: float = 0.0


def begin(config_path: Path, runtime_dir: Path = DEFAULT_RUNTIME_DIR) -> EarlyStart:
    """Take the host lock, then remove this config's stale VIPs. Never raises.

    Args:
        config_path: the config ``ipvsd run`` was given.
        runtime_dir: where the lock lives (`ipvsd.daemon.lock`).
    """
    started = time.monotonic()
    early = EarlyStart(HostLock(runtime_dir))
    try:
        early.lock.acquire()
    except IpvsdError as exc:
        early.error = exc
        return early
    try:
        text = config_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return early  # the daemon's load reports it, and exits
    try:
        _remove(text, early)
    except (OSError, Unreadable) as exc:
        early.skipped = str(exc) or type(exc).__name__
    early.elapsed_s = time.monotonic() - started
    return early


def _remove(text: str, early: EarlyStart) -> None:
    vrrp = _vrrp_section(text)
    vips = _configured_vips(vrrp)
    targets = []
    for vip in vips:
        try:
            targets.append((socket.if_nametoindex(vip.interface), vip))
        except OSError:
            continue  # no such interface: nothing on it to remove
    results = delete_addresses([(index, vip.address) for index, vip in targets])
    early.removed = [vip for (_, vip), code in zip(targets, results, strict=True) if code == 0]
    failed = [
        f"{vip.address} on {vip.interface}: errno {code}"
        for (_, vip), code in zip(targets, results, strict=True)
        if code and code not in ABSENT
    ]
    if failed:
        early.skipped = "; ".join(failed)
    with contextlib.suppress(Unreadable):  # then the VRRP runtime opens them, later
        early.listening = open_listeners(_listen_targets(vrrp))


def open_listeners(targets: list[ListenTarget]) -> list[EarlySocket]:
    """Open each target's advert socket now, in the current network namespace.

    A socket that cannot be opened (no such interface yet) is left to the VRRP
    runtime, which opens it when it can and reports why it could not.
    """
    opened = []
    for target in targets:
        try:
            sock, ifindex = open_advert_socket(
                target.family, target.interface, unicast=target.unicast
            )
        except KernelError:
            continue
        opened.append(EarlySocket(target, sock, ifindex, time.monotonic()))
    return opened
