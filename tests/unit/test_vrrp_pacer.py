"""Adverts repeated off the loop (issue #11, item 7): the sender's schedule, and
what a VRRP instance tells its pacer.

The schedule (`vrrp.advertd.AdvertSchedule`) is pure: times in, due adverts
out. The instance is run by a `VrrpRouter` over the simulated host of
`tests.fakes.vrrp_io`, with a pacer that repeats in memory and records what
it was told; `tests/netns/test_vrrp_pacer.py` runs the real process.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ipvsd.vrrp.advertd import AdvertSchedule
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.pacer import AdvertBurst, AdvertProcess, DirectPacer
from tests.unit.test_vrrp_router import VIP, VIP2, Rig, config, until

# --- the schedule ---------------------------------------------------------------------


def test_a_put_key_repeats_every_interval_from_when_it_was_put() -> None:
    schedule: AdvertSchedule[str] = AdvertSchedule()
    assert schedule.put("a", "advert", 1.0, now=10.0) is None
    assert schedule.next_due() == 11.0
    assert schedule.pop_due(10.99) == ([], [])
    assert schedule.pop_due(11.0) == ([("a", "advert", 0.0)], [])
    assert schedule.next_due() == 12.0
    due, _ = schedule.pop_due(12.004)
    assert [(key, round(late, 3)) for key, _, late in due] == [("a", 0.004)]
    assert schedule.next_due() == 13.0, "a late send keeps the schedule, it does not drift"


def test_a_key_far_behind_sends_once_and_rebases_on_now() -> None:
    schedule: AdvertSchedule[str] = AdvertSchedule()
    schedule.put("a", "advert", 1.0, now=0.0)
    due, _ = schedule.pop_due(3.5)  # the process was not scheduled for 2.5 s
    assert len(due) == 1
    assert schedule.next_due() == 4.5


def test_put_replaces_and_returns_the_old_value_and_none_means_once() -> None:
    schedule: AdvertSchedule[str] = AdvertSchedule()
    schedule.put("a", "old", 1.0, now=0.0)
    assert schedule.put("a", "new", 1.0, now=0.5) == "old"
    assert schedule.next_due() == 1.5, "a new advert re-arms from when it was sent"
    assert schedule.put("a", "resign", None, now=0.7) == "new"
    assert schedule.next_due() is None
    assert schedule.remove("a") is None


def test_a_key_not_touched_for_hold_seconds_expires_when_next_due() -> None:
    schedule: AdvertSchedule[str] = AdvertSchedule()
    schedule.put("a", "advert", 1.0, now=0.0, hold=2.5)
    assert schedule.pop_due(1.0)[0]
    assert schedule.touch("a", now=1.0)  # expires at 3.5 now
    assert schedule.pop_due(2.0)[0]
    assert schedule.pop_due(3.0)[0]
    assert schedule.pop_due(4.0) == ([], [("a", "advert")])
    assert schedule.next_due() is None
    assert not schedule.touch("a", now=4.1), "the daemon is told to hand it over again"


# --- what an instance tells its pacer ---------------------------------------------------


class RecordingPacer(DirectPacer):
    """Repeats (in memory, nothing is sent again) like `AdvertProcess`; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None, float | None]] = []
        self.bursts: dict[str, tuple[AdvertBurst[Any], float]] = {}

    def send(self, key: str, burst: AdvertBurst[Any], repeat_every: float | None) -> None:
        self.calls.append(("send", burst.payload[2], repeat_every))
        burst.send_here()
        if repeat_every is None:
            self.bursts.pop(key, None)
        else:
            self.bursts[key] = (burst, repeat_every)

    def stop(self, key: str) -> None:
        self.calls.append(("stop", None, None))
        self.bursts.pop(key, None)

    def touch(self, key: str) -> None:
        self.calls.append(("touch", None, None))

    def repeating(self, key: str) -> tuple[AdvertBurst[Any], float] | None:
        return self.bursts.get(key)

    def sends(self) -> list[tuple[str, int | None, float | None]]:
        return [call for call in self.calls if call[0] == "send"]


@pytest.fixture
async def paced() -> AsyncIterator[tuple[Rig, RecordingPacer]]:
    pacer = RecordingPacer()
    rig = Rig(pacer=pacer)
    rig.host.add_link("eth1", address="192.168.1.10/24")
    yield rig, pacer
    await rig.router.stop()


