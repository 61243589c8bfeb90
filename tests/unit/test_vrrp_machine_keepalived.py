"""keepalived options of the machine beyond RFC 3768 (issue 13): ``garp_refresh``
(keepalived's garp_master_refresh) and ``dont_track_primary``."""

from __future__ import annotations

from ipaddress import IPv4Address

from ipvsd.vrrp.machine import (
    AdvertReceived,
    ConfigChanged,
    LinkChanged,
    SendGarp,
    Startup,
    TimerFired,
    VrrpMachine,
    VrrpState,
)
from tests.unit.test_vrrp_machine import MDI_100, config, pair

REFRESH = SendGarp(refresh=True)


def refreshes(seg: object, name: str = "r100") -> list[float]:
    return [e.at for e in seg.actions(name) if e.action == REFRESH]  # type: ignore[attr-defined]


def test_a_master_refreshes_its_garps_every_garp_refresh_seconds() -> None:
    seg = pair(r100={"garp_refresh": 10.0, "garp_delay": 0.0})
    seg.start("r100", "r90")
    seg.run_until(MDI_100 + 35)
    assert refreshes(seg) == [MDI_100 + 10, MDI_100 + 20, MDI_100 + 30]
    assert refreshes(seg, "r90") == []  # a backup sends none
    # The bursts on becoming master are full ones, not refreshes.
    assert [e.at for e in seg.actions("r100") if e.action == SendGarp()] == [MDI_100]


def test_garp_refresh_stops_when_no_longer_master_and_0_means_none() -> None:
    seg = pair(r100={"garp_refresh": 10.0})
    seg.start("r100")
    seg.run_until(MDI_100 + 12)
    seg.send("r100", AdvertReceived(IPv4Address("192.168.1.30"), 200))  # a stranger wins
    seg.run_until(MDI_100 + 40)
    # BACKUP from MDI_100 + 12 until the stranger's silence makes it MASTER again: the
    # refresh starts over from then.
    again = MDI_100 + 12 + MDI_100
    assert refreshes(seg) == [MDI_100 + 10, again + 10, again + 20]
    off = pair()
    off.start("r100")
    off.run_until(60.0)
    assert refreshes(off) == []


def test_a_reload_starts_or_stops_the_refresh_of_a_running_master() -> None:
    machine = VrrpMachine(config(priority=255))
    machine.handle(Startup(), 0.0)
    assert machine.next_deadline() == 1.0  # Adver_Timer only (after garp_delay's burst)
    machine.handle(ConfigChanged(config(priority=255, garp_refresh=2.0, garp_delay=0.0)), 0.5)
    assert REFRESH not in machine.handle(TimerFired(), 2.0)
    assert REFRESH in machine.handle(TimerFired(), 2.5)
    machine.handle(ConfigChanged(config(priority=255, garp_delay=0.0)), 3.0)
    assert all(REFRESH not in machine.handle(TimerFired(), t) for t in (4.5, 6.5, 8.5))


# --- dont_track_primary -------------------------------------------------------------


def master(
    *, dont_track_primary: bool = False, tracked: dict[str, int] | None = None
) -> VrrpMachine:
    config_ = config(255, dont_track_primary=dont_track_primary, track_interfaces=tracked or {})
    machine = VrrpMachine(config_)
    machine.handle(Startup(), 0.0)
    assert machine.state is VrrpState.MASTER
    return machine


def test_dont_track_primary_ignores_the_own_links_faults() -> None:
    machine = master(dont_track_primary=True)
    assert machine.handle(LinkChanged("eth1", up=False), 1.0) == []
    assert machine.state is VrrpState.MASTER
    # Without it, the same event is FAULT (keepalived's default).
    tracking = master()
    tracking.handle(LinkChanged("eth1", up=False), 1.0)
    assert tracking.state is VrrpState.FAULT


def test_dont_track_primary_starts_on_a_down_link_and_keeps_explicit_tracking() -> None:
    machine = VrrpMachine(config(dont_track_primary=True))
    machine.handle(LinkChanged("eth1", up=False), 0.0)
    machine.handle(Startup(), 0.0)
    assert machine.state is VrrpState.BACKUP
    # The own interface listed in track_interfaces still counts (weight 0: FAULT).
    listed = master(dont_track_primary=True, tracked={"eth1": 0})
    listed.handle(LinkChanged("eth1", up=False), 1.0)
    assert (listed.state, listed.last_transition_reason) == (VrrpState.FAULT, "track_interface")
