"""BGP mode's announce policy (ipvsd/bgp/policy.py): events in, actions out."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from ipvsd.bgp.policy import (
    Announce,
    BgpPolicy,
    DirectorDrained,
    QuorumChanged,
    Ready,
    ServicesConfigured,
    Stopping,
    Withdraw,
    service_prefixes,
)
from ipvsd.model import Family, Protocol, ServiceKey, fwmark_key

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.100"), 80)
TLS = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.100"), 443)
DNS6 = ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::53"), 53)
MARK = fwmark_key(Family.INET, 7)
VIP = ip_network("10.0.0.100/32")
VIP6 = ip_network("2001:db8::53/128")


def started(require: str = "all") -> BgpPolicy:
    policy = BgpPolicy(require)  # type: ignore[arg-type]
    assert policy.handle(ServicesConfigured((WEB, TLS, DNS6, MARK))) == []
    return policy


def test_prefixes_are_host_routes_and_fwmark_services_have_none() -> None:
    assert service_prefixes([WEB, TLS, DNS6, MARK]) == {VIP: (WEB, TLS), VIP6: (DNS6,)}


def test_nothing_is_announced_before_ready() -> None:
    policy = started()
    assert policy.handle(QuorumChanged(WEB, True)) == []
    assert policy.handle(QuorumChanged(TLS, True)) == []
    assert policy.reason(VIP) == "starting"
    assert policy.handle(Ready()) == [Announce(VIP)]
    assert policy.announced == {VIP}
    assert policy.reason(VIP) == "healthy"


def test_require_all_withdraws_when_one_service_of_the_vip_loses_quorum() -> None:
    policy = started()
    policy.handle(Ready())
    policy.handle(QuorumChanged(WEB, True))
    assert policy.handle(QuorumChanged(TLS, True)) == [Announce(VIP)]
    assert policy.handle(QuorumChanged(TLS, False)) == [Withdraw(VIP)]
    assert policy.reason(VIP) == "no quorum: 10.0.0.100:443"
    assert policy.handle(QuorumChanged(TLS, True)) == [Announce(VIP)]
    assert policy.handle(QuorumChanged(TLS, True)) == []  # no change, no action


def test_require_any_keeps_the_vip_while_one_service_has_quorum() -> None:
    policy = started("any")
    policy.handle(Ready())
    assert policy.handle(QuorumChanged(WEB, True)) == [Announce(VIP)]
    assert policy.handle(QuorumChanged(TLS, False)) == []
    assert policy.handle(QuorumChanged(WEB, False)) == [Withdraw(VIP)]


def test_a_service_not_computed_yet_or_gone_has_no_quorum() -> None:
    policy = started()
    policy.handle(Ready())
    assert policy.handle(QuorumChanged(WEB, True)) == []  # TLS not computed
    policy.handle(QuorumChanged(TLS, True))
    assert policy.handle(QuorumChanged(TLS, None)) == [Withdraw(VIP)]


def test_drain_withdraws_everything_and_undrain_brings_back_the_healthy() -> None:
    policy = started()
    policy.handle(Ready())
    for key in (WEB, TLS, DNS6):
        policy.handle(QuorumChanged(key, True))
    assert policy.announced == {VIP, VIP6}
    assert policy.handle(DirectorDrained(True)) == [Withdraw(VIP), Withdraw(VIP6)]
    assert policy.reason(VIP6) == "director drained"
    assert policy.handle(QuorumChanged(DNS6, False)) == []
    assert policy.handle(DirectorDrained(False)) == [Announce(VIP)]


def test_stopping_is_final() -> None:
    policy = started()
    policy.handle(Ready())
    policy.handle(QuorumChanged(DNS6, True))
    assert policy.handle(Stopping()) == [Withdraw(VIP6)]
    assert policy.handle(Ready()) == []
    assert policy.handle(DirectorDrained(False)) == []
    assert policy.reason(VIP6) == "stopping"


def test_a_reload_that_removes_a_service_withdraws_its_vip() -> None:
    policy = started()
    policy.handle(Ready())
    policy.handle(QuorumChanged(DNS6, True))
    assert policy.handle(ServicesConfigured((WEB, TLS))) == [Withdraw(VIP6)]
    assert policy.prefixes == (VIP,)
    # Its quorum is forgotten: a service of that name added back starts without it.
    assert policy.handle(ServicesConfigured((WEB, TLS, DNS6))) == []
