"""Benchmark: start-up, ipvsd vs keepalived (and ``ipvsadm -R``) in the same run.

Two questions from issue 14, each timed from the exec of the daemon:

1. **Host, network namespaces** (small VRRP-only config, priority 100, one
   VIP, no peer): a VIP left on the interface by a crash (``eth1:vrrp51``)
   must be gone quickly, since the peer owns it meanwhile (split brain), and
   the first VRRP state (BACKUP) must come quickly, since two directors that
   boot together with ``preempt: false`` elect whichever runs its
   Master_Down_Timer first. "VIP gone" is the kernel's RTM_DELADDR seen on
   an rtnetlink socket in the namespace; "BACKUP" is the daemon's own log line
   (ipvsd ``vrrp.transition``, keepalived ``Entering BACKUP STATE``) read from
   its stderr pipe. An address on the same interface that is *not* a VIP must
   stay: the run fails if it goes.
2. **UML** (IPVS exists only there on this machine): exec to the complete
   IPVS table at N services x 4 DR reals, and peak RSS, for ``ipvsd run``,
   keepalived and ``ipvsadm -R`` (`bench.ipvs_programming` starts and polls
   them; each run in a fresh namespace).

    python -m bench.startup [--rounds 5] [--before DIR] [--election]   # host (root)
    python -m bench.startup --table [--sizes 1000,10000] [--before DIR]  # boots UML itself

Medians of ``--rounds`` (host) or ``--repeats`` (UML). The interpreter's
bytecode for ``ipvsd`` is compiled first, as an installed package has it.

``--table`` times ``ipvsd run`` in two layouts: ``venv`` is the development
venv (``scripts/setup.sh``: every test and dev tool installed, ``ipvsd`` an
editable install whose finder runs at each start) with ``-m ipvsd`` from the
checkout; ``installed`` is what the Debian package ships
(``scripts/deb.sh``): a venv holding only ``ipvsd`` and the pinned
dependencies of ``packaging/requirements.txt``, run as ``/usr/sbin/ipvsd``
runs it (``python -I -m ipvsd``), bytecode compiled as its postinst does.
It is built here on the package's interpreter, Debian's ``/usr/bin/python3.11``
(linked statically with libpython: ~800 page faults to start, against ~2,000
for a ``--enable-shared`` build such as pyenv's, which the development venv
may use; in UML that difference alone is ~0.3 s), else on this interpreter's
base (said in the method's name), with the development venv's installed files
of those distributions (no pip, no network; the same CPython 3.11 ABI).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Row, print_table
from lab.address_events import DeletedAddresses

STALE = "192.168.1.200/24"
NOT_A_VIP = "192.168.1.201/24"


@dataclass
class Lines:
    """Each line a process writes to a pipe, with when it arrived."""

    stream: Any
    seen: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for line in self.stream:
            self.seen.append((time.monotonic(), line))

    def first(self, match: Callable[[str], bool]) -> float | None:
        return next((at for at, line in list(self.seen) if match(line)), None)


def _ipvsd_backup(line: str) -> bool:
    return _ipvsd_backup_event(line) is not None


def _ipvsd_backup_event(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if event.get("event") == "vrrp.transition" and event.get("new") == "BACKUP":
        return dict(event)
    return None


def _listening_s(line: str) -> float:
    """How long before its BACKUP line the instance had been listening (`ipvsd.vrrp.prelisten`)."""
    event = _ipvsd_backup_event(line)
    return float(event.get("listening_s", 0.0)) if event else 0.0


def _keepalived_backup(line: str) -> bool:
    return "Entering BACKUP STATE" in line


def one_start(
    implementation: str, workdir: Path, index: int, tree: Path | None = None
) -> tuple[float, float, float]:
    """(exec → stale VIP gone, exec → BACKUP, exec → BACKUP logged) for one start in
    fresh namespaces. BACKUP is when the instance began to listen with its
    Master_Down_Timer running: ipvsd's early socket (its BACKUP line's
    ``listening_s`` before the line), keepalived's BACKUP line.

    `tree`: run the ``ipvsd`` package of that checkout (``-m ipvsd`` from there).
    """
    from lab.netns import Topology, in_netns, ip
    from lab.vrrp_pair import build, ipvsd_config, keepalived_config

    with Topology() as topo:
        lab = build(topo, workdir)
        ns = lab.routers["d1"]
        ip("addr", "add", STALE, "dev", "eth1", "label", "eth1:vrrp51", ns=ns)
        ip("addr", "add", NOT_A_VIP, "dev", "eth1", ns=ns)
        if implementation == "ipvsd":
            config = workdir / f"d1-{index}.yaml"
            config.write_text(ipvsd_config("d1", 100, workdir))
            argv = [sys.executable, "-m", "ipvsd", "run", "--config", str(config)]
            argv += ["--log-format", "json"]
            backup = _ipvsd_backup
        else:
            config = workdir / f"d1-{index}.conf"
            config.write_text(keepalived_config("d1", 100))
            argv = ["keepalived", "--vrrp", "--dont-fork", "--log-console", "--log-detail"]
            argv += ["-f", str(config), "-p", str(workdir / f"k{index}.pid")]
            argv += ["-r", str(workdir / f"v{index}.pid")]
            backup = _keepalived_backup
        watch = DeletedAddresses(ns)
        try:
            with in_netns(ns):  # the child inherits this thread's namespace: no `ip netns exec`
                started = time.monotonic()
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                    cwd=tree,
                )
            try:
                lines = Lines(proc.stdout)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and (
                    lines.first(backup) is None or STALE not in watch.deleted
                ):
                    time.sleep(0.01)
                time.sleep(0.2)
            finally:
                os.killpg(proc.pid, 15)
                proc.wait(15)
        finally:
            watch.close()
        if NOT_A_VIP in watch.deleted:
            raise AssertionError(f"{implementation} removed {NOT_A_VIP}, which is not a VIP")
        backup_at = lines.first(backup)
        if backup_at is None or STALE not in watch.deleted:
            tail = "".join(line for _, line in lines.seen[-20:])
            raise AssertionError(f"{implementation}: no BACKUP or VIP not removed:\n{tail}")
        line = next(text for at, text in lines.seen if at == backup_at and backup(text))
        listening = _listening_s(line) if implementation == "ipvsd" else 0.0
        logged = backup_at - started
        return watch.deleted[STALE] - started, logged - listening, logged


def host_rows(rounds: int, before: Path | None = None) -> list[Row]:
    """Medians per case; `before`: also the ipvsd of that checkout, as "ipvsd (before)"."""
    rows: list[Row] = []
    medians: dict[tuple[str, str], float] = {}
    trees: dict[str, Path | None] = {"keepalived": None, "ipvsd": None}
    if before is not None:
        trees["ipvsd (before)"] = before
    with tempfile.TemporaryDirectory(prefix="ipvsd-startup-") as tmp:
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
        for index in range(rounds):  # interleaved: host load hits all alike
            for name, runs in results.items():
                workdir = Path(tmp) / f"{name.replace(' ', '_')}-{index}"
                workdir.mkdir()
                implementation = "keepalived" if name == "keepalived" else "ipvsd"
                runs.append(one_start(implementation, workdir, index, trees[name]))
        for case, column in (
            ("exec -> stale VIP gone", 0),
            ("exec -> BACKUP", 1),
            ("exec -> BACKUP logged", 2),
        ):
            for implementation, runs in results.items():
                values = [run[column] for run in runs]
                median = medians[case, implementation] = statistics.median(values)
                shown = " ".join(f"{v * 1000:.0f}" for v in values)
                rows.append(
                    Row(
                        case,
                        implementation,
                        median,
                        f"median of {rounds}; runs (ms): {shown}",
                        None
                        if implementation == "keepalived"
                        else medians[case, "keepalived"] / median,
                    )
                )
    return rows


#: The election: ipvsd's priority against keepalived's 100, both ``preempt: false``.
#: Skew_Time (RFC 3768 §6.1) makes ipvsd's Master_Down_Interval shorter by
#: (ELECTION_PRIORITY - 100) / 256 s = 199 ms: it wins a simultaneous boot when it
#: is listening less than that after keepalived.
ELECTION_PRIORITY = 151


def one_election(workdir: Path, tree: Path | None = None) -> tuple[str, float]:
    """Boot an ipvsd director (`ELECTION_PRIORITY`) and a keepalived one (100) together,
    both ``preempt: false``: (who holds the VIP once one does, how long that took)."""
    from lab.netns import Topology, in_netns
    from lab.vrrp_pair import build, ipvsd_config, keepalived_config

    with Topology() as topo:
        lab = build(topo, workdir)
        ipvsd_conf = workdir / "d1.yaml"
        ipvsd_conf.write_text(ipvsd_config("d1", ELECTION_PRIORITY, workdir, preempt=False))
        keepalived_conf = workdir / "d2.conf"
        keepalived_conf.write_text(keepalived_config("d2", 100, preempt=False))
        argvs = {
            "d1": [sys.executable, "-m", "ipvsd", "run", "--config", str(ipvsd_conf)],
            "d2": [
                *("keepalived", "--vrrp", "--dont-fork", "--log-console"),
                *("-f", str(keepalived_conf), "-p", str(workdir / "k.pid")),
                *("-r", str(workdir / "v.pid")),
            ],
        }
        procs: list[subprocess.Popen[bytes]] = []
        try:
            started = time.monotonic()
            for short in ("d2", "d1"):  # keepalived first: it has the head start
                with in_netns(lab.routers[short]):
                    procs.append(
                        subprocess.Popen(
                            argvs[short],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            cwd=tree if short == "d1" else None,
                        )
                    )
            deadline = time.monotonic() + 10
            while not (holders := lab.holder()) and time.monotonic() < deadline:
                time.sleep(0.01)
            took = time.monotonic() - started
            time.sleep(0.5)  # a loser that took over too would show now
            holders = lab.holder()
        finally:
            for proc in procs:
                os.killpg(proc.pid, 15)
                proc.wait(15)
    return ("+".join(holders) or "nobody").replace("d1", "ipvsd").replace("d2", "keepalived"), took


def election_rows(rounds: int, before: Path | None = None) -> list[Row]:
    """Who wins the simultaneous boot, per ipvsd tree (interleaved rounds)."""
    trees: dict[str, Path | None] = {"ipvsd": None}
    if before is not None:
        trees["ipvsd (before)"] = before
    results: dict[str, list[tuple[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="ipvsd-election-") as tmp:
        for index in range(rounds):
            for name, tree in trees.items():
                workdir = Path(tmp) / f"{name.replace(' ', '_')}-{index}"
                workdir.mkdir()
                results[name].append(one_election(workdir, tree))
    rows = []
    for name, runs in results.items():
        won = sum(1 for winner, _ in runs if winner == "ipvsd")
        shown = " ".join(winner for winner, _ in runs)
        rows.append(
            Row(
                f"boot together, preempt off: {ELECTION_PRIORITY} vs keepalived 100",
                name,
                statistics.median(took for _, took in runs),
                f"ipvsd won {won} of {rounds} (should: all); VIP held after the "
                f"median time shown; winners: {shown}",
                None,
            )
        )
    return rows


def _cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return values[3] + values[4], sum(values)


def wait_idle(idle: float = 0.9, window_s: float = 1.0, limit_s: float = 300) -> None:
    """Wait until the CPUs are `idle` for a whole `window_s` (at most `limit_s`).

    A deleted namespace's IPVS table is freed by the kernel afterwards, in a
    worker (``cleanup_net``): 40,000 dests take UML's one CPU for many seconds,
    which the next method's time would otherwise include. The run of
    2026-12-06 11:15 had no such wait (see bench/README.md).
    """
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        idle_0, total_0 = _cpu_ticks()
        time.sleep(window_s)
        idle_1, total_1 = _cpu_ticks()
        if total_1 > total_0 and (idle_1 - idle_0) / (total_1 - total_0) >= idle:
            return


Bench = Callable[[int], tuple[float, float]]


def table_methods(layouts: Path | None, before: Path | None) -> list[tuple[str, Bench]]:
    """The tools to time, in the order each repeat runs them.

    Args:
        layouts: where `installed_layout` put ``installed`` (and ``before``);
            None: the development venv only.
        before: an older checkout, also run from the development venv.
    """
    from bench import ipvs_programming as ip_bench

    def ipvsd(python: Sequence[str], cwd: Path | None = None) -> Bench:
        return lambda n: ip_bench.bench_daemon(n, python, cwd)

    methods: list[tuple[str, Bench]] = [
        ("ipvsadm -R", ip_bench.bench_ipvsadm_restore),
        ("keepalived", ip_bench.bench_keepalived),
        ("ipvsd run (venv)", ipvsd([sys.executable], SOURCE_TREE)),
    ]
    if before is not None:
        methods.append(("ipvsd run (venv, before)", ipvsd([sys.executable], before)))
    if layouts is not None:
        for name in ("installed", "installed, before"):
            venv = layouts / name.replace(", ", "-")
            if venv.exists():
                # The package's /usr/sbin/ipvsd: `exec python -I -m ipvsd "$@"`.
                if not DEBIAN_PYTHON.exists():
                    name += f" on {package_interpreter()}"
                methods.append((f"ipvsd run ({name})", ipvsd([str(venv / "bin/python3"), "-I"])))
    return methods


def table_rows(sizes: list[int], repeats: int, methods: list[tuple[str, Bench]]) -> list[Row]:
    """Inside a kernel with IPVS: exec → full table and peak RSS, each of `methods`."""
    rows: list[Row] = []
    for n in sizes:
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in methods}
        for _ in range(repeats):
            for method, bench in methods:
                wait_idle()
                runs[method].append(bench(n))
        keepalived_s = statistics.median(s for s, _ in runs["keepalived"])
        for method, results in runs.items():
            seconds = statistics.median(s for s, _ in results)
            rss = max(r for _, r in results)
            shown = " ".join(f"{s:.2f}" for s, _ in results)
            rows.append(
                Row(
                    f"exec -> full table {n}x4",
                    method,
                    seconds,
                    f"median of {repeats} ({shown} s); peak RSS {rss:.1f} MB",
                    keepalived_s / seconds,
                )
            )
    return rows


SOURCE_TREE = Path(__file__).resolve().parent.parent


def compile_bytecode(tree: Path = SOURCE_TREE) -> None:
    """What an installed package has; PYTHONDONTWRITEBYTECODE would leave it out."""
    compileall.compile_dir(tree / "ipvsd", quiet=1)


DEBIAN_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
"""The interpreter the Debian package's venv is made with (``scripts/deb.sh``)."""


