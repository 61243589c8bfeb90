"""keepalived.conf text → a tree of directives. Pure: text in, nodes out.

Theory of operation
-------------------
keepalived reads its configuration line by line (lib/parser.c, 2.2) and this
module follows the same rules, so that a file keepalived accepts reads the
same here:

1. A line ending in ``\\`` continues on the next one.
2. ``!`` or ``#`` outside double quotes starts a comment, wherever it stands
   on the line (``\\!`` and ``\\#`` are the characters themselves).
3. A line ``$NAME=value`` defines a variable; ``$NAME`` and ``${NAME}`` later
   on are replaced by its value (an undefined name is left as written). The
   definition stays in the tree as a node ``$ NAME value``, so that the
   converter counts it.
4. A line starting ``@NAME`` is read only when keepalived runs as instance
   NAME (``keepalived -i NAME``), ``@^NAME`` only when it does not. The
   condition is kept on the node (`Node.condition`); the converter decides,
   since this module knows no instance name.
5. Words are separated by blanks; ``"..."`` is one word without its quotes
   (single quotes are ordinary characters, as for keepalived, whose script
   keywords split them later); ``{`` and ``}`` outside quotes are words of
   their own, wherever they stand.
6. A directive is the words of one line up to a brace. A ``{`` right after it,
   on the same line or on a following one, opens its block; ``}`` closes the
   innermost block, and words after a brace on the same line start the next
   directive (``virtual_ipaddress { 192.168.1.200 }`` is a block with one
   child).

``include`` directives stay in the tree as ordinary nodes: expanding them
reads files, which is the caller's job (`ipvsd.importers.sources`). An
unbalanced brace or quote is a `SourceError` at its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ipvsd.importers.report import SourceError

__all__ = ["Node", "parse"]

_DEFINITION = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACES = "{}"
_CONDITION = re.compile(r"@(\S+)\s*(.*)")


@dataclass(frozen=True, slots=True)
class Node:
    """One directive of a keepalived configuration.

    Attributes:
        directive: its first word (``virtual_server``, ``weight``, an address
            inside ``virtual_ipaddress``...).
        args: the words after it, quotes removed.
        file: the file it is written in.
        line: its 1-based line there.
        children: the directives of its block; None when it has none.
        condition: ``NAME`` (read only by ``keepalived -i NAME``), ``^NAME``
            (only without it), or None.
    """

    directive: str
    args: tuple[str, ...]
    file: str
    line: int
    children: tuple[Node, ...] | None = None
    condition: str | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """The directive and its arguments."""
        return (self.directive, *self.args)

    def walk(self) -> Iterator[Node]:
        """This node, then every node of its block, depth first."""
        yield self
        for child in self.children or ():
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    line: int
    condition: str | None
    brace: bool  # an unquoted { or }


@dataclass(slots=True)
class _Open:
    """A directive being read; its children once its block opened."""

    words: list[str]
    line: int
    condition: str | None
    children: list[_Open] | None = None
    block_line: int = 0


def parse(text: str, file: str) -> tuple[Node, ...]:
    """The top-level directives of one keepalived configuration file.

    Args:
        text: the file's contents.
        file: its name, recorded on every node (and in errors).

    Returns:
        The directives in file order, each with its block.

    Raises:
        SourceError: an unterminated quote, a ``{`` without a directive, a
            ``}`` without a block, or a block never closed.
    """
    return _build(_tokens(text, file), file)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each line, continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(raw)
        yield start, " ".join(pending)
        pending = []
    if pending:
        yield start, " ".join(pending)


def _tokens(text: str, file: str) -> Iterator[_Token]:
    definitions: dict[str, str] = {}
    for line, raw in _logical_lines(text):
        content = raw.strip()
        condition = None
        conditional = _CONDITION.fullmatch(content)
        if conditional is not None:
            condition, content = conditional.group(1), conditional.group(2)
        content = _decomment(content, file, line).strip()
        if not content:
            continue
        definition = _DEFINITION.fullmatch(content)
        if definition is not None:
            name, value = definition.group(1), definition.group(2).strip()
            if value.startswith("{"):
                raise SourceError(file, line, "multi-line $ definitions are not supported")
            # Applied as keepalived without -i does: @NAME lines skipped, @^NAME ones read.
            if condition is None or condition.startswith("^"):
                definitions[name] = value
            # The converter sees it as a "$" directive (to count it, or report its condition).
            yield _Token("$", line, condition, False)
            yield _Token(name, line, condition, False)
            yield _Token(value, line, condition, False)
            continue
        content = _REFERENCE.sub(lambda m: _expand(m, definitions), content)
        for word, brace in _split(content, file, line):
            yield _Token(word, line, condition, brace)


def _expand(match: re.Match[str], definitions: dict[str, str]) -> str:
    name = match.group(1) or match.group(2)
    return definitions.get(name, match.group(0))


def _decomment(text: str, file: str, line: int) -> str:
    """`text` without its comment; ``\\!`` / ``\\#`` outside quotes become ``!`` / ``#``."""
    out: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif char == "\\" and not quoted and text[index + 1 : index + 2] in ("!", "#"):
            index += 1
            char = text[index]
        elif char in "!#" and not quoted:
            break
        out.append(char)
        index += 1
    if quoted:
        raise SourceError(file, line, "unterminated quote")
    return "".join(out)


def _split(text: str, file: str, line: int) -> Iterator[tuple[str, bool]]:
    """Words of a decommented line: (word, is an unquoted brace)."""
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char == '"':
            end = text.find('"', index + 1)
            if end < 0:  # _decomment counted the quotes already
                raise SourceError(file, line, "unterminated quote")
            yield text[index + 1 : end], False
            index = end + 1
        elif char in _BRACES:
            yield char, True
            index += 1
        else:
            end = index
            while end < len(text) and not text[end].isspace() and text[end] not in '"{}':
                end += 1
            yield text[index:end], False
            index = end


def _build(tokens: Iterator[_Token], file: str) -> tuple[Node, ...]:
    root = _Open([], 0, None, children=[])
    stack = [root]
    current: _Open | None = None  # the directive whose words are being read
    for token in tokens:
        if current is not None and (token.brace or token.line != current.line):
            current = None
        if not token.brace:
            if current is None:
                current = _Open([], token.line, token.condition)
                _children(stack[-1]).append(current)
            current.words.append(token.text)
        elif token.text == "{":
            siblings = _children(stack[-1])
            last = siblings[-1] if siblings else None
            if last is None or last.children is not None:
                raise SourceError(file, token.line, "'{' without a directive before it")
            last.children = []
            last.block_line = token.line
            stack.append(last)
        else:
            if len(stack) == 1:
                raise SourceError(file, token.line, "'}' without an open block")
            stack.pop()
    if len(stack) > 1:
        unclosed = stack[-1]
        raise SourceError(
            file,
            unclosed.block_line,
            f"the block of '{unclosed.words[0]}' (line {unclosed.line}) is never closed",
        )
    return tuple(_freeze(item, file) for item in _children(root))


def _children(item: _Open) -> list[_Open]:
    assert item.children is not None
    return item.children


def _freeze(item: _Open, file: str) -> Node:
    children = None
    if item.children is not None:
        children = tuple(_freeze(child, file) for child in item.children)
    return Node(item.words[0], tuple(item.words[1:]), file, item.line, children, item.condition)
