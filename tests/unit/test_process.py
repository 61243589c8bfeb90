"""`ipvsd.process.run_bounded`: commands that exit, hang or leave children behind.

Real ``sh`` processes; each test kills what it may have left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipvsd.process import run_bounded

# A grandchild that writes its own pid to "$1", then lives on; the command
# waits for the file, so the grandchild is surely running when it exits.
SPAWN = 'sh -c \'echo $$ > "$0"; exec sleep 100\' "$1" & until [ -s "$1" ]; do sleep 0.01; done;'


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def exists(pid: int) -> bool:
    """A /proc entry, even a zombie's."""
    return Path(f"/proc/{pid}").exists()


async def gone(pid: int) -> bool:
    for _ in range(100):  # SIGKILL lands asynchronously: give it a second
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


@contextlib.contextmanager
def grandchild_of(pid_file: Path) -> Iterator[Callable[[], int]]:
    """Yields a function reading the grandchild's pid; kills it at the end."""
    pids: list[int] = []

    def read() -> int:
        pids.append(int(pid_file.read_text()))
        return pids[-1]

    try:
        yield read
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_kill_group_on_exit_takes_the_background_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with grandchild_of(pid_file) as grandchild:
        outcome = await run_bounded(
            ["sh", "-c", f"{SPAWN} echo done", "sh", str(pid_file)],
            timeout_s=5,
            kill_group_on_exit=True,
        )
        assert (outcome.returncode, outcome.output) == (0, b"done\n")
        assert await gone(grandchild())
        assert outcome.duration_s < 1.0  # the pipe it held closed with it


async def test_by_default_a_clean_exit_leaves_its_children_be(tmp_path: Path) -> None:
    # Notify hooks may start a daemon; they keep today's behaviour.
    pid_file = tmp_path / "pid"
    with grandchild_of(pid_file) as grandchild:
        outcome = await run_bounded(
            ["sh", "-c", f"{SPAWN} exit 0", "sh", str(pid_file)], timeout_s=5, drain_s=0.1
        )
        assert outcome.returncode == 0
        pid = grandchild()
        await asyncio.sleep(0.1)
        assert alive(pid)


@pytest.mark.parametrize("kill_group_on_exit", [False, True])
async def test_a_timeout_always_takes_the_grandchild(
    tmp_path: Path, kill_group_on_exit: bool
) -> None:
    pid_file = tmp_path / "pid"
    with grandchild_of(pid_file) as grandchild:
        outcome = await run_bounded(
            ["sh", "-c", f"{SPAWN} sleep 100", "sh", str(pid_file)],
            timeout_s=0.5,
            kill_group_on_exit=kill_group_on_exit,
        )
        assert outcome.timed_out
        assert outcome.returncode is None
        assert await gone(grandchild())


async def test_the_command_is_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    outcome = await run_bounded(
        ["sh", "-c", 'echo $$ > "$1"', "sh", str(pid_file)], timeout_s=5, kill_group_on_exit=True
    )
    assert outcome.returncode == 0
    assert not alive(int(pid_file.read_text()))
    assert not exists(int(pid_file.read_text()))  # not even a zombie


async def test_exit_status_and_signal_are_reported() -> None:
    assert (await run_bounded(["sh", "-c", "exit 7"], timeout_s=5)).returncode == 7
    killed = await run_bounded(["sh", "-c", "kill -TERM $$"], timeout_s=5, kill_group_on_exit=True)
    assert killed.returncode == -signal.SIGTERM


async def test_a_missing_command_is_a_value() -> None:
    outcome = await run_bounded(["ipvsd-no-such-command"], timeout_s=5)
    assert isinstance(outcome.error, FileNotFoundError)
    assert outcome.returncode is None


async def test_without_a_pidfd_the_exit_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(pid: int, flags: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")  # a seccomp sandbox

    monkeypatch.setattr(os, "pidfd_open", refused)
    pid_file = tmp_path / "pid"
    with grandchild_of(pid_file) as grandchild:
        outcome = await run_bounded(
            ["sh", "-c", f"{SPAWN} exit 0", "sh", str(pid_file)],
            timeout_s=5,
            kill_group_on_exit=True,
        )
        assert outcome.returncode == 0
        assert await gone(grandchild())
