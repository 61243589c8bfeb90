"""keepalived's vrrp_script, track_file and an instance's track_script / track_file
→ ipvsd's ``vrrp.scripts`` and ``track_scripts`` / ``track_files``. Pure.

keepalived declares what it tracks at the top level, by name, and instances
refer to the names:

- ``vrrp_script NAME { script; interval; timeout; weight; rise; fall; user }``
  becomes a ``vrrp.scripts`` entry of that name; keepalived splits the
  ``script`` command line itself and runs it without a shell, as ipvsd runs
  ``command``, so the meaning is kept. Its defaults (interval 1 s, timeout
  the interval, rise 1, fall 1, weight 0) are ipvsd's.
- ``track_file NAME { file PATH; weight W }`` (``vrrp_track_file`` in older
  keepalived) is not an ipvsd object: an instance declares the path itself,
  so each instance's ``track_file { NAME [weight W] }`` entry becomes
  ``{path, weight}``, the instance's weight over the file's (keepalived's
  default 1).
- ``track_script { NAME [weight W] }`` becomes ``{script, weight}`` (no
  weight: the script's, as keepalived).

A file's ``weight W reverse`` is ``weight: -W`` (keepalived multiplies by
-1). Reported: ``reverse`` on a script's weight (subtract W while it
succeeds: no ipvsd equivalent), ``init_fail``, a group after ``user``,
``init_file``; a name that no converted declaration has.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ipvsd.config.model import TrackFile, VrrpScriptConfig
from ipvsd.importers.keepalived_ledger import Ledger, argument, integer, number, seconds
from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.report import ordered

__all__ = [
    "FileDecl",
    "program_line",
    "script",
    "script_argv",
    "split_command",
    "track_file",
    "track_files",
    "track_scripts",
]

T = TypeVar("T")
WEIGHT_MAX = 254
TRACK_NODES = "__track_nodes__"
"""Key of the instance data's (entry, node) pairs: each entry is dropped on its own when
ipvsd refuses it (its script was dropped), not the whole instance."""
_SCRIPT_KEYS = {"interval": "interval", "timeout": "timeout"}


@dataclass(frozen=True, slots=True)
class FileDecl:
    """A top-level ``track_file NAME { file PATH; weight W }``."""

    path: str
    weight: int = 1


def script_argv(node: Node) -> list[str]:
    """A script keyword's argv: keepalived splits a quoted command line like a shell."""
    return split_command(node.args)


def split_command(words: Sequence[str]) -> list[str]:
    """Command-line words (quotes already removed by the parser) split as keepalived does."""
    try:
        return shlex.split(" ".join(words))
    except ValueError:
        return list(words)


def program_line(
    ledger: Ledger, node: Node, data: dict[str, Any], *, empty: str, user: str
) -> None:
    """``KEYWORD "COMMAND LINE" [USER [GROUP]]`` (notify programs) → ``data[KEYWORD]``, an
    argv list split as keepalived splits it. ipvsd runs these programs as root, so a
    user is reported (`user`, formatted with ``{user}``); so is an empty command (`empty`)."""
    argv = split_command(node.args[:1])
    if not argv:
        ledger.report(node, empty)
        return
    data[node.directive] = argv
    if len(node.args) > 1:
        ledger.report(node, user.format(user=" ".join(node.args[1:])))
    else:
        ledger.take(node)


def script(ledger: Ledger, node: Node) -> dict[str, Any] | None:
    """One ``vrrp_script NAME { ... }`` → a ``vrrp.scripts`` item; None (reported) when it
    cannot be converted."""
    if not node.args:
        ledger.drop_block(node, "has no name: not converted")
        return None
    data: dict[str, Any] = {"name": node.args[0]}
    for child in ledger.block(node):
        match child.directive:
            case "script":
                argv = command(ledger, child)
                if argv:
                    data["command"] = argv
            case "interval" | "timeout":
                value = seconds(ledger, child, 0.1 if child.directive == "interval" else 0.01)
                if value is not None:
                    data[_SCRIPT_KEYS[child.directive]] = number(value)
                    ledger.take(child)
            case "rise" | "fall":
                count = integer(ledger, child, 1, 2**31 - 1)
                if count is not None:
                    data[child.directive] = count
                    ledger.take(child)
            case "weight":
                weight = _weight(ledger, child, 0, reverse_ok=False)
                if weight is not None:
                    data["weight"] = weight
            case "user":
                _user(ledger, child, data)
            case "init_fail":
                ledger.report(
                    child,
                    "ipvsd counts a script as neither succeeding nor failing until its first "
                    "result (weight 0: FAULT until then): ignored",
                )
            case _:
                ledger.report(child, "not a keepalived 2.2 keyword in vrrp_script: ignored")
    if "command" not in data:
        ledger.drop_block(node, "has no script to run: not converted")
        return None
    ledger.take(node)
    return ordered(data, VrrpScriptConfig)


