"""Benchmark: CPU and scheduling lateness of the health monitor with many checks.

A child process opens one TCP listener per real on loopback (127.1.0.0/16
addresses, one port) and accepts and closes every connection at once; this
process runs the `HealthMonitor` with a TCP connect check against them, so
the CPU measured here is the monitor's and its checks' alone.

``--type`` picks the check the ``ipvsd`` kind runs (issue 13): ``tcp``
(default); ``udp`` (``require_reply``: the child answers each datagram, so a
check ends on the reply rather than at its timeout); ``dns`` (the child
answers each query with one SOA record); ``ping`` (the kernel answers: no
listener; raw sockets, so root); ``smtp`` (the child greets with 220 and
answers HELO with 250 on each connection).
Targets (the issue's): under half of one core and p99 lateness under 100 ms
for 10,000 reals checked every second.

Each kind of check in ``--checks`` runs in turn: ``null`` does no I/O, so
what it measures is the monitor's own cost; ``ipvsd`` is what the daemon
runs, ``ipvsd.health.checks.Checker.check`` (tcp: ``ipvsd.health.tcp``, no
task per check); ``inline`` a minimal asyncio ``sock_connect`` check under
``asyncio.timeout``, written here (also used when ipvsd's is missing);
``inline-rst`` the same closing with a reset (no TIME_WAIT). On loopback
the kernel handles both ends of every connection in this process's system
calls, so "system" includes the listeners' half of each TCP handshake.

    python -m bench.health_checks [--reals 10000] [--seconds 60] [--interval 1]
                                  [--checks null,ipvsd,inline] [--profile]
                                  [--type tcp|udp|dns|ping|smtp]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import ipvsd.log
from bench.report import Row, print_table
from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.monitor import DEFAULT_TICK, CheckOutcome, HealthMonitor, Watch
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey

FIRST_ADDRESS = int(IPv4Address("127.1.0.1"))
DEFAULT_GC_THRESHOLD = gc.get_threshold()
REALS_PER_SERVICE = 4


def real_address(index: int) -> IPv4Address:
    return IPv4Address(FIRST_ADDRESS + index)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the listeners (child process) -----------------------------------------------------------


def listen(
    reals: int, port: int, kind: int = socket.SOCK_STREAM
) -> tuple[int, list[socket.socket]]:
    """One listener (or UDP socket) per real address, all on `port` (0: a free one, the same
    for all)."""
    listeners: list[socket.socket] = []
    try:
        for index in range(reals):
            listener = socket.socket(socket.AF_INET, kind)
            listeners.append(listener)
            listener.bind((str(real_address(index)), port))
            port = listener.getsockname()[1]
            if kind == socket.SOCK_STREAM:
                listener.listen(1024)
            listener.setblocking(False)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return port, listeners


def serve(reals: int, port: int, kind: str = "tcp") -> int:
    """Listen on `reals` loopback addresses; answer `kind` checks until stdin ends.

    Prints ``ready PORT`` once listening.
    """
    raise_fd_limit()
    listeners: list[socket.socket] = []
    port_used = 0
    for attempt in range(10):
        if kind == "ping":  # the kernel answers echo requests
            break
        try:
            if kind in ("udp", "dns"):
                port_used, listeners = listen(reals, port, socket.SOCK_DGRAM)
            else:
                port_used, listeners = listen(reals, port)
            break
        except OSError:  # another run holds that port on some address: try another one
            if port or attempt == 9:
                raise
    selector = selectors.EpollSelector()
    for listener in listeners:
        selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(sys.stdin, selectors.EVENT_READ)
    print(f"ready {port_used}", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                return 0
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            if kind in ("udp", "dns"):
                answer_datagrams(ready, kind)
            elif kind == "smtp" and key.data == "listener":
                greet_all(ready, selector)
            elif kind == "smtp":
                smtp_answer(ready, selector)
            else:
                accept_all(ready)


SOA_RDATA = b"\0\0" + bytes(20)
"""An SOA record's data: root MNAME and RNAME, five zero numbers."""


def answer_datagrams(sock: socket.socket, kind: str) -> None:
    """Answer every queued datagram: ``ok`` (udp), or one SOA answer to the query (dns)."""
    while True:
        try:
            data, peer = sock.recvfrom(512)
        except BlockingIOError:
            return
        if kind == "udp":
            sock.sendto(b"ok", peer)
            continue
        if len(data) < 12:
            continue
        # QR, RD, RA, NOERROR; one question (the query's), one answer pointing at its name.
        header = data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, len(SOA_RDATA)) + SOA_RDATA
        sock.sendto(header + data[12:] + answer, peer)


def greet_all(listener: socket.socket, selector: selectors.BaseSelector) -> None:
    """Accept what is queued, greet each (220) and wait for its HELO."""
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        try:
            conn.send(b"220 bench ESMTP\r\n")
        except OSError:
            conn.close()
            continue
        selector.register(conn, selectors.EVENT_READ, "smtp")


