"""The daemon in-process over a fake kernel: reload, drains, max_deletes, cleanup_on_exit.

`Daemon` runs on the test's event loop with `tests.fakes.kernel.FakePorts`
(an in-memory IPVS table with the kernel's semantics), its control socket in
the test's directory, no signal handlers, no metrics endpoint and no VRRP.
Each test writes a config, starts the daemon, drives it through
`daemon.view` (what the control socket calls) and `daemon.reload()`, and
asserts on the fake kernel's table. The kernel tier
(tests/kernel/test_reference_scenario.py) proves the same paths on IPVS.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ipvsd.config import load_config
from ipvsd.control.client import request
from ipvsd.daemon import Daemon
from ipvsd.daemon.lock import AlreadyRunning
from ipvsd.errors import ControlRequestError, IpvsdError
from ipvsd.ipvs.plan import AddDest, ApplyResult, EditDest, Operation
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    Service,
    ServiceAttrs,
    ServiceKey,
    Table,
)
from tests.fakes.ipvs import FakeIpvs
from tests.fakes.kernel import FakePorts

VIP = ip_address("192.168.1.200")
WEB = ServiceKey(Family.INET, Protocol.TCP, VIP, 80, 0)
DNS = ServiceKey(Family.INET, Protocol.UDP, VIP, 53, 0)
REAL_30 = DestKey(ip_address("192.168.1.30"), 80)
REAL_40 = DestKey(ip_address("192.168.1.40"), 80)
FOREIGN = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.9.9.9"), 8080, 0)


def config_text(
    socket: Path,
    *,
    weight_40: int = 1,
    reals: tuple[str, ...] = ("192.168.1.30", "192.168.1.40"),
    dns: bool = False,
    scheduler: str = "rr",
    ipvs_extra: str = "",
    services: bool = True,
    state_dir: Path | None = None,
    check: str = "",
) -> str:
    """A director config: the reference web service (and a DNS one), no VRRP.

    The admin state goes to ``state`` next to the socket unless `state_dir` says
    otherwise (never to /var/lib/ipvsd: the tests run as root).
    """
    lines = [
        "node_name: director1",
        f"state_dir: {state_dir or socket.parent / 'state'}",
        f"control: {{socket: {socket}}}",
        "metrics: {listen: null}",
        "ipvs:",
    ]
    lines += [f"  {line}" for line in ipvs_extra.splitlines()]
    if not services:
        lines.append("  services: []")
        return "\n".join(lines) + "\n"
    lines += [
        "  services:",
        f"    - {{address: 192.168.1.200, port: 80, scheduler: {scheduler}, {check}reals: [",
    ]
    for real in reals:
        weight = weight_40 if real.endswith(".40") else 1
        lines.append(f"        {{address: {real}, port: 80, weight: {weight}}},")
    lines.append("      ]}")
    if dns:
        lines.append(
            "    - {address: 192.168.1.200, port: 53, protocol: udp,"
            " reals: [{address: 192.168.1.30, port: 53}]}"
        )
    return "\n".join(lines) + "\n"


class Harness:
    """A running in-process daemon, its config file and its fake kernel."""

    def __init__(self, path: Path, daemon: Daemon, kernel: FakePorts) -> None:
        self.path = path
        self.daemon = daemon
        self.kernel = kernel

    def write(self, text: str) -> None:
        self.path.write_text(text)

    async def settle(self) -> None:
        """Run a reconcile pass now (the loop would run it on its own a tick later)."""
        reconciler = self.daemon.reconciler
        assert reconciler is not None
        await reconciler.reconcile("test")

    def weights(self, service: ServiceKey = WEB) -> dict[DestKey, int]:
        kernel = self.kernel.ipvs.table.services.get(service)
        assert kernel is not None, f"{service} is not in the kernel"
        return {key: dest.attrs.weight for key, dest in kernel.dests.items()}

    def metric(self, name: str, **labels: str) -> float | None:
        return self.daemon.registry.get_sample_value(name, labels)


@asynccontextmanager
async def running(
    tmp_path: Path, text: str | None = None, kernel: FakePorts | None = None
) -> AsyncIterator[Harness]:
    """Start a daemon over `kernel`; stop it (and check it stopped cleanly) on exit."""
    socket = tmp_path / "ipvsd.sock"
    path = tmp_path / "ipvsd.yaml"
    path.write_text(text if text is not None else config_text(socket))
    kernel = kernel or FakePorts()
    daemon = Daemon(
        path, load_config(path), ports=kernel.ports(), handle_signals=False, runtime_dir=tmp_path
    )
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(5):
            await asyncio.wait(
                [task, asyncio.create_task(daemon.started.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if task.done():
            task.result()  # raises the start-up error
        yield Harness(path, daemon, kernel)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 5) == 0


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "ipvsd.sock"


async def test_start_programs_the_table_and_answers_on_the_socket(
    tmp_path: Path, sock: Path
) -> None:
    async with running(tmp_path) as h:
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert h.daemon.view.ready()
        answer = await asyncio.to_thread(request, str(sock), {"command": "ready"})
        assert answer == {"ok": True, "result": {"ready": True}}
        assert h.kernel.route_checks, "the routing warning ran at start"


async def test_restart_adopts_the_table_without_an_operation(tmp_path: Path) -> None:
    kernel = FakePorts()
    async with running(tmp_path, kernel=kernel):
        pass
    before = kernel.ipvs.operations_seen
    async with running(tmp_path, kernel=kernel) as h:
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
    assert kernel.ipvs.operations_seen == before


async def test_reload_accepted_edits_the_kernel_in_place(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path) as h:
        h.write(config_text(sock, weight_40=3, dns=True))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 3}
        assert h.weights(DNS) == {DestKey(ip_address("192.168.1.30"), 53): 1}
        assert h.metric("ipvsd_config_reloads_total", result="success") == 1
        assert h.metric("ipvsd_config_last_reload_successful") == 1


async def test_reload_refused_for_a_bad_file_changes_nothing(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path) as h:
        before = h.kernel.ipvs.operations_seen
        h.write(config_text(sock, weight_40=3) + "bogus_key: 1\n")
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert errors[0].startswith(f"{h.path}:")
        assert "bogus_key" in errors[0]
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert h.kernel.ipvs.operations_seen == before
        assert h.daemon.config.ipvs.services[0].reals[1].weight == 1
        assert h.metric("ipvsd_config_reloads_total", result="failure") == 1
        assert h.metric("ipvsd_config_last_reload_successful") == 0


def backend(real: DestKey) -> dict[str, str]:
    return {
        "local_address": "192.168.1.200",
        "local_port": "80",
        "remote_address": str(real.address),
        "remote_port": str(real.port),
        "proto": "TCP",
        "local_mark": "",
    }


async def test_reload_drops_the_series_of_a_removed_real(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path) as h:
        assert h.metric("ipvsd_backend_up", **backend(REAL_40)) == 1
        h.write(config_text(sock, reals=("192.168.1.30",)))
        assert await h.daemon.reload() == []
        assert h.metric("ipvsd_backend_up", **backend(REAL_40)) is None
        assert h.metric("ipvsd_backend_up", **backend(REAL_30)) == 1


async def test_reload_refused_by_max_deletes_keeps_every_service(
    tmp_path: Path, sock: Path
) -> None:
    guard = "max_deletes: 0"
    async with running(tmp_path, config_text(sock, dns=True, ipvs_extra=guard)) as h:
        h.write(config_text(sock, dns=False, ipvs_extra=guard))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert "max_deletes" in errors[0]
        await h.settle()
        assert set(h.kernel.ipvs.table.services) == {WEB, DNS}
        assert h.metric("ipvsd_config_reloads_total", result="failure") == 1
        # Within the limit, the same deletion goes through.
        h.write(config_text(sock, dns=False, ipvs_extra="max_deletes: 2"))
        assert await h.daemon.reload() == []
        await h.settle()
        assert set(h.kernel.ipvs.table.services) == {WEB}


async def test_reload_refused_when_services_need_ipvs_the_kernel_lacks(
    tmp_path: Path, sock: Path
) -> None:
    kernel = FakePorts(ipvs_available=False)
    async with running(tmp_path, config_text(sock, services=False), kernel=kernel) as h:
        h.write(config_text(sock))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert "IPVS" in errors[0]
        assert h.daemon.reconciler is None
        assert not h.daemon.config.ipvs.services


async def test_reload_adds_services_to_a_pure_vrrp_daemon(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path, config_text(sock, services=False)) as h:
        assert h.kernel.opened == []
        h.write(config_text(sock))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}


async def test_partial_reload_applies_what_the_kernel_accepts(tmp_path: Path, sock: Path) -> None:
    """A scheduler the kernel lacks: the other changes go in, the refusal is counted."""
    kernel = FakePorts(ipvs=FakeIpvs(schedulers={"rr", "wlc"}))
    async with running(tmp_path, kernel=kernel) as h:
        h.write(config_text(sock, weight_40=5, dns=True).replace("scheduler: rr", "scheduler: mh"))
        assert await h.daemon.reload() == []
        await h.settle()
        services = h.kernel.ipvs.table.services
        assert services[WEB].attrs.scheduler == "rr", "the refused edit changed nothing"
        assert h.weights() == {REAL_30: 1, REAL_40: 5}, "the dest edit still went in"
        assert DNS in services, "the new service still went in"
        assert (h.metric("ipvsd_reconcile_errors_total") or 0) >= 1
        status = await h.daemon.view.status()
        assert [s.scheduler for s in status.services] == ["mh", "wlc"]


async def test_reload_that_fails_while_applying_is_reported_and_counted(
    tmp_path: Path, sock: Path
) -> None:
    """IPVS vanishes between the reload's check and its start: an error, never silence."""
    kernel = FakePorts(opens_left=1)
    async with running(tmp_path, config_text(sock, services=False), kernel=kernel) as h:
        h.write(config_text(sock))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert errors[0].startswith("reload failed, the running config is kept:")
        assert h.metric("ipvsd_config_reloads_total", result="failure") == 1


