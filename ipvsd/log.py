"""structlog configuration, in one place.

Under systemd (stderr is not a TTY, or JOURNAL_STREAM is set) events are one
JSON object per line, which journald stores verbatim and `journalctl -o cat`
shows; on a terminal they are rendered for humans. Event names are dotted and
stable (``ipvs.reconcile``, ``vrrp.transition``); context is key-value.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog for the daemon and the CLI.

    Args:
        level: minimum level name (debug, info, warning, error).
        json: force JSON (True) or console (False) output; None = decide from stderr.
    """
    if json is None:
        json = bool(os.environ.get("JOURNAL_STREAM")) or not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
