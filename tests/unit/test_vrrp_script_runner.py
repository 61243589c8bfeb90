"""`ipvsd.vrrp.tracking.ScriptRunner` and `ScriptPool` with real short scripts."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
from pathlib import Path

import pytest

from ipvsd.process import run_bounded
from ipvsd.vrrp.tracking import ScriptPool, ScriptRunner, ScriptSpec
from tests.unit.test_process import gone


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, bool | None]] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str, ok: bool | None) -> None:
        self.events.append((name, ok))
        self.changed.set()

    async def next(self) -> tuple[str, bool | None]:
        seen = len(self.events)
        async with asyncio.timeout(3.0):
            while len(self.events) == seen:
                self.changed.clear()
                await self.changed.wait()
        return self.events[-1]


def spec(command: str, **kwargs: object) -> ScriptSpec:
    fields: dict[str, object] = {"interval": 0.05, "timeout": 1.0} | kwargs
    return ScriptSpec(name="chk", command=(command,), **fields)  # type: ignore[arg-type]


async def test_exit_codes_drive_the_state(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("0")
    runner = ScriptRunner(spec(script(tmp_path, "chk", f'exit "$(cat {code})"'), fall=2))
    heard = Heard()
    runner.subscribe(heard)
    assert heard.events == [("chk", None)]  # told the current state at once
    runner.start()
    try:
        assert await heard.next() == ("chk", True)
        code.write_text("1")
        assert await heard.next() == ("chk", False)
        assert runner.last is not None
        assert runner.last.returncode == 1
        code.write_text("0")
        assert await heard.next() == ("chk", True)
    finally:
        await runner.stop()


async def test_a_hung_script_is_killed_at_timeout_with_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The script and a background child both hang; each writes its pid.
    body = f'echo $$ >> {pids}; (echo $(sh -c "echo \\$PPID") >> {pids}; sleep 100) & sleep 100'
    runner = ScriptRunner(spec(script(tmp_path, "hang", body), interval=10.0, timeout=0.3))
    heard = Heard()
    runner.subscribe(heard)
    loop = asyncio.get_running_loop()
    started = loop.time()
    runner.start()
    try:
        assert await heard.next() == ("chk", False)
        assert 0.3 <= loop.time() - started < 2.0
        assert runner.last is not None
        assert runner.last.timed_out
        for pid in {int(line) for line in pids.read_text().split()}:
            assert await gone(pid), f"{pid} outlived the timeout"
    finally:
        await runner.stop()


async def test_the_loop_is_not_blocked_while_a_script_runs(tmp_path: Path) -> None:
    runner = ScriptRunner(spec(script(tmp_path, "slow", "sleep 0.5"), interval=10.0))
    runner.start()
    try:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(0.05)
        assert loop.time() - before < 0.3
    finally:
        await runner.stop()


async def test_stop_kills_a_running_script(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = ScriptRunner(spec(script(tmp_path, "hang", f"echo $$ > {pid_file}; exec sleep 100")))
    runner.start()
    for _ in range(300):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    await runner.stop()
    assert await gone(pid)


async def test_one_script_shared_by_several_instances_runs_once_per_interval(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    pool = ScriptPool()
    await pool.update([spec(script(tmp_path, "count", f"echo x >> {runs}"), interval=0.2)])
    first, second = Heard(), Heard()
    pool.runners["chk"].subscribe(first)
    pool.runners["chk"].subscribe(second)
    try:
        await asyncio.sleep(0.9)
    finally:
        await pool.stop()
    assert 4 <= len(runs.read_text().split()) <= 6  # 0, 0.2, 0.4, 0.6, 0.8
    assert first.events == second.events == [("chk", None), ("chk", True)]


async def test_a_reload_restarts_only_changed_scripts(tmp_path: Path) -> None:
    ok = script(tmp_path, "ok", "exit 0")
    pool = ScriptPool()
    await pool.update([spec(ok), ScriptSpec("other", (ok,), 0.05, 1.0)])
    kept = pool.runners["other"]
    try:
        assert await pool.update([spec(ok, fall=3), ScriptSpec("other", (ok,), 0.05, 1.0)]) == [
            "chk"
        ]
        assert pool.runners["other"] is kept
        assert await pool.update([spec(ok, fall=3)]) == []
        assert set(pool.runners) == {"chk"}
    finally:
        await pool.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")
async def test_user_drops_privileges() -> None:
    nobody = pwd.getpwnam("nobody")
    outcome = await run_bounded(["id", "-u"], timeout_s=5, user="nobody")
    assert outcome.returncode == 0
    assert outcome.output.decode().strip() == str(nobody.pw_uid)
    outcome = await run_bounded(["id", "-G"], timeout_s=5, user="nobody")
    assert "0" not in outcome.output.decode().split()  # root's groups are gone


async def test_an_unknown_user_is_an_error_not_an_exception() -> None:
    outcome = await run_bounded(["true"], timeout_s=5, user="no-such-user-ipvsd")
    assert outcome.returncode is None
    assert outcome.error is not None
