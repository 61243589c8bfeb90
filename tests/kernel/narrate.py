"""Show measured numbers (failover gaps) in the kernel tier's output, even without ``-s``."""

from __future__ import annotations

import pytest


def say(request: pytest.FixtureRequest, line: str) -> None:
    """Write `line` on the terminal now, past pytest's output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line)
