"""Logging for journald: syslog priority prefixes, and fatal errors of `ipvsd run` as events.

journald reads a ``<N>`` prefix at the start of each line of a service's
stderr as the line's syslog priority (sd-daemon(3)), so ``journalctl -p
warning`` filters ipvsd's events once they carry it. A process knows its
stderr is the journal when ``JOURNAL_STREAM`` names the device and inode of
its stderr (systemd.exec(5)); an inherited variable with stderr redirected
elsewhere must not add prefixes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

from ipvsd import log
from ipvsd.cli import main


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """`log.configure` sets structlog's global config: put it back for the other tests."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def journal_env(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextIO]:
    """A stream that JOURNAL_STREAM names, as systemd connects stderr to journald."""
    with (tmp_path / "journal").open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", journal_env(tmp_path / "journal"))
        yield stream


def journal_lines(stream: TextIO) -> list[str]:
    stream.flush()
    return Path(stream.name).read_text().splitlines()


def emit_all_levels() -> None:
    logger = structlog.get_logger("test")
    logger.debug("t.debug")
    logger.info("t.info", n=1)
    logger.warning("t.warning")
    logger.error("t.error")
    logger.critical("t.critical")


def test_each_line_carries_its_syslog_priority_when_stderr_is_the_journal(
    journal: TextIO,
) -> None:
    log.configure(level="debug", stream=journal)
    emit_all_levels()
    lines = journal_lines(journal)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    events = [json.loads(line[3:]) for line in lines]  # JSON after the prefix
    assert [e["event"] for e in events] == [
        "t.debug",
        "t.info",
        "t.warning",
        "t.error",
        "t.critical",
    ]
    assert events[1]["n"] == 1


def log_a_failure() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("t.failed")


def test_a_traceback_stays_on_the_event_s_one_line(journal: TextIO) -> None:
    log.configure(stream=journal)
    log_a_failure()
    (line,) = journal_lines(journal)
    assert line.startswith("<3>{")
    assert "ValueError: boom" in json.loads(line[3:])["exception"]


def test_the_console_renderer_prefixes_every_line_in_the_journal(journal: TextIO) -> None:
    log.configure(json=False, stream=journal)
    log_a_failure()
    lines = journal_lines(journal)
    assert len(lines) > 1
    assert all(line.startswith("<3>") for line in lines)


@pytest.mark.parametrize("variable", [None, "", "1:2", "garbage"])
def test_no_prefix_unless_journal_stream_names_this_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str | None
) -> None:
    """Inherited by a child whose stderr was redirected: the variable names another file."""
    out = tmp_path / "stderr"
    if variable is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", variable)
    with out.open("w") as stream:
        log.configure(stream=stream)
        structlog.get_logger().warning("t.warning")
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["event"] == "t.warning"


def test_a_stream_without_a_file_descriptor_is_not_the_journal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    stream = io.StringIO()
    assert not log.is_journal(stream)
    log.configure(stream=stream)
    structlog.get_logger().info("t.info")
    assert json.loads(stream.getvalue())["event"] == "t.info"


# --- fatal errors of `ipvsd run` ------------------------------------------------------


def run_events(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["run", "--log-format", "json", *argv])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, [json.loads(line) for line in captured.err.splitlines()]


def test_an_unreadable_config_is_one_error_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    code, events = run_events(capsys, "--config", str(missing))
    assert code == 1
    assert [(e["event"], e["level"]) for e in events] == [("daemon.failed", "error")]
    assert events[0]["error"] == f"cannot read {missing}: No such file or directory"


def test_an_invalid_config_is_one_error_event_listing_every_issue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("metrics:\n  listen: 1\nvrrp:\n  bogus: 2\n")
    code, events = run_events(capsys, "--config", str(config))
    assert code == 1
    assert [(e["event"], e["level"]) for e in events] == [("daemon.failed", "error")]
    (event,) = events
    assert event["error"] == f"invalid config {config}: 2 errors"
    assert len(event["issues"]) == 2
    assert all(issue.startswith(f"{config}:") for issue in event["issues"])
    assert any(":4: vrrp.bogus:" in issue for issue in event["issues"])


def test_a_metrics_address_in_use_is_not_called_an_unreadable_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any OSError out of the daemon used to be printed as ``cannot read CONFIG``."""
    from ipvsd import daemon

    async def bind_fails(path: Path, host_lock: object = None, listening: object = None) -> int:
        raise OSError(98, "cannot listen on 127.0.0.1:9477: Address already in use")

    monkeypatch.setattr(daemon, "run", bind_fails)
    config = tmp_path / "ipvsd.yaml"
    config.write_text("{}\n")
    code, events = run_events(capsys, "--config", str(config))
    assert code == 1
    assert [e["event"] for e in events] == ["daemon.failed"]
    assert events[0]["error"] == "cannot listen on 127.0.0.1:9477: Address already in use"


def test_a_bug_ends_the_daemon_with_its_traceback_in_one_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipvsd import daemon

    async def crashes(path: Path, host_lock: object = None, listening: object = None) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [KeyError("vrrp")])

    monkeypatch.setattr(daemon, "run", crashes)
    config = tmp_path / "ipvsd.yaml"
    config.write_text("{}\n")
    code, events = run_events(capsys, "--config", str(config))
    assert code == 1
    assert [(e["event"], e["level"]) for e in events] == [("daemon.crashed", "critical")]
    assert "KeyError: 'vrrp'" in events[0]["exception"]


def ipvsd_in_the_journal(tmp_path: Path, *argv: str) -> tuple[int, str]:
    """``python -m ipvsd ARGV`` with stdout and stderr in a file JOURNAL_STREAM names.

    As systemd runs a unit (StandardOutput=journal, stderr the same stream).
    """
    out = tmp_path / "journal-stream"
    out.touch()
    with out.open("w") as stream:
        done = subprocess.run(
            [sys.executable, "-m", "ipvsd", *argv],
            stdout=stream,
            stderr=stream,
            env={**os.environ, "JOURNAL_STREAM": journal_env(out)},
            timeout=60,
            check=False,
        )
    return done.returncode, out.read_text()


def test_under_the_journal_a_fatal_error_is_a_priority_3_line(tmp_path: Path) -> None:
    """The real process, stderr a file named by JOURNAL_STREAM as systemd does it."""
    status, text = ipvsd_in_the_journal(tmp_path, "run", "--config", str(tmp_path / "none.yaml"))
    assert status == 1
    (line,) = text.splitlines()
    assert line.startswith("<3>{")
    assert json.loads(line[3:])["event"] == "daemon.failed"


def test_check_config_errors_are_priority_3_lines_in_the_journal(tmp_path: Path) -> None:
    """Run from a unit (an ExecStartPre= of the operator's): errors in ``journalctl -p err``."""
    config = tmp_path / "bad.yaml"
    config.write_text("metrics:\n  listen: 1\n")
    status, text = ipvsd_in_the_journal(tmp_path, "check-config", "--config", str(config))
    assert status == 1
    assert text == f"<3>{config}:2: metrics.listen: must be a string, not 1\n"


def test_check_config_output_is_unchanged_outside_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    config = tmp_path / "bad.yaml"
    config.write_text("metrics:\n  listen: 1\n")
    assert main(["check-config", "--config", str(config)]) == 1
    assert capsys.readouterr().out == f"{config}:2: metrics.listen: must be a string, not 1\n"
