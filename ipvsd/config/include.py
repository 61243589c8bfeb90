"""Top-level ``include: [GLOB, ...]``: configuration fragments merged into the main file.

Theory of operation
-------------------
A director's config often grows one file per service or per VRRP instance
(``/etc/ipvsd/conf.d/*.yaml``, written by configuration management). The
main file lists glob patterns; each fragment that matches holds list items
only, and they are appended, in order, to the main file's lists:

- ``vrrp.instances``, ``vrrp.scripts``, ``vrrp.sync_groups``,
  ``ipvs.services`` and ``ipvs.service_groups``: nothing else. Settings of the daemon (node name,
  sockets, timeouts...) stay in the main file, where one reads them, and a
  fragment cannot change them behind its back.
- A fragment does not include further (``include`` in a fragment is an
  error): one level keeps the order of the merged items obvious, and no
  include can loop.
- Patterns are expanded in the order written, the matches of one pattern in
  sorted order (``10-web.yaml`` before ``20-dns.yaml``); a file matched
  twice is read once. A relative pattern is relative to the directory of the
  main file. A pattern without wildcards names a file that must exist; a
  glob may match nothing (an empty ``conf.d`` is fine).
- Every issue in a fragment is reported at its own file and line, with its
  own field path (``vrrp.instances.0.priority`` of that file); a duplicate
  across files names both places (`ipvsd.config.checks`).

`merge` is pure: the files are read by a `Resolver` (`filesystem`, which
`ipvsd.config.load_config` passes), so a reload reads the fragments again.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ipvsd.config.yaml_lines import FieldPath, Lines, dotted
from ipvsd.errors import ConfigIssue

__all__ = [
    "MERGED",
    "Fragment",
    "Part",
    "Resolver",
    "SourcedLines",
    "expand",
    "filesystem",
    "merge",
]

MERGED: tuple[FieldPath, ...] = (
    ("vrrp", "instances"),
    ("vrrp", "scripts"),
    ("vrrp", "sync_groups"),
    ("ipvs", "services"),
    ("ipvs", "service_groups"),
)
"""The lists a fragment may add items to."""
_ALLOWED = ", ".join(dotted(path) for path in MERGED)


@dataclass(frozen=True, slots=True)
class Fragment:
    """One file an ``include`` pattern names: its text, or why it could not be read."""

    name: str
    text: str | None
    error: str | None = None


Resolver = Callable[[str], list[Fragment]]
"""An ``include`` pattern → the fragments it names, in order."""


def filesystem(base: Path) -> Resolver:
    """A `Resolver` over the file system, relative patterns resolved against `base`."""

    def resolve(pattern: str) -> list[Fragment]:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        names = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        return [_read(name) for name in names]

    return resolve


def expand(patterns: Sequence[str], resolve: Resolver) -> Iterator[tuple[int, Fragment]]:
    """Each fragment the patterns name, once, with the index of the first pattern naming it."""
    seen: set[str] = set()
    for index, pattern in enumerate(patterns):
        for fragment in resolve(pattern):
            if fragment.name not in seen:
                seen.add(fragment.name)
                yield index, fragment


def _read(name: str) -> Fragment:
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        return Fragment(name, None, f"cannot read {name}: {exc.strerror or exc}")
    try:
        return Fragment(name, raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Fragment(name, None, f"{name} is not valid UTF-8")


@dataclass(frozen=True, slots=True)
class Part:
    """A read fragment: its data and where each of its fields is written."""

    name: str
    data: object
    lines: Lines | None


@dataclass(slots=True)
class SourcedLines:
    """`Lines` of a merged config: a merged item's fields are in its fragment.

    `origins` maps a merged item's path (``("vrrp", "instances", 3)``) to its
    fragment's name, lines and own path (``("vrrp", "instances", 0)``).
    """

    main: Lines
    origins: dict[FieldPath, tuple[str, Lines, FieldPath]] = field(default_factory=dict)

    def _origin(self, path: Sequence[str | int]) -> tuple[str, Lines, FieldPath] | None:
        return self.origins.get(tuple(path[:3])) if len(path) >= 3 else None

    def line(self, path: Sequence[str | int]) -> int:
        origin = self._origin(path)
        if origin is None:
            return self.main.line(path)
        _, lines, own = origin
        return lines.line((*own, *path[3:]))

    def source(self, path: Sequence[str | int]) -> tuple[str, FieldPath] | None:
        """The fragment `path` is written in, and its path there; None: the main file."""
        origin = self._origin(path)
        if origin is None:
            return None
        name, _, own = origin
        return name, (*own, *tuple(path[3:]))


def merge(
    data: dict[str, object],
    fragments: Sequence[Part],
    issues: list[ConfigIssue],
    lines: SourcedLines | None = None,
) -> dict[str, object]:
    """`data` with the fragments' list items appended; what a fragment may not hold is
    added to `issues` (and left out).

    Args:
        data: the main file's data.
        fragments: the fragments read, in include order.
        issues: where problems go.
        lines: filled with each merged item's origin, when lines are tracked.

    Returns:
        The merged data (`data` itself is not changed).
    """
    merged = dict(data)
    for part in fragments:
        if part.data is None:
            continue  # an empty file adds nothing
        if not isinstance(part.data, dict):
            issues.append(_issue(part, (), "an included file must be a mapping (vrrp:, ipvs:)"))
            continue
        for key, value in part.data.items():
            section = merged.get(key)
            if key not in ("vrrp", "ipvs"):
                issues.append(_issue(part, (key,), _not_here(key)))
            elif not isinstance(value, dict):
                issues.append(_issue(part, (key,), "must be a mapping"))
            elif section is None or isinstance(section, dict):
                merged[key] = _merge_section(key, section or {}, value, part, issues, lines)
            # else: the main file's own error is reported there
    return merged


def _merge_section(
    key: str,
    section: Mapping[str, object],
    value: Mapping[str, object],
    part: Part,
    issues: list[ConfigIssue],
    lines: SourcedLines | None,
) -> dict[str, object]:
    result = dict(section)
    for name, items in value.items():
        path = (key, name)
        if path not in MERGED:
            issues.append(_issue(part, path, _not_here(dotted(path))))
            continue
        if not isinstance(items, tuple):
            issues.append(_issue(part, path, "must be a list"))
            continue
        before = result.get(name, ())
        if not isinstance(before, tuple):
            continue  # the main file's own error is reported there
        if lines is not None and part.lines is not None:
            for index in range(len(items)):
                lines.origins[(key, name, len(before) + index)] = (
                    part.name,
                    part.lines,
                    (key, name, index),
                )
        result[name] = before + items
    return result


def _not_here(key: str) -> str:
    if key == "include":
        return "an included file cannot include further (list every pattern in the main file)"
    return f"not allowed in an included file (only {_ALLOWED}; the rest is the main file's)"


def _issue(part: Part, path: FieldPath, message: str) -> ConfigIssue:
    line = part.lines.line(path) if part.lines is not None else 0
    return ConfigIssue(part.name, line, dotted(path), message)
