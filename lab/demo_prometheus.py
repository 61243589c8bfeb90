"""The demo's Prometheus steps: a real server on the monitor host, watching the scenario.

`lab.demo` calls these at three points of the two-director story:

1. after the lab is up: Debian's Prometheus starts on the monitor host
   (192.168.100.100, listening on its own 127.0.0.1:9090), scrapes both
   directors over the management segment every second with
   contrib/prometheus/ipvsd-alerts.yml loaded; ``promtool query instant``
   shows who is MASTER;
2. after the failover: the same query shows director1 FAULT and director2
   MASTER;
3. after real1's nginx stops: the IpvsdBackendDown alert firing for it.

Queries are shown as the ``promtool`` command an operator would type, run in
the monitor's namespace; the checks read the HTTP API (`PrometheusServer`).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from lab.prometheus import FOR_DIVISOR, FOR_MAX_S, LISTEN, PrometheusServer
from lab.reference import ReferenceLab
from lab.scenario import wait_until

if TYPE_CHECKING:
    from lab.demo import Narrator

STATE_NAMES = {0.0: "INIT", 1.0: "BACKUP", 2.0: "MASTER", 3.0: "FAULT"}


def show_query(demo: Narrator, lab: ReferenceLab, expr: str) -> None:
    """Run ``promtool query instant`` on the monitor host and show its output."""
    server = f"http://{LISTEN[0]}:{LISTEN[1]}"
    done = lab.exec("monitor", ["promtool", "query", "instant", server, expr])
    demo.show(
        f"ip netns exec monitor promtool query instant {server} '{expr}'",
        done.stdout + done.stderr,
    )


def states(server: PrometheusServer) -> str:
    """``director1 MASTER, director2 BACKUP`` from ``ipvsd_vrrp_state`` now."""
    values = server.values("ipvsd_vrrp_state")
    return ", ".join(f"{name} {STATE_NAMES.get(v, v)}" for name, v in sorted(values.items()))


def start(demo: Narrator, lab: ReferenceLab) -> PrometheusServer | None:
    """Step 1: start Prometheus, show the targets, the rules and the VRRP state."""
    demo.say("Prometheus on the monitor host scrapes both directors (Debian's prometheus)")
    started = time.monotonic()
    try:
        server = lab.start_prometheus()
    except (AssertionError, OSError) as exc:
        demo.step("Prometheus scrapes", False, str(exc)[:300])
        return None
    took = time.monotonic() - started
    for name, address in server.targets.items():
        demo.note(f"target {name}: http://{address}/metrics (management segment)")
    rules = server.rule_health()
    demo.note(
        f"{len(rules)} alert rules from contrib/prometheus/ipvsd-alerts.yml, every `for:` "
        f"divided by {FOR_DIVISOR} (at most {FOR_MAX_S} s) for the demo"
    )
    show_query(demo, lab, "ipvsd_vrrp_state")
    demo.step(
        "Prometheus scrapes",
        server.values('up{job="ipvsd"}') == {name: 1.0 for name in lab.directors},
        f"{len(server.targets)} directors up {took:.1f} s after start; {len(rules)} alert rules;"
        f" {states(server)}",
    )
    return server


def failover(demo: Narrator, lab: ReferenceLab, server: PrometheusServer, master: str) -> None:
    """Step 2: the failover as a query result (`master` is the new MASTER)."""
    demo.say("The failover, as Prometheus saw it")

    def seen() -> bool:
        return server.values("ipvsd_vrrp_state == 2") == {master: 2.0}

    with contextlib.suppress(AssertionError):  # shown, and judged, below
        wait_until(seen, 15, 0.25)
    show_query(demo, lab, "ipvsd_vrrp_state")
    show_query(demo, lab, "count by (vrid) (ipvsd_vrrp_state == 2)")
    demo.step("failover in Prometheus", seen(), f"ipvsd_vrrp_state: {states(server)}")


def backend_down(
    demo: Narrator,
    lab: ReferenceLab,
    server: PrometheusServer,
    real: str,
    director: str,
    stopped_at: float,
) -> None:
    """Step 3: the IpvsdBackendDown alert of `real` firing on `director`."""
    address = lab.reals[real].address
    demo.say(f'The "backend down" alert for {real} ({address})')

    def firing() -> list[dict[str, str]]:
        return [
            labels
            for labels in server.firing("IpvsdBackendDown")
            if labels["instance"] == director and labels["remote_address"] == address
        ]

    try:
        wait_until(firing, 30, 0.5)
        fired = True
    except AssertionError:
        fired = False
    after = time.monotonic() - stopped_at
    show_query(
        demo,
        lab,
        f'ALERTS{{alertname="IpvsdBackendDown",alertstate="firing",instance="{director}"}}',
    )
    show_query(demo, lab, 'count by (alertname, instance) (ALERTS{alertstate="firing"})')
    demo.note(
        "director1's eth1 is still down: its own checks of both reals fail too, hence its\n"
        "IpvsdVrrpFault, IpvsdBackendDown and IpvsdServiceAllBackendsDown."
    )
    demo.step(
        "backend-down alert",
        fired,
        f"IpvsdBackendDown firing for {address}:80 on {director} {after:.1f} s after nginx stopped"
        if fired
        else f"IpvsdBackendDown not firing for {address} on {director} after {after:.0f} s",
    )