async def test_drain_survives_reloads_until_its_real_is_removed(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path) as h:
        h.daemon.view.drain(WEB, REAL_30)
        await h.settle()
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
        h.write(config_text(sock, weight_40=2))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 0, REAL_40: 2}, "the drain outlived the reload"
        h.daemon.view.undrain(WEB, REAL_30)
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 2}
        h.daemon.view.drain(WEB, REAL_30)
        h.write(config_text(sock, reals=("192.168.1.40",)))
        assert await h.daemon.reload() == []
        h.write(config_text(sock))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}, "a removed real's drain is forgotten"


@pytest.mark.parametrize(
    ("service", "real", "message"),
    [
        (WEB, DestKey(ip_address("192.168.1.99"), 80), "has no real"),
        (DNS, REAL_30, "no service"),
    ],
)
async def test_drain_of_what_is_not_configured_is_refused(
    tmp_path: Path, service: ServiceKey, real: DestKey, message: str
) -> None:
    async with running(tmp_path) as h:
        with pytest.raises(ControlRequestError, match=message):
            h.daemon.view.drain(service, real)
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}


def _foreign_table() -> Table:
    attrs = ServiceAttrs(scheduler="wlc")
    dest = DestAttrs(ForwardMethod.DR, weight=1)
    key = DestKey(ip_address("10.9.9.10"), 8080)
    return Table.of([Service(FOREIGN, attrs, {key: Dest(key, dest)})])


