"""Service quorum in the in-process daemon over the fake kernel (issue 13).

Real tcp checks on loopback decide the reals' health (a listener: up; a port
nobody listens on: down); the quorum commands are real programs that append
to a file. The kernel tier (tests/kernel/test_service_quorum.py) proves the
same on IPVS.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

from ipvsd.model import DestKey, ServiceKey
from tests.unit.test_daemon import REAL_30, REAL_40, WEB, Harness, running

SORRY = DestKey(ip_address("192.168.1.99"), 80)


def closed_port() -> int:
    with socket.socket() as probe:  # bound, not listening: connection refused
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def quorum_config(sock: Path, log: Path, up_port: int, down_port: int, quorum: int) -> str:
    hook = "[/bin/sh, -c, 'echo {0} >> {1}']"
    return f"""\
node_name: director1
state_dir: {sock.parent / "state"}
control: {{socket: {sock}}}
metrics: {{listen: null}}
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      scheduler: rr
      quorum: {quorum}
      omega: true
      quorum_up: {hook.format("up", log)}
      quorum_down: {hook.format("down", log)}
      sorry_server: {{address: 192.168.1.99, inhibit: true}}
      check: {{type: tcp, interval: 0.2, rise: 1, fall: 1, address: 127.0.0.1, port: {up_port}}}
      reals:
        - {{address: 192.168.1.30, port: 80}}
        - {{address: 192.168.1.40, port: 80, check: {{port: {down_port}}}}}
"""


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_quorum_lost_hands_over_to_the_sorry_server_and_back(tmp_path: Path) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up_port = listener.sockets[0].getsockname()[1]
    down_port = closed_port()
    sock, log = tmp_path / "ipvsd.sock", tmp_path / "quorum.log"
    text = quorum_config(sock, log, up_port, down_port, quorum=2)
    async with listener, running(tmp_path, text) as h:
        # .30 up (weight 1) and .40 down: live weight 1 < quorum 2.
        await until(lambda: h.weights().get(SORRY) == 1 and _health(h) == {"up", "down"}, "sorry")
        assert h.weights() == {REAL_30: 0, REAL_40: 0, SORRY: 1}
        await until(lambda: lines(log) == ["down"], "quorum_down")
        assert h.metric("ipvsd_service_quorum", **_labels()) == 0
        seen: list[tuple[str, bool | None]] = []  # what a tracking VRRP instance hears
        h.daemon._quorum.feed.subscribe(WEB, lambda name, up: seen.append((name, up)))
        assert seen == [("service 192.168.1.200:80", False)]
        status = (await h.daemon.view.status()).services[0]
        assert status.quorum is not None
        assert (status.quorum.up, status.quorum.live_weight, status.quorum.quorum) == (False, 1, 2)

        h.write(quorum_config(sock, log, up_port, down_port, quorum=1))
        assert await h.daemon.reload() == []
        await h.settle()
        # Quorum back: the reals serve, the inhibited sorry server waits at weight 0.
        assert h.weights() == {REAL_30: 1, REAL_40: 0, SORRY: 0}
        await until(lambda: lines(log) == ["down", "up"], "quorum_up")
        assert h.metric("ipvsd_service_quorum", **_labels()) == 1
    # omega: the service had quorum when ipvsd stopped, so quorum_down ran once more.
    assert lines(log) == ["down", "up", "down"]


def _health(h: Harness) -> set[str]:
    """The health of the checked reals (what status shows, without a kernel dump)."""
    states = h.daemon.view._parts.health.monitor.states()
    return {state.value for state in states.values()}


def _labels() -> dict[str, str]:
    return {"local_address": "192.168.1.200", "local_port": "80", "proto": "TCP", "local_mark": ""}


async def test_a_reload_that_removes_an_omega_service_runs_its_quorum_down(
    tmp_path: Path,
) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up_port = listener.sockets[0].getsockname()[1]
    sock, log = tmp_path / "ipvsd.sock", tmp_path / "quorum.log"
    text = quorum_config(sock, log, up_port, up_port, quorum=1)
    async with listener, running(tmp_path, text) as h:
        await until(lambda: h.weights().get(REAL_40) == 1, "both reals up")
        await until(lambda: lines(log) == ["down", "up"], "start: lost, then regained")
        kept = text.replace(
            "address: 192.168.1.200\n      port: 80", "address: 192.168.1.201\n      port: 80"
        )
        h.write(kept)
        assert await h.daemon.reload(force=True) == []
        await until(lambda: lines(log)[:3] == ["down", "up", "down"], "omega on removal")
        assert h.metric("ipvsd_service_quorum", **_labels()) is None
        assert WEB not in h.kernel.ipvs.table.services


async def test_a_group_makes_one_service_per_member_and_runs_its_quorum_commands_once(
    tmp_path: Path,
) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up_port = listener.sockets[0].getsockname()[1]
    sock, log = tmp_path / "ipvsd.sock", tmp_path / "quorum.log"
    text = quorum_config(sock, log, up_port, closed_port(), quorum=2)
    text = text.replace(
        "  services:\n    - address: 192.168.1.200\n      port: 80\n",
        '  service_groups:\n    - {name: web, members: ["192.168.1.200-202:80"]}\n'
        "  services:\n    - group: web\n",
    )
    async with listener, running(tmp_path, text) as h:
        keys = sorted(str(key) for key in h.kernel.ipvs.table.services)
        assert keys == ["192.168.1.200:80", "192.168.1.201:80", "192.168.1.202:80"]
        assert len(h.daemon.view._parts.health.monitor.states()) == 2
        await until(lambda: _health(h) == {"up", "down"}, "both reals checked")
        for key in h.kernel.ipvs.table.services:

            def sorry_in(key: ServiceKey = key) -> bool:
                return h.weights(key).get(SORRY) == 1

            await until(sorry_in, f"sorry in {key}")
        await asyncio.sleep(0.3)  # time for more commands, if any were (wrongly) queued
        assert lines(log) == ["down"]
