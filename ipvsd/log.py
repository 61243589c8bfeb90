"""structlog configuration, in one place.

Under systemd (stderr is not a TTY, or it is the journal) events are one JSON
object per line, which journald stores verbatim and ``journalctl -o cat``
shows; on a terminal they are rendered for humans. Event names are dotted and
stable (``ipvs.reconcile``, ``vrrp.transition``); context is key-value.

When stderr is the journal, every line starts with its syslog priority as
sd-daemon(3) writes it (``<3>`` error ... ``<7>`` debug): journald strips the
prefix and files the line at that priority (``SyslogLevelPrefix=``, on by
default), so ``journalctl -p warning -u ipvsd`` shows warnings and worse.
Without the prefix every line would be stored at the stream's default
priority, info. stderr *is* the journal when ``JOURNAL_STREAM`` (set by
systemd, systemd.exec(5)) names its device and inode; a child that inherited
the variable with stderr redirected elsewhere writes no prefixes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

#: structlog level -> syslog priority (sd-daemon(3): SD_CRIT ``<2>`` ... SD_DEBUG ``<7>``).
#: Python has no "notice" (5).
SYSLOG_PRIORITIES: Mapping[str, int] = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}


def is_journal(stream: TextIO) -> bool:
    """Whether `stream` is a connection to the journal (``JOURNAL_STREAM`` names it).

    Args:
        stream: the stream the logs go to (normally ``sys.stderr``).

    Returns:
        True if ``JOURNAL_STREAM`` is ``DEVICE:INODE`` of `stream`'s file
        descriptor; False when it is unset, malformed, names another file, or
        `stream` has no file descriptor.
    """
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # io.UnsupportedOperation is both
        return False


class SyslogPrefixRenderer:
    """Wraps a renderer: each line it renders starts with the event's syslog priority."""

    def __init__(self, renderer: structlog.types.Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        level = str(event_dict.get("level", method_name))
        prefix = f"<{SYSLOG_PRIORITIES.get(level, 6)}>"
        text = str(self._renderer(logger, method_name, event_dict))
        return "\n".join(prefix + line for line in text.split("\n"))


def configure(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for the daemon and the CLI.

    Args:
        level: minimum level name (debug, info, warning, error).
        json: force JSON (True) or console (False) output; None = JSON unless
            `stream` is a terminal.
        stream: where events go; default ``sys.stderr``. Lines get syslog
            priority prefixes when it is the journal (`is_journal`).
    """
    stream = sys.stderr if stream is None else stream
    journal = is_journal(stream)
    tty = stream.isatty()
    if json is None:
        json = journal or not tty
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=tty and not journal)
    )
    if journal:
        renderer = SyslogPrefixRenderer(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
