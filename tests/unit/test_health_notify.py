"""A real's notify_up / notify_down programs: run on its health changes, in order, bounded,
never raising; from the config through the health manager; and from keepalived.conf."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Awaitable
from ipaddress import ip_address
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ipvsd.config import parse_config
from ipvsd.errors import ConfigError
from ipvsd.health import manager as manager_module
from ipvsd.health.changes import RealPrograms
from ipvsd.health.checks import CheckResult, CheckTarget
from ipvsd.health.manager import HealthManager
from ipvsd.health.notify import RealNotifier
from ipvsd.health.tracker import Health
from ipvsd.importers.keepalived import convert
from ipvsd.importers.keepalived_parse import parse
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)
REAL: RealId = (WEB, DestKey(ip_address("10.0.1.1"), 8080))

RECORD = (
    "import os, sys, time; time.sleep(float(sys.argv[2])); "
    "open(sys.argv[1], 'a').write(' '.join([os.environ['IPVSD_HEALTH'], "
    "os.environ['IPVSD_SERVICE'], os.environ['IPVSD_REAL_ADDRESS'], "
    "os.environ['IPVSD_REAL_PORT']]) + '\\n')"
)


def recorder(log: Path, delay: float = 0.0) -> tuple[str, ...]:
    """A program that appends its health and real to `log`, after `delay` seconds."""
    return (sys.executable, "-c", RECORD, str(log), str(delay))


async def test_programs_run_in_the_order_of_the_changes(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    notifier = RealNotifier()
    notifier.configure({REAL: RealPrograms(up=recorder(log, 0.3), down=recorder(log))})
    notifier.changed(REAL, Health.DOWN)
    notifier.changed(REAL, Health.UP)  # slow: the down after it waits for it
    notifier.changed(REAL, Health.UNKNOWN)  # never a program
    notifier.changed(REAL, Health.DOWN)
    await notifier.close()
    assert log.read_text().splitlines() == [
        "down 10.0.0.1:80 10.0.1.1 8080",
        "up 10.0.0.1:80 10.0.1.1 8080",
        "down 10.0.0.1:80 10.0.1.1 8080",
    ]


async def test_a_real_without_programs_or_without_that_one_runs_nothing(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    notifier = RealNotifier()
    notifier.configure({REAL: RealPrograms(up=recorder(log))})
    notifier.changed(REAL, Health.DOWN)
    notifier.changed((WEB, DestKey(ip_address("10.0.1.2"), 80)), Health.UP)
    await notifier.close()
    assert not log.exists()


async def test_a_hung_program_is_killed_and_a_missing_one_logged() -> None:
    notifier = RealNotifier(timeout_s=0.2)
    notifier.configure({REAL: RealPrograms(up=("sleep", "30"), down=("/nonexistent/notify-down",))})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as events:
        notifier.changed(REAL, Health.UP)
        notifier.changed(REAL, Health.DOWN)
        await notifier.close()
    assert loop.time() - started < 3
    names = [(e["event"], e["health"]) for e in events if e["event"].startswith("health.notify")]
    assert names == [("health.notify_timeout", "up"), ("health.notify_failed", "down")]


def test_notify_programs_are_argv_lists_checked_at_their_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "ipvs:\n  services:\n    - address: 10.0.0.1\n      port: 80\n"
            "      reals:\n        - {address: 10.0.1.1, notify_up: [], notify_down: /bin/x}\n",
            "t.yaml",
            default_node_name="n1",
        )
    assert [(i.line, i.field) for i in info.value.issues] == [
        (6, "ipvs.services.0.reals.0.notify_up"),
        (6, "ipvs.services.0.reals.0.notify_down"),
    ]


class UpChecker:
    """Stands in for `ipvsd.health.checks.Checker`: every check passes."""

    def check(self, target: CheckTarget) -> Awaitable[CheckResult]:
        async def result() -> CheckResult:
            return CheckResult(True, "scripted", 0.0)

        return result()

    def close(self) -> None:
        pass


async def test_the_manager_runs_notify_up_when_a_real_comes_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "Checker", UpChecker)
    log = tmp_path / "runs"
    argv = json.dumps(list(recorder(log)))  # JSON is YAML
    config = parse_config(
        textwrap.dedent(
            f"""\
            ipvs:
              services:
                - address: 10.0.0.1
                  port: 80
                  check: {{type: tcp, interval: 0.1, rise: 1}}
                  reals:
                    - {{address: 10.0.1.1, port: 8080, notify_up: {argv}}}
            """
        ),
        "t.yaml",
        default_node_name="n1",
    )
    changed = asyncio.Event()
    manager = HealthManager(changed.set)
    await manager.configure(config)
    runner = asyncio.create_task(manager.monitor.run())
    try:
        async with asyncio.timeout(5):
            await changed.wait()  # the real came up
    finally:
        manager.monitor.stop()
        await runner
    await manager.notifier.close()
    assert log.read_text() == "up 10.0.0.1:80 10.0.1.1 8080\n"


def test_keepalived_notify_up_and_down_convert() -> None:
    text = (
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n"
        '  notify_up "/usr/local/bin/real-up --fast"\n'
        "  notify_down /usr/local/bin/real-down nobody\n"
        "  TCP_CHECK {\n  }\n }\n}\n"
    )
    conversion = convert(parse(text, "k.conf"))
    real = conversion.data["ipvs"]["services"][0]["reals"][0]
    assert real["notify_up"] == ["/usr/local/bin/real-up", "--fast"]
    assert real["notify_down"] == ["/usr/local/bin/real-down"]
    assert (
        "k.conf:4: notify_down: ipvsd runs notify programs as root: user nobody ignored (run "
        "the command through runuser/setpriv to drop privileges)"
    ) in [str(report) for report in conversion.reports]
