"""What a MASTER owns besides its advertised VIPs (issue 13): VIP mappings with
dev/scope/label/broadcast, excluded VIPs, virtual routes and rules.

Over the simulated host of `tests.fakes.vrrp_io`; owners (priority 255) become
MASTER at Startup, so nothing waits for a timer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.config.model import VirtualRoute, VirtualRule
from ipvsd.errors import KernelError
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.pacer import DirectPacer
from ipvsd.vrrp.router import VrrpRouter
from tests.fakes.vrrp_io import FakeHost, FakeWire
from tests.unit.test_vrrp_router import FAST, config, until

MASTER, BACKUP = VrrpState.MASTER, VrrpState.BACKUP
VIP = IPv4Interface("192.168.1.200/24")


class FakeRoutes:
    """Routes and rules as a set, with the kernel's idempotence; `refuse` fails adds."""

    def __init__(self) -> None:
        self.routes: set[VirtualRoute] = set()
        self.rules: set[VirtualRule] = set()
        self.log: list[str] = []
        self.refuse: set[VirtualRoute | VirtualRule] = set()

    async def add_route(self, route: VirtualRoute) -> bool:
        return self._write(self.routes, route, add=True)

    async def remove_route(self, route: VirtualRoute) -> bool:
        return self._write(self.routes, route, add=False)

    async def add_rule(self, rule: VirtualRule) -> bool:
        return self._write(self.rules, rule, add=True)

    async def remove_rule(self, rule: VirtualRule) -> bool:
        return self._write(self.rules, rule, add=False)

    def _write(self, table: set[Any], entry: Any, *, add: bool) -> bool:
        if add and entry in self.refuse:
            raise KernelError("add route: Network is unreachable (errno 101)", errno=101)
        self.log.append(f"{'add' if add else 'del'} {type(entry).__name__}")
        if (entry in table) == add:
            return False
        (table.add if add else table.discard)(entry)
        return True


