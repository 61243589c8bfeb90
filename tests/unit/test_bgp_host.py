"""BGP mode's host (ipvsd/bgp/host.py): VIPs that are not local, ARP sysctls, the VIPs
ipvsd adds (`LocalVips`, over a fake address adapter) and ``sloppy_tcp``."""

from __future__ import annotations

import errno
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import structlog

from ipvsd.bgp.announcer import BgpAnnouncer
from ipvsd.bgp.host import LocalVips, Vip, enable_sloppy_tcp, host_problems
from ipvsd.config.model import BgpConfig
from ipvsd.errors import IpvsdError, KernelError
from ipvsd.model import Family, Protocol, ServiceKey
from tests.fakes.bird import FakeBird


def sysctls(tmp_path: Path, arp_ignore: int, arp_announce: int) -> Path:
    conf = tmp_path / "net" / "ipv4" / "conf" / "all"
    conf.mkdir(parents=True)
    (conf / "arp_ignore").write_text(f"{arp_ignore}\n")
    (conf / "arp_announce").write_text(f"{arp_announce}\n")
    return tmp_path


def test_a_local_vip_with_arp_suppressed_is_fine(tmp_path: Path) -> None:
    assert host_problems([ip_network("127.0.0.1/32")], sysctls(tmp_path, 1, 2)) == []


def test_what_is_missing_is_said(tmp_path: Path) -> None:
    problems = host_problems([ip_network("192.0.2.200/32")], sysctls(tmp_path, 0, 0))
    assert problems == [
        "VIP 192.0.2.200 is not an address of this host: IPVS will not accept its packets "
        "(add it to a dummy interface or lo, see docs/bgp.md)",
        "net.ipv4.conf.all.arp_ignore is 0, not 1: the director would answer ARP for its VIPs",
        "net.ipv4.conf.all.arp_announce is 0, not 2: ARP requests may carry a VIP as their source",
    ]


def test_ipv6_vips_need_no_arp_settings(tmp_path: Path) -> None:
    assert host_problems([ip_network("::1/128")], sysctls(tmp_path, 0, 0)) == []


CONFIG = BgpConfig.model_validate(
    {"local_as": 65001, "neighbors": ({"address": "192.0.2.1", "remote_as": 65000},)},
)


class RefusingBird(FakeBird):
    """A BIRD whose ``bird -p`` refuses every reload's config."""

    async def reconfigure(self, text: str) -> None:
        raise IpvsdError("BIRD refused the generated config")


class FakeWriter:
    """The address adapter: what is on which interface, every call recorded."""

    def __init__(self, present: set[tuple[str, str]] | None = None, fail: bool = False) -> None:
        self.present = present or set()
        self.calls: list[str] = []
        self.closed = False
        self.fail = fail

    async def add(self, interface: str, vip: Vip, label: str) -> bool:
        if self.fail:
            raise KernelError("No such device", errno=errno.ENODEV, operation="add")
        self.calls.append(f"add {vip} {interface} {label}")
        self.present.add((interface, str(vip)))
        return True

    async def remove(self, interface: str, vip: Vip) -> bool:
        self.calls.append(f"remove {vip} {interface}")
        self.present.discard((interface, str(vip)))
        return True

    def close(self) -> None:
        self.closed = True


def _vips(writer: FakeWriter, interface: str | None = "lo") -> LocalVips:
    async def open_writer() -> FakeWriter:
        return writer

    return LocalVips(open_writer, interface)


async def test_local_vips_adds_what_is_missing_and_takes_back_only_that() -> None:
    writer = FakeWriter()
    vips = _vips(writer)
    # 127.0.0.1 is local already (the operator's): used as it is.
    await vips.ensure([ip_network("192.0.2.200/32"), ip_network("127.0.0.1/32")], "lo")
    assert writer.calls == ["add 192.0.2.200/32 lo lo:bgp"]
    await vips.ensure([ip_network("192.0.2.201/32")], "vip0")  # a reload: another interface
    assert writer.calls[1:] == ["remove 192.0.2.200/32 lo", "add 192.0.2.201/32 vip0 vip0:bgp"]
    await vips.release()
    assert writer.calls[3:] == ["remove 192.0.2.201/32 vip0"]
    assert writer.closed


async def test_local_vips_null_interface_takes_back_and_adds_nothing() -> None:
    writer = FakeWriter()
    vips = _vips(writer)
    await vips.ensure([ip_network("192.0.2.200/32")], "lo")
    await vips.ensure([ip_network("192.0.2.200/32")], None)
    assert writer.calls == ["add 192.0.2.200/32 lo lo:bgp", "remove 192.0.2.200/32 lo"]


async def test_local_vips_a_refused_add_is_one_error() -> None:
    vips = _vips(FakeWriter(fail=True), "vip0")
    with pytest.raises(IpvsdError, match=r"bgp.vip_interface: cannot add 192.0.2.200/32 to vip0"):
        await vips.ensure([ip_network("192.0.2.200/32")], "vip0")


def test_sloppy_tcp_is_set(tmp_path: Path) -> None:
    path = tmp_path / "net" / "ipv4" / "vs" / "sloppy_tcp"
    path.parent.mkdir(parents=True)
    path.write_text("0\n")
    enable_sloppy_tcp(tmp_path)
    assert path.read_text() == "1\n"


def test_sloppy_tcp_without_ipvs_is_a_warning(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        enable_sloppy_tcp(tmp_path)
    assert [entry["event"] for entry in logs] == ["bgp.host_problem"]
    assert "net.ipv4.vs.sloppy_tcp" in logs[0]["problem"]


async def test_the_announcer_adds_the_vips_at_start_and_removes_them_after_bird_stops() -> None:
    writer, bird = FakeWriter(), FakeBird()
    web = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.0.2.200"), 80)
    bgp = BgpAnnouncer(CONFIG, "t.yaml", speaker=bird, vips=_vips(writer))
    await bgp.start((web,), drained=False)
    assert writer.calls == ["add 192.0.2.200/32 lo lo:bgp"]
    await bgp.stop()
    assert bird.commands[-1] == "down"
    assert writer.calls[1:] == ["remove 192.0.2.200/32 lo"]


async def test_a_reload_bird_refuses_takes_back_the_vips_it_added() -> None:
    writer, bird = FakeWriter(), RefusingBird()
    web = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.0.2.200"), 80)
    api = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.0.2.201"), 80)
    bgp = BgpAnnouncer(CONFIG, "t.yaml", speaker=bird, vips=_vips(writer))
    await bgp.start((web,), drained=False)
    with pytest.raises(IpvsdError):
        await bgp.reconfigure(CONFIG, (web, api))
    assert writer.calls == [
        "add 192.0.2.200/32 lo lo:bgp",
        "add 192.0.2.201/32 lo lo:bgp",
        "remove 192.0.2.201/32 lo",
    ]
