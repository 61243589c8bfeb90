"""`make demo`: the reference scenario end to end, narrated, on a kernel with IPVS.

Runs inside the kernel that ``lab.uml`` provides (User-Mode Linux when the
host has no IPVS) and builds `lab.reference`'s hosts as namespaces:
director1 192.168.1.10 (priority 100) and director2 .20 (90) each running
``ipvsd run`` with its own config, nginx reals .30 and .40, a client .50, the
VIP 192.168.1.200:80 (rr). Then, with real output at every step:

1. ``ipvsd status`` on both directors: who is MASTER;
2. 50 ``curl -I`` from the client, and the requests each real's nginx logged;
3. ``ipvsd status`` on the master: InActConn, and what it means;
4. a scrape of the master's /metrics showing the same numbers;
5. Debian's Prometheus on a monitor host scraping both directors, with
   contrib/'s alert rules (`lab.demo_prometheus`; ``--no-prometheus`` skips it);
6. ``ip link set eth1 down`` on the master: the VIP moves, the measured
   failover gap, a TCP connection opened before it still echoing (IPVS
   connection sync), the new state as a Prometheus query, 50 more requests
   through the other director;
7. one real's nginx stopped: drained, requests still all succeed, and
   Prometheus fires the "backend down" alert.

It ends with a summary table and exits 0 only if every step worked.

``--variant nat`` runs the NAT layout (reals on 192.168.2.0/24 behind a
gateway VIP in the same sync group); ``--all-active`` the three-director,
six-VIP layout, failing one director: it first runs ``ipvsd plan`` for
design.md's question (3 directors, 1 failure, 1.5 Gbit/s over 1 Gbit/s
links), whose answer the lab's VRRP instances are made from.

``--variant dualstack`` runs the DR layout with IPv6 next to IPv4
(fd00:1::/64 on the same segment): VIP 192.168.1.200 (VI_1, VRRPv2) and VIP
fd00:1::200 (VI_6, VRRPv3) in one sync group, a web service on each. It shows
both VIPs on director1, 50 requests over each family answered by both reals
and counted as InActConn in ``ipvsadm -Ln``, ``ipvsd status`` and the
metrics, then director1 failing (``ip link set eth1 down``, the reference
scenario's failure): both VIPs move to director2 together, requests on both
families go on, and director1 coming back (eth1 up) preempts both.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from lab import demo_prometheus
from lab.reference import (
    ADVERT_INT,
    CLIENT,
    CLIENT6,
    ECHO_PORT,
    WEB_PORT,
    ReferenceLab,
    Reply,
    Variant,
    endpoint,
    service_of,
)
from lab.reference.client import FailoverReport
from lab.reference.spec import ALL_ACTIVE_PLAN_ARGS, all_active_plan, is_ipv6, url_host
from lab.scenario import wait_until


def failover_bound(lab: ReferenceLab, vip: str, heir: str) -> float:
    """Master_Down_Interval of the heir (3 x advert_int + its Skew_Time) plus 1 s
    for GARP, ARP and the first request: the issue's bound for a failover."""
    return 3 * ADVERT_INT + lab.spec.instance_of(vip).skew_time(heir) + 1


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


