"""`make demo`: ipvsd on the reference scenario, narrated, on a kernel with IPVS.

Runs inside the kernel that ``lab.uml`` provides (User-Mode Linux when the host
has no IPVS). Builds design.md's segment as namespaces — director1
192.168.1.10, reals .30 and .40, client .50, VIP .200:80 — runs
``ipvsd run --config etc/ipvsd.yaml`` on the director, sends 50 requests from
the client and shows what ipvsd programmed and what the kernel counted.

ipvsd's own VRRP puts the VIP on the director (MASTER after
Master_Down_Interval, 3.6 s, as keepalived), its tcp checks let the reals in
after their first success. Exits 0 only if every step worked.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from ipvsd.model import Family, Protocol, ServiceKey
from lab.daemon import DaemonProcess, kernel_table
from lab.netns import Topology
from lab.scenario import VIP, one_arm_nat_scenario, wait_until
from lab.vrrp_pair import holds_vip

CONFIG = Path(__file__).resolve().parent.parent / "etc" / "ipvsd.yaml"
WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(title: str, argv: list[str], ns: str | None, topo: Topology) -> str:
    out = topo.exec(ns, argv, check=False)
    print(f"$ {title}\n{out.stdout.rstrip()}{out.stderr.rstrip()}", flush=True)
    return out.stdout


def main() -> int:
    steps: list[Step] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipvsd-demo-") as tmp, Topology("demo") as topo:
        workdir = Path(tmp)
        say("Building the reference segment: director1 .10 (+ VIP .200), reals .30 .40, client .50")
        scenario = one_arm_nat_scenario(topo, workdir, with_vip=False)
        scenario.start_real_servers()
        steps.append(Step("lab built", True, "5 namespaces on one bridge; web servers up"))

        say("Validating the config")
        check = subprocess.run(
            [sys.executable, "-m", "ipvsd", "check-config", "--config", str(CONFIG)],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"$ ipvsd check-config --config etc/ipvsd.yaml  (exit {check.returncode})")
        print(check.stdout, end="")
        steps.append(Step("check-config", check.returncode == 0, f"exit {check.returncode}"))

        say("Starting `ipvsd run --config etc/ipvsd.yaml` on director1")
        daemon = DaemonProcess(topo, scenario.director, CONFIG, workdir / "ipvsd.log")
        daemon.start()
        master_s = wait_until(lambda: holds_vip(topo, scenario.director), timeout=10)
        steps.append(Step("VRRP MASTER", True, f"VIP {VIP} on eth1 after {master_s:.1f} s"))
        wait_until(lambda: len(kernel_table(scenario.director).services[WEB].dests) == 2, 10)
        table = kernel_table(scenario.director)
        ok = WEB in table.services and len(table.services[WEB].dests) == 2
        steps.append(
            Step("ipvsd programmed IPVS", ok, f"{len(table)} service, {table.dest_count()} reals")
        )
        show(
            "ipvsd list   (read over netlink by ipvsd)",
            [sys.executable, "-m", "ipvsd", "list"],
            scenario.director,
            topo,
        )
        show("ipvsadm -Ln  (the classic tool agrees)", ["ipvsadm", "-Ln"], scenario.director, topo)

        say("50 HTTP requests from the client to 192.168.1.200:80")
        results = scenario.requests(50)
        good = [body for status, body in results if status == 200]
        per_real = Counter(good)
        for real, count in sorted(per_real.items()):
            print(f"   {real}: {count} requests")
        steps.append(
            Step(
                "50 requests",
                len(good) == 50 and len(per_real) == 2,
                f"{len(good)}/50 ok, "
                + ", ".join(f"{r}: {c}" for r, c in sorted(per_real.items())),
            )
        )

        say("The closed connections, as the kernel counts them")
        show("ipvsd list", [sys.executable, "-m", "ipvsd", "list"], scenario.director, topo)
        print(
            "   InActConn: connections in TIME_WAIT / FIN states that IPVS keeps until\n"
            "   their timeout (tcpfin, 120 s by default) - each request above is one."
        )
        dests = kernel_table(scenario.director).services[WEB].dests.values()
        inactive = sum(d.counters.inactive_conns for d in dests if d.counters)
        steps.append(Step("InActConn visible", inactive >= 45, f"{inactive} inactive connections"))

        say("Restarting ipvsd: the table is adopted, not rebuilt")
        daemon.stop()
        daemon.start()
        changes = [e for e in daemon.events() if e.get("event") == "ipvs.reconcile"]
        steps.append(
            Step(
                "restart adopts",
                not changes,
                "0 netlink operations on restart" if not changes else f"{changes}",
            )
        )
        daemon.stop()

    print("\nSummary\n")
    width = max(len(s.name) for s in steps)
    for step in steps:
        print(f"  {'ok  ' if step.ok else 'FAIL'}  {step.name:<{width}}  {step.detail}")
    all_ok = all(s.ok for s in steps)
    print(f"\n{'demo passed' if all_ok else 'demo FAILED'} in {time.monotonic() - started:.1f} s")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
