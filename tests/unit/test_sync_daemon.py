"""The sync-daemon controller: keepalived's master/backup rules over a simulated kernel."""

from __future__ import annotations

import asyncio
import errno
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from ipvsd.config import parse_config
from ipvsd.control.status_json import to_json
from ipvsd.daemon import sync_target
from ipvsd.daemon.status import status_document_steps
from ipvsd.errors import AlreadyExists, ConfigError, IpvsUnavailable, KernelError, NotFound
from ipvsd.ipvs.sync_daemon import (
    StartDaemon,
    StopDaemon,
    SyncDaemonController,
    SyncDaemonStatus,
    SyncTarget,
    plan,
    resolve,
    role_for,
    wanted_daemon,
)
from ipvsd.metrics import DaemonMetrics
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState
from ipvsd.steps import run_steps

MASTER, BACKUP = SyncState.MASTER, SyncState.BACKUP
TARGET = SyncTarget("VI_1", "eth1", 51)


class FakeSyncKernel:
    """The kernel's sync-daemon table with ip_vs_sync.c's semantics.

    One daemon per role; a second start of a role is EEXIST whatever its
    settings, a stop of a role that does not run is ESRCH, an unknown interface
    is ENODEV. A start fills in the defaults the way a GET_DAEMON dump shows
    them. `history` holds the running roles after every change, so tests can
    check what was never true (master and backup at once).
    """

    def __init__(self, interfaces: tuple[str, ...] = ("eth1", "eth2")) -> None:
        self.interfaces = set(interfaces)
        self.running: dict[SyncState, SyncDaemon] = {}
        self.history: list[frozenset[SyncState]] = []
        self.changes = 0
        self.closed = False
        self.fail_reads = 0
        self.changed = asyncio.Event()

    async def sync_daemons(self) -> list[SyncDaemon]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise KernelError("dump: broken", errno=errno.EIO)
        return [self.running[state] for state in sorted(self.running)]

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        if daemon.state in self.running:
            raise AlreadyExists("already exists", errno=errno.EEXIST)
        if daemon.interface not in self.interfaces:
            raise KernelError("No such device", errno=errno.ENODEV)
        self.running[daemon.state] = replace(
            daemon,
            sync_maxlen=daemon.sync_maxlen or 1472,
            mcast_group=daemon.mcast_group or ip_address("224.0.0.81"),
            mcast_port=daemon.mcast_port or 8848,
            mcast_ttl=daemon.mcast_ttl or 1,
        )
        self._changed()

    async def stop_sync_daemon(self, state: SyncState) -> None:
        if state not in self.running:
            raise NotFound("not found", errno=errno.ESRCH)
        del self.running[state]
        self._changed()

    def close(self) -> None:
        self.closed = True

    def _changed(self) -> None:
        self.changes += 1
        self.history.append(frozenset(self.running))
        self.changed.set()

    def roles(self) -> dict[SyncState, tuple[str, int]]:
        return {state: (d.interface, d.sync_id) for state, d in self.running.items()}


def controller_for(kernel: FakeSyncKernel, **kwargs: Any) -> SyncDaemonController:
    async def open_backend() -> FakeSyncKernel:
        kernel.closed = False
        return kernel

    return SyncDaemonController(open_backend, **kwargs)


