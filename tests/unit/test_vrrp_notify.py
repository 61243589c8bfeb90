"""Notify calls of one instance: in order, one at a time, never blocking, STOP last
(issue #11, item 8)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from ipvsd.config.model import SyncGroupConfig, VirtualAddress, VrrpInstanceConfig
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.notify import NotifyQueue, NotifyResult, notify_argvs, run_notify
from ipvsd.vrrp.pacer import DirectPacer
from ipvsd.vrrp.router import VrrpRouter
from tests.fakes.vrrp_io import FakeHost, FakeWire
from tests.unit.test_health_checks import gone


@dataclass(frozen=True)
class Programs:
    """`NotifySettings` without a config model."""

    notify: str | None = "/x"
    notify_master: tuple[str, ...] | None = None
    notify_backup: tuple[str, ...] | None = None
    notify_fault: tuple[str, ...] | None = None
    notify_stop: tuple[str, ...] | None = None


X = Programs()


class Recorder:
    """A stand-in for run_argv: each call takes `delays[state]` seconds."""

    def __init__(self, delays: dict[str, float] | None = None) -> None:
        self.delays = delays or {}
        self.calls: list[tuple[str, str, str]] = []
        self.argvs: list[tuple[str, ...]] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(
        self, argv: tuple[str, ...], kind: str, name: str, state: str
    ) -> NotifyResult:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delays.get(state, 0))
            self.calls.append((name, state, argv[-1]))
            self.argvs.append(argv)
        finally:
            self.running -= 1
        return NotifyResult(argv, 0, 0.0)


async def test_calls_run_in_order_one_at_a_time_and_put_never_waits() -> None:
    recorder = Recorder({"BACKUP": 0.05})
    queue = NotifyQueue("VI_1", runner=recorder)
    started = time.monotonic()
    queue.put(X, "BACKUP", 100)
    queue.put(X, "MASTER", 100)
    queue.put(X, "FAULT", 100)
    queue.put(X, "STOP", 100)
    assert time.monotonic() - started < 0.01
    await queue.close(timeout=2)
    assert [state for _, state, _ in recorder.calls] == ["BACKUP", "MASTER", "FAULT", "STOP"]
    assert recorder.most_at_once == 1


async def test_a_failing_call_does_not_stop_the_next() -> None:
    calls: list[str] = []

    async def runner(argv: tuple[str, ...], kind: str, name: str, state: str) -> NotifyResult:
        calls.append(state)
        if state == "MASTER":
            raise RuntimeError("bug")
        return NotifyResult(argv, 0, 0.0)

    queue = NotifyQueue("VI_1", runner=runner)
    queue.put(X, "MASTER", 100)
    queue.put(X, "STOP", 100)
    await queue.close(timeout=1)
    assert calls == ["MASTER", "STOP"]


async def test_close_is_bounded_by_its_timeout() -> None:
    queue = NotifyQueue("VI_1", runner=Recorder({"MASTER": 60}))
    queue.put(X, "MASTER", 100)
    started = time.monotonic()
    await queue.close(timeout=0.1)
    assert time.monotonic() - started < 1


async def test_init_is_not_a_notify_state() -> None:
    queue = NotifyQueue("VI_1")
    with pytest.raises(ValueError, match="INIT"):
        queue.put(X, "INIT", 100)


def recording_hook(tmp_path: Path) -> tuple[Path, Path]:
    """A notify program that appends its arguments to a file: (program, file)."""
    out = tmp_path / "calls"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, out


def fake_router() -> VrrpRouter:
    """A router on a fake host with eth1 192.168.1.10/24."""
    host = FakeHost()
    host.add_link("eth1", address="192.168.1.10/24")
    wire = FakeWire(host)
    return VrrpRouter(host, host, endpoint_factory=wire.endpoint, pacer=DirectPacer())


async def test_a_real_script_sees_master_then_stop_on_shutdown(tmp_path: Path) -> None:
    script, out = recording_hook(tmp_path)
    router = fake_router()
    config: dict[str, Any] = {
        "name": "VI_1",
        "interface": "eth1",
        "vrid": 51,
        "priority": 255,
        "virtual_ipaddresses": ("192.168.1.200/24",),
        "notify": str(script),
    }
    await router.start([VrrpInstanceConfig(**config)], [])
    deadline = time.monotonic() + 2
    while router.states()["VI_1"] is not VrrpState.MASTER:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await router.stop()  # waits for the STOP call
    assert out.read_text().splitlines() == ["INSTANCE VI_1 MASTER 255", "INSTANCE VI_1 STOP 255"]


async def test_a_notify_program_leaves_no_background_child(tmp_path: Path) -> None:
    """Its process group is killed when it exits: nothing it started runs on, one per transition."""
    pid_file = tmp_path / "pid"
    script = tmp_path / "notify.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"sh -c 'echo $$ > {pid_file}; exec sleep 100' &\n"
        f'until [ -s "{pid_file}" ]; do sleep 0.01; done\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    result = await run_notify(str(script), "VI_1", "MASTER", 100)
    assert result.returncode == 0
    grandchild = int(pid_file.read_text())
    try:
        assert await gone(grandchild), f"{grandchild}, started by the notify program, lives on"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_the_states_own_program_runs_as_written_then_notify() -> None:
    programs = Programs(notify_master=("/m", "--up"), notify_stop=("/s",))
    assert notify_argvs(programs, "INSTANCE", "VI_1", "MASTER", 100) == [
        ("/m", "--up"),
        ("/x", "INSTANCE", "VI_1", "MASTER", "100"),
    ]
    assert notify_argvs(programs, "GROUP", "G", "BACKUP", 0) == [
        ("/x", "GROUP", "G", "BACKUP", "0")
    ]
    assert notify_argvs(replace(programs, notify=None), "INSTANCE", "VI_1", "STOP", 9) == [("/s",)]
    assert notify_argvs(Programs(notify=None), "INSTANCE", "VI_1", "FAULT", 9) == []
    with pytest.raises(ValueError, match="notify state"):
        notify_argvs(programs, "INSTANCE", "VI_1", "INIT", 9)


async def test_a_sync_group_notifies_once_per_group_transition(tmp_path: Path) -> None:
    """Two owners in one group: each instance runs its own programs, the group its own
    once (GROUP G MASTER 0), and STOP once when both have stopped."""
    hook, out = recording_hook(tmp_path)
    router = fake_router()
    instances = [
        VrrpInstanceConfig(
            name=name,
            interface="eth1",
            vrid=vrid,
            priority=255,
            virtual_ipaddresses=(VirtualAddress(address=IPv4Interface(vip)),),
            notify_master=(str(hook), "master", name),
            notify_stop=(str(hook), "stop", name),
        )
        for name, vrid, vip in (("VI_1", 51, "192.168.1.200/24"), ("VI_2", 52, "192.168.1.201/24"))
    ]
    group = SyncGroupConfig(
        name="G",
        instances=("VI_1", "VI_2"),
        notify=str(hook),
        notify_master=(str(hook), "group-master"),
    )
    await router.start(instances, [group])
    deadline = time.monotonic() + 2
    while set(router.states().values()) != {VrrpState.MASTER}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await router.stop()  # waits for the STOP calls
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(
        [
            "master VI_1",
            "master VI_2",
            "group-master",
            "GROUP G MASTER 0",
            "stop VI_1",
            "stop VI_2",
            "GROUP G STOP 0",
        ]
    )
    # The group's own program first (keepalived), and STOP after MASTER.
    assert lines.index("group-master") < lines.index("GROUP G MASTER 0")
    assert lines.index("GROUP G MASTER 0") < lines.index("GROUP G STOP 0")