@pytest.mark.parametrize(
    ("cleanup", "left"),
    [(True, {FOREIGN}), (False, {FOREIGN, WEB, DNS})],
)
async def test_cleanup_on_exit_deletes_only_our_services(
    tmp_path: Path, sock: Path, cleanup: bool, left: set[ServiceKey]
) -> None:
    kernel = FakePorts(ipvs=FakeIpvs(_foreign_table()))
    extra = f"cleanup_on_exit: {str(cleanup).lower()}"
    async with running(tmp_path, config_text(sock, dns=True, ipvs_extra=extra), kernel=kernel):
        assert set(kernel.ipvs.table.services) == {FOREIGN, WEB, DNS}
    assert set(kernel.ipvs.table.services) == left
    assert all(opened.closed for opened in kernel.opened[:1])


async def test_a_second_daemon_exits_before_touching_the_kernel(tmp_path: Path, sock: Path) -> None:
    """It used to program IPVS, fail on the socket, then run cleanup_on_exit over our table."""
    async with running(tmp_path, config_text(sock, ipvs_extra="cleanup_on_exit: true")) as h:
        other = tmp_path / "other"
        other.mkdir()
        path = other / "ipvsd.yaml"
        path.write_text(config_text(other / "ipvsd.sock", weight_40=7))
        second = Daemon(
            path, load_config(path), ports=h.kernel.ports(), handle_signals=False,
            runtime_dir=tmp_path,
        )  # fmt: skip
        before = h.kernel.ipvs.operations_seen
        with pytest.raises(AlreadyRunning, match=rf"already running .*\(pid {os.getpid()}\)"):
            await asyncio.wait_for(second.run(), 5)
        assert h.kernel.opened[1:] == [], "the second daemon opened no IPVS connection"
        assert h.kernel.ipvs.operations_seen == before
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert not (other / "ipvsd.sock").exists()


