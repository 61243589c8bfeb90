"""Stale VIPs (left on the interface by a crashed MASTER) go first thing at start.

The restarted daemon must remove them before its peer has owned them for long
(split brain): `ipvsd.daemon.early` does it before the daemon's modules are
imported and the config is validated. Timed from the start of the `ip netns
exec` that runs ``ipvsd run`` to the kernel's RTM_DELADDR; the budget here is
looser than the 100 ms target (`bench/startup.py` measures that) so that a
busy host does not fail the test, and still far below the ~0.5 s the removal
took when it waited for the VRRP machine's Startup.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab.address_events import DeletedAddresses
from lab.netns import ip
from lab.scenario import wait_until
from lab.vrrp_pair import VIP, VrrpLab

BUDGET_S = 0.3
STALE = f"{VIP}/24"
NOT_A_VIP = "192.168.1.201/24"
OWNER_VIP = "192.168.1.202/24"


def _with_owner(config: Path) -> None:
    """A second instance, the address owner (priority 255) of OWNER_VIP."""
    owner = (
        "    - {name: VI_OWNER, interface: eth1, vrid: 52, priority: 255, "
        f"virtual_ipaddresses: [{OWNER_VIP}]}}\n"
    )
    text = config.read_text()
    at = text.index("ipvs:")
    config.write_text(text[:at] + owner + text[at:])


def test_stale_vips_go_before_the_daemon_loads_and_others_stay(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    ns = lab.routers["d1"]
    daemon = lab.daemon("d1", 100)
    _with_owner(daemon.config)
    ip("addr", "add", STALE, "dev", "eth1", "label", "eth1:vrrp51", ns=ns)
    ip("addr", "add", NOT_A_VIP, "dev", "eth1", ns=ns)
    ip("addr", "add", OWNER_VIP, "dev", "eth1", "label", "eth1:vrrp52", ns=ns)
    watch = DeletedAddresses(ns)
    try:
        started = time.monotonic()
        daemon.start(wait_ready=False)
        wait_until(lambda: STALE in watch.deleted, timeout=10, interval=0.01)
        daemon.wait_event("daemon.ready", timeout=30)
        time.sleep(0.3)
    finally:
        watch.close()
    assert watch.deleted[STALE] - started < BUDGET_S, watch.deleted[STALE] - started
    assert NOT_A_VIP not in watch.deleted  # not a VIP of this config: never touched
    assert OWNER_VIP not in watch.deleted  # the owner keeps its VIP (RFC 3768 §6.4.1)
    events = daemon.events()
    removed = [e for e in events if e.get("event") == "vrrp.stale_vip_removed"]
    assert [(e["instance"], e["interface"], e["vip"]) for e in removed] == [("VI_1", "eth1", STALE)]
    names = [e.get("event") for e in events]
    assert names.index("vrrp.stale_vip_removed") < names.index("daemon.start")
    assert daemon.stop() == 0


def test_a_second_daemon_leaves_the_running_masters_vips_alone(vrrp_lab: VrrpLab) -> None:
    lab = vrrp_lab
    ns = lab.routers["d1"]
    first = lab.daemon("d1", 100, initial_state="master")
    first.start()
    wait_until(lambda: lab.holder() == ["d1"], timeout=10)
    watch = DeletedAddresses(ns)
    try:
        second = lab.daemon("d1", 100)  # the same config, the same namespace
        second.start(wait_ready=False)
        assert second.proc is not None
        assert second.proc.wait(30) == 1
        time.sleep(0.2)
    finally:
        watch.close()
    assert not watch.deleted
    assert lab.holder() == ["d1"]
    failed = [e for e in second.events() if e.get("event") == "daemon.failed"]
    assert "already running" in failed[0]["error"]
    assert first.stop() == 0