class Narrator:
    """Prints the story and keeps the summary."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"\n==> {text}", flush=True)

    def show(self, command: str, output: str = "") -> None:
        print(f"$ {command}", flush=True)
        if output.strip():
            print(output.rstrip(), flush=True)

    def note(self, text: str) -> None:
        print("   " + text.replace("\n", "\n   "), flush=True)

    def step(self, name: str, ok: bool, detail: str) -> bool:
        self.steps.append(Step(name, ok, detail))
        print(f"   [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        return ok

    def summary(self) -> int:
        elapsed = time.monotonic() - self.started
        print("\nSummary\n")
        width = max(len(s.name) for s in self.steps)
        print(f"  {'':4}  {'step':<{width}}  result")
        for s in self.steps:
            print(f"  {'ok  ' if s.ok else 'FAIL'}  {s.name:<{width}}  {s.detail}")
        passed = all(s.ok for s in self.steps)
        print(f"\n{'demo passed' if passed else 'demo FAILED'} in {elapsed:.0f} s", flush=True)
        return 0 if passed else 1


def per_real(replies: Iterable[Reply]) -> str:
    counts = Counter(r.real or "?" for r in replies if r.ok)
    return ", ".join(f"{real}: {n}" for real, n in sorted(counts.items())) or "none"


def requests_step(
    demo: Narrator, lab: ReferenceLab, name: str, count: int = 50, vip: str | None = None
) -> list[Reply]:
    """`count` requests to `vip` (default the first VIP), shown as a curl loop; one step."""
    vip = vip or lab.vip
    url = f"http://{url_host(vip)}/"
    flags = ["-sI", "-g"] if is_ipv6(vip) else ["-sI"]  # -g: [...] is an address, not a glob
    one = lab.exec("client", ["curl", *flags, "--max-time", "3", url])
    curl = " ".join(["curl", *flags, url])
    demo.show(f"ip netns exec client {curl}", one.stdout)
    demo.show(f"ip netns exec client sh -c 'for i in $(seq {count}); do {curl}; done'")
    replies = lab.curl(count, [vip])
    good = [r for r in replies if r.ok]
    statuses = Counter(r.status for r in replies)
    demo.note(f"HTTP status: {dict(statuses)}; answered by {per_real(replies)}")
    demo.step(name, len(good) == count, f"{len(good)}/{count} ok ({per_real(replies)})")
    return replies


def _grep(text: str, needle: str) -> str:
    return "\n".join(line for line in text.splitlines() if needle in line)


def inactive_in_status(status: dict[str, Any]) -> dict[str, int]:
    """Real address -> InActConn of the web service, from the status JSON."""
    return {
        r["address"]: r["inactive_conns"]
        for service in status["services"]
        if service["port"] == 80
        for r in service["reals"]
    }


_INACTIVE = re.compile(
    r'^ipvs_backend_connections_inactive\{[^}]*local_port="80"[^}]*'
    r'remote_address="([^"]+)"[^}]*\} (\S+)$',
    re.MULTILINE,
)


def inactive_in_metrics(text: str) -> dict[str, int]:
    return {address: int(float(value)) for address, value in _INACTIVE.findall(text)}


def start_step(demo: Narrator, lab: ReferenceLab) -> None:
    """Start the lab (one step), show check-config and `ipvsd status` on every director."""
    converged_s = lab.start()
    demo.step(
        "lab up",
        True,
        f"{len(lab.directors)} directors, {len(lab.reals)} nginx reals; MASTER elected and "
        f"reals healthy {converged_s:.1f} s after ipvsd started",
    )
    check = lab.ipvsd(
        "director1", "check-config", "--config", str(lab.directors["director1"].daemon.config)
    )
    demo.show("ipvsd check-config --config director1.yaml", check.stdout + check.stderr)

    demo.say("Who is MASTER? `ipvsd status` on both directors")
    for name in lab.directors:
        out = lab.ipvsd(name, "status")
        demo.show(f"ip netns exec {name} ipvsd status", out.stdout + out.stderr)


def inactconn_steps(demo: Narrator, lab: ReferenceLab) -> dict[str, int]:
    """director1's InActConn in `ipvsd status` and /metrics (two steps); real -> InActConn."""
    demo.say("`ipvsd status` on the master: the kernel's counters, read now")
    out = lab.ipvsd("director1", "status")
    demo.show("ip netns exec director1 ipvsd status", out.stdout)
    demo.note(
        "InActConn: connections that are over (FIN / TIME_WAIT) but that IPVS keeps\n"
        "until their timeout - each `curl -I` above is one, on the real that served it."
    )
    in_status = inactive_in_status(lab.status("director1"))
    text = lab.metrics("director1")
    demo.say("The same numbers from a scrape of director1's /metrics")
    lines = [
        line for line in text.splitlines() if line.startswith("ipvs_backend_connections_inactive{")
    ]
    demo.show("curl -s http://127.0.0.1:9477/metrics | grep connections_inactive", "\n".join(lines))
    in_metrics = inactive_in_metrics(text)
    demo.step(
        "InActConn in status",
        sum(in_status.values()) > 0,
        ", ".join(f"{a}: {n}" for a, n in sorted(in_status.items())),
    )
    demo.step(
        "metrics match status",
        in_metrics == in_status,
        "ipvs_backend_connections_inactive "
        + ", ".join(f"{a}: {n}" for a, n in sorted(in_metrics.items())),
    )
    return in_status


