"""YAML text → plain data plus the line of every field, for line-numbered config errors.

Theory of operation
-------------------
``yaml.safe_load`` throws the source positions away, so the config loader
works one level lower. ``yaml.compose`` (SafeLoader) returns the *node* tree,
and every node carries a ``start_mark`` (0-based line). `compose_document`
walks that tree once and produces two things side by side:

1. the plain data the models validate: dicts with ``str`` keys, **tuples** for
   sequences (the config model is frozen and strict: a tuple field
   accepts tuples only), scalars built by PyYAML's SafeConstructor;
2. a `LineMap` from *field path* to 1-based line. A field path is the tuple
   of mapping keys and sequence indices from the root, the same shape as a
   validation error's ``loc`` (``("ipvs", "services", 0, "port")``), so an error
   is mapped to its line by a dictionary look-up. A mapping entry is recorded
   at the line of its *key* (``reals:`` rather than the first real below it);
   a sequence item at the line where the item starts.

A path that has no entry (a missing required field, say) takes the line of
its nearest recorded parent: the mapping that should have held it.

Rules beyond plain PyYAML:

- Duplicate keys in one mapping are errors (PyYAML silently keeps the last).
- Keys are taken as their source text, so ``yes:`` or ``80:`` become the keys
  ``"yes"`` / ``"80"`` and are reported as unknown keys, not as YAML booleans.
- Merge keys (``<<: *defaults``) work: explicit keys win over merged ones,
  earlier merge sources over later ones (YAML 1.1 merge spec).
- Aliases are expanded; an alias to one of its own ancestors, or an expansion
  beyond `MAX_NODES`, is an error rather than a hang (billion laughs).

This walk is the reference, but slow and big for big files (a node and two
marks per value): `ipvsd.config.events` reads the same data, and the same
lines as a `LineTree`, straight from the parser's events, and leaves to
`compose_document` only what it cannot reproduce exactly.

This module is pure: it parses a string and never touches the file system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ipvsd.errors import ConfigError, ConfigIssue

FieldPath = tuple[str | int, ...]
"""Mapping keys and sequence indices from the document root (a validation error's ``loc``)."""

MAX_NODES = 1_000_000
"""Upper bound on built nodes after alias expansion."""

ROOT_FIELD = "(top level)"
"""The field name issues about the whole document carry."""

YAML_FIELD = "(yaml)"
"""The field name YAML syntax errors carry (they precede any field)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


def dotted(path: Sequence[str | int]) -> str:
    """The dotted spelling of a field path (``ipvs.services.0.port``)."""
    return ".".join(str(part) for part in path) or ROOT_FIELD


class Lines(Protocol):
    """Where fields are written: `LineMap` here, `ipvsd.config.events.LineTree` there."""

    def line(self, path: Sequence[str | int]) -> int:
        """Line of `path`, else of its nearest recorded parent, else of the document."""
        ...

    def source(self, path: Sequence[str | int]) -> tuple[str, FieldPath] | None:
        """The included file `path` is written in and its path there
        (`ipvsd.config.include`); None: the file being read."""
        ...


def locate(lines: Lines, path: Sequence[str | int], file: str) -> tuple[str, int, str]:
    """(file, line, dotted field) of `path` for an issue; `file`: the main file's name."""
    source = lines.source(path)
    if source is None:
        return file, lines.line(path), dotted(path)
    name, own = source
    return name, lines.line(path), dotted(own)


@dataclass(frozen=True, slots=True)
class LineMap:
    """Field path → 1-based line where the field is written."""

    lines: Mapping[FieldPath, int]

    def line(self, path: Sequence[str | int]) -> int:
        """Line of `path`, else of its nearest recorded parent, else 1."""
        key = tuple(path)
        while key:
            found = self.lines.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return self.lines.get((), 1)

    def source(self, path: Sequence[str | int]) -> tuple[str, FieldPath] | None:
        """Always the file being read."""
        return None


@dataclass(frozen=True, slots=True)
class LineTree:
    """Field path → 1-based line, as a tree shaped like the data (`ipvsd.config.events`).

    A mapping's lines are a dict ``key → line`` (scalar value) or ``key →
    (line, subtree)``; a sequence's, a tuple of the same entries per item. An
    alias shares the subtree of its anchor instead of copying its lines.
    """

    root_line: int
    tree: object

    def line(self, path: Sequence[str | int]) -> int:
        """Line of `path`, else of its nearest recorded parent: as `LineMap.line`."""
        found, node = self.root_line, self.tree
        for part in path:
            if isinstance(node, dict):
                entry = node.get(part)
            elif isinstance(node, tuple) and isinstance(part, int) and 0 <= part < len(node):
                entry = node[part]
            else:
                break
            if entry is None:
                break
            if isinstance(entry, tuple):
                found, node = entry
            else:
                found, node = entry, None
        return found

    def source(self, path: Sequence[str | int]) -> tuple[str, FieldPath] | None:
        """Always the file being read."""
        return None


@dataclass(frozen=True, slots=True)
class Document:
    """A composed YAML document.

    Attributes:
        data: plain data (dict / tuple / scalars); None for an empty document.
        lines: where each field is written.
        issues: problems found while composing (duplicate keys, bad tags, ...);
            the data is still usable to find more problems.
    """

    data: object
    lines: Lines
    issues: tuple[ConfigIssue, ...]


def compose_document(text: str, path: str) -> Document:
    """Parse YAML text into plain data and a line map.

    Args:
        text: the YAML source.
        path: file name used in issues.

    Returns:
        The document; its `issues` are problems that do not stop the walk.

    Raises:
        ConfigError: a YAML syntax error (with the line of the YAML mark), or
            alias expansion beyond `MAX_NODES`.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        message = exc.problem or "invalid YAML"
        if exc.context:
            message = f"{message} ({exc.context})"
        raise ConfigError(
            [ConfigIssue(path, line, YAML_FIELD, f"YAML syntax: {message}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError([ConfigIssue(path, line, YAML_FIELD, f"YAML: {exc.reason}")]) from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # the latter two: "\UFFFFFFFF"
        raise ConfigError([ConfigIssue(path, 0, YAML_FIELD, f"YAML: {exc}")]) from None
    if root is None:
        return Document(None, LineMap({(): 1}), ())
    builder = _Builder(path)
    data = builder.build(root, (), root.start_mark.line + 1)
    return Document(data, LineMap(builder.lines), tuple(builder.issues))


class _Builder:
    """One walk over a node tree: data out, lines and issues collected."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._constructor = SafeConstructor()
        self._active: set[int] = set()  # ids of the nodes being built: alias cycles
        self._count = 0
        self.lines: dict[FieldPath, int] = {}
        self.issues: list[ConfigIssue] = []

    def _issue(self, field: FieldPath, line: int, message: str) -> None:
        self.issues.append(ConfigIssue(self._path, line, dotted(field), message))

    def build(self, node: Node, path: FieldPath, line: int | None) -> object:
        """Build `node` found at `path`; record `line` for it unless None."""
        if line is not None:
            self.lines[path] = line
        self._count += 1
        if self._count > MAX_NODES:
            raise ConfigError(
                [ConfigIssue(self._path, line or 0, dotted(path), "too many nodes (alias bomb?)")]
            )
        if id(node) in self._active:
            self._issue(path, node.start_mark.line + 1, "alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return tuple(
                    self.build(item, (*path, index), item.start_mark.line + 1)
                    for index, item in enumerate(node.value)
                )
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: Node, path: FieldPath) -> object:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception as exc:  # any constructor error is a bad value in the file
            # An unknown tag (``!foo``) or a bad explicit one (``!!int x``, ``!!bool maybe``):
            # report it, and go on with the text so the field is not reported a second time.
            detail = getattr(exc, "problem", None) or str(exc)
            self._issue(path, node.start_mark.line + 1, f"cannot read value: {detail}")
            return node.value

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[str, object]:
        result: dict[str, object] = {}
        lines, self.lines = self.lines, {}  # the merged values' lines, kept apart
        try:
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    for source in reversed(self._merge_sources(value_node, path)):
                        merged = self.build(source, path, None)
                        if isinstance(merged, dict):
                            result.update(merged)
        finally:
            lines, self.lines = self.lines, lines
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                self._issue(path, line, "mapping keys must be plain strings")
                continue
            key = str(key_node.value)
            if key in first_line:
                self._issue(
                    (*path, key), line, f"duplicate key '{key}' (first on line {first_line[key]})"
                )
                continue
            first_line[key] = line
            result[key] = self.build(value_node, (*path, key), line)
        # A key written here overrides a merged one: forget the merged value's lines.
        depth = len(path)
        self.lines.update((p, n) for p, n in lines.items() if p[depth] not in first_line)
        return result

    def _merge_sources(self, node: Node, path: FieldPath) -> list[Node]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        self._issue(path, node.start_mark.line + 1, "'<<' must merge a mapping or a list of them")
        return []