def package_interpreter() -> str:
    """Debian's interpreter of this Python version when installed, else this one's base."""
    if DEBIAN_PYTHON.exists():
        return str(DEBIAN_PYTHON)
    return str(getattr(sys, "_base_executable", sys.executable))


def installed_layout(tree: Path, venv: Path) -> None:
    """Lay `tree`'s ``ipvsd`` out in a new `venv` as the Debian package installs it.

    ``scripts/deb.sh`` makes a venv, installs the ``ipvsd`` wheel and the
    wheels pinned in ``packaging/requirements.txt`` (``--no-deps``), removes
    pip and setuptools, and its postinst compiles the bytecode. Here: the same
    interpreter's venv without pip, each distribution `tree` pins (its
    RECORD) copied from the venv this runs in, ``ipvsd`` copied from `tree`
    with its console-script entry point, everything compiled.
    """
    base = package_interpreter()
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # The tree's own pins (an older tree may need libraries this one dropped; they must be
    # in this venv); a bare `git archive` of ipvsd/ has none: this tree's then.
    requirements = tree / "packaging/requirements.txt"
    if not requirements.exists():
        requirements = SOURCE_TREE / "packaging/requirements.txt"
    pinned = requirements.read_text().splitlines()
    for line in pinned:
        name = line.split("#")[0].strip().split("==")[0]
        if not name:
            continue
        dist = importlib.metadata.distribution(name)
        root = Path(str(dist.locate_file(""))).resolve()
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file))).resolve()
            if root not in source.parents or "__pycache__" in source.parts:
                continue  # scripts in bin/; bytecode is compiled below
            target = site / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copytree(tree / "ipvsd", site / "ipvsd", ignore=shutil.ignore_patterns("__pycache__"))
    version = importlib.metadata.version("ipvsd")
    info = site / f"ipvsd-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ipvsd\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nipvsd = ipvsd.cli:main\n")
    compileall.compile_dir(site, quiet=1)