class FakeVmacs:
    """Makes the vmac a link of the fake host, as the kernel would."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.log: list[tuple[str, str, str]] = []

    async def ensure(self, parent: str, name: str, mac: str) -> bool:
        self.log.append(("ensure", parent, name))
        self.host.add_link(name)
        return True

    async def remove(self, parent: str, name: str) -> bool:
        self.log.append(("remove", parent, name))
        return True


class Rig:
    def __init__(self) -> None:
        self.route_errors: list[tuple[str, str]] = []
        self.host = FakeHost()
        self.host.add_link("eth1", address="192.168.1.10/24")
        self.host.add_link("eth2", address="10.0.0.10/24")
        self.wire = FakeWire(self.host)
        self.routes = FakeRoutes()
        self.vmacs = FakeVmacs(self.host)
        self.router = VrrpRouter(
            self.host,
            self.host,
            restart=FAST,
            endpoint_factory=self.wire.endpoint,
            pacer=DirectPacer(),
            routes=self.routes,
            vmacs=self.vmacs,
            on_route_error=lambda name, error: self.route_errors.append((name, error)),
        )

    def state(self) -> VrrpState:
        return self.router.instances["VI_1"].status.state


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    yield rig
    await rig.router.stop()


FULL = {
    "address": "10.0.0.1/24",
    "dev": "eth2",
    "scope": "link",
    "label": "eth2:web",
    "broadcast": "10.0.0.255",
}
ROUTE = VirtualRoute(to="10.9.0.0/16", via="192.168.1.1", src="192.168.1.200")  # type: ignore[arg-type]
RULE = VirtualRule.model_validate({"from": "192.168.1.200/32", "table": 100})


async def test_mapped_vips_go_to_their_dev_with_scope_label_and_broadcast(rig: Rig) -> None:
    await rig.router.start([config(virtual_ipaddresses=(str(VIP), FULL))], [])
    await until(lambda: rig.state() is MASTER)
    assert rig.host.vips("eth1") == {VIP}
    assert rig.host.vips("eth2") == {IPv4Interface("10.0.0.1/24")}
    assert rig.host.labels["eth1", VIP] == ("eth1:vrrp51", 0, None)
    assert rig.host.labels["eth2", IPv4Interface("10.0.0.1/24")] == (
        "eth2:web",
        253,
        IPv4Address("10.0.0.255"),
    )
    # GARPs for each VIP leave from its own interface, with that interface's MAC.
    sent = {
        garp.interface: [frame for burst, _ in garp.bursts for frame in burst]
        for garp in rig.wire.garps
    }
    assert {frame[28:32] for frame in sent["eth1"]} == {VIP.ip.packed}
    assert {frame[28:32] for frame in sent["eth2"]} == {IPv4Address("10.0.0.1").packed}
    assert [garp.closed for garp in rig.wire.garps if garp.interface == "eth2"] == [True]
    await rig.router.stop()
    assert rig.host.vips("eth1") == rig.host.vips("eth2") == set()


async def test_excluded_vips_are_owned_but_not_advertised(rig: Rig) -> None:
    excluded = ("192.168.1.201/24", {"address": "10.0.0.2/24", "dev": "eth2"})
    await rig.router.start([config(virtual_ipaddresses_excluded=excluded)], [])
    await until(lambda: rig.state() is MASTER)
    assert rig.host.vips("eth1") == {VIP, IPv4Interface("192.168.1.201/24")}
    assert rig.host.vips("eth2") == {IPv4Interface("10.0.0.2/24")}
    payload, _ = rig.wire.open_sockets()[0].sent[-1]
    count = payload[3]  # RFC 3768 §5.1: Count IP Addrs, then the addresses from byte 8
    assert [IPv4Address(payload[8 + 4 * i : 12 + 4 * i]) for i in range(count)] == [VIP.ip]
    assert rig.router.instances["VI_1"].vips == (VIP,)  # status lists the advertised ones
    await rig.router.stop()
    assert rig.host.vips("eth1") == rig.host.vips("eth2") == set()


async def test_routes_and_rules_follow_master_in_order(rig: Rig) -> None:
    await rig.router.start([config(virtual_routes=(ROUTE,), virtual_rules=(RULE,))], [])
    await until(lambda: rig.state() is MASTER)
    assert rig.routes.routes == {ROUTE}
    assert rig.routes.rules == {RULE}
    await rig.router.stop()
    assert rig.routes.routes == set()
    assert rig.routes.rules == set()
    # In after the VIPs, routes before the rules that use them; out the other way round.
    assert rig.routes.log == [
        "add VirtualRoute",
        "add VirtualRule",
        "del VirtualRule",
        "del VirtualRoute",
    ]


async def test_a_refused_route_is_logged_and_counted_and_the_instance_goes_on(rig: Rig) -> None:
    broken = VirtualRoute(to="10.8.0.0/16", via="172.16.0.1")  # type: ignore[arg-type]
    rig.routes.refuse.add(broken)
    with capture_logs() as logs:
        await rig.router.start([config(virtual_routes=(broken, ROUTE))], [])
        await until(lambda: rig.state() is MASTER)
    status = rig.router.instances["VI_1"].status
    assert status.route_errors == 1
    assert status.failures == 0
    assert rig.routes.routes == {ROUTE}
    assert rig.host.vips("eth1") == {VIP}
    errors = [e for e in logs if e["event"] == "vrrp.route_error"]
    assert len(errors) == 1
    assert errors[0]["add"] is True
    assert "Network is unreachable" in errors[0]["error"]


async def test_a_reload_as_master_swaps_routes_and_owned_addresses(rig: Rig) -> None:
    other = VirtualRoute(to="10.7.0.0/16", via="192.168.1.1")  # type: ignore[arg-type]
    first = config(virtual_routes=(ROUTE,), virtual_ipaddresses_excluded=("192.168.1.201/24",))
    await rig.router.start([first], [])
    await until(lambda: rig.state() is MASTER)
    second = config(virtual_routes=(other,), virtual_ipaddresses_excluded=("192.168.1.202/24",))
    await rig.router.update([second], [])
    await until(lambda: rig.routes.routes == {other})
    assert rig.state() is MASTER
    assert rig.host.vips("eth1") == {VIP, IPv4Interface("192.168.1.202/24")}


async def test_with_vmac_vips_adverts_and_garps_use_the_vmac(rig: Rig) -> None:
    await rig.router.start([config(vmac=True, virtual_ipaddresses=(str(VIP), FULL))], [])
    await until(lambda: rig.state() is MASTER)
    assert rig.vmacs.log == [("ensure", "eth1", "vrrp.51")]
    assert rig.host.vips("vrrp.51") == {VIP}
    assert rig.host.vips("eth1") == set()
    assert rig.host.vips("eth2") == {IPv4Interface("10.0.0.1/24")}  # its own dev still
    assert rig.host.labels["vrrp.51", VIP][0] == "vrrp.51:vrrp51"
    await until(lambda: bool(rig.wire.open_sockets("vrrp.51")))
    await until(lambda: bool(rig.wire.sent("vrrp.51")))
    assert rig.wire.sent("eth1") == []
    on_vmac = [g for g in rig.wire.garps if g.interface == "vrrp.51"]
    frames = [frame for garp in on_vmac for burst, _ in garp.bursts for frame in burst]
    assert frames
    assert all(frame[6:12] == bytes.fromhex("00005e000133") for frame in frames)
    assert {garp.interface for garp in rig.wire.garps if garp.bursts} == {"vrrp.51", "eth2"}
    await rig.router.stop()
    assert rig.vmacs.log[-1] == ("remove", "eth1", "vrrp.51")
    assert rig.host.vips("vrrp.51") == set()


async def test_a_refused_route_reaches_the_route_error_hook(rig: Rig) -> None:
    broken = VirtualRoute(to="10.8.0.0/16", via="172.16.0.1")  # type: ignore[arg-type]
    rig.routes.refuse.add(broken)
    await rig.router.start([config(virtual_routes=(broken,))], [])
    await until(lambda: bool(rig.route_errors))
    assert rig.route_errors == [("VI_1", "add route: Network is unreachable (errno 101)")]


def test_route_errors_are_counted_per_instance_and_follow_the_config() -> None:
    from prometheus_client import CollectorRegistry

    from ipvsd.metrics.daemon import DaemonMetrics

    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry, version="1.2.3", node="director1")
    metrics.vrrp_route_error("VI_1", "x")
    metrics.vrrp_route_error("VI_1", "y")
    metrics.vrrp_route_error("VI_2", "z")
    name = "ipvsd_vrrp_route_errors_total"
    assert registry.get_sample_value(name, {"vrrp_instance": "VI_1"}) == 2
    metrics.retain(instances=[("VI_1", "eth1", 51)])
    assert registry.get_sample_value(name, {"vrrp_instance": "VI_2"}) is None


async def test_a_reload_that_turns_vmac_on_and_off_recreates_the_instance(rig: Rig) -> None:
    await rig.router.start([config()], [])
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([config(vmac=True)], [])
    await until(lambda: rig.host.vips("vrrp.51") == {VIP})
    assert rig.host.vips("eth1") == set()
    assert rig.vmacs.log == [("ensure", "eth1", "vrrp.51")]
    await rig.router.update([config()], [])
    await until(lambda: rig.host.vips("eth1") == {VIP})
    assert rig.host.vips("vrrp.51") == set()
    assert rig.vmacs.log[-1] == ("remove", "eth1", "vrrp.51")


async def test_a_vmac_instance_moved_to_another_interface_frees_its_vmac_name_first(
    rig: Rig,
) -> None:
    await rig.router.start([config(vmac=True)], [])
    await until(lambda: rig.state() is MASTER)
    await rig.router.update([config(vmac=True, interface="eth2")], [])
    await until(lambda: len(rig.vmacs.log) == 3)
    # vrrp.51 is a macvlan of eth1 until removed: the new one can only be made after.
    assert rig.vmacs.log == [
        ("ensure", "eth1", "vrrp.51"),
        ("remove", "eth1", "vrrp.51"),
        ("ensure", "eth2", "vrrp.51"),
    ]
    await until(lambda: rig.state() is MASTER)
