"""Plain config data → readable YAML text, with comments. Pure.

PyYAML writes correct YAML but no comments, and its block style spreads a
real server over three lines. The layout here follows ``etc/ipvsd.yaml``:
sections and services in block style, short flat items (a real, a tracked
interface) as one flow mapping per line, lists of scalars as flow lists
(wrapped when long), and a comment where the importer explains a value.
Every scalar is still rendered by PyYAML (`_flow_scalar`), so quoting is
always right (``"80"`` stays a string, ``yes`` stays a string, ``a,b`` in a
flow list is quoted).

Key order is the order of the data: importers build their mappings in the
order of the model's fields, so the output is stable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ipvsd.importers.report import FieldPath

WIDTH = 100
"""Longest line written when a choice exists (flow items, trailing comments)."""
_COMMENT_WIDTH = 79


def to_yaml(
    data: Mapping[str, Any],
    *,
    header: Sequence[str] = (),
    comments: Mapping[FieldPath, str] | None = None,
) -> str:
    """Render `data` as YAML.

    Args:
        data: plain data: dicts with string keys, lists, str, int, float,
            bool, None.
        header: comment lines put first (without the ``#``).
        comments: a note per field path; written after the value when the
            line stays short, else on the lines above it.

    Returns:
        The YAML text, ending with a newline.
    """
    out: list[str] = [f"# {line}".rstrip() for line in header]
    if header:
        out.append("")
    _block(data, (), 0, out, comments or {})
    return "\n".join(out) + "\n"


def _block(
    value: Mapping[str, Any] | Sequence[Any],
    path: FieldPath,
    indent: int,
    out: list[str],
    notes: Mapping[FieldPath, str],
) -> None:
    """A mapping (``key: value`` lines) or a sequence (``- item`` lines) in block style."""
    pad = " " * indent
    is_mapping = isinstance(value, Mapping)
    entries = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in entries:
        where = (*path, key)
        lead = f"{pad}{key}:" if is_mapping else f"{pad}-"
        inline = _inline(item, where, notes, pad)
        if inline is not None:
            _line(f"{lead} {inline}", pad, notes.get(where), out)
            continue
        _above(pad, notes.get(where), out)
        if is_mapping or not isinstance(item, Mapping):
            out.append(lead)
            _block(item, where, indent + 2, out, notes)
            continue
        # A mapping in a sequence: its first key goes on the dash's line ("- name: VI_1").
        start = len(out)
        _block(item, where, indent + 2, out, notes)
        first = next(i for i in range(start, len(out)) if not out[i].lstrip().startswith("#"))
        out[first] = f"{pad}- {out[first][indent + 2 :]}"


def _inline(value: Any, where: FieldPath, notes: Mapping[FieldPath, str], pad: str) -> str | None:
    """`value` after its key or dash (a scalar, a flow list or a short flat mapping), or None.

    `pad` is the indentation of the key or dash: a wrapped flow list goes on
    deeper, as YAML requires of a flow collection's continuation lines.
    """
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        if any(isinstance(v, Mapping | list | tuple) for v in value.values()):
            return None
        if any((*where, key) in notes for key in value):
            return None  # its fields have notes: one per line
        text = "{" + ", ".join(f"{k}: {_flow_scalar(v)}" for k, v in value.items()) + "}"
        return text if len(text) <= WIDTH - 10 else None
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping | list | tuple) for item in value):
            return None if value else "[]"
        return _flow_list(value, pad + "    ")
    return _flow_scalar(value)


def _flow_list(items: Sequence[Any], continuation: str) -> str:
    """``[a, b, ...]``; when long, continued on lines starting with `continuation`."""
    rendered = [_flow_scalar(item) for item in items]
    text = "[" + ", ".join(rendered) + "]"
    if len(text) <= WIDTH - 30:
        return text
    lines = textwrap.wrap(", ".join(rendered), width=WIDTH - 30, break_long_words=False)
    return "[" + f"\n{continuation}".join(lines) + "]"


def _flow_scalar(value: Any) -> str:
    """`value` as PyYAML writes it inside a flow sequence (safe in block context too)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=2**16)
    return text.strip()[1:-1]


def _line(text: str, pad: str, note: str | None, out: list[str]) -> None:
    if note is None:
        out.append(text)
    elif "\n" not in text and len(text) + 3 + len(note) <= WIDTH:
        out.append(f"{text}  # {note}")
    else:
        _above(pad, note, out)
        out.append(text)


def _above(pad: str, note: str | None, out: list[str]) -> None:
    if note is not None:
        width = max(_COMMENT_WIDTH - len(pad) - 2, 40)
        out.extend(f"{pad}# {line}" for line in textwrap.wrap(note, width))