def run_pair(demo: Narrator, variant: Variant, *, prometheus: bool = True) -> None:
    with ReferenceLab(variant, prefix="demo", monitor=prometheus) as lab:
        demo.say(
            f"Building the reference scenario ({variant.upper()}): director1 .10 and "
            "director2 .20 running ipvsd, nginx reals, client .50, VIP "
            f"{lab.vip}:80 rr"
        )
        start_step(demo, lab)
        states = {name: lab.status(name)["vrrp"][0]["state"] for name in lab.directors}
        demo.step(
            "VRRP election",
            states == {"director1": "MASTER", "director2": "BACKUP"}
            and lab.master() == "director1",
            ", ".join(f"{n} {s}" for n, s in states.items()) + f"; VIP on {lab.master()}",
        )

        demo.say("50 `curl -I` from the client to the VIP")
        requests_step(demo, lab, "50 requests via director1")
        counts = lab.access_counts()
        demo.say("Requests per real, from the nginx access logs")
        for real, n in sorted(counts.items()):
            demo.note(f"{real} ({lab.reals[real].address}): {n} requests logged")
        demo.step(
            "both reals served",
            all(counts[r] > 0 for r in lab.reals) and sum(counts.values()) >= 50,
            ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())),
        )

        inactconn_steps(demo, lab)
        server = demo_prometheus.start(demo, lab) if prometheus else None

        demo.say("Failover: `ip link set eth1 down` on the master (director1)")
        echo = lab.long_connection()
        first = echo.exchange("before")
        demo.note(f"a TCP connection to {lab.vip}:9000 opened before the failover: {first!r}")

        def synced() -> bool:
            return any(
                c.client_port == echo.local_port and c.vport == ECHO_PORT
                for c in lab.connections("director2")
            )

        try:
            synced_s = wait_until(synced, timeout=8, interval=0.2)
            demo.note(f"director2 holds it {synced_s:.1f} s later (IPVS connection sync):")
            out = lab.exec("director2", ["ipvsadm", "-Lnc"])
            demo.show(
                "ip netns exec director2 ipvsadm -Lnc | grep :9000", _grep(out.stdout, ":9000")
            )
        except AssertionError:
            demo.note("director2 did not receive the connection within 8 s")
        report = lab.failover_gap(lambda: lab.link_down("director1"))
        demo.note(report.summary())
        gap, served_again = report.gap().length, report.recovered_after()
        bound = failover_bound(lab, lab.vip, "director2")
        demo.step("VIP moved", lab.master() == "director2", f"{lab.vip} on {lab.master()}")
        demo.step(
            "failover gap",
            served_again <= bound,
            f"{gap:.2f} s without an answer, served again {served_again:.2f} s after link down"
            f" (bound {bound:.2f} s)",
        )
        after = echo.exchange("after")
        demo.note(f"the same TCP connection after the failover: {after!r}")
        demo.step(
            "connection survived",
            after is not None and first is not None and after.split()[0] == first.split()[0],
            "echo still answered through director2 (IPVS connection sync)"
            if after
            else "the connection died",
        )
        echo.close()
        if server is not None:
            demo_prometheus.failover(demo, lab, server, "director2")
        requests_step(demo, lab, "50 requests via director2")

        demo.say("One real fails: nginx stopped on real1")
        stopped_at = time.monotonic()
        lab.stop_nginx("real1")
        try:
            drained_s = wait_until(lambda: lab.weights("director2").get("real1") == 0, 15, 0.2)
            drained = True
        except AssertionError:
            drained_s, drained = 15.0, False
        out = lab.ipvsd("director2", "status")
        demo.show("ip netns exec director2 ipvsd status", out.stdout)
        demo.step(
            "real1 drained",
            drained,
            f"weight 0 in director2's kernel {drained_s:.1f} s after nginx stopped",
        )
        replies = requests_step(demo, lab, "50 requests, real1 down")
        demo.step(
            "only real2 serves",
            {r.real for r in replies if r.ok} == {"real2"},
            per_real(replies),
        )
        if server is not None:
            demo_prometheus.backend_down(demo, lab, server, "real1", "director2", stopped_at)


