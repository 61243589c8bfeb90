"""`VrrpRouter` over a simulated host (`tests.fakes.vrrp_io`): supervision of
failed instances, receivers and the link watch, instances waiting for an
interface or an address, and reloads applied in place (issue #11, items 4 and 2).

Owners (priority 255) are used where a MASTER is needed: they take over at
Startup (RFC 3768 §6.4.1), so nothing waits for a Master_Down_Interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.errors import KernelError
from ipvsd.netlink.links import LinkInfo
from ipvsd.vrrp.backoff import RestartPolicy
from ipvsd.vrrp.instance import VrrpInstance
from ipvsd.vrrp.machine import Transitioned, VrrpState
from ipvsd.vrrp.pacer import AdvertPacer, DirectPacer
from ipvsd.vrrp.packet import Advertisement, encode_ip
from ipvsd.vrrp.prelisten import EarlyListeners
from ipvsd.vrrp.router import VrrpRouter
from ipvsd.vrrp.transport import ReceivedPacket
from tests.fakes.vrrp_io import FakeHost, FakeWire

INIT, BACKUP, MASTER, FAULT = VrrpState.INIT, VrrpState.BACKUP, VrrpState.MASTER, VrrpState.FAULT
VIP = IPv4Interface("192.168.1.200/24")
VIP2 = IPv4Interface("192.168.1.201/24")
FAST = RestartPolicy(first_s=0.02, max_s=0.08, healthy_s=60)


def config(name: str = "VI_1", **fields: Any) -> VrrpInstanceConfig:
    values: dict[str, Any] = {
        "name": name,
        "interface": "eth1",
        "vrid": 51,
        "priority": 255,
        "virtual_ipaddresses": (str(VIP),),
        "garp_delay": 0,
    }
    return VrrpInstanceConfig(**(values | fields))


class Rig:
    """A router on a FakeHost, with what its hooks were told."""

    def __init__(self, host: FakeHost | None = None, pacer: AdvertPacer | None = None) -> None:
        self.host = host or FakeHost()
        self.wire = FakeWire(self.host)
        self.failures: list[tuple[str, str]] = []
        self.transitions: list[tuple[str, Transitioned]] = []
        self.rejects: list[tuple[str, str]] = []
        self.router = VrrpRouter(
            self.host,
            self.host,
            on_transition=lambda i, t: self.transitions.append((i.name, t)),
            on_reject=lambda iface, reason: self.rejects.append((iface, reason)),
            on_failure=lambda name, reason: self.failures.append((name, reason)),
            restart=FAST,
            endpoint_factory=self.wire.endpoint,
            pacer=pacer or DirectPacer(),
        )

    def instance(self, name: str = "VI_1") -> VrrpInstance:
        return self.router.instances[name]

    def state(self, name: str = "VI_1") -> VrrpState:
        return self.instance(name).status.state

    def reasons(self, name: str = "VI_1") -> list[tuple[VrrpState, str]]:
        return [(t.new, t.reason) for n, t in self.transitions if n == name]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    rig.host.add_link("eth1", address="192.168.1.10/24")
    yield rig
    await rig.router.stop()


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


# --- supervision of a failed instance (item 4) -------------------------------------------


async def test_a_failed_instance_releases_goes_fault_is_counted_and_restarts(rig: Rig) -> None:
    rig.host.fail_add["eth1"] = RuntimeError("kernel said something new")
    await rig.router.start([config()], [])
    await until(lambda: len(rig.failures) >= 2)
    instance = rig.instance()
    assert instance.status.state is FAULT
    assert instance.status.fault_reason is not None
    assert "kernel said something new" in instance.status.fault_reason
    assert rig.failures[0] == ("VI_1", "RuntimeError: kernel said something new")
    assert instance.status.failures >= 2
    # The owner advertised (255) before adding the VIPs, so each failure resigned (0).
    assert rig.wire.sent()[:4] == [255, 0, 255, 0]
    assert rig.host.vips() == set()
    assert (FAULT, "instance_failed") in rig.reasons()

    del rig.host.fail_add["eth1"]  # the cause goes away: the next restart works
    await until(lambda: rig.state() is MASTER)
    assert rig.host.vips() == {VIP}
    assert instance.status.fault_reason is None


async def test_the_back_off_doubles_up_to_its_cap(rig: Rig) -> None:
    rig.host.fail_add["eth1"] = RuntimeError("boom")
    started = time.monotonic()
    await rig.router.start([config()], [])
    await until(lambda: len(rig.failures) >= 5, within=3)
    # Waits 0.02, 0.04, 0.08, 0.08 between five failures: at least 0.22 s.
    assert time.monotonic() - started >= 0.2


async def test_a_master_that_fails_later_resigns_and_releases_its_vips(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    rig.host.fail_add["eth1"] = RuntimeError("boom")
    # A reload adding a VIP while MASTER: its add raises, the runner fails.
    await rig.router.update([config(virtual_ipaddresses=(str(VIP), str(VIP2)))], [])
    await until(lambda: bool(rig.failures))
    assert rig.state() is FAULT
    assert rig.host.vips() == set()
    assert rig.wire.sent()[:2] == [255, 0]
    del rig.host.fail_add["eth1"]
    await until(lambda: rig.state() is MASTER)
    assert rig.host.vips() == {VIP, VIP2}


async def test_a_failing_instance_does_not_delay_a_healthy_one(rig: Rig) -> None:
    rig.host.add_link("eth2", address="192.168.2.10/24")
    rig.host.fail_add["eth2"] = RuntimeError("boom")
    healthy = config(advert_int=1)
    broken = config("VI_2", interface="eth2", vrid=52, virtual_ipaddresses=("192.168.2.200/24",))
    await rig.router.start([healthy, broken], [])
    await asyncio.sleep(1.3)
    assert rig.state("VI_1") is MASTER
    assert rig.wire.sent("eth1") == [255, 255]  # on time: at 0 and 1 s
    assert len(rig.failures) >= 5


async def test_stop_during_the_back_off_notifies_stop_and_ends(rig: Rig) -> None:
    rig.host.fail_add["eth1"] = RuntimeError("boom")
    calls: list[str] = []

    async def runner(argv: tuple[str, ...], kind: str, name: str, state: str) -> Any:
        calls.append(state)

    await rig.router.start([config(notify="/bin/true")], [])
    rig.instance().notifier._run = runner
    await until(lambda: bool(rig.failures))
    await rig.router.stop()
    assert calls[-1] == "STOP"
    assert "FAULT" in calls


# --- an interface or address that is not there yet (item 4) ------------------------------


async def test_no_address_at_start_is_fault_until_it_appears() -> None:
    rig = Rig()
    rig.host.add_link("eth1")  # up, but no IPv4 address yet (boot-order race)
    try:
        await rig.router.start([config(priority=100)], [])
        await until(lambda: rig.state() is FAULT)
        reason = rig.instance().status.fault_reason
        assert reason == "interface eth1 has no IPv4 address to send adverts from"

        rig.host.add_address("eth1", "192.168.1.10/24")
        await until(lambda: rig.state() is BACKUP)
        assert rig.reasons() == [(FAULT, "no_address"), (BACKUP, "address_up")]
        assert rig.instance().status.fault_reason is None
        assert rig.instance().status.primary_ip == IPv4Address("192.168.1.10")
        assert (rig.failures, rig.host.watch_starts) == ([], 1)  # no restart
    finally:
        await rig.router.stop()


async def test_a_missing_interface_at_start_is_fault_until_it_appears() -> None:
    rig = Rig()
    try:
        await rig.router.start([config()], [])  # does not raise
        await until(lambda: rig.state() is FAULT)
        assert rig.instance().status.fault_reason == "interface eth1 does not exist"
        assert rig.wire.adverts == []

        rig.host.add_link("eth1", address="192.168.1.10/24")
        await until(lambda: rig.state() is MASTER)
        assert [s.interface for s in rig.wire.open_sockets()] == ["eth1"]
        assert rig.wire.sent() == [255]
        assert rig.failures == []
    finally:
        await rig.router.stop()


async def test_losing_the_address_resigns_and_its_return_recovers(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    rig.host.remove_address("eth1", "192.168.1.10/24")
    await until(lambda: rig.state() is FAULT)
    assert rig.host.vips() == set()
    rig.host.add_address("eth1", "192.168.1.11/24")
    await until(lambda: rig.state() is MASTER)
    assert rig.instance().status.primary_ip == IPv4Address("192.168.1.11")


async def test_our_own_vips_do_not_wake_the_instance(rig: Rig) -> None:
    await rig.router.start(
        [config(virtual_ipaddresses=tuple(f"10.0.0.{i}/32" for i in range(1, 50)))], []
    )
    await until(lambda: rig.state() is MASTER)
    await asyncio.sleep(0.05)
    assert rig.instance().inbox.qsize() == 0
    assert not rig.instance()._address_refresh


# --- the link watch and the receivers (item 4) -------------------------------------------


async def test_the_link_watch_survives_a_netlink_error(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    rig.host.break_watch(KernelError("read link events: No buffer space (errno 105)"))
    await until(lambda: rig.host.watch_starts == 2)
    rig.host.remove_address("eth1", "192.168.1.10/24")  # still followed
    await until(lambda: rig.state() is FAULT)


async def test_a_dead_receiver_is_restarted(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    (sock,) = rig.wire.open_sockets()
    sock.inbox.put_nowait(RuntimeError("receiver bug"))
    await asyncio.sleep(0.1)  # back-off 0.02 s, then a new reader on the same socket
    sock.inbox.put_nowait(ReceivedPacket(b"\x45garbage", IPv4Address("192.168.1.50")))
    await until(lambda: bool(rig.rejects))
    assert rig.rejects[0][0] == "eth1"


# --- reloads in place (item 2) -----------------------------------------------------------


async def test_a_priority_change_keeps_the_master_and_its_vips(rig: Rig) -> None:
    await rig.router.start([config(advert_int=1)], [])
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([config(advert_int=1, priority=200)], [])
    await asyncio.sleep(1.1)
    assert rig.state() is MASTER
    assert rig.reasons() == [(MASTER, "startup_owner")]
    assert rig.wire.sent() == [255, 200]  # the next advert carries the new priority
    assert [entry[0] for entry in rig.host.log] == ["add"]  # never removed
    assert rig.instance().status.effective_priority == 200


async def test_the_vip_difference_is_applied_and_garped(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([config(virtual_ipaddresses=(str(VIP), str(VIP2)))], [])
    await until(lambda: rig.host.vips() == {VIP, VIP2})
    garp = rig.wire.garps[0]
    assert [len(frames) for frames, _ in garp.bursts] == [1, 1]  # VIP, then only VIP2
    assert VIP2.ip.packed in garp.bursts[1][0][0]
    await rig.router.update([config(virtual_ipaddresses=(str(VIP2),))], [])
    await until(lambda: rig.host.vips() == {VIP2})
    assert rig.host.log == [("add", "eth1", VIP), ("add", "eth1", VIP2), ("remove", "eth1", VIP)]
    assert rig.reasons() == [(MASTER, "startup_owner")]
    assert rig.instance().expectation.addresses == {VIP2.ip}


async def test_an_unchanged_instance_is_not_touched(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    instance = rig.instance()
    await rig.router.update([config()], [])
    assert rig.instance() is instance
    assert instance.inbox.qsize() == 0


async def test_multicast_to_unicast_in_place(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([config(unicast_peers=("192.168.1.20",))], [])
    (sock,) = rig.wire.open_sockets()
    assert sock.unicast
    assert rig.state() is MASTER


async def test_an_interface_change_starts_the_new_instance_before_the_old_stops(rig: Rig) -> None:
    rig.host.add_link("eth2", address="192.168.2.10/24")
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    old = rig.instance()
    await rig.router.update([config(interface="eth2")], [])
    await until(lambda: rig.state() is MASTER and rig.instance() is not old)
    assert rig.host.log == [
        ("add", "eth1", VIP),
        ("add", "eth2", VIP),  # the new one took over first
        ("remove", "eth1", VIP),
    ]
    assert old.status.state is INIT


async def test_swapped_vrids_are_recreated_without_a_clash(rig: Rig) -> None:
    one, two = config(vrid=51), config("VI_2", vrid=52, virtual_ipaddresses=(str(VIP2),))
    await rig.router.start([one, two], [])
    await until(lambda: rig.state("VI_1") is MASTER and rig.state("VI_2") is MASTER)
    await rig.router.update(
        [config(vrid=52), config("VI_2", vrid=51, virtual_ipaddresses=(str(VIP2),))], []
    )
    await until(lambda: rig.state("VI_1") is MASTER and rig.state("VI_2") is MASTER)
    assert {i.config.vrid for i in rig.router.instances.values()} == {51, 52}
    assert rig.instance("VI_1").config.vrid == 52


async def test_a_removed_instance_is_told_stop(rig: Rig) -> None:
    calls: list[tuple[str, int]] = []

    async def runner(argv: tuple[str, ...], kind: str, name: str, state: str) -> Any:
        calls.append((state, int(argv[-1])))

    await rig.router.start([config(notify="/bin/true")], [])
    rig.instance().notifier._run = runner
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([], [])
    assert calls == [("MASTER", 255), ("STOP", 255)]


def test_link_info_is_what_the_fake_yields() -> None:
    # The fake host's links are the adapter's own type (no drift between them).
    assert isinstance(FakeHost().add_link("eth9"), LinkInfo)


async def test_a_backup_whose_loop_stalled_reads_the_held_advert_before_its_timer(
    rig: Rig,
) -> None:
    """A stall longer than Master_Down_Interval with the master's advert waiting
    in the socket: when the loop resumes, the advert and the expired timer are
    due together, and the advert wins (no false takeover)."""
    await rig.router.start([config(priority=100, advert_int=1)], [])
    await until(lambda: rig.state() is BACKUP)
    (sock,) = rig.wire.open_sockets()
    master = IPv4Address("192.168.1.20")
    advert = Advertisement(vrid=51, priority=200, advert_int=1, addresses=(VIP.ip,))
    heard = ReceivedPacket(encode_ip(advert, master), master)
    for _ in range(3):
        sock.inbox.put_nowait(heard)
        await asyncio.sleep(0.5)
    sock.inbox.put_nowait(heard)
    time.sleep(3 + 0.7)  # noqa: ASYNC251 -- the stall under test: past Master_Down_Interval
    await asyncio.sleep(0.2)
    assert rig.state() is BACKUP
    assert (MASTER, "master_down_timer") not in rig.reasons()


# --- who is master: status and the transition log (issue 12 items 4 and 5) -------------------


async def test_the_status_and_the_transition_log_name_the_master(rig: Rig) -> None:
    peer, ours = IPv4Address("192.168.1.20"), IPv4Address("192.168.1.10")

    def heard(priority: int) -> ReceivedPacket:
        advert = Advertisement(vrid=51, priority=priority, advert_int=1, addresses=(VIP.ip,))
        return ReceivedPacket(encode_ip(advert, peer), peer)

    with capture_logs() as logs:
        await rig.router.start([config(priority=100, advert_int=1)], [])
        await until(lambda: rig.state() is BACKUP)
        status = rig.instance().status
        assert status.master_address is None  # no advert heard yet
        (sock,) = rig.wire.open_sockets()
        sock.inbox.put_nowait(heard(200))
        await until(lambda: status.master_address == peer)
        sock.inbox.put_nowait(heard(0))  # the peer resigns: nobody is master for Skew_Time
        await until(lambda: status.master_address is None)
        await until(lambda: rig.state() is MASTER)
        assert status.master_address == ours
        sock.inbox.put_nowait(heard(200))  # the peer is back and preempts us
        await until(lambda: rig.state() is BACKUP)
        assert status.master_address == peer
    transitions = [e for e in logs if e["event"] == "vrrp.transition"]
    assert [(e["new"], e["reason"], e.get("master")) for e in transitions] == [
        ("BACKUP", "startup", None),
        ("MASTER", "master_down_timer", "192.168.1.10"),
        ("BACKUP", "higher_priority_advert", "192.168.1.20"),
    ]
    assert "master" not in transitions[0]  # not known: left out, not null


# --- sockets opened before the daemon loaded (ipvsd.vrrp.prelisten, issue 14) --------------


def _early(rig: Rig, opened_ago: float, *interfaces: str) -> EarlyListeners:
    """Fake early sockets, opened `opened_ago` seconds before now."""
    opened_at = time.monotonic() - opened_ago
    return EarlyListeners(
        {
            (name, "ipv4", False): (rig.wire.open_advert(name), opened_at)
            for name in interfaces or ("eth1",)
        }
    )


async def test_queued_adverts_reach_the_instance_before_it_runs(rig: Rig) -> None:
    """Startup counts from 5 s ago (past the Master_Down_Interval), so the instance's
    timer is due at once: the advert queued meanwhile must already be in its inbox."""
    peer = IPv4Address("192.168.1.20")
    advert = Advertisement(vrid=51, priority=200, advert_int=1, addresses=(VIP.ip,))
    rig.host.add_link("eth2", address="192.168.2.10/24")
    listening = _early(rig, 5.0, "eth1", "eth2")
    adopted = rig.wire.adverts[0]
    unused = rig.wire.adverts[1]
    adopted.inbox.put_nowait(ReceivedPacket(encode_ip(advert, peer), peer))
    await rig.router.start([config(priority=100, advert_int=1)], [], listening=listening)
    # No task has run yet: the queue was read while the router started.
    assert rig.instance().inbox.qsize() == 1
    assert rig.wire.open_sockets() == [adopted]  # adopted, not opened again
    assert unused.closed  # no instance took it
    await until(lambda: rig.state() is BACKUP)
    await asyncio.sleep(0.3)
    assert rig.state() is BACKUP
    assert rig.instance().status.master_address == peer


async def test_a_backup_that_heard_nothing_counts_from_when_its_socket_opened(rig: Rig) -> None:
    with capture_logs() as logs:
        await rig.router.start([config(priority=100, advert_int=1)], [], listening=_early(rig, 5.0))
        await until(lambda: rig.state() is MASTER, within=1.0)
    started = [e for e in logs if e["event"] == "vrrp.transition"]
    assert [(e["new"], e["reason"]) for e in started] == [
        ("BACKUP", "startup"),
        ("MASTER", "master_down_timer"),
    ]
    assert 5.0 <= started[0]["listening_s"] < 5.5
    assert time.time() - rig.instance().status.since < 1.0  # MASTER's: now
    assert "listening_s" not in started[1]


async def test_an_instance_started_later_counts_from_its_own_start(rig: Rig) -> None:
    """A reload's new instance: the early socket did not keep its adverts before."""
    await rig.router.start([config(priority=100, advert_int=1)], [], listening=_early(rig, 5.0))
    await until(lambda: rig.state() is MASTER, within=1.0)
    second = config("VI_2", vrid=52, priority=100, advert_int=1, virtual_ipaddresses=(str(VIP2),))
    await rig.router.update([config(priority=100, advert_int=1), second], [])
    await until(lambda: rig.state("VI_2") is BACKUP)
    await asyncio.sleep(0.5)
    assert rig.state("VI_2") is BACKUP


async def test_an_early_socket_the_start_had_to_close_backdates_nothing(rig: Rig) -> None:
    """The interface went away while the daemon loaded: the GARP socket cannot open,
    the endpoint closes the early socket with its queue, and the instance starts now."""
    rig.host.add_link("eth9", address="192.168.9.10/24")
    listening = _early(rig, 5.0, "eth9")
    (early,) = rig.wire.adverts
    del rig.host.links["eth9"]
    with capture_logs() as logs:
        await rig.router.start(
            [config(interface="eth9", priority=100, advert_int=1)], [], listening=listening
        )
        await until(lambda: rig.state() is FAULT)
    assert early.closed
    (started,) = [e for e in logs if e["event"] == "vrrp.transition"]
    assert "listening_s" not in started