def track_file(ledger: Ledger, node: Node) -> tuple[str, FileDecl] | None:
    """One top-level ``track_file NAME { file PATH; weight W }``; None (reported) when
    it has no name or no file."""
    if not node.args:
        ledger.drop_block(node, "has no name: not converted")
        return None
    path: str | None = None
    weight = 1
    for child in ledger.block(node):
        match child.directive:
            case "file":
                path = argument(ledger, child)
                if path is not None:
                    ledger.take(child)
            case "weight":
                given = _weight(ledger, child, 0, reverse_ok=True)
                weight = weight if given is None else given
            case "init_file":
                ledger.report(
                    child,
                    "ipvsd creates no tracked file (a missing file reads as 0): not converted",
                )
            case _:
                ledger.report(child, "not a keepalived 2.2 keyword in track_file: ignored")
    if path is None:
        ledger.drop_block(node, "has no file: not converted")
        return None
    ledger.take(node)
    return node.args[0], FileDecl(path, weight)


def track_scripts(
    ledger: Ledger, node: Node, data: dict[str, Any], known: Mapping[str, object]
) -> None:
    """An instance's ``track_script { NAME [weight W] }`` → ``track_scripts`` (no weight:
    the script's, as keepalived)."""

    def entry(name: str, _: object, weight: int | None) -> dict[str, Any]:
        return {"script": name} if weight is None else {"script": name, "weight": weight}

    _track_block(ledger, node, data, ("track_scripts", "script"), known, entry, reverse_ok=False)


def track_files(
    ledger: Ledger, node: Node, data: dict[str, Any], known: Mapping[str, FileDecl]
) -> None:
    """An instance's ``track_file { NAME [weight W] }`` → ``track_files`` ``{path, weight}``
    (no weight: the file's)."""

    def entry(_: str, declared: FileDecl, weight: int | None) -> dict[str, Any]:
        given = declared.weight if weight is None else weight
        return ordered({"path": declared.path, "weight": given}, TrackFile)

    _track_block(ledger, node, data, ("track_files", "path"), known, entry, reverse_ok=True)


def _track_block(
    ledger: Ledger,
    node: Node,
    data: dict[str, Any],
    keys: tuple[str, str],
    known: Mapping[str, T],
    entry: Callable[[str, T, int | None], dict[str, Any]],
    *,
    reverse_ok: bool,
) -> None:
    """The entries of a ``track_* { NAME [weight W] }`` block → ``data[keys[0]]``, each
    ``keys[1]`` once; a name `known` lacks is reported."""
    field, identity = keys
    tracked: list[dict[str, Any]] = data.get(field, [])
    ledger.take(node)
    for child in ledger.block(node):
        if child.directive not in known:
            what = node.directive.replace("track_script", "vrrp_script")
            ledger.report(
                child,
                f"no converted {what} of that name: left out (the priority no longer follows it)",
            )
            continue
        usable, weight = _entry_weight(ledger, child, reverse_ok=reverse_ok)
        item = entry(child.directive, known[child.directive], weight)
        if usable and all(other[identity] != item[identity] for other in tracked):
            tracked.append(item)
            data.setdefault(TRACK_NODES, []).append((item, child))
    if tracked:
        data[field] = tracked


def _entry_weight(ledger: Ledger, node: Node, *, reverse_ok: bool) -> tuple[bool, int | None]:
    """A track entry's optional ``weight W``: (usable, W or None when not given)."""
    if node.args[:1] == ("weight",):
        weight = _weight(ledger, node, 1, reverse_ok=reverse_ok)
        return weight is not None, weight
    if node.args:
        ledger.report(node, f"{' '.join(node.args)}: not understood: ignored")
    else:
        ledger.take(node)
    return True, None


def command(ledger: Ledger, node: Node, missing: str = "has no program: ignored") -> list[str]:
    """A command keyword's argv (`script_argv`); empty, and `missing` reported, when
    there is none."""
    argv = script_argv(node)
    if argv:
        ledger.take(node)
    else:
        ledger.report(node, missing)
    return argv


def _weight(ledger: Ledger, node: Node, index: int, *, reverse_ok: bool) -> int | None:
    """``weight W [reverse]`` at `index`. A file's ``reverse`` is weight -W; a script's
    (subtract W while succeeding) has no ipvsd equivalent and is reported."""
    weight = integer(ledger, node, -WEIGHT_MAX, WEIGHT_MAX, index=index)
    if weight is None:
        return None
    rest = node.args[index + 1 :]
    if rest == ("reverse",) and reverse_ok:
        # keepalived multiplies the file's value by weight * -1: the same as weight -W.
        ledger.take(node)
        return -weight
    if rest == ("reverse",):
        ledger.report(
            node,
            "reverse: not supported: the weight applies the usual way (added while the script "
            "succeeds if > 0, while it fails if < 0)",
        )
    elif rest:
        ledger.report(node, f"{' '.join(rest)}: not understood: ignored")
    else:
        ledger.take(node)
    return weight


def _user(ledger: Ledger, node: Node, data: dict[str, Any]) -> None:
    name = argument(ledger, node)
    if name is None:
        return
    data["user"] = name
    if len(node.args) > 1:
        ledger.report(
            node,
            f"group {node.args[1]}: ipvsd runs the script with {name}'s primary group and "
            "groups: not converted",
        )
    else:
        ledger.take(node)
