"""What an importer returns: the config it made, and what it could not carry over.

An importer never drops a directive silently: each one it reads is either
converted or reported, one `Reported` line per directive that ipvsd does not
support or whose meaning changes on the way, printed as
``FILE:LINE: directive: what happens instead``. A file that cannot be read
at all is a `SourceError` (``FILE:LINE: message``), and nothing is converted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipvsd.errors import ConfigIssue, IpvsdError

FieldPath = tuple[str | int, ...]
"""Where a value sits in the config: ``("ipvs", "services", 0, "on_failure")``."""


def ordered(data: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """`data` in the order of `model`'s fields (a config model class): stable output,
    in the order of the docs."""
    fields = list(model.model_fields)
    return {key: data[key] for key in sorted(data, key=fields.index)}


class SourceError(IpvsdError):
    """A source file that cannot be read or parsed: nothing is converted."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line}: {message}")


Reported = ConfigIssue
"""A directive that is not supported, or whose meaning changes in ipvsd.

The same record as a config error, printed the same way: ``FILE:LINE:
directive: message`` (``path``: the file it is written in, ``line``: its
1-based line, ``field``: the keyword (``smtp_server``) or option (``-M``)
concerned, ``message``: what happens instead).
"""


class Outcome(enum.Enum):
    """What became of one directive of the source."""

    CONVERTED = "converted"  # carried over with its meaning
    REPORTED = "reported"  # a `Reported` line says what happens instead
    DROPPED = "dropped"  # inside a block that was reported as a whole


@dataclass(frozen=True, slots=True)
class Conversion:
    """An importer's result.

    Attributes:
        data: the ipvsd configuration as plain YAML data (dicts, lists,
            scalars), keys in the order they are written.
        comments: notes for the YAML, by the path of the value they explain.
        reports: one per directive not supported or changed, in source order.
        outcomes: (directive, outcome) of every directive read, in source order
            (for surveys: how much of a configuration converts).
    """

    data: dict[str, Any]
    comments: Mapping[FieldPath, str]
    reports: tuple[Reported, ...]
    outcomes: tuple[tuple[str, Outcome], ...]


class Notes:
    """Comments for the YAML, attached to the objects of the data while it is built.

    Paths are only known once the data is final (`settle` may still drop
    objects and shift list positions), so a note is kept by object and key
    and `paths` finds where each object ended up.
    """

    def __init__(self) -> None:
        self._notes: dict[tuple[int, str | None], str] = {}
        self._alive: list[object] = []  # ids stay unique while the notes live

    def add(self, obj: dict[str, Any], key: str | None, text: str) -> None:
        """A note on ``obj[key]`` (on `obj` itself when `key` is None)."""
        self._notes[(id(obj), key)] = text
        self._alive.append(obj)

    def copy(self, original: object, duplicate: object) -> None:
        """Give `duplicate` (a deep copy of `original`) the same notes, all the way down."""
        if isinstance(original, dict) and isinstance(duplicate, dict):
            for (owner, key), text in list(self._notes.items()):
                if owner == id(original):
                    self.add(duplicate, key, text)
            for key, value in original.items():
                self.copy(value, duplicate.get(key))
        elif isinstance(original, list) and isinstance(duplicate, list):
            for value, copied in zip(original, duplicate, strict=False):
                self.copy(value, copied)

    def paths(self, data: Mapping[str, Any]) -> dict[FieldPath, str]:
        """The notes by field path in `data`; notes on objects no longer in it are left out."""
        found: dict[FieldPath, str] = {}
        self._visit(data, (), found)
        return found

    def _visit(self, value: object, path: FieldPath, found: dict[FieldPath, str]) -> None:
        if isinstance(value, dict):
            note = self._notes.get((id(value), None))
            if note is not None:
                found[path] = note
            for key, item in value.items():
                note = self._notes.get((id(value), key))
                if note is not None:
                    found[(*path, key)] = note
                self._visit(item, (*path, key), found)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._visit(item, (*path, index), found)
