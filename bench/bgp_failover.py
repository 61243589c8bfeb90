"""Benchmark: losing one of three BGP directors, next to a VRRP failover, in one run (UML).

Runs inside User-Mode Linux (real IPVS) on the lab of `lab.bgp_lab`: a BIRD
router with ECMP over three ``ipvsd run`` directors, DR reals, a client.

1. **Connection survival**, ``mh`` vs ``rr``: for each round, 80 connections
   to each VIP (40 client addresses x 2), then SIGKILL of one director's ipvsd
   (d1, d2, d3 in turn, restarted after); the share of established
   connections that still reach their real, all of them and those that went
   through the dead director.
2. **Withdrawal to reconvergence**: the time from the failure until the
   router's FIB no longer forwards the VIP to that director, for SIGKILL of
   ipvsd (the kernel closes BIRD's session) and for a dead host (its link cut
   on the switch: nothing is sent) with BFD (3 x 100 ms) and without (the hold
   timer, 3 s); next to the time a VRRP backup takes over a VIP when its
   master's link is cut (ipvsd pairs, VRRPv3 at 1 s and 0.1 s; the same code
   as bench/vrrp_failover.py).

    python -m lab.uml --timeout 1800 -- python -m bench.bgp_failover [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import Row, print_table
from bench.vrrp_failover import Setup, one_round
from lab.bgp_lab import DIRECTORS, Survival, kill_director, restart_director, running


def survival(tmp: Path, rounds: int) -> tuple[list[Survival], list[float]]:
    """`rounds` SIGKILLs (each director in turn, restarted after): outcomes and rejoin times."""
    outcomes, rejoins = [], []
    with running(tmp) as lab:
        names = list(DIRECTORS)
        for index in range(rounds):
            name = names[index % len(names)]
            outcomes.append(kill_director(lab, name, per_source=2))
            rejoins.append(sum(restart_director(lab, name)))
    return outcomes, rejoins


def dead_host(tmp: Path, *, bfd: bool) -> list[float]:
    """Seconds from cutting a director's link until the router stops forwarding to it,
    for d1, d2 and d3 in turn (one lab, no link restored: three samples)."""
    times = []
    with running(tmp, bfd=bfd, hold_time=3) as lab:
        left = set(DIRECTORS.values())
        for name, address in DIRECTORS.items():
            left.discard(address)
            started = time.monotonic()
            lab.topo.exec(lab.switch, ["ip", "link", "set", lab.ports[name], "down"])
            lab.wait_hops(left, timeout=20)
            times.append(time.monotonic() - started)
    return times


def _share(kept: int, total: int) -> str:
    return f"{kept}/{total} ({100 * kept / total:.1f} %)" if total else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ipvsd-bgp-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "survival").mkdir()
        outcomes, rejoins = survival(tmp / "survival", args.rounds)
        for scheduler in ("mh", "rr"):
            total = sum(getattr(o, f"{scheduler}_total") for o in outcomes)
            kept = sum(getattr(o, f"{scheduler}_kept") for o in outcomes)
            moved = sum(getattr(o, f"{scheduler}_moved") for o in outcomes)
            moved_kept = sum(getattr(o, f"{scheduler}_moved_kept") for o in outcomes)
            rows.append(
                Row(
                    "connections kept, 1 of 3 directors SIGKILLed",
                    scheduler,
                    float("nan"),
                    f"all: {_share(kept, total)}; through the dead director: "
                    f"{_share(moved_kept, moved)} ({args.rounds} rounds)",
                )
            )
        withdrawals = [o.withdrawal_s for o in outcomes]
        rows.append(
            Row(
                "withdrawn: SIGKILL of ipvsd",
                "BGP",
                statistics.median(withdrawals),
                f"median of {len(withdrawals)} ({min(withdrawals):.3f}-{max(withdrawals):.3f}), "
                f"the kernel's route notification; rejoin after restart "
                f"{statistics.median(rejoins):.1f} s (start to ready to route back)",
            )
        )
        for bfd in (True, False):
            (tmp / f"dead-{bfd}").mkdir()
            times = dead_host(tmp / f"dead-{bfd}", bfd=bfd)
            rows.append(
                Row(
                    "withdrawn: dead host (link cut)",
                    "BGP, BFD 3 x 100 ms" if bfd else "BGP, hold timer 3 s",
                    statistics.median(times),
                    f"median of {len(times)} ({min(times):.3f}-{max(times):.3f}), FIB polled",
                )
            )
        for interval in (1.0, 0.1):
            vips = []
            for index in range(args.rounds):
                workdir = tmp / f"vrrp-{interval}-{index}"
                workdir.mkdir()
                vips.append(one_round("ipvsd", "link down", Setup(3, 4, interval), workdir)[1])
            rows.append(
                Row(
                    "VIP moved: master's link cut",
                    f"VRRPv3 {interval:g} s",
                    statistics.median(vips),
                    f"median of {len(vips)} ({min(vips):.3f}-{max(vips):.3f}), "
                    "VIP on the backup (polled 10 ms)",
                )
            )
    print_table("Losing one of three BGP directors vs a VRRP failover (UML)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
