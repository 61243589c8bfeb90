"""The keepalived converter's bookkeeping: every directive converted or reported. Pure.

Each handler of the converter marks the nodes it reads: `Ledger.take` (carried
over), `Ledger.report` (not supported, or its meaning changes: one
``FILE:LINE: directive: message`` line), `Ledger.drop_block` (a block reported
as a whole: its header is reported, its contents count as dropped with it).
`Ledger.finish` then walks the whole tree: a node nobody marked is reported
as not converted, so a directive can never be dropped silently, even by a
gap in the converter.

The value helpers (`integer`, `seconds`, ...) read one argument and report
the directive when it is missing or out of range, as keepalived does (it
logs the directive and ignores it); they return None then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.report import Outcome, Reported

_NOT_CONVERTED = "not converted (the importer does not handle it here)"


class Ledger:
    """What became of each directive of one keepalived configuration."""

    def __init__(
        self, roots: Sequence[Node], unmatched_includes: Mapping[Node, str] | None = None
    ) -> None:
        self._roots = tuple(roots)
        self._order = {id(node): index for index, node in enumerate(_walk(self._roots))}
        self._marks: dict[int, Outcome] = {}
        self._reports: list[tuple[int, Reported]] = []
        self._unmatched = dict(unmatched_includes or {})

    def take(self, node: Node) -> None:
        """`node` is carried over with its meaning (unless it was reported already)."""
        self._marks.setdefault(id(node), Outcome.CONVERTED)

    def take_all(self, node: Node) -> None:
        """`node` and every directive of its block are carried over."""
        for item in node.walk():
            self.take(item)

    def report(self, node: Node, message: str, *, directive: str | None = None) -> None:
        """One report line for `node`: what happens instead of what it says."""
        self._marks[id(node)] = Outcome.REPORTED
        line = Reported(node.file, node.line, directive or node.directive, message)
        self._reports.append((self._order.get(id(node), -1), line))

    def drop_block(self, node: Node, message: str) -> None:
        """Report `node`; the directives of its block go with it, unreported.

        Directives of the block already taken are dropped too (the block as a
        whole is not converted); those already reported stay reported.
        """
        self.report(node, message)
        for item in node.walk():
            if item is not node and self._marks.get(id(item)) is not Outcome.REPORTED:
                self._marks[id(item)] = Outcome.DROPPED

    def reported(self, node: Node) -> bool:
        """Whether `node` was reported already (one line per directive)."""
        return self._marks.get(id(node)) is Outcome.REPORTED

    def seen(self, node: Node) -> bool:
        """Whether `node` was marked already."""
        return id(node) in self._marks

    def block(self, node: Node) -> Iterator[Node]:
        """The directives of `node`'s block that its handler must read.

        ``include`` and ``$NAME=value`` lines are settled here, and so are
        keepalived's ``@NAME`` conditional lines: read only by ``keepalived
        -i NAME``, they are reported and skipped; ``@^NAME`` lines are read,
        as keepalived without ``-i`` does, and reported too.
        """
        return self.directives(node.children or ())

    def directives(self, nodes: Iterable[Node]) -> Iterator[Node]:
        """As `block`, for a list of nodes (the top level)."""
        for node in nodes:
            condition = node.condition
            if condition is not None and not condition.startswith("^"):
                self.drop_block(
                    node,
                    f"read only by `keepalived -i {condition}`: not converted (the import "
                    "reads the file as keepalived without -i)",
                )
                continue
            if condition is not None:
                self.report(
                    node,
                    f"@{condition}: converted, as keepalived without -i reads it "
                    f"(`keepalived -i {condition[1:]}` would skip it)",
                )
            if node.directive == "include":
                unmatched = self._unmatched.get(node)
                if unmatched is None:
                    self.take(node)
                else:
                    self.report(node, unmatched)
            elif node.directive == "$":
                self.take(node)
            else:
                yield node

    def finish(self) -> tuple[tuple[Reported, ...], tuple[tuple[str, Outcome], ...]]:
        """The reports in source order and each directive's outcome.

        Nodes no handler marked are reported here as not converted.
        """
        outcomes = []
        for node in _walk(self._roots):
            if id(node) not in self._marks:
                self.report(node, _NOT_CONVERTED)
            outcomes.append((node.directive, self._marks[id(node)]))
        ordered = sorted(self._reports, key=lambda item: item[0])
        return tuple(report for _, report in ordered), tuple(outcomes)


def _walk(nodes: Iterable[Node]) -> Iterator[Node]:
    for node in nodes:
        yield from node.walk()


def argument(ledger: Ledger, node: Node, index: int = 0) -> str | None:
    """The `index`-th argument of `node`; reported (and None) when missing."""
    if index < len(node.args):
        return node.args[index]
    ledger.report(node, "has no value: ignored")
    return None


def integer(ledger: Ledger, node: Node, lo: int, hi: int, index: int = 0) -> int | None:
    """An integer argument in [lo, hi]; reported (and None) otherwise."""
    text = argument(ledger, node, index)
    if text is None:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        ledger.report(node, f"'{text}' is not an integer from {lo} to {hi}: ignored")
        return None
    return value


def seconds(ledger: Ledger, node: Node, lo: float = 0.0, index: int = 0) -> float | None:
    """A duration argument in seconds (keepalived takes decimals), at least `lo`."""
    text = argument(ledger, node, index)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < lo:
        ledger.report(node, f"'{text}' is not a number of seconds (at least {lo:g}): ignored")
        return None
    return value


def number(value: float) -> int | float:
    """`value` as an int when it is a whole number (so the YAML reads ``6``, not ``6.0``)."""
    return int(value) if value == int(value) else value


def flag(ledger: Ledger, node: Node) -> bool | None:
    """A keyword that is on when given alone, or with ``true``/``on``/``yes`` (``false``...)."""
    if not node.args:
        return True
    word = node.args[0].lower()
    if word in ("true", "on", "yes"):
        return True
    if word in ("false", "off", "no"):
        return False
    ledger.report(node, f"'{node.args[0]}' is not true or false: ignored")
    return None
