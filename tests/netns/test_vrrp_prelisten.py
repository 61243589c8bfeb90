"""A starting Backup listens from its early socket, while the daemon loads (issue 14).

`ipvsd run` opens the advert sockets right after the stale VIPs go
(`ipvsd.daemon.early`, `ipvsd.vrrp.prelisten`); the VRRP runtime comes up only after the config is
validated and the daemon is imported. These tests run that sequence
in-process, as `ipvsd.cli` does (`early.begin`, `adopt_early`, then the
`Daemon`), with a load made slow on purpose (`LOAD_S`, as a 10,000-service
config or UML makes it), on the host kernel:

* alone on the segment, the Backup's Master_Down_Timer runs from its early
  socket: it is MASTER one Master_Down_Interval after the socket opened, not
  after the load *and* the interval;
* with a Master on the segment at VRRPv3 0.1 s (keepalived), whose adverts
  queued during a load three times the Master_Down_Interval, the Backup never
  takes over: the queued adverts reach the instance before its timer can fire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.config import load_config
from ipvsd.daemon import early
from ipvsd.daemon.root import Daemon
from ipvsd.vrrp.prelisten import adopt_early
from lab.netns import Topology, in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import OwnershipMonitor, VrrpLab, build, ipvsd_config

MDI_100 = 3 + (256 - 100) / 256  # v2, advert_int 1, priority 100: 3.609 s
SLACK = 0.5


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    with Topology() as topo:
        yield build(topo, tmp_path)


def transitions(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry.get("event") == "vrrp.transition"]


async def _run_d1(
    lab: VrrpLab, config: Path, *, load_s: float, until: float
) -> tuple[float, list[float]]:
    """Start d1 as `ipvsd run` does, but with a `load_s` pause between its early
    socket and the daemon; run it until `until` seconds after the socket opened.

    Returns:
        When the early socket opened (monotonic), and when d1 held the VIP (samples).
    """
    start = early.begin(config, runtime_dir=lab.workdir / "run-d1")
    assert start.error is None
    (opened_early,) = start.listening
    target = opened_early.target
    assert (target.interface, target.family, target.unicast) == ("eth1", "ipv4", False)
    opened = opened_early.opened_at
    listening = adopt_early(start.listening)
    await asyncio.sleep(load_s)  # the imports and the config's validation, made slow
    daemon = Daemon(
        config, load_config(config), handle_signals=False, host_lock=start.lock, listening=listening
    )
    runner = asyncio.get_running_loop().create_task(daemon.run())
    held: list[float] = []
    try:
        while time.monotonic() - opened < until:
            if await asyncio.to_thread(lab.holder) == ["d1"]:
                held.append(time.monotonic())
            await asyncio.sleep(0.05)
    finally:
        daemon.request_stop()
        assert await runner == 0
    return opened, held


def test_a_backup_alone_takes_over_one_interval_after_its_early_socket_opened(
    lab: VrrpLab,
) -> None:
    load_s = 1.5
    config = lab.workdir / "d1.yaml"
    config.write_text(ipvsd_config("d1", 100, lab.workdir))
    with in_netns(lab.routers["d1"]), capture_logs() as logs:
        opened, held = asyncio.run(_run_d1(lab, config, load_s=load_s, until=MDI_100 + 1.5))
    assert held, "d1 never became MASTER"
    took = held[0] - opened
    # From the early socket: one Master_Down_Interval. Counted from the end of the
    # load, as before the early socket, it would be load_s + MDI = 5.1 s.
    assert MDI_100 - 0.1 <= took <= MDI_100 + SLACK, took
    backup, master, _stop = transitions(logs)
    assert (backup["old"], backup["new"], backup["reason"]) == ("INIT", "BACKUP", "startup")
    assert load_s - 0.1 <= float(backup["listening_s"]) <= load_s + SLACK
    assert (master["new"], master["reason"]) == ("MASTER", "master_down_timer")


def test_adverts_queued_while_loading_keep_a_fast_backup_from_taking_over(lab: VrrpLab) -> None:
    """VRRPv3 at 0.1 s: the Master_Down_Interval (0.36 s) passes three times during the load."""
    load_s = 1.0
    keepalived = lab.keepalived("d2", 150, version=3, advert_int=0.1)
    keepalived.start()
    wait_until(lambda: lab.holder() == ["d2"], timeout=10)
    config = lab.workdir / "d1.yaml"
    config.write_text(ipvsd_config("d1", 100, lab.workdir, version=3, advert_int=0.1))
    routers = list(lab.routers.values())
    with (
        OwnershipMonitor(lab.topo, routers, interval=0.02) as monitor,
        in_netns(lab.routers["d1"]),
        capture_logs() as logs,
    ):
        _, held = asyncio.run(_run_d1(lab, config, load_s=load_s, until=load_s + 2.0))
    assert held == []
    assert [(t["old"], t["new"]) for t in transitions(logs)] == [
        ("INIT", "BACKUP"),
        ("BACKUP", "INIT"),  # the stop
    ]
    assert monitor.longest_dual_ownership() == 0
    assert lab.holder() == ["d2"]
    keepalived.stop()
