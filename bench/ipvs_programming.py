"""Benchmark: programming and re-reading a big IPVS table, ipvsd vs ipvsadm vs keepalived.

Runs on a kernel with IPVS (``make bench`` boots UML for it). Every method
programs the same rules (N TCP services x 4 DR reals, rr) from empty, each in a
fresh network namespace: IPVS is per-namespace, and a fresh one has an empty
dest trash list, so no method pays for the previous one's deletes.

    python -m bench.ipvs_programming [--sizes 1000,10000] [--skip-keepalived]

Measured:
- full programming time: ipvsd's reconciler (dump → plan → batched apply),
  ``ipvsadm -R``, and keepalived (virtual_server blocks without checkers,
  timed from start until the kernel table is complete);
- a no-op reconcile of the full table (dump + diff) vs ``ipvsadm -Ln --stats``;
- a single weight change: number of netlink operations and time;
- peak RSS of ``ipvsd run`` holding the table, and of keepalived's checker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

from bench.report import Row, print_table

RUN_DIR = Path(tempfile.mkdtemp(prefix="ipvsd-bench-"))
REALS_PER_SERVICE = 4


def vip(i: int) -> IPv4Address:
    return IPv4Address(0x0A000000 + i + 1)  # 10.0.0.1 ...


def real(i: int, j: int) -> IPv4Address:
    return IPv4Address(0xAC100000 + i * REALS_PER_SERVICE + j + 1)  # 172.16.0.1 ...


def ipvsadm_rules(n: int) -> str:
    lines = []
    for i in range(n):
        lines.append(f"-A -t {vip(i)}:80 -s rr")
        lines.extend(
            f"-a -t {vip(i)}:80 -r {real(i, j)}:80 -g -w 1" for j in range(REALS_PER_SERVICE)
        )
    return "\n".join(lines) + "\n"


def keepalived_conf(n: int) -> str:
    blocks = []
    for i in range(n):
        reals = "".join(
            f"  real_server {real(i, j)} 80 {{\n    weight 1\n  }}\n"
            for j in range(REALS_PER_SERVICE)
        )
        blocks.append(
            f"virtual_server {vip(i)} 80 {{\n  lb_algo rr\n  lb_kind DR\n"
            f"  protocol TCP\n{reals}}}\n"
        )
    return "global_defs {\n  router_id bench\n}\n" + "".join(blocks)


def ipvsd_yaml(n: int) -> str:
    lines = ["node_name: bench", "metrics: {listen: null}", "ipvs:", "  services:"]
    for i in range(n):
        reals = ", ".join(f"{{address: {real(i, j)}, port: 80}}" for j in range(REALS_PER_SERVICE))
        lines.append(
            f"    - {{address: {vip(i)}, port: 80, scheduler: rr, forward: dr, reals: [{reals}]}}"
        )
    return "\n".join(lines) + "\n"


class Netns:
    """A fresh network namespace for one measurement."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Netns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        # IPVS refuses dests while the namespace has no local routing table (lo down).
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


def table_lines(pid: int) -> int:
    """Lines of /proc/PID/net/ip_vs: the table as the process's namespace sees it."""
    with open(f"/proc/{pid}/net/ip_vs", "rb") as f:
        return f.read().count(b"\n")


def expected_lines(n: int) -> int:
    return 3 + n * (1 + REALS_PER_SERVICE)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for_table(pid: int, n: int, limit_s: float) -> float:
    """Seconds until the process's namespace has the full table (polls /proc)."""
    started = time.monotonic()
    want = expected_lines(n)
    while time.monotonic() - started < limit_s:
        try:
            if table_lines(pid) >= want:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"table of {n} services not complete after {limit_s} s")


def _restore(ns: Netns, n: int) -> tuple[float, float]:
    """`ipvsadm -R` of N x 4 in `ns`: seconds from exec to its exit, and its peak RSS (MB)."""
    rules = RUN_DIR / f"rules-{n}.txt"
    if not rules.exists():
        rules.write_text(ipvsadm_rules(n))
    started = time.monotonic()
    with rules.open() as stdin:
        proc = subprocess.Popen(ns.argv("ipvsadm", "-R"), stdin=stdin)
        _, status, usage = os.wait4(proc.pid, 0)  # its rusage: ru_maxrss
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    return seconds, usage.ru_maxrss / 1024


def bench_ipvsadm_restore(n: int) -> tuple[float, float]:
    """`ipvsadm -R` into a fresh namespace: seconds and peak RSS (MB)."""
    with Netns(f"b-restore-{n}") as ns:
        return _restore(ns, n)


def bench_ipvsadm(n: int) -> tuple[float, float]:
    with Netns(f"b-ipvsadm-{n}") as ns:
        program_s, _ = _restore(ns, n)
        started = time.monotonic()
        subprocess.run(ns.argv("ipvsadm", "-Ln", "--stats"), check=True, stdout=subprocess.DEVNULL)
        list_s = time.monotonic() - started
    return program_s, list_s