async def test_the_lock_is_free_again_after_a_stop(tmp_path: Path) -> None:
    kernel = FakePorts()
    async with running(tmp_path, kernel=kernel):
        pass
    async with running(tmp_path, kernel=kernel) as h:
        assert h.daemon.view.ready()


async def test_cleanup_on_exit_never_runs_after_a_failed_start(tmp_path: Path, sock: Path) -> None:
    """A start that fails after the first reconcile (socket path taken) leaves the table."""
    os.mkdir(sock)  # something that is not a socket: the control server refuses it
    path = tmp_path / "ipvsd.yaml"
    path.write_text(config_text(sock, ipvs_extra="cleanup_on_exit: true"))
    kernel = FakePorts()
    daemon = Daemon(
        path, load_config(path), ports=kernel.ports(), handle_signals=False, runtime_dir=tmp_path
    )
    with pytest.raises(IpvsdError, match="not a socket"):
        await asyncio.wait_for(daemon.run(), 5)
    assert set(kernel.ipvs.table.services) == {WEB}


# --- durable drains (issue #11 item 6) --------------------------------------------------------


class RecordingIpvs(FakeIpvs):
    """A `FakeIpvs` that also keeps every operation it was sent, in order."""

    def __init__(self, table: Table | None = None) -> None:
        super().__init__(table)
        self.sent: list[Operation] = []

    def apply_sync(self, operations: Iterable[Operation]) -> ApplyResult:
        batch = list(operations)
        self.sent.extend(batch)
        return super().apply_sync(batch)


def weights_written(ipvs: RecordingIpvs, real: DestKey) -> list[int]:
    """Every weight the daemon gave `real` in the web service, in order."""
    return [
        op.attrs.weight
        for op in ipvs.sent
        if isinstance(op, AddDest | EditDest) and op.service == WEB and op.key == real
    ]


async def test_a_drain_outlives_a_restart_and_so_does_an_undrain(
    tmp_path: Path, sock: Path
) -> None:
    kernel = FakePorts()
    async with running(tmp_path, kernel=kernel) as h:
        h.daemon.view.drain(WEB, REAL_30)
        await h.settle()
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
    before = kernel.ipvs.operations_seen
    async with running(tmp_path, kernel=kernel) as h:
        assert h.daemon.view.ready()
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
        assert kernel.ipvs.operations_seen == before, "the drained table adopted as it is"
        assert h.daemon._parts.health.drained == {(WEB, REAL_30)}
        h.daemon.view.undrain(WEB, REAL_30)
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
    async with running(tmp_path, kernel=FakePorts()) as h:
        assert h.weights() == {REAL_30: 1, REAL_40: 1}, "the undrain was kept too"
        assert h.daemon._parts.health.drained == set()


