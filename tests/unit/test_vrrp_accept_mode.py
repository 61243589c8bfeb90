"""``accept_mode: false`` (RFC 5798 §6.1) through `VrrpRouter` and `AcceptGuard`: what
the instances ask the kernel to drop, when, and what a refusal does (the nf_tables
side: tests/unit/test_nftables.py, tests/netns/test_no_accept.py)."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from structlog.testing import capture_logs

from ipvsd.errors import KernelError
from ipvsd.netlink import nftables
from ipvsd.vrrp.accept import AcceptGuard
from ipvsd.vrrp.machine import VrrpState
from ipvsd.vrrp.pacer import DirectPacer
from ipvsd.vrrp.router import VrrpRouter
from tests.fakes.vrrp_io import FakeHost, FakeWire
from tests.unit.test_vrrp_router import FAST, VIP, VIP2, config, until

Ips = frozenset[IPv4Address | IPv6Address]
#: A non-owner that is MASTER within 0.2 s when alone (VRRPv3, 0.05 s adverts).
NON_OWNER: dict[str, Any] = {
    "priority": 100,
    "version": 3,
    "advert_int": 0.05,
    "accept_mode": False,
}


class Kernel:
    """Records every set written; `refuse` makes the next writes fail."""

    def __init__(self) -> None:
        self.writes: list[Ips] = []
        self.refuse = 0  # an errno

    def write(self, vips: Ips) -> None:
        if self.refuse:
            raise KernelError(
                f"nftables table inet ipvsd: (errno {self.refuse})", errno=self.refuse
            )
        self.writes.append(vips)


class AcceptRig:
    def __init__(self) -> None:
        self.host = FakeHost()
        self.host.add_link("eth1", address="192.168.1.10/24")
        self.kernel = Kernel()
        self.router = VrrpRouter(
            self.host,
            self.host,
            restart=FAST,
            endpoint_factory=FakeWire(self.host).endpoint,
            pacer=DirectPacer(),
            accept_guard=AcceptGuard(self.kernel.write, nftables.UNSUPPORTED),
        )

    def state(self, name: str = "VI_1") -> VrrpState:
        return self.router.instances[name].status.state


@pytest.fixture
async def rig() -> AsyncIterator[AcceptRig]:
    rig = AcceptRig()
    yield rig
    await rig.router.stop()


async def test_start_deletes_a_leftover_table_whatever_the_config(rig: AcceptRig) -> None:
    await rig.router.start([config()], [])  # an owner: nothing to drop
    await until(lambda: rig.state() is VrrpState.MASTER)
    assert rig.kernel.writes == [frozenset()]


async def test_a_non_owner_master_drops_its_vips_until_it_stops(rig: AcceptRig) -> None:
    await rig.router.start([config(**NON_OWNER)], [])
    await until(lambda: rig.state() is VrrpState.MASTER)
    assert rig.kernel.writes == [frozenset(), frozenset({VIP.ip})]
    assert rig.host.vips("eth1")
    await rig.router.stop()
    assert rig.kernel.writes[-1] == frozenset()


async def test_the_set_is_the_union_of_the_instances_and_follows_reloads(
    rig: AcceptRig,
) -> None:
    second = config("VI_2", vrid=52, virtual_ipaddresses=(str(VIP2),), **NON_OWNER)
    await rig.router.start([config(**NON_OWNER), second], [])
    await until(lambda: rig.state() is rig.state("VI_2") is VrrpState.MASTER)
    assert rig.kernel.writes[-1] == frozenset({VIP.ip, VIP2.ip})
    # VI_2 reloaded with accept_mode true: only VI_1's address stays dropped.
    accepting = NON_OWNER | {"accept_mode": True}
    reloaded = config("VI_2", vrid=52, virtual_ipaddresses=(str(VIP2),), **accepting)
    await rig.router.update([config(**NON_OWNER), reloaded], [])
    await until(lambda: rig.kernel.writes[-1] == frozenset({VIP.ip}))


async def test_accept_mode_true_and_the_owner_drop_nothing(rig: AcceptRig) -> None:
    accepting = config(**(NON_OWNER | {"accept_mode": True}))
    owner = config("VI_2", vrid=52, virtual_ipaddresses=(str(VIP2),), accept_mode=False)
    await rig.router.start([accepting, owner], [])
    await until(lambda: rig.state() is rig.state("VI_2") is VrrpState.MASTER)
    assert rig.kernel.writes == [frozenset()]


async def test_a_refusal_is_shown_and_does_not_block_the_machine(rig: AcceptRig) -> None:
    rig.kernel.refuse = errno.EOPNOTSUPP  # Debian's UML 6.1: no nf_tables inet family
    with capture_logs() as logs:
        await rig.router.start([config(**NON_OWNER)], [])
        await until(lambda: rig.state() is VrrpState.MASTER)
    errors = [e for e in logs if e["event"] == "vrrp.accept_mode_error"]
    # Start's clean-up: nothing to clean on such a kernel (debug); the MASTER's: an error.
    assert [e["log_level"] for e in errors] == ["debug", "error"]
    await until(lambda: rig.state() is VrrpState.MASTER)
    status = rig.router.instances["VI_1"].status
    assert status.accept_mode_error is not None
    assert f"errno {errno.EOPNOTSUPP}" in status.accept_mode_error
    assert rig.host.vips("eth1")  # the VIPs are there all the same


def test_the_guard_keeps_its_set_when_the_kernel_refuses() -> None:
    kernel = Kernel()
    guard = AcceptGuard(kernel.write)
    guard.hold("a", frozenset({VIP.ip}))
    kernel.refuse = errno.ENOMEM
    with pytest.raises(KernelError):
        guard.hold("b", frozenset({VIP2.ip}))
    assert guard.written == frozenset({VIP.ip})
    kernel.refuse = 0
    guard.hold("a", frozenset())
    assert kernel.writes == [frozenset({VIP.ip}), frozenset()]
