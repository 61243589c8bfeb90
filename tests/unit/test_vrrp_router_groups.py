"""A sync group's notify programs across reloads (issue 13 item 1): an unchanged group
keeps its state and says nothing new, a removed one is told STOP, and a member that a
reload re-creates joins the MASTER group instead of taking it down."""

from __future__ import annotations

from typing import Any

from ipvsd.config.model import SyncGroupConfig
from ipvsd.vrrp.machine import VrrpState
from tests.unit.test_vrrp_router import Rig, config, until
from tests.unit.test_vrrp_router import rig as rig  # the fixture

MASTER = VrrpState.MASTER


class Calls:
    """A stand-in for run_argv on the group's queue: (argv, state) of each call."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], str]] = []

    async def __call__(self, argv: tuple[str, ...], kind: str, name: str, state: str) -> Any:
        self.seen.append((argv, state))

    def states(self) -> list[str]:
        return [state for _, state in self.seen]


OWNERS = [
    config("VI_1", priority=255),
    config("VI_2", vrid=52, priority=255, virtual_ipaddresses=("192.168.1.201/24",)),
]
GROUP = SyncGroupConfig(name="G", instances=("VI_1", "VI_2"), notify="/bin/true")


async def started(rig: Rig) -> Calls:
    calls = Calls()
    await rig.router.start(OWNERS, [GROUP])
    await until(lambda: {rig.state("VI_1"), rig.state("VI_2")} == {MASTER})
    queue = rig.router._group_notifiers["G"]
    await queue.close()
    queue._run = calls  # the MASTER call ran for real (/bin/true); count from here
    return calls


async def test_an_unchanged_group_says_nothing_on_reload(rig: Rig) -> None:
    calls = await started(rig)
    renamed = config("VI_1", priority=254)  # VI_1 changes in place, still MASTER
    await rig.router.update([renamed, OWNERS[1]], [GROUP])
    await until(lambda: rig.instance("VI_1").config.priority == 254)
    assert calls.seen == []


async def test_a_removed_group_is_told_stop(rig: Rig) -> None:
    calls = await started(rig)
    await rig.router.update(OWNERS, [])
    await until(lambda: bool(calls.seen))
    assert calls.seen == [(("/bin/true", "GROUP", "G", "STOP", "0"), "STOP")]


async def test_a_recreated_member_joins_the_master_group(rig: Rig) -> None:
    calls = await started(rig)
    moved = config("VI_2", vrid=53, priority=100, virtual_ipaddresses=("192.168.1.201/24",))
    await rig.router.update([OWNERS[0], moved], [GROUP])
    await until(lambda: rig.instance("VI_2").config.vrid == 53 and rig.state("VI_2") is MASTER)
    assert rig.state("VI_1") is MASTER  # not dragged to BACKUP by the new VI_2's start
    assert calls.seen == []