async def test_a_kept_drain_is_weight_0_from_the_first_write_into_an_empty_kernel(
    tmp_path: Path,
) -> None:
    """After a reboot (IPVS empty) the drained real is added at weight 0, never at 1 first."""
    async with running(tmp_path) as h:
        h.daemon.view.drain(WEB, REAL_30)
    rebooted = RecordingIpvs()
    async with running(tmp_path, kernel=FakePorts(ipvs=rebooted)) as h:
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
    assert weights_written(rebooted, REAL_30) == [0]
    assert weights_written(rebooted, REAL_40) == [1]


async def test_a_drain_is_answered_over_the_socket_and_written_before_it_is_made(
    tmp_path: Path, sock: Path
) -> None:
    async with running(tmp_path):
        answer = await asyncio.to_thread(
            request,
            str(sock),
            {"command": "drain", "service": "192.168.1.200:80", "real": "192.168.1.30:80"},
        )
        assert answer["ok"] is True
        kept = json.loads((tmp_path / "state" / "drains.json").read_text())
        assert kept == {
            "version": 1,
            "drains": [{"service": "192.168.1.200:80", "real": "192.168.1.30:80"}],
        }


async def test_a_drain_that_cannot_be_written_is_refused_and_changes_nothing(
    tmp_path: Path, sock: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # the state dir cannot be made under it (ENOTDIR, even for root)
    text = config_text(sock, state_dir=blocker / "state")
    async with running(tmp_path, text) as h:
        with capture_logs() as logs:
            answer = await asyncio.to_thread(
                request,
                str(sock),
                {"command": "drain", "service": "192.168.1.200:80", "real": "192.168.1.30:80"},
            )
        assert answer["ok"] is False
        assert "not changed, the drains could not be kept" in answer["error"]
        assert f"{blocker}/state/drains.json" in answer["error"]
        assert h.daemon._parts.health.drained == set()
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert "state.drains_not_saved" in [event["event"] for event in logs]
        with pytest.raises(ControlRequestError, match="could not be kept"):
            h.daemon.view.undrain(WEB, REAL_30)


async def test_an_undrain_that_cannot_be_written_keeps_the_drain(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as h:
        h.daemon.view.drain(WEB, REAL_30)

        def disk_full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", disk_full)
        with pytest.raises(ControlRequestError, match="No space left on device"):
            h.daemon.view.undrain(WEB, REAL_30)
        monkeypatch.undo()
        await h.settle()
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
        assert h.daemon._parts.health.drained == {(WEB, REAL_30)}


@pytest.mark.parametrize(
    "text",
    [
        '{"version": 1, "drains": [{"service": "192.168.1.200:80", "real": "192.1',
        "\x00\x00\x00\x00",
        '{"version": 99, "drains": []}',
    ],
)
async def test_a_torn_state_file_is_reported_kept_aside_and_the_start_goes_on(
    tmp_path: Path, text: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "drains.json").write_text(text)
    with capture_logs() as logs:
        async with running(tmp_path) as h:
            assert h.daemon.view.ready()
            assert h.weights() == {REAL_30: 1, REAL_40: 1}
            h.daemon.view.drain(WEB, REAL_30)  # and drains work again
    errors = [event for event in logs if event["event"] == "state.drains_unreadable"]
    assert len(errors) == 1
    assert errors[0]["log_level"] == "error"
    assert errors[0]["path"] == str(state / "drains.json")
    assert errors[0]["reason"]
    assert (state / "drains.json.corrupt").read_text() == text
    assert json.loads((state / "drains.json").read_text())["drains"] == [
        {"service": "192.168.1.200:80", "real": "192.168.1.30:80"}
    ]


async def test_a_kept_drain_of_a_real_no_longer_configured_is_dropped_at_start(
    tmp_path: Path, sock: Path
) -> None:
    async with running(tmp_path) as h:
        h.daemon.view.drain(WEB, REAL_30)
        h.daemon.view.drain(WEB, REAL_40)
    with capture_logs() as logs:
        async with running(tmp_path, config_text(sock, reals=("192.168.1.40",))) as h:
            assert h.weights() == {REAL_40: 0}
            assert h.daemon._parts.health.drained == {(WEB, REAL_40)}
    dropped = [event for event in logs if event["event"] == "state.drain_dropped"]
    assert [(e["service"], e["real"]) for e in dropped] == [("192.168.1.200:80", "192.168.1.30:80")]
    # Forgotten on disk too: the real's return does not bring its old drain back.
    async with running(tmp_path) as h:
        assert h.weights() == {REAL_30: 1, REAL_40: 0}


async def test_an_adopted_real_at_weight_0_stays_0_until_its_checks_pass(
    tmp_path: Path, sock: Path
) -> None:
    """README: a checked real the kernel holds at weight 0 keeps it until `rise` checks pass."""
    kernel = FakePorts()
    async with running(tmp_path, kernel=kernel) as h:
        attrs = kernel.ipvs.table.services[WEB].dests[REAL_30].attrs
    kernel.ipvs.apply_sync([EditDest(WEB, REAL_30, replace(attrs, weight=0))])
    before = kernel.ipvs.operations_seen
    # No check ends while the test runs (60 s interval): only adoption decides.
    checked = config_text(sock, check="check: {type: tcp, interval: 60, rise: 2}, ")
    async with running(tmp_path, checked, kernel=kernel) as h:
        assert h.weights() == {REAL_30: 0, REAL_40: 1}
        assert kernel.ipvs.operations_seen == before
        status = await h.daemon.view.status()
        assert [r.health for r in status.services[0].reals] == ["down", "up"]


async def test_cleanup_on_exit_with_a_fwmark_service_beside_address_ones(
    tmp_path: Path, sock: Path
) -> None:
    """A fwmark key has no address: the cleanup's ordering used to raise
    TypeError on SIGTERM, exit 1 and delete nothing (every keepalived import
    with a fwmark service sets cleanup_on_exit)."""
    kernel = FakePorts()
    text = config_text(sock, ipvs_extra="cleanup_on_exit: true").replace(
        "  services:\n",
        "  services:\n    - {fwmark: 7, reals: [{address: 192.168.1.30, port: 0}]}\n",
    )
    async with running(tmp_path, text, kernel=kernel):
        assert len(kernel.ipvs.table.services) == 2
    assert kernel.ipvs.table.services == {}


async def test_status_says_why_and_since_when_a_checked_real_is_down(
    tmp_path: Path, sock: Path
) -> None:
    """Issue 12 item 5: the last check's reason and the time of the change, per real."""
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up_port = listener.sockets[0].getsockname()[1]
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    check = f"check: {{type: tcp, interval: 0.2, fall: 1, address: 127.0.0.1, port: {up_port}}}, "
    text = config_text(sock, check=check).replace(
        "{address: 192.168.1.40, port: 80, weight: 1}",
        f"{{address: 192.168.1.40, port: 80, weight: 1, check: {{port: {closed_port}}}}}",
    )
    before = datetime.now(UTC).replace(microsecond=0)
    async with listener, running(tmp_path, text) as h:
        for _ in range(100):  # the first checks end within 0.2 s (the interval)
            status = await h.daemon.view.status()
            if {r.health for r in status.services[0].reals} == {"up", "down"}:
                break
            await asyncio.sleep(0.05)
        after = datetime.now(UTC)
        answer = await asyncio.to_thread(request, str(sock), {"command": "status"})
    reals = {r["address"]: r for r in answer["result"]["services"][0]["reals"]}
    down, up = reals["192.168.1.40"], reals["192.168.1.30"]
    assert (down["health"], down["health_reason"]) == ("down", "connection refused")
    assert (up["health"], up["health_reason"]) == ("up", "connected")
    for entry in (down, up):
        since = datetime.fromisoformat(entry["health_since"])
        assert before <= since <= after, (entry, before, after)