def show_all_active_plan(demo: Narrator) -> None:
    """Run `ipvsd plan` for design.md's question: the layout the lab then runs."""
    demo.say(
        "The plan: 3 directors, 1 failure tolerated, 1.5 Gbit/s of traffic, 1 Gbit/s links "
        "(the lab's VRRP instances are made from this plan)"
    )
    argv = ["ipvsd", "plan", *ALL_ACTIVE_PLAN_ARGS]
    done = subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, check=False
    )
    demo.show(" ".join(argv), done.stdout + done.stderr)
    plan, _ = all_active_plan()
    demo.step(
        "plan",
        done.returncode == 0 and plan.fits and plan.layout.vips == 6,
        f"{plan.layout.vips} VIPs, {plan.worst_load_bps() / 1e9:g} Gbit/s per survivor "
        "after a failure",
    )


def run_all_active(demo: Narrator) -> None:
    show_all_active_plan(demo)
    with ReferenceLab("all-active", prefix="demo") as lab:
        demo.say(
            "Building All-Active: director1 .10, director2 .20, director3 .25; six VIPs "
            f"{lab.vips[0]}-{lab.vips[-1].rsplit('.', 1)[1]}, each director MASTER for two"
        )
        converged_s = lab.start()
        holders = lab.holders()
        for vip in lab.vips:
            demo.note(f"{vip} -> {holders[vip]}")
        mastered = Counter(holders[v] for v in lab.vips)
        demo.step(
            "lab up",
            sorted(mastered.values()) == [2, 2, 2],
            f"each director holds two VIPs ({converged_s:.1f} s)",
        )

        demo.say("5 `curl -I` to each of the six VIPs")
        replies = lab.curl(5, lab.vips)
        ok = [r for r in replies if r.ok]
        demo.note(f"answered by {per_real(replies)}")
        demo.step("30 requests", len(ok) == len(replies) == 30, f"{len(ok)}/30 ok")

        victims = [v for v in lab.vips if holders[v] == "director1"]
        demo.say(f"director1 fails (`ip link set eth1 down`): its VIPs {', '.join(victims)} move")
        report = lab.failover_gap(lambda: lab.link_down("director1"), vips=victims)
        demo.note(report.summary())
        after = lab.holders()
        new_owners = [after[v] for v in victims]
        demo.step(
            "VIPs to two survivors",
            len(set(new_owners)) == 2 and "director1" not in new_owners and None not in new_owners,
            ", ".join(f"{v} -> {after[v]}" for v in victims),
        )
        bound = max((failover_bound(lab, v, h) for v in victims if (h := after[v])), default=0.0)
        served_again = max(report.recovered_after(f"{v}:80") for v in victims)
        demo.step(
            "failover gap",
            served_again <= bound,
            f"{report.gap().length:.2f} s without an answer, all served again"
            f" {served_again:.2f} s after link down (bound {bound:.2f} s)",
        )
        replies = lab.curl(5, lab.vips)
        ok = [r for r in replies if r.ok]
        demo.step("all six VIPs answer", len(ok) == 30, f"{len(ok)}/30 ok; {per_real(replies)}")


def move_step(
    demo: Narrator, lab: ReferenceLab, action: Callable[[], object], heir: str, name: str
) -> FailoverReport | None:
    """Run `action` while probing every VIP; one step: are all VIPs on `heir` afterwards?

    Returns:
        The prober's report, or None if the VIPs did not all move (or answer) in
        time; the action has run either way.
    """
    ran = False

    def act() -> None:
        nonlocal ran
        ran = True
        action()

    def moved() -> bool:
        return set(lab.holders().values()) == {heir}

    report = None
    try:
        report = lab.failover_gap(act, vips=lab.vips, moved=moved, timeout=15)
        demo.note(report.summary())
    except AssertionError as exc:  # a VIP did not answer before, or did not move
        demo.note(str(exc))
        if not ran:
            act()
            with contextlib.suppress(AssertionError):
                wait_until(moved, timeout=15, interval=0.1)
    holders = lab.holders()
    demo.step(
        name,
        all(holders[v] == heir for v in lab.vips),
        ", ".join(f"{v} on {holders[v]}" for v in lab.vips),
    )
    return report


