"""``ha_suspend``: checks paused while no owning VRRP instance is MASTER (issue 13)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable
from typing import ClassVar

import pytest

from ipvsd.config import parse_config
from ipvsd.health import manager as manager_module
from ipvsd.health.checks import CheckTarget
from ipvsd.health.manager import HealthManager
from ipvsd.health.suspend import suspended_services
from ipvsd.health.tracker import Health
from tests.unit.test_health_manager import Result
from tests.unit.test_health_monitor import run_virtual

CONFIG = parse_config(
    textwrap.dedent(
        """\
        vrrp:
          instances:
            - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}
            - {name: VI_2, interface: eth1, vrid: 52, virtual_ipaddresses: [192.168.1.201/24]}
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              ha_suspend: true
              check: {type: tcp, interval: 1, rise: 1, fall: 1}
              reals: [{address: 10.0.1.1}]
            - address: 192.168.1.201
              port: 80
              check: {type: tcp, interval: 1, rise: 1, fall: 1}
              reals: [{address: 10.0.2.1}]
        """
    ),
    "t.yaml",
)
WEB, OTHER = (service.key for service in CONFIG.ipvs.services)
WEB_REAL = (WEB, CONFIG.ipvs.services[0].dest_key(CONFIG.ipvs.services[0].reals[0]))


def test_a_service_is_suspended_while_its_instance_is_not_master() -> None:
    assert suspended_services(CONFIG, set()) == {WEB}
    assert suspended_services(CONFIG, {"VI_2"}) == {WEB}
    assert suspended_services(CONFIG, {"VI_1"}) == frozenset()


def test_an_excluded_vip_is_owned_too() -> None:
    """``virtual_ipaddresses_excluded`` are held with MASTER like the advertised VIPs."""
    config = parse_config(
        textwrap.dedent(
            """\
            vrrp:
              instances:
                - name: VI_1
                  interface: eth1
                  vrid: 51
                  virtual_ipaddresses: [192.168.1.200/24]
                  virtual_ipaddresses_excluded: [192.168.1.250/24]
            ipvs:
              services:
                - address: 192.168.1.250
                  port: 80
                  ha_suspend: true
                  check: {type: tcp}
                  reals: [{address: 10.0.1.1}]
            """
        ),
        "t.yaml",
    )
    (key,) = (service.key for service in config.ipvs.services)
    assert suspended_services(config, set()) == {key}
    assert suspended_services(config, {"VI_1"}) == frozenset()


class Counting:
    """The checker: every check passes; counts the checks per real address."""

    checked: ClassVar[list[str]] = []

    def check(self, target: CheckTarget) -> Awaitable[Result]:
        self.checked.append(str(target.address))

        async def result() -> Result:
            return Result(True, "scripted")

        return result()


def test_checks_run_only_while_an_owning_instance_is_master(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manager_module, "Checker", Counting)
    Counting.checked = []
    counts: list[tuple[int, int]] = []

    def seen() -> tuple[int, int]:
        return Counting.checked.count("10.0.1.1"), Counting.checked.count("10.0.2.1")

    async def main() -> None:
        manager = HealthManager(lambda: None)
        await manager.configure(CONFIG)
        task = asyncio.create_task(manager.monitor.run())
        await asyncio.sleep(3)  # BACKUP: the suspended service is not checked
        counts.append(seen())
        assert manager.health_of(WEB_REAL) is Health.UNKNOWN
        manager.vrrp_state("VI_1", master=True)
        await asyncio.sleep(3)
        counts.append(seen())
        manager.vrrp_state("VI_1", master=False)
        await asyncio.sleep(3)
        counts.append(seen())
        manager.monitor.stop()
        await task
        assert manager.health_of(WEB_REAL) is Health.UP  # kept while suspended again

    run_virtual(main)
    (web_backup, other_1), (web_master, other_2), (web_again, other_3) = counts
    assert web_backup == 0
    assert other_1 == 3
    assert web_master == 3
    assert web_again == web_master  # paused again
    assert other_3 - other_2 == 3


def test_a_shared_check_pauses_only_when_every_member_is_suspended() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            vrrp:
              instances:
                - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [10.0.0.1/24]}
                - {name: VI_2, interface: eth1, vrid: 52, virtual_ipaddresses: [10.0.0.2/24]}
            ipvs:
              service_groups: [{name: web, members: ["10.0.0.1-2:80"]}]
              services:
                - group: web
                  ha_suspend: true
                  check: {type: tcp}
                  reals: [{address: 10.0.1.1}]
            """
        ),
        "t.yaml",
    )
    first = config.ipvs.services[0]
    watched = (first.key, first.dest_key(first.reals[0]))

    async def main() -> None:
        manager = HealthManager(lambda: None)
        await manager.configure(config)
        assert manager.monitor.suspended == {watched}  # neither instance is MASTER
        manager.vrrp_state("VI_2", master=True)  # the second member's: the check runs
        assert manager.monitor.suspended == frozenset()
        manager.vrrp_state("VI_2", master=False)
        assert manager.monitor.suspended == {watched}

    run_virtual(main)
