"""Service groups: one check per real across the group's member services (issue 13)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable
from ipaddress import ip_address
from typing import ClassVar

import pytest

from ipvsd.config import parse_config
from ipvsd.health import manager as manager_module
from ipvsd.health.checks import CheckTarget
from ipvsd.health.manager import HealthManager
from ipvsd.health.shared import shared_checks
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey
from tests.unit.test_health_manager import Result
from tests.unit.test_health_monitor import run_virtual

CONFIG = parse_config(
    textwrap.dedent(
        """\
        ipvs:
          service_groups:
            - {name: web, members: ["10.0.0.1-3:80", "10.0.0.9:8080"]}
          services:
            - group: web
              check: {type: tcp, interval: 1, rise: 1, fall: 1}
              reals:
                - {address: 10.0.1.1, port: 80, weight: 2}
                - {address: 10.0.1.2, port: 0}
            - {address: 10.0.0.50, port: 80, check: {type: tcp}, reals: [{address: 10.0.1.1}]}
        """
    ),
    "t.yaml",
)
MEMBERS = [
    ServiceKey(Family.INET, Protocol.TCP, ip_address(a), p)
    for a, p in (("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80), ("10.0.0.9", 8080))
]
R1 = DestKey(ip_address("10.0.1.1"), 80)


def test_real_i_of_each_member_shares_the_check_of_real_i_of_the_first() -> None:
    aliases = shared_checks(CONFIG)
    lead = MEMBERS[0]
    assert aliases[(MEMBERS[2], R1)] == (lead, R1)
    # Port 0: the member's own port in the kernel, checked at the first member's.
    assert aliases[(MEMBERS[3], DestKey(ip_address("10.0.1.2"), 8080))] == (
        lead,
        DestKey(ip_address("10.0.1.2"), 80),
    )
    assert len(aliases) == 6  # 3 members after the first x 2 reals
    assert not any(real[0] == lead for real in aliases)


class DownFor10_0_1_2:
    """The checker: 10.0.1.2 fails, every other real passes; counts the checks."""

    checked: ClassVar[list[str]] = []

    def check(self, target: CheckTarget) -> Awaitable[Result]:
        self.checked.append(str(target.address))

        async def result() -> Result:
            return Result(str(target.address) != "10.0.1.2", "scripted")

        return result()


def test_one_watch_per_real_and_every_member_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "Checker", DownFor10_0_1_2)
    DownFor10_0_1_2.checked = []
    reported: dict[RealId, Health] = {}

    async def main() -> None:
        manager = HealthManager(lambda: None, on_health=reported.__setitem__)
        await manager.configure(CONFIG)
        assert len(manager.monitor.states()) == 3  # 2 reals of the group + 1 of the other
        task = asyncio.create_task(manager.monitor.run())
        await asyncio.sleep(1.0)  # one check each: the first slot is in [0, interval)
        manager.monitor.stop()
        await task
        table = manager.desired()
        for key in MEMBERS:
            weights = {d.address: a.attrs.weight for d, a in table.services[key].dests.items()}
            # 10.0.1.2 down: drained in every member, as its one check says.
            assert weights == {ip_address("10.0.1.1"): 2, ip_address("10.0.1.2"): 0}, key
        records = manager.records()
        up = records.get((MEMBERS[3], DestKey(ip_address("10.0.1.1"), 80)))
        assert up is not None
        assert up.health is Health.UP

    run_virtual(main)
    assert len(DownFor10_0_1_2.checked) == 3
    for key in MEMBERS:
        assert reported[(key, R1)] is Health.UP
