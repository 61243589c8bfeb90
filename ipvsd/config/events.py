"""YAML text → plain config data from the parser's event stream: fast, lean, exact.

Theory of operation
-------------------
`ipvsd.config.yaml_lines` composes a node tree (a node and two marks per value) and
walks it: for 10,000 services, seconds and hundreds of MB. This module builds
the same plain data straight from the parse *events*, keeping one frame per
open mapping or sequence:

- scalars resolve as in SafeLoader: the same implicit resolvers, the common
  tags converted inline, the others by the same `SafeConstructor`;
- keys are their source text, sequences are tuples, merge keys and aliases
  behave as in `yaml_lines` (an alias shares the anchored value: equal, cheaper);
- with ``lines=True`` it also returns a `LineTree`, shaped like the data
  (aliases share their subtree), that answers as `yaml_lines.LineMap` would,
  and reports duplicate keys as `yaml_lines` does.

What it cannot reproduce exactly (a YAML error, whose message is the pure
parser's; several documents; an alias to itself; a problem inside an
anchored or merged value, which `yaml_lines` reports once per expansion; too
many nodes; ...) raises `Unusual`: the caller then uses
`yaml_lines.compose_document`, the reference. Without ``lines`` a duplicate
key is `Unusual` too: the fast path only has to succeed on valid input.

The events come from libyaml's C parser when PyYAML has it. It reads a few
things differently from the pure-Python one (tabs, a BOM inside the text,
``?`` in a plain scalar in ``[]`` / ``{}``, tags, ``|`` / ``>`` headers, the
line of some empty scalars): a text with a tab or a BOM goes to the pure
parser at once, the rest makes the C pass give up (`_Lenient`) and the pure
parser read it again, still as events. (A differential fuzz of mutated
configs against `yaml_lines` found no other difference.)

`hooks` maps a sequence's path (``("ipvs", "services")``) to a function
applied to each item once built: the config loader validates each service
while reading, so the plain data of all services never exists at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from ipvsd.config import yaml_lines
from ipvsd.config.yaml_lines import FieldPath, LineTree

ItemHook = Callable[[object], object]
"""Applied to each completed item of a sequence named in `hooks`."""

_LOADER: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
_NON_PRINTABLE: re.Pattern[str] = yaml.reader.Reader.NON_PRINTABLE  # what the pure reader rejects
_PURE_ONLY = ("\t", "\ufeff")  # libyaml reads these more leniently: use the pure parser
_BLOCK_STYLES = ("|", ">")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_CACHED_LENGTH = 6  # plain scalars up to this long are resolved once per read: 80, rr, true
_NO_KEY: Any = object()  # a mapping waiting for its next key
_MERGE: Any = object()  # the pending key is ``<<``
_SKIP: Any = object()  # the pending key is a duplicate: build its value, then drop it


class Unusual(Exception):
    """The text needs `yaml_lines.compose_document` to be read (and reported) exactly."""


class _Lenient(Exception):
    """libyaml may read this text differently from the pure parser: use that one."""


def _doubtful(top: _Frame | None, plain: str) -> bool:
    """A plain scalar in `top` that libyaml may read differently (see `_Lenient`)."""
    if plain and "?" not in plain:
        return False  # the usual case, first
    if top is None or top.flow:
        return top is not None
    return not plain and top.is_map and top.key is _NO_KEY  # an empty key


@dataclass(frozen=True, slots=True)
class Read:
    """The data, its lines (None without ``lines``), and (path, line, message) issues."""

    data: object
    lines: LineTree | None
    issues: tuple[tuple[FieldPath, int, str], ...]


class _Frame:
    """An open mapping or sequence."""

    __slots__ = (
        "anchor",
        "count",
        "data",
        "flow",
        "hook",
        "is_map",
        "key",
        "key_line",
        "lines",
        "merges",
        "quiet",
        "special",
        "start_line",
        "trie",
    )

    def __init__(self, is_map: bool, parent: _Frame | None, anchor: str | None, flow: bool) -> None:
        self.is_map = is_map
        self.flow = flow
        self.anchor = anchor
        self.data: Any = {} if is_map else []
        self.lines: Any = None
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.merges: list[Any] | None = None
        self.hook: ItemHook | None = None
        self.trie: Mapping[str, Any] | None = None
        self.start_line = 0
        self.count = 0
        if parent is None:
            self.quiet = False
            self.special = anchor is not None
        else:
            key = parent.key if parent.is_map else None
            self.quiet = parent.quiet or key is _SKIP
            # Issues inside anchored or merged values are reported per expansion: not here.
            self.special = parent.special or anchor is not None or key is _MERGE
            if parent.trie is not None and isinstance(key, str):
                sub = parent.trie.get(key)
                if is_map and isinstance(sub, dict):
                    self.trie = sub
                elif not is_map and callable(sub):
                    self.hook = sub


def read(text: str, *, lines: bool = False, hooks: Mapping[FieldPath, ItemHook] = {}) -> Read:
    """Read one YAML document into plain data.

    Args:
        text: the YAML source.
        lines: also return where each field is written, and report duplicate
            keys as issues (otherwise a duplicate key is `Unusual`).
        hooks: sequence path (mapping keys only) → function applied to each
            of its items once built; a ValueError it raises (a config
            `ValidationError` is one) makes the text `Unusual`.

    Raises:
        Unusual: the text must be read by `yaml_lines.compose_document`.
    """
    if _NON_PRINTABLE.search(text):
        raise Unusual
    trie: dict[str, Any] = {}
    for path, hook in hooks.items():
        node = trie
        for part in path[:-1]:
            node = node.setdefault(str(part), {})
        node[str(path[-1])] = hook
    if _LOADER is not yaml.SafeLoader and not any(char in text for char in _PURE_ONLY):
        try:
            return _run(_LOADER(text), lines, trie, lenient=True)
        except _Lenient:
            pass
    return _run(yaml.SafeLoader(text), lines, trie, lenient=False)


def _run(loader: Any, lines: bool, trie: dict[str, Any], *, lenient: bool) -> Read:
    try:
        return _Reader(lines, trie, lenient).run(loader.get_event)
    except (yaml.YAMLError, ValueError, OverflowError):  # "\UFFFFFFFF" escapes raise the latter
        raise Unusual from None
    finally:
        loader.dispose()


class _Reader:
    def __init__(self, lines: bool, trie: dict[str, Any], lenient: bool) -> None:
        self.track = lines
        self.lenient = lenient
        self.trie = trie
        self.count = 0
        self.max_nodes = yaml_lines.MAX_NODES
        self.anchors: dict[str, tuple[object, int, int, object]] = {}
        self.started: set[str] = set()
        self.stack: list[_Frame] = []
        self.issues: list[tuple[FieldPath, int, str]] = []
        self.root: tuple[object, int, object] | None = None
        self.constructor = SafeConstructor()
        self.resolvers = yaml.SafeLoader.yaml_implicit_resolvers
        self.wildcard = self.resolvers.get(None, [])
        self.cache: dict[str, object] = {}

    def run(self, get_event: Callable[[], Any]) -> Read:
        track = self.track
        lenient = self.lenient
        stack = self.stack
        documents = 0
        top: _Frame | None = None
        while True:
            event = get_event()
            kind = event.__class__
            if kind is ScalarEvent:
                if lenient and (
                    event.tag is not None
                    or event.style in _BLOCK_STYLES
                    or (not event.style and _doubtful(top, event.value))
                ):
                    raise _Lenient
                if top is not None and top.is_map and top.key is _NO_KEY:
                    self._key(top, event)
                    continue
                self.count += 1
                value = self._scalar(event)
                line = event.start_mark.line + 1 if track else 0
                if event.anchor is not None:
                    self._anchor(event.anchor)
                    self.anchors[event.anchor] = (value, 1, line, None)
                self._add(top, value, line, None)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if top is not None and top.is_map and top.key is _NO_KEY:
                    raise Unusual  # a mapping or a list as a key
                if lenient and event.tag is not None:
                    raise _Lenient  # the parsers scan tags differently (yaml_lines ignores them)
                if event.anchor is not None:
                    self._anchor(event.anchor)
                self.count += 1
                top = _Frame(kind is MappingStartEvent, top, event.anchor, bool(event.flow_style))
                top.trie = top.trie if stack else self.trie
                top.count = self.count
                if track:
                    top.start_line = event.start_mark.line + 1
                    top.lines = {} if top.is_map else []
                stack.append(top)
            elif kind is AliasEvent:
                if top is not None and top.is_map and top.key is _NO_KEY:
                    raise Unusual  # an alias as a key
                anchored = self.anchors.get(event.anchor)
                if anchored is None:
                    raise Unusual  # undefined, or an alias to its own ancestor
                value, count, line, subtree = anchored
                self.count += count
                if self.count > self.max_nodes:
                    raise Unusual
                self._add(top, value, line, subtree)
            elif kind is StreamEndEvent:
                break
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise Unusual  # yaml_lines reports "expected a single document"
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                done = stack.pop()
                top = stack[-1] if stack else None
                value, subtree = self._finish(done)
                if done.anchor is not None:
                    count = self.count - done.count + 1
                    self.anchors[done.anchor] = (value, count, done.start_line, subtree)
                self._add(top, value, done.start_line, subtree)
        if self.root is None or self.root[0] is None or self.count > self.max_nodes:
            raise Unusual  # no document (its line is the parser's guess), or too many nodes
        data, root_line, tree = self.root
        line_tree = LineTree(root_line, tree) if track else None
        return Read(data, line_tree, tuple(self.issues))

    def _anchor(self, name: str) -> None:
        if name in self.started:
            raise Unusual  # a duplicate anchor is a composer error
        self.started.add(name)

    def _key(self, top: _Frame, event: Any) -> None:
        if event.anchor is not None:
            raise Unusual
        key: str = event.value
        tag = event.tag
        if tag is None:
            merge = key == "<<" and event.implicit[0]
        else:
            merge = tag == _MERGE_TAG or (tag == "!" and key == "<<")
        if merge:
            top.key = _MERGE
            return
        line = event.start_mark.line + 1 if self.track else 0
        if key in top.data:
            if not self.track or top.special:
                raise Unusual
            if not top.quiet:
                first = top.lines[key]
                first_line = first[0] if isinstance(first, tuple) else first
                path = (*self._path(), key)
                message = f"duplicate key '{key}' (first on line {first_line})"
                self.issues.append((path, line, message))
            top.key = _SKIP
            return
        top.key = key
        top.key_line = line

    def _path(self) -> FieldPath:
        """The path of the innermost open mapping or sequence."""
        path: list[str | int] = []
        for frame in self.stack[:-1]:
            path.append(frame.key if frame.is_map else len(frame.data))
        return tuple(path)

    def _scalar(self, event: Any) -> object:
        value: str = event.value
        tag = event.tag
        if tag is None:
            if not event.implicit[0]:
                return value  # quoted: a string
        elif tag != "!":  # "!" resolves like a plain scalar, even when quoted or empty
            return self._construct(tag, value, event.style)
        if len(value) > _CACHED_LENGTH:
            return self._plain(value)
        found = self.cache.get(value, _NO_KEY)
        if found is _NO_KEY:
            found = self.cache[value] = self._plain(value)
        return found

    def _plain(self, value: str) -> object:
        """A plain scalar, resolved and converted as by SafeLoader."""
        resolvers = self.resolvers.get(value[0] if value else "", [])
        tag = next((tag for tag, regexp in resolvers + self.wildcard if regexp.match(value)), None)
        if tag is None:
            return value
        if tag == "tag:yaml.org,2002:int" and value.isdigit() and value[0] != "0":
            return int(value)
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return SafeConstructor.bool_values[value.lower()]
        return self._construct(tag, value, None)

    def _construct(self, tag: str, value: str, style: str | None) -> object:
        try:
            return self.constructor.construct_object(ScalarNode(tag, value, style=style), deep=True)
        except Exception:
            raise Unusual from None  # yaml_lines reports "cannot read value"

    def _finish(self, frame: _Frame) -> tuple[object, object]:
        if not frame.is_map:
            return tuple(frame.data), (tuple(frame.lines) if self.track else None)
        if frame.merges is None:
            return frame.data, frame.lines
        data: dict[str, object] = {}
        lines: dict[str, object] = {}
        for source, subtree in frame.merges:
            if self.track:
                for key, entry in subtree.items():
                    if key in data and (isinstance(entry, tuple) or isinstance(lines[key], tuple)):
                        raise Unusual  # yaml_lines keeps stale lines of the overridden value
                lines.update(subtree)
            data.update(source)
        data.update(frame.data)
        if self.track:
            lines.update(frame.lines)
        return data, (lines if self.track else None)

    def _add(self, top: _Frame | None, value: object, line: int, subtree: object) -> None:
        entry = line if subtree is None else (line, subtree)
        if top is None:
            self.root = (value, line, subtree)
        elif not top.is_map:
            if top.hook is not None:
                value = top.hook(value)
            top.data.append(value)
            if self.track:
                top.lines.append(entry)
        else:
            key = top.key
            top.key = _NO_KEY
            if key is _MERGE:
                self._merge(top, value, subtree)
            elif key is not _SKIP:
                top.data[key] = value
                if self.track:
                    top.lines[key] = top.key_line if subtree is None else (top.key_line, subtree)

    def _merge(self, top: _Frame, value: object, subtree: Any) -> None:
        """Record a ``<<`` value: sources in the order `yaml_lines` applies them."""
        if isinstance(value, dict):
            sources = [(value, subtree)]
        elif isinstance(value, tuple) and all(isinstance(item, dict) for item in value):
            subtrees = [entry[1] for entry in subtree] if self.track else [None] * len(value)
            sources = list(zip(value, subtrees, strict=True))
        else:
            raise Unusual  # yaml_lines reports "'<<' must merge a mapping or a list of them"
        if top.merges is None:
            top.merges = []
        top.merges.extend(reversed(sources))
