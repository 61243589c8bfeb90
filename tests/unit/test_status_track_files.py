"""``ipvsd status`` shows each instance's tracked files with their value and weight
(issue 13 item 5), from the running router."""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Interface
from pathlib import Path

from ipvsd.config.model import TrackFile, VirtualAddress, VrrpInstanceConfig
from ipvsd.control.status import TrackedFileStatus
from ipvsd.daemon.admin_state import DrainStore
from ipvsd.daemon.view import DaemonView
from tests.unit.test_daemon import config_text
from tests.unit.test_daemon_reload import components
from tests.unit.test_vrrp_notify import fake_router


async def no_reload(*, force: bool = False) -> list[str]:
    raise AssertionError("no reload here")


async def test_the_view_shows_each_tracked_files_value_and_weight(tmp_path: Path) -> None:
    prio, unread = tmp_path / "prio", tmp_path / "never-written"
    prio.write_text("3\n")
    router = fake_router()
    instance = VrrpInstanceConfig(
        name="VI_1",
        interface="eth1",
        vrid=51,
        virtual_ipaddresses=(VirtualAddress(address=IPv4Interface("192.168.1.200/24")),),
        track_files=(TrackFile(path=str(prio), weight=-2), TrackFile(path=str(unread))),
    )
    await router.start([instance], [])
    try:
        deadline = time.monotonic() + 3
        while len(router.instances["VI_1"].status.files) < 2:  # the watcher's first reads
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        parts = components(config_text(tmp_path / "ipvsd.sock", services=False))
        parts.vrrp = router
        view = DaemonView(
            parts, reload=no_reload, drains_changed=lambda: None, drains=DrainStore(tmp_path)
        )
        [vrrp] = (await view.status()).vrrp
    finally:
        await router.stop()
    assert vrrp.track_files == (
        TrackedFileStatus(str(prio), 3, -2),
        TrackedFileStatus(str(unread), 0, 1),  # missing reads as 0 (keepalived)
    )
