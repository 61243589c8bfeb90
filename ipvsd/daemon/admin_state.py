"""Durable admin state: the operator's drains, kept across restarts in ``state_dir``.

Theory of operation
===================

``ipvsd drain`` is an operator's decision, so a crash, a ``Restart=on-failure``
or an upgrade must not undo it. `DrainStore` keeps the set of drained reals in
one small JSON file, ``STATE_DIR/drains.json``:

.. code-block:: json

    {"version": 1,
     "drains": [{"service": "192.168.1.200:80", "real": "192.168.1.30:80"},
                {"service": "fwmark:7/ipv6", "real": "[2001:db8::7]:0"}]}

Services and reals are written in the command line's syntax (``str()`` of
`ServiceKey` / `DestKey`, read back with `parse_service_spec` /
`parse_endpoint`), so the file reads like the ``ipvsd drain`` commands that
made it. ``version`` changes when the format does; a file with another
version is not guessed at.

Rule 1 (atomic). `save` writes a temporary file in the same directory,
fsyncs it, renames it over ``drains.json`` and fsyncs the directory: after a
crash at any point the file is the old set or the new one, never a mix.

Rule 2 (memory follows the disk). The daemon saves the new set *before* it
changes its drains in memory; a save that fails (disk full, read-only file
system) raises `AdminStateError` and the request fails with nothing changed,
so the operator never believes in a drain the next start would forget.

Rule 3 (a bad file never stops a start). `load` reports a file it cannot
read or parse (``state.drains_unreadable``: path and reason), renames it to
``drains.json.corrupt`` for a human to look at, and starts with no drains:
the director serves with every real, as it would on a first start, instead
of not serving at all.

The I/O is synchronous (a few milliseconds, on an operator's request), so
drain and undrain stay plain calls of the control socket's view.
"""

from __future__ import annotations

import json
from collections.abc import Set
from pathlib import Path
from typing import Any

import structlog

from ipvsd.errors import IpvsdError
from ipvsd.files import write_atomically
from ipvsd.model import DestKey, RealId, parse_endpoint, parse_service_spec

log = structlog.get_logger("ipvsd.daemon")

#: Version of the drains file's format (the ``version`` key).
FORMAT_VERSION = 1
#: The drains file, in the state directory.
DRAINS_FILE = "drains.json"
#: The file that exists while the whole director is drained (`DirectorDrainFile`).
DIRECTOR_DRAINED_FILE = "director-drained"
#: Suffix of a drains file that could not be read, kept aside for a human.
CORRUPT_SUFFIX = ".corrupt"


class AdminStateError(IpvsdError):
    """The admin state could not be written (the change it carried was not made)."""


class DrainStore:
    """The drained reals, on disk in `directory` (Rules 1-3 of the module docstring).

    Args:
        directory: the state directory (``state_dir``); created on the first save.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DRAINS_FILE
        """The drains file."""

    def load(self) -> set[RealId]:
        """The drains the last run kept; empty when there is no file or a bad one.

        Never raises: a file that cannot be read or parsed is logged, renamed to
        ``drains.json.corrupt`` and ignored (Rule 3).
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        except (OSError, UnicodeDecodeError) as exc:
            self._set_aside(_reason(exc))
            return set()
        try:
            return decode(text)
        except ValueError as exc:
            self._set_aside(str(exc))
            return set()

    def save(self, drained: Set[RealId]) -> None:
        """Replace the file's drains with `drained`, atomically (Rule 1).

        Raises:
            AdminStateError: the file could not be written; the old one is intact.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # 0600, as before: who drained what is the operator's business.
            write_atomically(self.path, encode(drained), mode=0o600)
        except OSError as exc:
            raise AdminStateError(f"cannot write {self.path}: {_reason(exc)}") from exc

    def _set_aside(self, reason: str) -> None:
        aside = self.path.with_name(self.path.name + CORRUPT_SUFFIX)
        try:
            self.path.replace(aside)
        except OSError as exc:
            log.error("state.drains_unreadable", path=str(self.path), reason=reason,
                      kept_aside=None, rename_error=_reason(exc))  # fmt: skip
            return
        log.error("state.drains_unreadable", path=str(self.path), reason=reason,
                  kept_aside=str(aside))  # fmt: skip


class DirectorDrainFile:
    """The whole director drained (``ipvsd drain --all``: BGP withdraws every VIP), on disk.

    The file ``STATE_DIR/director-drained`` exists while the director is
    drained; written atomically before memory changes (Rules 1 and 2). One
    that cannot be read counts as drained: a director an operator took out
    must not come back by accident.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / DIRECTOR_DRAINED_FILE

    def load(self) -> bool:
        try:
            return self.path.exists()
        except OSError:
            return True

    def save(self, drained: bool) -> None:
        """Keep `drained`; raises `AdminStateError` with nothing changed if it cannot."""
        try:
            if drained:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(self.path, "drained by ipvsd drain --all\n", mode=0o600)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AdminStateError(f"cannot write {self.path}: {_reason(exc)}") from exc


def encode(drained: Set[RealId]) -> str:
    """The drains file's text for `drained` (sorted, so equal sets give equal files)."""
    entries = sorted(
        ({"service": str(service), "real": str(real)} for service, real in drained),
        key=lambda entry: (entry["service"], entry["real"]),
    )
    return json.dumps({"version": FORMAT_VERSION, "drains": entries}, indent=1) + "\n"


def decode(text: str) -> set[RealId]:
    """The drains in a drains file's text.

    Raises:
        ValueError: the text is not a drains file of `FORMAT_VERSION` (the
            message says what is wrong, and where).
    """
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    version = document.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"version {version!r}, expected {FORMAT_VERSION}")
    entries = document.get("drains")
    if not isinstance(entries, list):
        raise ValueError('"drains" is not a list')
    drained: set[RealId] = set()
    for index, entry in enumerate(entries):
        try:
            drained.add(_decode_entry(entry))
        except ValueError as exc:
            raise ValueError(f"drains[{index}]: {exc}") from None
    return drained


def _decode_entry(entry: object) -> RealId:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    service, real = entry.get("service"), entry.get("real")
    if not isinstance(service, str) or not isinstance(real, str):
        raise ValueError('"service" and "real" must be strings')
    return parse_service_spec(service), DestKey(*parse_endpoint(real))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