def daemon_events(logs: Sequence[Mapping[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (e["action"], e["state"], e.get("interface"), e.get("sync_id"))
        for e in logs
        if e["event"] == "ipvs.sync_daemon"
    ]


# --- pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize(("master", "role"), [(True, MASTER), (False, BACKUP)])
def test_only_a_master_instance_runs_the_master_daemon(master: bool, role: SyncState) -> None:
    assert role_for(master=master) is role
    assert wanted_daemon(TARGET, master=master) == SyncDaemon(role, "eth1", 51)
    assert wanted_daemon(None, master=master) is None


def test_plan_stops_the_other_role_before_starting() -> None:
    backup = SyncDaemon(BACKUP, "eth1", 51)
    assert plan(SyncDaemon(MASTER, "eth1", 51), [backup], frozenset()) == [
        StopDaemon(backup),
        StartDaemon(SyncDaemon(MASTER, "eth1", 51)),
    ]


def test_plan_adopts_a_running_match_and_restarts_a_changed_one() -> None:
    running = SyncDaemon(MASTER, "eth1", 51, 1472, ip_address("224.0.0.81"), 8848, 1)
    assert plan(SyncDaemon(MASTER, "eth1", 51), [running], frozenset()) == []
    wanted = SyncDaemon(MASTER, "eth1", 52)
    assert plan(wanted, [running], frozenset()) == [StopDaemon(running), StartDaemon(wanted)]


def test_plan_without_config_stops_only_owned_daemons() -> None:
    master, backup = SyncDaemon(MASTER, "eth1", 51), SyncDaemon(BACKUP, "eth1", 9)
    assert plan(None, [master, backup], frozenset()) == []
    assert plan(None, [master, backup], frozenset({MASTER})) == [StopDaemon(master)]


def test_resolve_takes_interface_and_vrid_from_the_instance_by_default() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            vrrp:
              instances:
                - {name: VI_1, interface: eth1, vrid: 51, priority: 100,
                   virtual_ipaddresses: [192.168.1.200/24]}
            ipvs:
              sync_daemon: {vrrp_instance: VI_1}
            """
        ),
        default_node_name="n1",
    )
    assert sync_target(config) == SyncTarget("VI_1", "eth1", 51)
    assert config.ipvs.sync_daemon is not None
    explicit = config.ipvs.sync_daemon.model_copy(update={"interface": "eth2", "sync_id": 0})
    assert resolve(explicit, config.vrrp.instances[0]) == SyncTarget("VI_1", "eth2", 0)
    no_sync = config.model_copy(
        update={"ipvs": config.ipvs.model_copy(update={"sync_daemon": None})}
    )
    assert sync_target(no_sync) is None


SYNC_CONFIG = """\
vrrp:
  instances:
    - {name: VI_1, interface: eth1, vrid: 51, priority: 100,
       virtual_ipaddresses: [192.168.1.200/24]}
ipvs:
  sync_daemon: {vrrp_instance: VI_1, SETTINGS}
"""


def test_multicast_settings_reach_the_wanted_daemon() -> None:
    settings = "group: 239.1.2.3, port: 8850, ttl: 3, max_length: 1400"
    config = parse_config(SYNC_CONFIG.replace("SETTINGS", settings), default_node_name="n1")
    target = sync_target(config)
    assert target == SyncTarget("VI_1", "eth1", 51, ip_address("239.1.2.3"), 8850, 3, 1400)
    assert wanted_daemon(target, master=True) == SyncDaemon(
        MASTER, "eth1", 51, 1400, ip_address("239.1.2.3"), 8850, 3
    )


@pytest.mark.parametrize(
    ("settings", "field", "fragment"),
    [
        ("group: 192.168.1.9", "ipvs.sync_daemon.group", "192.168.1.9 is not a multicast address"),
        ("ttl: 256", "ipvs.sync_daemon.ttl", "255"),
        ("port: 70000", "ipvs.sync_daemon.port", "65535"),
    ],
)
def test_bad_multicast_settings_are_refused(settings: str, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(SYNC_CONFIG.replace("SETTINGS", settings), default_node_name="n1")
    assert [(i.field, fragment in i.message) for i in refused.value.issues] == [(field, True)]


# --- controller over the simulated kernel ----------------------------------------------


async def test_start_runs_a_backup_daemon() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=False)
    with capture_logs() as logs:
        assert await controller.apply()
    assert kernel.roles() == {BACKUP: ("eth1", 51)}
    assert daemon_events(logs) == [("start", "backup", "eth1", 51)]


async def test_transitions_switch_roles_and_never_run_both() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=False)
    await controller.apply()
    # BACKUP, MASTER, FAULT, MASTER, BACKUP: the root says only whether it is MASTER.
    for master, role in [
        (False, BACKUP),
        (True, MASTER),
        (False, BACKUP),
        (True, MASTER),
        (False, BACKUP),
    ]:
        controller.vrrp_transitioned("VI_1", master=master)
        assert await controller.apply()
        assert kernel.roles() == {role: ("eth1", 51)}
    assert all(len(running) <= 1 for running in kernel.history)
    # BACKUP after INIT changed nothing; each of the 4 switches is one stop + one start.
    assert kernel.changes == 1 + 4 * 2


async def test_other_instances_are_ignored() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=False)
    controller.vrrp_transitioned("VI_2", master=True)
    await controller.apply()
    assert kernel.roles() == {BACKUP: ("eth1", 51)}


async def test_apply_is_idempotent_and_repairs_drift() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=True)
    await controller.apply()
    changes = kernel.changes
    with capture_logs() as logs:
        assert await controller.apply()
    assert kernel.changes == changes
    assert logs == []
    await kernel.stop_sync_daemon(MASTER)  # an operator's `ipvsadm --stop-daemon master`
    await controller.apply()
    assert kernel.roles() == {MASTER: ("eth1", 51)}


async def test_a_matching_daemon_is_adopted_and_a_foreign_one_replaced() -> None:
    kernel = FakeSyncKernel()
    await kernel.start_sync_daemon(SyncDaemon(BACKUP, "eth1", 51))
    await kernel.start_sync_daemon(SyncDaemon(MASTER, "eth2", 7))
    changes = kernel.changes
    controller = controller_for(kernel)
    controller.configure(TARGET, master=False)
    with capture_logs() as logs:
        await controller.apply()
    assert kernel.roles() == {BACKUP: ("eth1", 51)}
    assert kernel.changes == changes + 1  # only the master was stopped
    assert daemon_events(logs) == [
        ("adopt", "backup", "eth1", 51),
        ("stop", "master", "eth2", 7),
    ]
    await controller.stop()
    assert kernel.running == {}  # adopted, therefore ours to stop


async def test_reload_restarts_with_the_new_settings() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=True)
    await controller.apply()
    controller.configure(SyncTarget("VI_1", "eth2", 9), master=True)
    with capture_logs() as logs:
        await controller.apply()
    assert kernel.roles() == {MASTER: ("eth2", 9)}
    assert daemon_events(logs) == [("stop", "master", "eth1", 51), ("start", "master", "eth2", 9)]


async def test_dropping_the_config_stops_ours_and_leaves_others_alone() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=True)
    await controller.apply()
    controller.configure(None, master=True)
    await controller.apply()
    assert kernel.running == {}
    await kernel.start_sync_daemon(SyncDaemon(BACKUP, "eth2", 3))  # an operator's own
    await controller.apply()
    await controller.stop()
    assert kernel.roles() == {BACKUP: ("eth2", 3)}


async def test_failures_are_logged_and_retried_with_backoff() -> None:
    kernel = FakeSyncKernel(interfaces=())
    controller = controller_for(kernel, retry_interval_s=2, resync_interval_s=30)
    controller.configure(TARGET, master=False)
    with capture_logs() as logs:
        assert not await controller.apply()
        assert not await controller.apply()
    errors = [e for e in logs if e["event"] == "ipvs.sync_daemon_error"]
    assert [(e["action"], e["state"], e["interface"]) for e in errors] == [
        ("start", "backup", "eth1")
    ] * 2
    assert [e["retry_in_s"] for e in errors] == [2.0, 4.0]
    assert "No such device" in str(errors[0]["error"])
    assert (await controller.status()).error == "No such device"
    kernel.interfaces.add("eth1")
    assert await controller.apply()
    assert kernel.roles() == {BACKUP: ("eth1", 51)}
    assert (await controller.status()).error is None


async def test_every_pass_is_reported_to_the_metrics() -> None:
    registry = CollectorRegistry(auto_describe=False)
    metrics = DaemonMetrics(registry, version="1", node="n")
    kernel = FakeSyncKernel(interfaces=())
    controller = controller_for(kernel, on_pass=metrics.sync_daemon_pass)
    controller.configure(TARGET, master=False)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert not await controller.apply()  # no eth1 yet
    assert value("ipvsd_sync_daemon_errors_total") == 1
    assert value("ipvsd_sync_daemon_running", role="backup") is None
    kernel.interfaces.add("eth1")
    assert await controller.apply()
    assert (
        value("ipvsd_sync_daemon_running", role="backup"),
        value("ipvsd_sync_daemon_running", role="master"),
    ) == (1, 0)
    controller.vrrp_transitioned("VI_1", master=True)
    assert await controller.apply()
    assert value("ipvsd_sync_daemon_running", role="master") == 1
    assert value("ipvsd_sync_daemon_running", role="backup") == 0
    controller.configure(None, master=True)
    assert await controller.apply()
    assert value("ipvsd_sync_daemon_running", role="master") == 0


async def test_a_failed_read_reopens_the_backend() -> None:
    kernel = FakeSyncKernel()
    opened: list[int] = []

    async def open_backend() -> FakeSyncKernel:
        opened.append(1)
        if len(opened) == 1:
            raise IpvsUnavailable()
        return kernel

    controller = SyncDaemonController(open_backend)
    controller.configure(TARGET, master=False)
    with capture_logs() as logs:
        assert not await controller.apply()
    assert logs[0]["action"] == "read"
    assert "load the ip_vs module" in str(logs[0]["error"])
    assert await controller.apply()
    kernel.fail_reads = 1
    assert not await controller.apply()
    assert kernel.closed
    assert await controller.apply()
    assert len(opened) == 3


async def test_stop_stops_what_it_started_and_closes() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    controller.configure(TARGET, master=True)
    await controller.apply()
    await kernel.start_sync_daemon(SyncDaemon(BACKUP, "eth2", 3))  # appeared after our pass
    with capture_logs() as logs:
        await controller.stop()
    assert kernel.roles() == {BACKUP: ("eth2", 3)}
    assert kernel.closed
    assert daemon_events(logs) == [("stop", "master", "eth1", 51)]


async def _until(kernel: FakeSyncKernel, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            kernel.changed.clear()
            await kernel.changed.wait()


async def test_run_follows_transitions_and_retries() -> None:
    kernel = FakeSyncKernel(interfaces=())
    controller = controller_for(kernel, retry_interval_s=0.01, resync_interval_s=60)
    controller.configure(TARGET, master=False)
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await asyncio.sleep(0.03)
        assert kernel.running == {}
        kernel.interfaces.add("eth1")  # the interface appears: the retry picks it up
        await _until(kernel, lambda: kernel.roles() == {BACKUP: ("eth1", 51)})
        controller.vrrp_transitioned("VI_1", master=True)  # wakes it at once
        await _until(kernel, lambda: kernel.roles() == {MASTER: ("eth1", 51)})
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await controller.stop()
    assert kernel.running == {}


async def test_status_document_shows_the_sync_daemon() -> None:
    kernel = FakeSyncKernel()
    controller = controller_for(kernel)
    config = parse_config("{}", default_node_name="n1")

    def document(status: SyncDaemonStatus | None) -> object:
        doc = run_steps(
            status_document_steps(
                node="n1",
                version="0",
                config=config,
                kernel=None,
                health={},
                drained=set(),
                vrrp=[],
                sync_daemon=status,
            )
        )
        return to_json(doc)["sync_daemon"]

    assert document(None) is None
    controller.configure(TARGET, master=True)
    await controller.apply()
    assert document(await controller.status()) == {
        "vrrp_instance": "VI_1",
        "interface": "eth1",
        "sync_id": 51,
        "wanted": "master",
        "running": [
            {
                "state": "master",
                "interface": "eth1",
                "sync_id": 51,
                "mcast_group": "224.0.0.81",
                "mcast_port": 8848,
                "mcast_ttl": 1,
                "sync_maxlen": 1472,
            }
        ],
        "error": None,
    }
