"""The dual-stack reference scenario (issue 14): IPv6 VIP and service next to the IPv4 ones.

One `lab.reference.ReferenceLab("dualstack")` (module-scoped): the ``dr`` layout
plus fd00:1::/64 on the same segment, VI_1 (VRRPv2, 192.168.1.200) and VI_6
(VRRPv3, fd00:1::200) in one sync group, and an IPv6 DR web service
[fd00:1::200]:80 next to 192.168.1.200:80. The tests are its steps, in order:

1. both families' web services are programmed on director1 and each serves
   50 requests through both reals, which then show as InActConn for each
   family in ``ipvsadm -Ln``, ``ipvsd status`` and the metrics;
2. ``ip link set eth1 down`` on director1 (the reference scenario's failure)
   moves both VIPs to director2 together, requests on both families resume
   within the failover bound, and eth1 back up brings both back (preemption).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.reference import (
    ADVERT_INT,
    CLIENT,
    CLIENT6,
    VIP,
    VIP6,
    WEB_PORT,
    ReferenceLab,
    backend_metric,
    endpoint,
    service_of,
    status_json,
)
from tests.kernel.narrate import say

MASTER, BACKUP = "director1", "director2"
FAMILIES = {VIP: CLIENT, VIP6: CLIENT6}
"""Each VIP and the client address its requests come from."""


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReferenceLab]:
    with ReferenceLab("dualstack", tmp_path_factory.mktemp("dualstack")) as lab:
        started = lab.start()
        say(request, f"dualstack: {MASTER} holds {lab.holders()} {started:.1f} s after start")
        yield lab


def ipvsadm_inactive(lab: ReferenceLab, director: str, vip: str) -> dict[str, int]:
    """``ipvsadm -Ln -t VIP:80`` on `director`: real address -> InActConn."""
    out = lab.exec(director, ["ipvsadm", "-Ln", "-t", endpoint(vip, WEB_PORT)], check=True)
    found = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["->"] and parts[1] != "RemoteAddress:Port":
            found[parts[1].rsplit(":", 1)[0].strip("[]")] = int(parts[5])
    return found


def mac_of(lab: ReferenceLab, host: str, dev: str) -> str:
    return lab.exec(host, ["cat", f"/sys/class/net/{dev}/address"], check=True).stdout.strip()


def neighbour(lab: ReferenceLab, address: str) -> str | None:
    """The client's neighbour-table MAC for `address` (None: unresolved)."""
    words = lab.exec("client", ["ip", "-6", "neigh", "show", address], check=True).stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def test_both_families_serve_50_requests_via_both_reals_with_inactconn(
    lab: ReferenceLab, request: pytest.FixtureRequest
) -> None:
    status = status_json(lab.ipvsd(MASTER, "status", "--json"))
    web6 = service_of(status, VIP6, WEB_PORT)
    assert {r["address"] for r in web6["reals"]} == set(lab.spec.reals6.values())
    assert {(r["forward"], r["health"]) for r in web6["reals"]} == {("dr", "up")}
    before = {vip: lab.access_counts(clients=[client]) for vip, client in FAMILIES.items()}

    replies = lab.curl(50, [VIP, VIP6])

    for vip, client in FAMILIES.items():
        mine = [r for r in replies if r.vip == vip]
        assert [r.status for r in mine] == [200] * 50, mine
        assert {r.real for r in mine} == {"real1", "real2"}, mine
        logged = lab.access_counts(at_least=before[vip].total() + 50, clients=[client])
        assert logged - before[vip] == {"real1": 25, "real2": 25}  # rr, a connection each
    status = status_json(lab.ipvsd(MASTER, "status", "--json"))
    text = lab.metrics(MASTER)
    for vip in FAMILIES:
        kernel = ipvsadm_inactive(lab, MASTER, vip)
        reals = service_of(status, vip, WEB_PORT)["reals"]
        assert (
            set(kernel)
            == {r["address"] for r in reals}
            == set(lab.spec.real_addresses(vip).values())
        )
        for real in reals:
            # The closed requests linger in IPVS (TIME_WAIT / FIN states) until their timeout.
            assert real["inactive_conns"] > 0, real
            assert kernel[real["address"]] > 0, kernel
            metric = backend_metric(
                text, "ipvs_backend_connections_inactive", vip, WEB_PORT, real["address"], WEB_PORT
            )
            assert metric > 0, (real, metric)
        say(request, f"InActConn of {endpoint(vip, WEB_PORT)} on {MASTER}: {kernel}")
    # DR: the reals hold fd00:1::200 on lo but never answer Neighbor Solicitations for it
    # (no arp_ignore needed for IPv6): the client reached it through director1 alone.
    assert neighbour(lab, VIP6) == mac_of(lab, MASTER, "eth1")


def failover_bound(lab: ReferenceLab, vip: str) -> float:
    """3 x advert_int + Skew_Time of the backup + 1 s (issue 6's bound, per VIP)."""
    return 3 * ADVERT_INT + lab.spec.instance_of(vip).skew_time(BACKUP) + 1


def test_both_vips_fail_over_together_and_preempt_back(
    lab: ReferenceLab, request: pytest.FixtureRequest
) -> None:
    vips = [VIP, VIP6]
    report = lab.failover_gap(lambda: lab.link_down(MASTER), vips=vips, timeout=15)
    say(request, f"dualstack failover (eth1 down on {MASTER}):\n  " + report.summary())
    assert lab.holders() == {VIP: BACKUP, VIP6: BACKUP}
    states = {v["name"]: v["state"] for v in lab.status(BACKUP)["vrrp"]}
    assert states == {"VI_1": "MASTER", "VI_6": "MASTER"}
    for vip in vips:
        target = endpoint(vip, WEB_PORT)
        assert report.recovered_after(target) <= failover_bound(lab, vip), report.summary()
    replies = lab.curl(50, vips)
    assert [r.status for r in replies] == [200] * 100, replies
    assert {(r.vip, r.real) for r in replies} == {(v, n) for v in vips for n in lab.reals}

    back = lab.failover_gap(lambda: lab.link_up(MASTER), vips=vips, timeout=15)
    say(request, f"dualstack preemption (eth1 up on {MASTER}):\n  " + back.summary())
    assert lab.holders() == {VIP: MASTER, VIP6: MASTER}
    replies = lab.curl(20, vips)
    assert [r.status for r in replies] == [200] * 40, replies