async def test_a_master_hands_its_adverts_over_and_the_timer_only_says_alive(
    paced: tuple[Rig, RecordingPacer],
) -> None:
    rig, pacer = paced
    await rig.router.start([config(advert_int=1)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    assert pacer.sends() == [("send", 255, 1.0)]
    await until(lambda: ("touch", None, None) in pacer.calls, within=2.5)
    assert pacer.sends() == [("send", 255, 1.0)], "Adver_Timer sent nothing itself"
    assert rig.wire.sent() == [255]

    await rig.router.stop()
    assert pacer.sends()[-1] == ("send", 0, None), "the resignation goes out once, last"
    assert pacer.bursts == {}


async def test_a_changed_advert_is_handed_over_again_at_the_next_timer(
    paced: tuple[Rig, RecordingPacer],
) -> None:
    rig, pacer = paced
    await rig.router.start([config(advert_int=1)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    await rig.router.update([config(advert_int=1, virtual_ipaddresses=(str(VIP), str(VIP2)))], [])
    await until(lambda: len(pacer.sends()) == 2, within=2.5)
    ((burst, interval),) = pacer.bursts.values()
    assert interval == 1.0
    assert burst.payload[3] == 2, "the new advert lists both VIPs"
    assert rig.state() is VrrpState.MASTER


async def test_leaving_master_stops_the_repeats(paced: tuple[Rig, RecordingPacer]) -> None:
    rig, pacer = paced
    await rig.router.start([config(advert_int=1)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    rig.host.remove_address("eth1", "192.168.1.10/24")  # no source address: FAULT
    await until(lambda: rig.state() is VrrpState.FAULT)
    assert pacer.bursts == {}
    assert rig.host.vips() == set()
    await asyncio.sleep(0)
    assert VIP not in rig.host.vips()


async def test_a_recreated_instance_does_not_stop_its_successors_adverts(
    paced: tuple[Rig, RecordingPacer],
) -> None:
    rig, pacer = paced
    await rig.router.start([config(advert_int=1)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    await rig.router.update([config(advert_int=1, vrid=52)], [])  # a new VRID: re-created
    # The new instance started (MASTER at once: an owner) before the old one
    # resigned; the resignation must not end the new one's repeats.
    assert rig.state() is VrrpState.MASTER
    assert [call[1] for call in pacer.sends()] == [255, 255, 0]
    ((burst, _),) = pacer.bursts.values()
    assert burst.payload[1] == 52


def test_the_sender_imports_the_standard_library_only() -> None:
    """It runs as ``python -I advertd.py``: an ipvsd import would fail there."""
    import ast
    import sys
    from pathlib import Path

    from ipvsd.vrrp import advertd

    tree = ast.parse(Path(advertd.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported


# --- a sender still starting ----------------------------------------------------------


class LoopbackSock:
    """An `AdvertSender` recording the loop's sends; its fd (UDP) is what the sender
    process gets, whose own sends (to 127.0.0.1 port 0) fail and are reported."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent: list[tuple[bytes, IPv4Address]] = []

    def bind_source(self, ip: IPv4Address | None) -> None:
        pass

    def send(self, payload: bytes, dst: IPv4Address) -> bool:
        self.sent.append((payload, dst))
        return True

    def fileno(self) -> int:
        return self.udp.fileno()

    def report_send_failure(self, code: int, dst: object) -> None:
        pass


async def test_an_advert_handed_to_a_sender_still_starting_also_goes_out_from_the_loop(
    tmp_path: Path,
) -> None:
    """A freshly started daemon becomes MASTER (0.36 s at 0.1 s) while its sender may
    still be starting (an interpreter, mlockall): its first adverts must not wait,
    or the old master keeps the VIP too (measured: 150 ms of split brain over IPv6)."""
    slow = tmp_path / "slow-python"
    slow.write_text(f'#!/bin/sh\nsleep 0.5\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    pacer = AdvertProcess(python=str(slow))
    await pacer.start()
    sock = LoopbackSock()
    try:
        burst = AdvertBurst(sock, b"advert", None, (IPv4Address("127.0.0.1"),))
        pacer.send("VI_1#1", burst, 1.0)
        assert sock.sent == [(b"advert", IPv4Address("127.0.0.1"))]
        await until(lambda: pacer.ready, within=5)
        pacer.send("VI_1#1", burst, 1.0)
        assert len(sock.sent) == 1  # a ready sender sends it alone
    finally:
        await pacer.close()
        sock.udp.close()
