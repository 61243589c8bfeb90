"""Reading the importers' input: keepalived.conf with its includes, ipvsadm rules.

The I/O edge of `ipvsd.importers`: the parsers and converters are pure and
take text; this module reads files (and standard input) and expands
keepalived's ``include`` directives.

keepalived's include (lib/parser.c, 2.2): ``include PATTERN`` is a glob
(matches in sorted order); a relative pattern is relative to the directory
of the file that includes it; an included file may include others, and may
be included inside a block (its directives join that block). Here each
include directive stays in the tree, followed by the directives it read, so
that the converter counts it; one that matches nothing is returned in
`Loaded.unmatched` to be reported (keepalived logs it and goes on). An
include loop, or a matched file that cannot be read, is a `SourceError`.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ipvsd.importers.keepalived_parse import Node, parse
from ipvsd.importers.report import SourceError

INCLUDE_DEPTH_MAX = 32  # a loop is caught before this; this stops pathological nesting


@dataclass(slots=True)
class Loaded:
    """A keepalived configuration read with its includes.

    Attributes:
        nodes: its top-level directives, includes expanded.
        files: every file read, the main one first.
        unmatched: include directives that matched no file, with the reason.
    """

    nodes: tuple[Node, ...]
    files: list[str] = field(default_factory=list)
    unmatched: dict[Node, str] = field(default_factory=dict)


def read_text(path: str, *, file: str | None = None, line: int = 0) -> str:
    """A file's text (``-``: standard input), as UTF-8 with undecodable bytes replaced.

    Raises:
        SourceError: it cannot be read; reported at `file`:`line` (the
            including directive), else at `path`:0.
    """
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if file is None:
            raise SourceError(path, 0, f"cannot read: {reason}") from None
        raise SourceError(file, line, f"include: cannot read {path}: {reason}") from None


def read_keepalived(path: str) -> Loaded:
    """Parse `path` and everything it includes.

    Raises:
        SourceError: a file cannot be read or parsed, or includes itself.
    """
    loaded = Loaded(())
    loaded.files.append(path)
    nodes = parse(read_text(path), path)
    loaded.nodes = tuple(_expand(nodes, [os.path.realpath(path)], loaded))
    return loaded


def _expand(nodes: tuple[Node, ...], chain: list[str], loaded: Loaded) -> Iterator[Node]:
    for node in nodes:
        if node.children is not None:
            node = replace(node, children=tuple(_expand(node.children, chain, loaded)))
        yield node
        if node.directive != "include":
            continue
        if node.condition is not None and not node.condition.startswith("^"):
            continue  # read only by `keepalived -i NAME`: the converter reports it
        yield from _include(node, chain, loaded)


def _include(node: Node, chain: list[str], loaded: Loaded) -> Iterator[Node]:
    if not node.args:
        loaded.unmatched[node] = "names no file: nothing included"
        return
    pattern = node.args[0]
    if not os.path.isabs(pattern):
        pattern = os.path.join(os.path.dirname(node.file), pattern)
    matches = sorted(glob.glob(pattern))
    if not matches:
        loaded.unmatched[node] = f"no file matches {pattern}: nothing included"
        return
    for match in matches:
        real = os.path.realpath(match)
        if real in chain or len(chain) >= INCLUDE_DEPTH_MAX:
            raise SourceError(node.file, node.line, f"include: {match} includes itself (a loop)")
        text = read_text(match, file=node.file, line=node.line)
        loaded.files.append(match)
        yield from _expand(parse(text, match), [*chain, real], loaded)
