"""``make demo VARIANT=bgp``: BGP mode on real IPVS, narrated (issue 15 part 4).

The lab of `lab.bgp_lab`: a BIRD router spreading flows with ECMP over three
``ipvsd run`` directors that announce the VIPs, DR reals, a client. The story:
flows spread over all three; one director's ipvsd is SIGKILLed, its routes
are withdrawn, and every ``mh`` connection lives on through the others (the
``rr`` control loses some); it is restarted and rejoins; another is drained
with ``ipvsd drain --all`` and its connections live on too.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from lab.bgp_lab import (
    DIRECTORS,
    VIP_MH,
    VIP_RR,
    BgpLab,
    kill_director,
    restart_director,
    running,
)

if TYPE_CHECKING:
    from lab.demo import Narrator

EVERYONE = set(DIRECTORS.values())


def _route(demo: Narrator, lab: BgpLab, vip: str = VIP_MH) -> None:
    out = lab.topo.exec(lab.router, ["ip", "route", "show", f"{vip}/32"]).stdout
    demo.show(f"ip netns exec router ip route show {vip}/32", out)


def run_bgp(demo: Narrator) -> None:
    demo.say(
        "Building the BGP lab in UML: a router running BIRD (ECMP, L4 hash), three "
        "directors running `ipvsd run` in BGP mode, three DR reals, a client with 40 "
        f"addresses. {VIP_MH}:80 uses mh (BGP mode's default), {VIP_RR}:80 rr"
    )
    with tempfile.TemporaryDirectory(prefix="ipvsd-demo-bgp-") as tmp, running(Path(tmp)) as lab:
        demo.say("Each director announces both VIPs; the router installs one multipath route")
        _route(demo, lab)
        demo.step("route over all three directors", lab.next_hops() == EVERYONE, "d1, d2, d3")
        out = lab.ipvsd("d1", "status").stdout
        demo.show("ip netns exec d1 ipvsd status", out)
        addresses = lab.lo_addresses("d1")
        demo.step(
            "ipvsd put the VIPs on lo and set sloppy_tcp",
            f"{VIP_MH}/32" in addresses and lab.sysctl("d1", "net.ipv4.vs.sloppy_tcp") == "1",
            f"lo: {', '.join(sorted(addresses))}",
        )

        demo.say("80 connections from the client (40 addresses x 2) to the mh VIP")
        flows = lab.open_flows(VIP_MH, per_source=2)
        spread = Counter(lab.directors_of(flows).values())
        reals = Counter(flow.real for flow in flows)
        lab.close_flows()
        demo.step(
            "flows spread over all three directors",
            set(spread) == set(DIRECTORS),
            ", ".join(f"{d}: {n}" for d, n in sorted(spread.items()))
            + "; reals "
            + ", ".join(f"{r}: {n}" for r, n in sorted(reals.items())),
        )

        demo.say(
            "`kill -9` of d2's ipvsd, 40 connections open to each VIP: BIRD dies with it, "
            "the router withdraws d2, ECMP moves d2's flows to d1 and d3"
        )
        lost = kill_director(lab, "d2")
        _route(demo, lab)
        demo.step(
            "d2 withdrawn",
            lost.withdrawal_s < 2,
            f"{lost.withdrawal_s * 1000:.0f} ms after the kill",
        )
        demo.step(
            "mh: every connection kept",
            lost.mh_kept == lost.mh_total,
            f"{lost.mh_kept} of {lost.mh_total}; {lost.mh_moved_kept} of the {lost.mh_moved} "
            "through d2 went on through d1/d3 to the same real, no connection sync",
        )
        demo.note(
            f"rr, the control: {lost.rr_kept} of {lost.rr_total} kept, "
            f"{lost.rr_moved_kept} of the {lost.rr_moved} through d2 "
            "(a survivor reschedules a moved flow to any real, which resets it)"
        )

        demo.say("d2's ipvsd is started again")
        ready_s, back_s = restart_director(lab, "d2")
        _route(demo, lab)
        demo.step(
            "d2 rejoined",
            lab.next_hops() == EVERYONE,
            f"ready {ready_s:.1f} s after the start, its route back {back_s:.1f} s later",
        )

        demo.say("`ipvsd drain --all` on d3, 40 mh connections open")
        flows = lab.open_flows(VIP_MH)
        started = time.monotonic()
        lab.ipvsd("d3", "drain", "--all")
        drained_s = time.monotonic() - started
        drained_s += lab.wait_hops(EVERYONE - {DIRECTORS["d3"]}, timeout=10)
        kept = sum(1 for flow in flows if flow.ask() == flow.real)
        lab.close_flows()
        _route(demo, lab)
        demo.step(
            "drained without breaking connections",
            kept == len(flows),
            f"withdrawn {drained_s * 1000:.0f} ms after the command; {kept} of {len(flows)} kept",
        )
        lab.ipvsd("d3", "undrain", "--all")
        lab.wait_hops(EVERYONE, timeout=10)
        demo.step("d3 undrained", True, "announcing again")