def smtp_answer(conn: socket.socket, selector: selectors.BaseSelector) -> None:
    """250 to a HELO; close at QUIT or when the check hangs up."""
    try:
        data = conn.recv(512)
        if data.startswith(b"HELO"):
            conn.send(b"250 bench\r\n")
            if b"QUIT" not in data:
                return
    except BlockingIOError:
        return
    except OSError:
        pass
    selector.unregister(conn)
    conn.close()


def accept_all(listener: socket.socket) -> None:
    """Accept what is queued and close it at once (a FIN: a reset could reach the
    client before it sees its connect complete, and fail the check)."""
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.close()


# --- the checks (this process) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpTarget:
    address: str
    port: int
    timeout: float


@dataclass(frozen=True, slots=True)
class TcpResult:
    ok: bool
    reason: str
    duration_s: float
    weight: int | None = None
    parts: tuple[()] = ()


LINGER_0 = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close() sends a reset and leaves no TIME_WAIT behind."""


async def inline_tcp_check(target: TcpTarget, *, reset: bool = False) -> TcpResult:
    """Connect and close: the least a TCP check can do; `reset`: close with a RST."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(target.timeout):
            await loop.sock_connect(sock, (target.address, target.port))
    except TimeoutError:
        return TcpResult(False, "timeout", loop.time() - started)
    except OSError as exc:
        return TcpResult(False, exc.strerror or str(exc), loop.time() - started)
    finally:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        sock.close()
    return TcpResult(True, "connected", loop.time() - started)


async def inline_rst_check(target: TcpTarget) -> TcpResult:
    """`inline_tcp_check` closing with a RST, as HAProxy's checks do: no TIME_WAIT."""
    return await inline_tcp_check(target, reset=True)


async def null_check(target: TcpTarget) -> TcpResult:
    """No I/O at all: what is left is the monitor's own cost."""
    return TcpResult(True, "null", 0.0)


Check = Callable[[Any], Awaitable[CheckOutcome]]
MakeTarget = Callable[[IPv4Address, int, CheckConfig], Any]


def check_config(kind: str, interval: float, timeout: float) -> CheckConfig:
    """The ``--type`` check as the ``ipvsd`` kind runs it (udp: a reply ends it)."""
    extra: dict[str, Any] = {"require_reply": True, "payload": "ping"} if kind == "udp" else {}
    return CheckConfig(type=CheckType(kind), interval=interval, timeout=timeout, **extra)


def ipvsd_check() -> tuple[Check, MakeTarget] | None:
    """What the daemon runs: a ``Checker``'s ``check`` and ``target_for``, if they are there."""
    try:
        checks = importlib.import_module("ipvsd.health.checks")
        checker, target_for = checks.Checker(), checks.target_for
    except (ImportError, AttributeError):
        return None

    def make(address: IPv4Address, port: int, config: CheckConfig) -> Any:
        return target_for(config, address, port)

    return checker.check, make


def inline_check() -> tuple[Check, MakeTarget]:
    def make(address: IPv4Address, port: int, config: CheckConfig) -> TcpTarget:
        return TcpTarget(str(address), port, config.timeout)

    return inline_tcp_check, make


# --- the run ---------------------------------------------------------------------------------


def watches(
    reals: int, port: int, config: CheckConfig, make: MakeTarget
) -> dict[RealId, Watch[Any]]:
    result: dict[RealId, Watch[Any]] = {}
    for index in range(reals):
        vip = IPv4Address(int(IPv4Address("10.0.0.1")) + index // REALS_PER_SERVICE)
        real: RealId = (
            ServiceKey(Family.INET, Protocol.TCP, vip, 80),
            DestKey(real_address(index), port),
        )
        target = make(real_address(index), port, config)
        result[real] = Watch(real, target, config.interval, config.rise, config.fall)
    return result


@dataclass(frozen=True, slots=True)
class Measured:
    wall_s: float
    user_s: float
    system_s: float
    monitor: HealthMonitor[Any]
    changes: dict[Health, int]
    load: tuple[float, float]
    """1-minute load average before and after the run (the machine is shared)."""


async def measure(
    check: Check,
    watched: dict[RealId, Watch[Any]],
    seconds: float,
    cap: int | None,
    tick: float,
    gc_mode: str = "default",
) -> Measured:
    changes = dict.fromkeys(Health, 0)

    def on_change(real: RealId, health: Health, reason: str) -> None:
        changes[health] += 1

    monitor: HealthMonitor[Any] = HealthMonitor(
        check, on_change, seed=1, max_in_flight=cap, tick=tick
    )
    monitor.update(watched)
    if gc_mode != "default":
        # What a daemon can do once its config is loaded: the long-lived objects (config,
        # watches, trackers) leave the collector's generations, so full collections stop
        # walking them; "tuned" also makes young collections rarer.
        gc.collect()
        gc.freeze()
    if gc_mode == "tuned":
        gc.set_threshold(50_000, 20, 100)
    load_before = os.getloadavg()[0]
    before, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    runner = asyncio.create_task(monitor.run())
    await asyncio.sleep(seconds)
    monitor.stop()
    await runner
    wall = time.monotonic() - wall0
    after = resource.getrusage(resource.RUSAGE_SELF)
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC_THRESHOLD)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return Measured(wall, user, system, monitor, changes, (load_before, os.getloadavg()[0]))


