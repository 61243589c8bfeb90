"""Following an interface across deletion and re-creation (`vrrp.relink`), and the
instance's sends while its sockets are gone or its link does no ARP.

The endpoint's sockets are fakes that simulate the part that matters: which
ifindex they were opened on, and whether they are closed.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.errors import KernelError
from ipvsd.netlink.links import AddressChange, LinkInfo
from ipvsd.vrrp.instance import VrrpInstance
from ipvsd.vrrp.machine import Shutdown, Transitioned, VrrpState
from ipvsd.vrrp.relink import InterfaceEndpoint, RelinkPlan, plan_relink
from tests.fakes.vrrp_io import FakeGarp, FakeSocket

# --- plan_relink ---------------------------------------------------------------------------


def link(index: int, name: str = "eth1", *, up: bool = True, deleted: bool = False) -> LinkInfo:
    return LinkInfo(index, name, up=up and not deleted, mac="02:00:00:00:00:01", deleted=deleted)


CLOSE, OPEN, BOTH, NOTHING = (
    RelinkPlan(close=True),
    RelinkPlan(open=True),
    RelinkPlan(close=True, open=True),
    RelinkPlan(),
)


@pytest.mark.parametrize(
    ("bound", "record", "plan"),
    [
        pytest.param(7, link(7), NOTHING, id="our link, up"),
        pytest.param(7, link(7, up=False), NOTHING, id="our link down: FAULT, same sockets"),
        pytest.param(7, link(7, deleted=True), CLOSE, id="our link deleted"),
        pytest.param(7, link(7, "old-eth1"), CLOSE, id="our link renamed away"),
        pytest.param(7, link(9), BOTH, id="name on a new ifindex, deletion missed"),
        pytest.param(7, link(9, up=False), CLOSE, id="name on a new ifindex, down"),
        pytest.param(None, link(9), OPEN, id="gone, back and up"),
        pytest.param(None, link(9, up=False), NOTHING, id="gone, back but down"),
        pytest.param(None, link(7), OPEN, id="gone, back on the same ifindex"),
        pytest.param(None, link(7, deleted=True), NOTHING, id="gone, a late deletion"),
        pytest.param(9, link(7, deleted=True), NOTHING, id="deletion of an older ifindex"),
        pytest.param(7, link(8, "eth2"), NOTHING, id="another interface"),
        pytest.param(7, link(8, "eth2", deleted=True), NOTHING, id="another one deleted"),
        pytest.param(None, link(8, "eth2"), NOTHING, id="gone, another interface"),
    ],
)
def test_plan_relink(bound: int | None, record: LinkInfo, plan: RelinkPlan) -> None:
    assert plan_relink("eth1", bound, record) == plan


# --- InterfaceEndpoint ---------------------------------------------------------------------


@dataclass
class FakeKernel:
    """The current ifindex of each interface name, and every socket opened."""

    indexes: dict[str, int] = field(default_factory=lambda: {"eth1": 7})
    adverts: list[FakeSocket] = field(default_factory=list)
    garps: list[FakeGarp] = field(default_factory=list)
    fail_garp: bool = False

    def index(self, interface: str) -> int:
        if interface not in self.indexes:
            raise KernelError(f"no interface {interface!r}", errno=errno.ENODEV)
        return self.indexes[interface]

    def open_advert(self, interface: str, *, unicast: bool = False) -> Any:
        sock = FakeSocket(interface, self.index(interface), unicast)
        self.adverts.append(sock)
        return sock

    def open_garp(self, interface: str) -> Any:
        if self.fail_garp:
            raise KernelError("open packet socket: no buffer space", errno=errno.ENOBUFS)
        garp = FakeGarp(interface, self.index(interface))
        self.garps.append(garp)
        return garp

    def endpoint(self, interface: str = "eth1") -> InterfaceEndpoint:
        return InterfaceEndpoint(
            interface, advert_opener=self.open_advert, garp_opener=self.open_garp
        )


def test_endpoint_shares_one_socket_per_mode_and_one_garp_sender() -> None:
    kernel = FakeKernel()
    endpoint = kernel.endpoint()
    endpoint.acquire(unicast=False)
    endpoint.acquire(unicast=False)
    endpoint.acquire(unicast=True)
    assert len(kernel.adverts) == 2
    assert len(kernel.garps) == 1
    assert (endpoint.users, endpoint.ifindex, endpoint.gone) == (3, 7, False)
    endpoint.release(unicast=True)
    assert kernel.adverts[1].closed
    assert endpoint.advert(True) is None
    endpoint.release(unicast=False)
    assert not kernel.adverts[0].closed
    endpoint.release(unicast=False)
    assert kernel.adverts[0].closed
    assert kernel.garps[0].closed
    assert (endpoint.users, endpoint.garp, endpoint.ifindex) == (0, None, None)


def test_endpoint_closes_when_gone_and_reopens_on_the_new_ifindex() -> None:
    kernel = FakeKernel()
    endpoint = kernel.endpoint()
    endpoint.acquire(unicast=False)
    endpoint.acquire(unicast=True)
    old: list[FakeSocket | FakeGarp] = [*kernel.adverts, *kernel.garps]

    endpoint.close_gone()
    assert all(sock.closed for sock in old)
    assert (endpoint.gone, endpoint.ifindex, endpoint.last_ifindex) == (True, None, 7)
    assert (endpoint.advert(False), endpoint.advert(True), endpoint.garp) == (None, None, None)
    endpoint.acquire(unicast=False)  # a reload while gone: counted, nothing opened
    assert len(kernel.adverts) == 2

    kernel.indexes["eth1"] = 12
    reopened = endpoint.reopen()
    assert [(s.ifindex, s.unicast) for s in reopened] == [(12, False), (12, True)]
    assert (endpoint.gone, endpoint.ifindex, endpoint.last_ifindex) == (False, 12, 7)
    assert (len(kernel.garps), kernel.garps[-1].ifindex, kernel.garps[-1].closed) == (2, 12, False)
    assert endpoint.users == 3


def test_a_failed_reopen_leaves_nothing_open_and_can_be_retried() -> None:
    kernel = FakeKernel()
    endpoint = kernel.endpoint()
    endpoint.acquire(unicast=False)
    endpoint.close_gone()
    del kernel.indexes["eth1"]  # gone again before we got to it
    with pytest.raises(KernelError, match="no interface"):
        endpoint.reopen()
    assert (endpoint.gone, endpoint.advert(False), endpoint.garp) == (True, None, None)

    kernel.indexes["eth1"] = 13
    kernel.fail_garp = True
    with pytest.raises(KernelError, match="no buffer space"):
        endpoint.reopen()
    assert endpoint.gone
    assert all(sock.closed for sock in kernel.adverts)  # the advert socket did not leak

    kernel.fail_garp = False
    (sock,) = endpoint.reopen()
    assert (sock.ifindex, endpoint.gone) == (13, False)


def test_a_failed_first_acquire_takes_no_count_and_leaks_nothing() -> None:
    kernel = FakeKernel(fail_garp=True)
    endpoint = kernel.endpoint()
    with pytest.raises(KernelError):
        endpoint.acquire(unicast=False)
    assert endpoint.users == 0
    assert all(sock.closed for sock in kernel.adverts)
    assert endpoint.ifindex is None


# --- VrrpInstance with a gone or NOARP interface --------------------------------------------


class FakeHost:
    """One interface, as `VipWriter` and `LinkSource`: VIP changes fail with ENODEV once
    it is gone."""

    def __init__(self, *, noarp: bool = False) -> None:
        self.info: LinkInfo | None = LinkInfo(
            7, "eth1", up=True, mac="02:00:00:00:00:01", noarp=noarp
        )
        self.vips: set[IPv4Interface | IPv6Interface] = set()

    async def link(self, interface: str) -> LinkInfo:
        if self.info is None or interface != self.info.name:
            raise KernelError(f"no interface {interface!r}", errno=errno.ENODEV)
        return self.info

    async def watch(
        self, known: Collection[LinkInfo] = ()
    ) -> AsyncIterator[LinkInfo | AddressChange]:
        if self.info is not None:
            yield self.info

    async def primary_ipv4(
        self, interface: str, *, exclude: Collection[IPv4Address] = ()
    ) -> IPv4Address:
        return IPv4Address("192.168.1.10")

    async def link_local_ipv6(self, interface: str) -> IPv6Address | None:
        raise AssertionError("an IPv4 host: no VRRPv3 IPv6 instance runs here")

    async def add(
        self,
        interface: str,
        vip: IPv4Interface | IPv6Interface,
        label: str,
        *,
        scope: int = 0,
        broadcast: IPv4Address | None = None,
    ) -> bool:
        await self.link(interface)
        self.vips.add(vip)
        return True

    async def remove(self, interface: str, vip: IPv4Interface | IPv6Interface) -> bool:
        await self.link(interface)
        self.vips.discard(vip)
        return True


def owner_config() -> VrrpInstanceConfig:
    # Priority 255: the owner is MASTER at once (RFC 3768 §6.4.1), no timer to wait for.
    return VrrpInstanceConfig(
        name="VI_1",
        interface="eth1",
        vrid=51,
        priority=255,
        virtual_ipaddresses=("192.168.1.200/24",),  # type: ignore[arg-type]
        garp_delay=0,
    )


async def run_owner(
    host: FakeHost, endpoint: InterfaceEndpoint, between: Any = None
) -> list[Transitioned]:
    transitions: list[Transitioned] = []
    master = asyncio.Event()

    def transitioned(_: VrrpInstance, action: Transitioned) -> None:
        transitions.append(action)
        if action.new is VrrpState.MASTER:
            master.set()

    instance = VrrpInstance(
        owner_config(),
        addresses=host,
        links=host,
        endpoint=endpoint,
        on_transition=transitioned,
    )
    task = asyncio.create_task(instance.run())
    await asyncio.wait_for(master.wait(), 1)
    if between is not None:
        between()
    instance.inbox.put_nowait(Shutdown())
    await asyncio.wait_for(task, 1)
    return transitions


@pytest.mark.parametrize("noarp", [False, True])
async def test_no_gratuitous_arp_on_a_noarp_interface(noarp: bool) -> None:
    kernel = FakeKernel()
    endpoint = kernel.endpoint()
    endpoint.acquire(unicast=False)
    with capture_logs() as logs:
        await run_owner(FakeHost(noarp=noarp), endpoint)
    (sock,) = kernel.adverts
    assert [payload[2] for payload, _ in sock.sent] == [255, 0]  # MASTER advert, resign
    bursts = kernel.garps[0].bursts
    skipped = [e for e in logs if e["event"] == "vrrp.garp_skipped"]
    if noarp:
        assert bursts == []
        assert [e["reason"] for e in skipped] == ["noarp"]
    else:
        assert [count for _, count in bursts] == [5]
        assert skipped == []


async def test_sends_are_skipped_while_the_interface_is_gone() -> None:
    kernel = FakeKernel()
    endpoint = kernel.endpoint()
    endpoint.acquire(unicast=False)
    host = FakeHost()

    def interface_deleted() -> None:
        host.info = None
        endpoint.close_gone()

    with capture_logs() as logs:
        transitions = await run_owner(host, endpoint, between=interface_deleted)
    assert [t.new for t in transitions] == [VrrpState.MASTER, VrrpState.INIT]
    (sock,) = kernel.adverts
    assert [payload[2] for payload, _ in sock.sent] == [255]  # the resign had no socket
    events = [e["event"] for e in logs]
    assert "vrrp.advert_skipped" in events
    assert "vrrp.vip_gone" in events  # removing the VIPs of a deleted interface: no error
    assert "vrrp.vip_error" not in events