def main(raw: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="host starts per daemon")
    parser.add_argument("--table", action="store_true", help="the UML cases (IPVS table)")
    parser.add_argument(
        "--election",
        action="store_true",
        help="host: also boot ipvsd and keepalived together (preempt off) and see who wins",
    )
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mem", default="2G", help="UML memory")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run the ipvsd of this checkout (e.g. a `git worktree` of "
        "the commit before a change), in the same run",
    )
    parser.add_argument(
        "--venv-only",
        action="store_true",
        help="--table: only the development venv's layout, not the installed one",
    )
    parser.add_argument("--layouts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(raw)
    compile_bytecode()
    if args.before is not None:
        compile_bytecode(args.before)
    load = os.getloadavg()[0]
    if not args.table:
        rows = host_rows(args.rounds, args.before)
        if args.election:
            rows += election_rows(args.rounds, args.before)
        print_table(
            f"Start-up on the host (ratio = keepalived / ipvsd; >1: ipvsd faster); "
            f"1-minute load {load:.2f} at start",
            rows,
        )
        return 0
    from lab.uml import host_has_ipvs, run_with_ipvs

    if args.layouts is not None:  # inside UML: built before the boot
        return _table(args, args.layouts)
    with tempfile.TemporaryDirectory(prefix="ipvsd-layouts-") as tmp:
        layouts = None
        if not args.venv_only:
            layouts = Path(tmp)
            installed_layout(SOURCE_TREE, layouts / "installed")
            if args.before is not None:
                installed_layout(args.before, layouts / "installed-before")
        if os.environ.get("IPVSD_UML") or host_has_ipvs():
            return _table(args, layouts)
        print(f"host 1-minute load average at start: {load:.2f}", flush=True)
        argv = [sys.executable, "-m", "bench.startup", "--table", "--sizes", args.sizes]
        argv += ["--repeats", str(args.repeats), "--layouts", str(layouts or tmp)]
        if args.before is not None:
            argv += ["--before", str(args.before)]
        status = run_with_ipvs(argv, mem=args.mem, timeout=5400)
        print(f"host 1-minute load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
        return status


def _table(args: argparse.Namespace, layouts: Path | None) -> int:
    sizes = [int(size) for size in args.sizes.split(",")]
    print_table(
        "exec -> complete IPVS table (ratio = keepalived / method; >1: faster than keepalived)",
        table_rows(sizes, args.repeats, table_methods(layouts, args.before)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
