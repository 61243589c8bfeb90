"""The BGP runtime (ipvsd/bgp/announcer.py) over a fake BIRD (tests/fakes/bird.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import ip_address

import pytest

from ipvsd.bgp import announcer as announcer_module
from ipvsd.bgp.announcer import BgpAnnouncer, Session
from ipvsd.bgp.policy import DirectorDrained, QuorumChanged, Ready
from ipvsd.config.model import BgpConfig
from ipvsd.model import Family, Protocol, ServiceKey
from tests.fakes.bird import FakeBird

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.100"), 80)
API = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.101"), 80)
CONFIG = BgpConfig.model_validate(
    {"local_as": 65001, "neighbors": ({"address": "10.0.0.1", "remote_as": 65000},)},
)


@pytest.fixture
async def running(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[BgpAnnouncer, FakeBird]]:
    monkeypatch.setattr(announcer_module, "RESTART_DELAY_S", 0.01)
    bird = FakeBird()
    sessions: list[tuple[Session, ...]] = []
    bgp = BgpAnnouncer(CONFIG, "t.yaml", speaker=bird, on_sessions=sessions.append)
    await bgp.start((WEB, API), drained=False)
    task = asyncio.create_task(bgp.run())
    yield bgp, bird
    task.cancel()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def announce_web(bgp: BgpAnnouncer) -> None:
    """Ready, and WEB's quorum: its VIP is announced."""
    bgp.feed(Ready())
    bgp.feed(QuorumChanged(WEB, True))
    await settle()


async def test_birds_protocols_follow_the_policy(running: tuple[BgpAnnouncer, FakeBird]) -> None:
    bgp, bird = running
    assert bird.enabled == {"vip4_10_0_0_100": False, "vip4_10_0_0_101": False}
    bgp.feed(QuorumChanged(WEB, True))
    bgp.feed(QuorumChanged(API, False))
    await settle()
    assert not any(bird.enabled.values())  # not ready yet
    bgp.feed(Ready())
    await settle()
    assert bird.enabled == {"vip4_10_0_0_100": True, "vip4_10_0_0_101": False}
    bgp.feed(DirectorDrained(True))
    await settle()
    assert not any(bird.enabled.values())
    assert [p.reason for p in bgp.prefixes()] == ["director drained"] * 2


async def test_sessions_are_polled(running: tuple[BgpAnnouncer, FakeBird]) -> None:
    bgp, _ = running
    await settle()
    assert bgp.sessions == (Session("10.0.0.1", 65000, "Established", True),)
    assert bgp.greeting == "BIRD 2.0.12 ready."


async def test_a_refused_command_is_retried_at_the_next_change(
    running: tuple[BgpAnnouncer, FakeBird],
) -> None:
    bgp, bird = running
    bird.refuse.add("vip4_10_0_0_100")
    bgp.feed(Ready())
    bgp.feed(QuorumChanged(WEB, True))
    bgp.feed(QuorumChanged(API, True))
    await settle()
    assert bird.enabled == {"vip4_10_0_0_100": False, "vip4_10_0_0_101": True}
    assert not bgp.prefixes()[0].announced  # status says what BIRD was told, not the wish
    bird.refuse.clear()
    bgp.feed(QuorumChanged(API, True))  # any wake-up
    await settle()
    assert bird.enabled == {"vip4_10_0_0_100": True, "vip4_10_0_0_101": True}


async def test_a_dead_bird_is_restarted_with_the_wanted_announcements(
    running: tuple[BgpAnnouncer, FakeBird],
) -> None:
    bgp, bird = running
    await announce_web(bgp)
    bird.crash()
    for _ in range(50):
        await asyncio.sleep(0.005)
        if bird.running:
            break
    assert bird.running
    assert bird.enabled == {"vip4_10_0_0_100": True, "vip4_10_0_0_101": False}


async def test_stop_withdraws_before_bird_goes_down(
    running: tuple[BgpAnnouncer, FakeBird],
) -> None:
    bgp, bird = running
    await announce_web(bgp)
    bird.commands.clear()
    await bgp.stop()
    assert bird.commands == ['disable "vip4_10_0_0_100"', "down"]
    assert bgp.sessions == (Session("10.0.0.1", 65000, "down", False),)


async def test_a_reload_keeps_the_announcements_in_the_new_config(
    running: tuple[BgpAnnouncer, FakeBird],
) -> None:
    bgp, bird = running
    await announce_web(bgp)
    await bgp.reconfigure(CONFIG, (WEB,))
    assert bird.enabled == {"vip4_10_0_0_100": True}
    assert "disabled no;\n  route 10.0.0.100/32 blackhole;" in bird.config