def bench_keepalived(n: int) -> tuple[float, float]:
    conf = RUN_DIR / f"keepalived-{n}.conf"
    conf.write_text(keepalived_conf(n))
    with Netns(f"b-keepalived-{n}") as ns:
        proc = subprocess.Popen(
            ns.argv(
                "keepalived",
                "--dont-fork",
                "--check",
                "--log-console",
                "-f",
                str(conf),
                "-p",
                str(RUN_DIR / f"k{n}.pid"),
                "-c",
                str(RUN_DIR / f"c{n}.pid"),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            program_s = wait_for_table(proc.pid, n, 600)
            rss = max(peak_rss_mb(pid) for pid in _tree(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return program_s, rss


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        pids.extend(_tree(int(child)))
    return pids


async def _reconciler_rounds(n: int) -> dict[str, float]:
    from ipvsd.config import desired_table, parse_config
    from ipvsd.ipvs.reconciler import Reconciler
    from ipvsd.model import DestAttrs, ForwardMethod, Service, Table
    from ipvsd.netlink.ipvs import IpvsClient

    desired = desired_table(parse_config(ipvsd_yaml(n), "bench.yaml"))
    results: dict[str, float] = {}
    async with await IpvsClient.open() as client:
        reconciler = Reconciler(client, resync_interval_s=3600)
        reconciler.set_desired(desired, reason="start")
        started = time.monotonic()
        report = await reconciler.reconcile("start")  # dump (empty), plan, batched apply
        results["program_s"] = time.monotonic() - started
        assert not report.errors, report.errors[:3]
        assert sum(report.operations.values()) == n * (1 + REALS_PER_SERVICE)
        started = time.monotonic()
        report = await reconciler.reconcile("resync")  # full dump + diff, nothing to do
        results["noop_s"] = time.monotonic() - started
        assert not report.changed
        # One real drained (a health change): planned against the believed table.
        service = next(iter(desired))
        dest = next(iter(service.dests.values()))
        dests = {**service.dests, dest.key: type(dest)(dest.key, DestAttrs(ForwardMethod.DR, 0))}
        changed = Table(
            {**desired.services, service.key: Service(service.key, service.attrs, dests)}
        )
        reconciler.set_desired(changed, reason="health")
        started = time.monotonic()
        report = await reconciler.reconcile("health")
        results["one_change_s"] = time.monotonic() - started
        results["one_change_ops"] = sum(report.operations.values())
        check = await client.dump_dests(service)
        assert check.dests[dest.key].attrs.weight == 0
    return results


def bench_reconciler(n: int) -> dict[str, float]:
    """Run the reconciler rounds in a child process inside a fresh namespace."""
    with Netns(f"b-ipvsd-{n}") as ns:
        out = subprocess.run(
            ns.argv(sys.executable, "-m", "bench.ipvs_programming", "--child-reconciler", str(n)),
            check=True,
            capture_output=True,
            text=True,
        )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULTS "))
    return {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}


def bench_daemon(
    n: int, python: Sequence[str] = (sys.executable,), cwd: Path | None = None
) -> tuple[float, float]:
    """`ipvsd run` on a generated config: seconds to a complete table, and peak RSS.

    `python`: the interpreter and its options (``-m ipvsd`` follows); `cwd`:
    where it runs (``-m`` finds the ``ipvsd`` of that directory first).
    """
    conf = RUN_DIR / f"ipvsd-{n}.yaml"
    conf.write_text(ipvsd_yaml(n))
    with Netns(f"b-daemon-{n}") as ns:
        proc = subprocess.Popen(
            ns.argv(
                *python,
                "-m",
                "ipvsd",
                "run",
                "--config",
                str(conf),
                "--log-level",
                "warning",
            ),
            stdout=subprocess.DEVNULL,
            cwd=cwd,
        )
        try:
            total_s = wait_for_table(proc.pid, n, 900)
            time.sleep(1.0)  # let the first pass finish its bookkeeping
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return total_s, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--skip-keepalived", action="store_true")
    parser.add_argument("--child-reconciler", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_reconciler:
        results = asyncio.run(_reconciler_rounds(args.child_reconciler))
        print("RESULTS", " ".join(f"{k}={v}" for k, v in results.items()))
        return 0
    rows: list[Row] = []
    for n in (int(size) for size in args.sizes.split(",")):
        ops = n * (1 + REALS_PER_SERVICE)
        print(f"... {n} services x {REALS_PER_SERVICE} reals ({ops} operations)", flush=True)
        ipvsadm_s, list_s = bench_ipvsadm(n)
        rec = bench_reconciler(n)
        rows.append(Row(f"program {n}x4", "ipvsadm -R", ipvsadm_s, f"{ops / ipvsadm_s:,.0f} ops/s"))
        rows.append(
            Row(
                f"program {n}x4",
                "ipvsd reconciler",
                rec["program_s"],
                f"{ops / rec['program_s']:,.0f} ops/s",
                ipvsadm_s / rec["program_s"],
            )
        )
        if not args.skip_keepalived:
            keepalived_s, keepalived_rss = bench_keepalived(n)
            rows.append(
                Row(
                    f"program {n}x4",
                    "keepalived",
                    keepalived_s,
                    f"{ops / keepalived_s:,.0f} ops/s; RSS {keepalived_rss:.1f} MB",
                    ipvsadm_s / keepalived_s,
                )
            )
        rows.append(Row(f"list {n}x4", "ipvsadm -Ln --stats", list_s, ""))
        rows.append(
            Row(
                f"list {n}x4",
                "ipvsd no-op reconcile",
                rec["noop_s"],
                "dump + diff",
                list_s / rec["noop_s"],
            )
        )
        rows.append(
            Row(
                f"one weight change {n}x4",
                "ipvsd reconciler",
                rec["one_change_s"],
                f"{rec['one_change_ops']:.0f} netlink op(s) (diff vs believed table + apply)",
            )
        )
        daemon_s, daemon_rss = bench_daemon(n)
        rows.append(
            Row(
                f"daemon {n}x4",
                "ipvsd run",
                daemon_s,
                f"start to full table (incl. YAML); peak RSS {daemon_rss:.1f} MB",
            )
        )
    print_table("IPVS programming (ratio = speed-up over ipvsadm; >1 is faster)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