def profile(coro: Coroutine[Any, Any, Measured]) -> Measured:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return asyncio.run(coro)
    finally:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


CHECKS = ("null", "ipvsd", "inline", "inline-rst")


def choose(kind: str, check_type: str = "tcp") -> tuple[str, Check, MakeTarget]:
    """The check called `kind` on the command line: (name, check, target builder)."""
    _, make = inline_check()
    if kind == "null":
        return "null: no I/O (monitor only)", null_check, make
    if kind == "inline-rst":
        return "inline sock_connect, RST close", inline_rst_check, make
    chosen = ipvsd_check() if kind == "ipvsd" else None
    if chosen is not None:
        return f"ipvsd Checker.check ({check_type})", *chosen
    return "inline sock_connect", inline_tcp_check, make


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reals", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="per check kind")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=0, help="listeners' port (0: a free one)")
    parser.add_argument(
        "--checks",
        default="null,ipvsd",
        help=f"comma-separated, run in turn: {', '.join(CHECKS)} (ipvsd: inline if missing)",
    )
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--tick", type=float, default=DEFAULT_TICK, help="dispatcher tick (s)")
    parser.add_argument(
        "--gc",
        choices=("default", "freeze", "tuned"),
        default="default",
        help="freeze: gc.freeze() once the reals are watched; tuned: also gen0 threshold 50,000",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the runs (slower)")
    parser.add_argument(
        "--type",
        choices=("tcp", "udp", "dns", "ping", "smtp"),
        default="tcp",
        help="the check the ipvsd kind runs (ping: raw sockets, root)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.reals, args.port, args.type)
    kinds = args.checks.split(",")
    if not set(kinds) <= set(CHECKS):
        parser.error(f"--checks: choose from {', '.join(CHECKS)}")

    limit = raise_fd_limit()
    ipvsd.log.configure(level="warning")
    config = check_config(args.type, args.interval, args.timeout)
    rows: list[Row] = []
    notes: list[str] = []
    for kind in kinds:
        name, check, make = choose(kind, args.type)
        child_argv = [sys.executable, "-m", "bench.health_checks", "--serve"]
        child_argv += ["--reals", str(args.reals), "--port", str(args.port), "--type", args.type]
        with subprocess.Popen(child_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            assert child.stdin is not None
            ready, _, port = child.stdout.readline().decode().partition(" ")
            if ready != "ready":
                print("listener process failed", file=sys.stderr)
                return 1
            watched = watches(args.reals, int(port), config, make)
            coro = measure(check, watched, args.seconds, args.max_in_flight, args.tick, args.gc)
            result = profile(coro) if args.profile else asyncio.run(coro)
            child.stdin.close()
        rows += report_rows(args, name, result)
        notes.append(note(name, result))
    title = (
        f"Health monitor: {args.reals} reals every {args.interval:g} s, {args.type} checks "
        "of loopback listeners"
    )
    print_table(title, rows)
    print("\n".join(notes))
    cap = args.max_in_flight or "none (one per real)"
    print(f"RLIMIT_NOFILE {limit}; max in flight: {cap}; tick {args.tick * 1e3:g} ms; gc {args.gc}")
    print("targets: CPU < 0.5 core, p99 lateness < 0.100 s")
    return 0


def report_rows(args: argparse.Namespace, name: str, result: Measured) -> list[Row]:
    stats = result.monitor.stats
    lateness = stats.lateness
    expected = args.reals * result.wall_s / args.interval
    cpu_s = result.user_s + result.system_s
    per_check = cpu_s / max(stats.checks, 1) * 1e6
    user, system = result.user_s / result.wall_s, result.system_s / result.wall_s
    return [
        Row(name, "CPU, cores", cpu_s / result.wall_s, f"{per_check:.0f} us/check"),
        Row(name, "  user", user, "Python: monitor + check"),
        Row(name, "  system", system, "kernel: loopback, both ends"),
        Row(name, "checks", float(stats.checks), f"{stats.checks / expected:.1%} of slots"),
        Row(name, "lateness p50", lateness.quantile(0.5), "start - slot"),
        Row(name, "lateness p99", lateness.quantile(0.99), ""),
        Row(name, "lateness max", lateness.max, ""),
        Row(name, "check duration p99", stats.duration.quantile(0.99), ""),
    ]


def note(name: str, result: Measured) -> str:
    stats = result.monitor.stats
    return (
        f"{name}: {result.wall_s:.1f} s; failed {stats.failed}, raised {stats.errors}, "
        f"skipped slots {stats.skipped_slots}, changes {result.changes[Health.UP]} up / "
        f"{result.changes[Health.DOWN]} down; load {result.load[0]:.2f} -> {result.load[1]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