def run_dualstack(demo: Narrator) -> None:
    """The DR pair with an IPv6 VIP and service failing over with the IPv4 ones (issue 14)."""
    with ReferenceLab("dualstack", prefix="demo") as lab:
        clients = dict(zip(lab.vips, (CLIENT, CLIENT6), strict=True))
        demo.say(
            "Building the dual-stack reference scenario (DR): director1 .10 / ::10 and "
            "director2 .20 / ::20 running ipvsd, nginx reals on 192.168.1.0/24 and fd00:1::/64, "
            f"client .50 / ::50; VIPs {' and '.join(endpoint(v, WEB_PORT) for v in lab.vips)} "
            "rr: VI_1 (VRRPv2) and VI_6 (VRRPv3) in one sync group"
        )
        start_step(demo, lab)
        holders = lab.holders()
        demo.step(
            "both VIPs on director1",
            all(holders[v] == "director1" for v in lab.vips),
            ", ".join(f"{v} on {holders[v]}" for v in lab.vips),
        )

        for vip in lab.vips:
            demo.say(f"50 `curl -I` from the client to {url_host(vip)}")
            requests_step(demo, lab, f"50 requests to {url_host(vip)} via director1", vip=vip)
        demo.say("Requests per real and family, from the nginx access logs")
        for vip, client in clients.items():
            counts = lab.access_counts(at_least=50, clients=[client])
            demo.note(
                f"from {client}: " + ", ".join(f"{r}: {n}" for r, n in sorted(counts.items()))
            )
            demo.step(
                f"both reals served {url_host(vip)}",
                all(counts[r] > 0 for r in lab.reals) and counts.total() >= 50,
                ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())),
            )

        demo.say("`ipvsadm -Ln` on director1: one service per family, the same reals")
        out = lab.exec("director1", ["ipvsadm", "-Ln"])
        demo.show("ip netns exec director1 ipvsadm -Ln", out.stdout + out.stderr)
        inactconn_steps(demo, lab)
        status = lab.status("director1")
        for vip in lab.vips:
            reals = service_of(status, vip, WEB_PORT)["reals"]
            demo.step(
                f"InActConn on {endpoint(vip, WEB_PORT)}",
                bool(reals) and all(r["inactive_conns"] > 0 for r in reals),
                ", ".join(f"{r['address']}: {r['inactive_conns']}" for r in reals),
            )

        demo.say(
            "director1 fails: `ip link set eth1 down` on it. Both VIPs must move to director2 "
            "together (sync group G1)"
        )
        report = move_step(
            demo, lab, lambda: lab.link_down("director1"), "director2", "both VIPs moved"
        )
        if report is not None:
            bound = max(failover_bound(lab, v, "director2") for v in lab.vips)
            served_again = max(report.recovered_after(endpoint(v, WEB_PORT)) for v in lab.vips)
            demo.step(
                "failover gap",
                served_again <= bound,
                f"both families served again {served_again:.2f} s after link down"
                f" (bound {bound:.2f} s)",
            )
        out = lab.ipvsd("director2", "status")
        demo.show("ip netns exec director2 ipvsd status", out.stdout + out.stderr)
        for vip in lab.vips:
            requests_step(demo, lab, f"50 requests to {url_host(vip)} via director2", vip=vip)

        demo.say("director1 comes back: `ip link set eth1 up`; it preempts (priority 100 > 90)")
        move_step(demo, lab, partial(lab.link_up, "director1"), "director1", "both VIPs back")
        for vip in lab.vips:
            requests_step(demo, lab, f"20 requests to {url_host(vip)} via director1", 20, vip)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["dr", "nat", "dualstack"], default="dr")
    parser.add_argument("--all-active", action="store_true", help="three directors, six VIPs")
    parser.add_argument(
        "--no-prometheus",
        action="store_true",
        help="without the Prometheus server on a monitor host (dr and nat; dualstack has none)",
    )
    args = parser.parse_args(argv)
    demo = Narrator()
    try:
        if args.all_active:
            run_all_active(demo)
        elif args.variant == "dualstack":
            run_dualstack(demo)
        else:
            variant: Variant = "nat" if args.variant == "nat" else "dr"
            run_pair(demo, variant, prometheus=not args.no_prometheus)
    except Exception as exc:  # the summary must still say what failed
        demo.step("demo ran to the end", False, f"{type(exc).__name__}: {exc}")
    return demo.summary()


if __name__ == "__main__":
    sys.exit(main())
