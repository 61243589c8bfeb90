"""Reload is all or nothing: guards, preflight, rebinding and rollback (issue #11).

The daemon runs in-process over the fake kernel (`tests.unit.test_daemon`'s
harness). Each test asks for a reload that must be refused, or that fails
while applying, and checks that what ran before still runs: the config in
force, the kernel table, the control socket and the metrics endpoint.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.request
from pathlib import Path
from typing import NoReturn

import pytest

from ipvsd.config import load_config, parse_config
from ipvsd.control.client import request
from ipvsd.daemon import reload as reload_policy
from ipvsd.daemon.admin_state import DrainStore
from ipvsd.daemon.components import Components
from ipvsd.daemon.view import DaemonView
from ipvsd.health.manager import HealthManager
from ipvsd.vrrp.machine import VrrpState
from tests.fakes.kernel import FakePorts
from tests.unit.test_daemon import DNS, REAL_30, REAL_40, WEB, config_text, running

VRRP = """vrrp:
  instances:
    - {name: VI_1, interface: eth1, vrid: 51, priority: 100,
       virtual_ipaddresses: [192.168.1.200/24]}
"""


def with_vrrp(text: str, interface: str = "eth1") -> str:
    return text + VRRP.replace("eth1", interface)


def exists(path: Path) -> bool:
    return path.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def metrics_port(text: str, port: int) -> str:
    return text.replace("metrics: {listen: null}", f"metrics: {{listen: '127.0.0.1:{port}'}}")


async def scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body: bytes = reply.read()
        return body.decode()

    return await asyncio.to_thread(get)


async def ask(path: Path, payload: dict[str, object]) -> dict[str, object]:
    return await asyncio.to_thread(request, str(path), payload)


# --- the policy, over the components alone -----------------------------------------------


async def _never_opened() -> NoReturn:
    raise AssertionError("no IPVS is needed for this check")


async def _exists(name: str) -> bool:
    return name in {"lo", "eth1"}


def components(text: str) -> Components:
    return Components(config=parse_config(text), health=HealthManager(on_change=lambda: None))


async def refusal(running_text: str, new_text: str, *, force: bool = False) -> str | None:
    return await reload_policy.refusal(
        parse_config(new_text),
        components(running_text),
        _never_opened,
        interface_exists=_exists,
        force=force,
    )


async def test_a_config_without_any_vrrp_instance_is_refused_unless_forced(sock: Path) -> None:
    running_text = with_vrrp(config_text(sock, services=False))
    truncated = "node_name: director1\n"
    reason = await refusal(running_text, truncated)
    assert reason is not None
    assert "no VRRP instance" in reason
    assert "VI_1" in reason
    assert "ipvsd reload --force" in reason
    assert await refusal(running_text, truncated, force=True) is None


async def test_an_instance_on_a_missing_interface_is_refused_with_its_field(sock: Path) -> None:
    base = config_text(sock, services=False)
    reason = await refusal(base, with_vrrp(base, interface="eth9"))
    assert reason is not None
    assert reason.startswith("vrrp.instances.0.interface: no interface 'eth9'")
    # Forcing is no answer to a missing interface.
    assert await refusal(base, with_vrrp(base, interface="eth9"), force=True) == reason
    assert await refusal(base, with_vrrp(base)) is None


async def test_an_unchanged_instance_on_a_missing_interface_is_not_checked_again(
    sock: Path,
) -> None:
    """It runs (or waits in FAULT) as before; refusing every later reload would help no one."""
    base = with_vrrp(config_text(sock, services=False), interface="eth9")
    assert await refusal(base, base.replace("node_name: director1", "node_name: d1")) is None


# --- the daemon, in-process --------------------------------------------------------------


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "ipvsd.sock"


async def test_max_deletes_refusal_names_the_force_flag_and_force_applies_it(
    tmp_path: Path, sock: Path
) -> None:
    guard = "max_deletes: 0"
    async with running(tmp_path, config_text(sock, dns=True, ipvs_extra=guard)) as h:
        h.write(config_text(sock, ipvs_extra=guard))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert "max_deletes=0" in errors[0]
        assert errors[0].endswith("`ipvsd reload --force` applies it anyway")
        await h.settle()
        assert set(h.kernel.ipvs.table.services) == {WEB, DNS}
        answer = await ask(sock, {"command": "reload", "force": True})
        assert answer == {"ok": True, "result": {"reloaded": True}}
        await h.settle()
        assert set(h.kernel.ipvs.table.services) == {WEB}


async def test_force_must_be_a_boolean(tmp_path: Path, sock: Path) -> None:
    async with running(tmp_path):
        answer = await ask(sock, {"command": "reload", "force": "yes"})
        assert answer == {"ok": False, "error": '"force" must be true or false'}


async def test_a_new_instance_on_a_missing_interface_changes_nothing(
    tmp_path: Path, sock: Path
) -> None:
    async with running(tmp_path) as h:
        before = h.kernel.ipvs.operations_seen
        h.write(with_vrrp(config_text(sock, weight_40=9), interface="eth9"))
        errors = await h.daemon.reload()
        assert errors == [
            "vrrp.instances.0.interface: no interface 'eth9' on this host (instance VI_1); "
            "nothing was changed"
        ]
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert h.kernel.ipvs.operations_seen == before
        assert not h.daemon.config.vrrp.instances
        assert h.metric("ipvsd_config_last_reload_successful") == 0


async def test_the_control_socket_moves_with_a_reload(tmp_path: Path, sock: Path) -> None:
    moved = tmp_path / "moved.sock"
    async with running(tmp_path) as h:
        h.write(config_text(moved))
        assert await h.daemon.reload() == []
        await asyncio.sleep(0)  # the old server closes in the background
        answer = await ask(moved, {"command": "ready"})
        assert answer == {"ok": True, "result": {"ready": True}}
        for _ in range(50):
            if not exists(sock):
                break
            await asyncio.sleep(0.01)
        assert not exists(sock)


async def test_a_control_socket_that_cannot_be_bound_refuses_the_reload(
    tmp_path: Path, sock: Path
) -> None:
    taken = tmp_path / "taken"
    os.mkdir(taken)  # a directory where the socket should go
    async with running(tmp_path) as h:
        h.write(config_text(taken, weight_40=4))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert "not a socket" in errors[0]
        assert (await ask(sock, {"command": "ready"}))["ok"] is True
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
        assert str(h.daemon.config.control.socket) == str(sock)


async def test_the_metrics_endpoint_moves_and_a_taken_port_refuses_the_reload(
    tmp_path: Path, sock: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        async with running(tmp_path) as h:
            port = free_port()
            h.write(metrics_port(config_text(sock), port))
            assert await h.daemon.reload() == []
            assert "ipvsd_build_info" in await scrape(port)
            h.write(metrics_port(config_text(sock, weight_40=6), taken))
            errors = await h.daemon.reload()
            assert len(errors) == 1
            assert errors[0].startswith("reload failed, the running config is kept: metrics.listen")
            assert "ipvsd_config_last_reload_successful 0.0" in await scrape(port)
            await h.settle()
            assert h.weights() == {REAL_30: 1, REAL_40: 1}


async def test_a_failure_while_applying_rolls_back_what_was_applied(
    tmp_path: Path, sock: Path
) -> None:
    """The socket moved first, then IPVS failed to start: the socket moves back."""
    moved = tmp_path / "moved.sock"
    kernel = FakePorts(opens_left=1)  # the policy's check opens IPVS; the start finds none
    async with running(tmp_path, config_text(sock, services=False), kernel=kernel) as h:
        h.write(config_text(moved))
        errors = await h.daemon.reload()
        assert len(errors) == 1
        assert errors[0].startswith("reload failed, the running config is kept:")
        assert not h.daemon.config.ipvs.services
        assert str(h.daemon.config.control.socket) == str(sock)
        assert (await ask(sock, {"command": "ready"}))["ok"] is True
        assert not exists(moved)


async def test_sighups_that_arrive_during_a_reload_make_one_more(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_load(path: Path) -> object:
        entered.set()
        assert release.wait(5)
        return load_config(path)

    async with running(tmp_path) as h:
        monkeypatch.setattr("ipvsd.daemon.root.load_config", slow_load)
        h.daemon._spawn_reload()
        h.daemon._spawn_reload()  # before it reads the file: the same reload covers it
        assert await asyncio.to_thread(entered.wait, 5)
        for _ in range(4):  # while it runs: one more reload, not four
            h.daemon._spawn_reload()
        release.set()
        for _ in range(300):
            if not h.daemon._reloads:
                break
            await asyncio.sleep(0.01)
        assert h.metric("ipvsd_config_reloads_total", result="success") == 2


async def test_the_file_is_parsed_off_the_event_loop(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []

    def recording_load(path: Path) -> object:
        threads.append(threading.current_thread())
        return load_config(path)

    monkeypatch.setattr("ipvsd.daemon.root.load_config", recording_load)
    async with running(tmp_path) as h:
        assert await h.daemon.reload() == []
    assert threads
    assert threads[0] is not threading.main_thread()


async def test_a_reload_that_drops_a_drained_real_forgets_it_on_disk_too(
    tmp_path: Path, sock: Path
) -> None:
    """Else bringing the real back later would find the old drain at the next restart."""
    kernel = FakePorts()
    async with running(tmp_path, kernel=kernel) as h:
        h.daemon.view.drain(WEB, REAL_40)
        h.write(config_text(sock, reals=("192.168.1.30",)))
        assert await h.daemon.reload() == []
        h.write(config_text(sock))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}
    async with running(tmp_path, kernel=kernel) as h:
        await h.settle()
        assert h.weights() == {REAL_30: 1, REAL_40: 1}


class _States:
    def __init__(self, states: dict[str, VrrpState]) -> None:
        self._states = states

    def states(self) -> dict[str, VrrpState]:
        return self._states


@pytest.mark.parametrize(
    ("state", "ready"),
    [
        (VrrpState.MASTER, True),
        (VrrpState.BACKUP, True),
        (VrrpState.INIT, False),
        (VrrpState.FAULT, False),  # a failed instance, or one waiting for its interface
    ],
)
def test_ready_needs_every_instance_out_of_init_and_fault(
    sock: Path, state: VrrpState, ready: bool
) -> None:
    parts = components(config_text(sock, services=False))
    parts.ready = True
    parts.vrrp = _States({"VI_1": VrrpState.MASTER, "VI_2": state})  # type: ignore[assignment]
    view = DaemonView(
        parts, reload=_never_opened, drains_changed=lambda: None, drains=DrainStore(sock.parent)
    )
    assert view.ready() is ready


async def test_ipvs_metrics_appear_when_a_reload_adds_the_first_services(
    tmp_path: Path, sock: Path
) -> None:
    port = free_port()
    text = metrics_port(config_text(sock, services=False), port)
    async with running(tmp_path, text) as h:
        page = await scrape(port)
        assert "ipvsd_build_info" in page
        assert "ipvs_backend_weight" not in page  # a pure VRRP daemon: no IPVS series at all
        assert "ipvsd_scrape_error" not in page
        h.write(metrics_port(config_text(sock), port))
        assert await h.daemon.reload() == []
        await h.settle()
        page = await scrape(port)
        assert 'ipvs_backend_weight{local_address="192.168.1.200"' in page
        assert "ipvsd_scrape_error 0.0" in page
        assert "ipvsd_scrape_error 0.0" in await scrape(port)
        await asyncio.sleep(0)  # the scrape's offer of its dump reaches the loop
        # The next drift repair plans against the scrape's read, not one of its own.
        dumps = h.kernel.connection_dumps
        await h.daemon.reconciler.reconcile("resync")  # type: ignore[union-attr]
        assert h.kernel.connection_dumps == dumps
        await h.daemon.reconciler.reconcile("resync")  # type: ignore[union-attr]
        assert h.kernel.connection_dumps == dumps + 1
        # The scrape reads through a reader of its own, opened once, closed at exit.
        readers = list(h.kernel.readers)
        assert len(readers) == 1
    assert readers[0].closed


async def test_a_reload_parses_off_the_loop_at_background_priority(
    tmp_path: Path, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parse runs in a thread of its own at nice +10: on a busy CPU the loop
    and the advert sender go first (issue 11 item 7)."""
    from ipvsd.daemon import root

    seen: list[tuple[str, int]] = []

    def parse(path: Path) -> object:
        thread = threading.current_thread()
        seen.append((thread.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return load_config(path)

    monkeypatch.setattr(root, "load_config", parse)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    async with running(tmp_path) as h:
        assert await h.daemon.reload() == []
    ((name, nice),) = seen
    assert name.startswith("ipvsd-parse")
    assert nice == min(19, own + 10)
