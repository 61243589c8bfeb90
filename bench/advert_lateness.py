"""Benchmark: VRRP advert lateness on the wire, ipvsd vs keepalived, idle and under load.

One command (boots User-Mode Linux when this kernel has no IPVS; as root)::

    python -m bench.advert_lateness [--quick] [--repeats 3] [--seconds 61]
        [--services 10000] [--checked-reals 250] [--check-interval 1]
        [--cases idle,checks,reload,scrape,all] [--keepalived-job none|checks]
        [--stall-probe]

Inside the kernel with IPVS (UML), per repetition, fresh network namespaces:
a bridge with an ipvsd MASTER (VRID 51, priority 100, advert_int 1, no peer:
a lone master advertises), a keepalived MASTER (VRID 52, same settings) and
an observer; both routers also have a point-to-point link to a "reals"
namespace where 172.16.0.0/16 is a local route (AnyIP) and one listener on
port 80 accepts and closes every connection, so each real address answers a
TCP check. The observer receives the adverts on a raw IP socket (protocol
112) with kernel receive timestamps (SO_TIMESTAMPNS) and sorts them by VRID.

Lateness of an advert = its arrival - the previous advert's arrival -
advert_int. Both daemons re-arm the advert timer from the moment they send
(RFC 3768 Adver_Timer), so this is how late each timer fired; "slip" is the
cumulative lateness over the case (last - first - (n-1) * advert_int),
i.e. the lateness against the schedule start + k * advert_int.

Cases (each ``--seconds``, both routers measured at the same time):

- ``idle``: both daemons run VRRP only.
- ``checks``: ipvsd holds N services x 4 DR reals (``--services``) with a
  ``tcp`` check on ``--checked-reals`` of them every ``--check-interval``;
  keepalived (``--keepalived-job checks``) holds the same table in its own
  namespace with TCP_CHECK on the same reals (delay_loop the same).
- ``reload``: checks, plus the ipvsd config is reloaded (SIGHUP) back to back,
  alternating two files that differ in the weight of one real per service
  (N weight edits per reload); keepalived gets a SIGHUP with its
  alternate file each time ipvsd's reload is done.
- ``scrape``: checks, plus ipvsd's /metrics is scraped back to back.
- ``all``: checks, reloads and scrapes at once.

Limits of UML: a system call costs ~50 us there (one virtual CPU), so one
TCP check costs ipvsd ~0.7-1 ms of CPU there (38 us on the host), and 1,000
checks/s already saturate UML's CPU (ipvsd at 0.6-0.9 core, its loop always
behind); 10,000 checks a second do not fit in UML at all. The default is
250 checked reals every second (250 checks/s). More checked reals also hit
an ipvsd start-up cost: every health change (UNKNOWN -> UP at the first
check) rebuilds the whole desired table, so 2,500 checked reals among
10,000 x 4 take more than 10 minutes to come up in UML.

False failovers (issue 14): ``--version 3 --advert-int 0.1 --backup
keepalived|ipvsd`` gives both masters that interval and puts a backup for
the ipvsd master's VRID (priority 90, same version and interval) on the
bridge. Every advert the observer hears from the backup's address is the
backup acting as master: each run of them is a false failover (counted per
case, and over the whole run, start-up and table load included). The worst
advert gap of the ipvsd master is reported against the backup's
Master_Down_Interval (RFC 5798 §6.1: 3 x interval + (256 - 90) x interval /
256, 0.3648 s at 0.1 s)::

    python -m bench.advert_lateness --version 3 --advert-int 0.1 --backup keepalived \
        --cases all --repeats 1 --seconds 600

``--stall-probe`` runs ipvsd under `bench.loop_stall_probe`, which samples
the stacks of all threads while the event loop is stalled, and prints where
the loop thread was (diagnostics only: it perturbs the timing a little).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import math
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from bench.ipvs_programming import REALS_PER_SERVICE, real, table_lines, vip

ADVERT_INT = 1.0
IPVSD_VRID, KEEPALIVED_VRID = 51, 52
IPVSD_ADDR, KEEPALIVED_ADDR, OBSERVER_ADDR = "192.168.1.10", "192.168.1.11", "192.168.1.50"
BACKUP_ADDR, BACKUP_PRIORITY = "192.168.1.12", 90
BACKUPS = ("none", "keepalived", "ipvsd")
METRICS_PORT = 9477
REAL_PORT = 80
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CASES = ("idle", "checks", "reload", "scrape", "all")
HOST_LOAD_ENV = "IPVSD_BENCH_HOST_LOAD"


# --- the reals: one listener for every address of 172.16.0.0/16 (child process) -------------


def serve_reals(port: int, counts_path: Path) -> int:
    """Accept and close connections on 0.0.0.0:`port` until stdin ends.

    Writes ``{peer address: connections}`` to `counts_path` every second, so
    the benchmark can tell how many checks each daemon really made.
    """
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))  # inside the reals namespace only
    srv.listen(4096)
    srv.setblocking(False)
    poller = select.epoll()
    poller.register(srv.fileno(), select.EPOLLIN)
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    counts: collections.Counter[str] = collections.Counter()
    print("ready", flush=True)
    written = time.monotonic()
    while True:
        for fd, _ in poller.poll(0.5):
            if fd != srv.fileno():
                return 0  # stdin: EOF (or anything) ends the listener
            while True:
                try:
                    conn, (peer, _) = srv.accept()
                except BlockingIOError:
                    break
                conn.close()
                counts[peer] += 1
        if time.monotonic() - written >= 1.0:
            written = time.monotonic()
            tmp = counts_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(counts))
            os.replace(tmp, counts_path)


def read_counts(path: Path) -> dict[str, int]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# --- configs -----------------------------------------------------------------------------------


def checked_services(args: argparse.Namespace) -> int:
    services: int = args.services
    reals: int = args.checked_reals
    return min(services, -(-reals // REALS_PER_SERVICE))


def weight(i: int, j: int, variant: int) -> int:
    """Variant 1 gives the first real of every service weight 2: one edit per service."""
    return 2 if variant == 1 and j == 0 else 1


def ipvsd_config(workdir: Path, args: argparse.Namespace, *, variant: int | None) -> str:
    """`variant` None: VRRP only (idle); 0 or 1: the full table, two weight variants."""
    lines = [
        "node_name: bench",
        f'metrics: {{listen: "127.0.0.1:{METRICS_PORT}"}}',
        f'control: {{socket: "{workdir / "ipvsd.sock"}"}}',
        f'state_dir: "{workdir / "ipvsd.state"}"',
        "vrrp:",
        "  instances:",
        f"    - {{name: VI_1, interface: eth1, vrid: {IPVSD_VRID}, priority: 100,"
        f" version: {args.version}, advert_int: {args.advert_int:g},"
        " virtual_ipaddresses: [192.168.1.200/24]}",
        "ipvs:",
    ]
    if variant is None:
        return "\n".join([*lines, "  services: []"]) + "\n"
    lines.append("  services:")
    checked = checked_services(args)
    check = f"check: {{type: tcp, interval: {args.check_interval:g}, timeout: 1}}, "
    for i in range(args.services):
        reals = ", ".join(
            f"{{address: {real(i, j)}, port: {REAL_PORT}, weight: {weight(i, j, variant)}}}"
            for j in range(REALS_PER_SERVICE)
        )
        lines.append(
            f"    - {{address: {vip(i)}, port: 80, scheduler: rr, forward: dr, "
            f"{check if i < checked else ''}reals: [{reals}]}}"
        )
    return "\n".join(lines) + "\n"


def keepalived_config(args: argparse.Namespace, *, variant: int | None) -> str:
    parts = [
        f"global_defs {{\n  router_id k1\n  vrrp_version {args.version}\n}}\n",
        f"vrrp_instance VI_2 {{\n  state BACKUP\n  interface eth1\n"
        f"  virtual_router_id {KEEPALIVED_VRID}\n  priority 100\n"
        f"  advert_int {args.advert_int:g}\n"
        "  virtual_ipaddress {\n    192.168.1.201/24\n  }\n}\n",
    ]
    if variant is None or args.keepalived_job == "none":
        return "".join(parts)
    checked = checked_services(args)
    delay = max(1, round(args.check_interval))
    for i in range(args.services):
        check = "    TCP_CHECK {\n      connect_timeout 1\n    }\n" if i < checked else ""
        reals = "".join(
            f"  real_server {real(i, j)} {REAL_PORT} {{\n    weight {weight(i, j, variant)}\n"
            f"{check}  }}\n"
            for j in range(REALS_PER_SERVICE)
        )
        parts.append(
            f"virtual_server {vip(i)} 80 {{\n  delay_loop {delay}\n  lb_algo rr\n"
            f"  lb_kind DR\n  protocol TCP\n{reals}}}\n"
        )
    return "".join(parts)


# --- the observer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advert:
    at: float  # kernel receive time (CLOCK_REALTIME), seconds
    src: str
    vrid: int
    priority: int


class Observer:
    """Every VRRP advert heard on the observer's eth0, with its kernel receive time.

    `family` 6: VRRPv3 over IPv6 (ff02::12; the socket gets no IP header, and
    `Advert.src` is the sender's link-local address without its scope)."""

    def __init__(self, ns: str, family: int = 4) -> None:
        from lab.netns import in_netns

        with in_netns(ns):
            index = socket.if_nametoindex("eth0")
            if family == 6:
                self._sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
                mreq6 = IPv6Address("ff02::12").packed + struct.pack("=I", index)
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
            else:
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
                mreq = struct.pack("=4s4si", IPv4Address("224.0.0.18").packed, bytes(4), index)
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self._family = family
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.settimeout(0.25)
        self.adverts: list[Advert] = []
        self.no_timestamp = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        anc = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, ancdata, _, address = self._sock.recvmsg(512, anc)
            except TimeoutError:
                continue
            except OSError as exc:  # keep listening; say so at the end
                self.errors.append(repr(exc))
                time.sleep(0.01)
                continue
            at = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    at = sec + nsec * 1e-9
            if at is None:
                self.no_timestamp += 1
                at = time.time()
            start = 0 if self._family == 6 else (data[0] & 0xF) * 4
            src = str(address[0]).split("%", 1)[0]
            if len(data) >= start + 3:
                self.adverts.append(Advert(at, src, data[start + 1], data[start + 2]))

    def master_adverts(self, vrid: int, src: str, since: float = 0.0) -> list[Advert]:
        return [
            a
            for a in list(self.adverts)
            if a.vrid == vrid and a.src == src and a.priority > 0 and a.at >= since
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# --- statistics --------------------------------------------------------------------------------


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class Lateness:
    adverts: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    slip_ms: float
    late: list[tuple[float, float]]  # (arrival, lateness s) of adverts later than 10 ms

    @classmethod
    def of(
        cls, adverts: list[Advert], start: float, end: float, interval: float = ADVERT_INT
    ) -> Lateness:
        times = [a.at for a in adverts if start <= a.at <= end]
        gaps = [b - a - interval for a, b in itertools.pairwise(times)]
        ordered = sorted(gaps)
        slip = (times[-1] - times[0] - (len(times) - 1) * interval) if len(times) > 1 else 0.0
        late = [(t, g) for t, g in zip(times[1:], gaps, strict=False) if g > 0.010]
        return cls(
            len(times),
            quantile(ordered, 0.5) * 1e3,
            quantile(ordered, 0.99) * 1e3,
            (ordered[-1] if ordered else float("nan")) * 1e3,
            slip * 1e3,
            late,
        )


def episodes(times: list[float], interval: float) -> list[float]:
    """Start times of the runs of adverts (each at most 2 intervals after the one before):
    a backup's adverts, one run per time it acted as master."""
    starts: list[float] = []
    last = None
    for at in sorted(times):
        if last is None or at - last > 2 * interval:
            starts.append(at)
        last = at
    return starts


def master_down_interval(interval: float, priority: int = BACKUP_PRIORITY) -> float:
    """RFC 5798 §6.1: 3 x Master_Adver_Interval + (256 - Priority) x it / 256."""
    return 3 * interval + (256 - priority) * interval / 256


# --- processes ---------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds; nan when it is gone."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def advert_sender_faults() -> int | None:
    """Major page faults of ipvsd's advert sender (the process running advertd.py)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"advertd.py" not in (entry / "cmdline").read_bytes():
                continue
            return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[9])
        except OSError:
            continue
    return None


class LogTail:
    """New JSON events of a log file, from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "raw", "line": line.decode(errors="replace")})
        return events


class Ipvsd:
    def __init__(self, topo: Any, ns: str, workdir: Path, stall_probe: bool) -> None:
        self.topo, self.ns, self.workdir = topo, ns, workdir
        self.config = workdir / "ipvsd.yaml"
        self.log = workdir / "ipvsd.log"
        self.stall_out = workdir / "stalls.jsonl"
        self.stall_probe = stall_probe
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        module = "bench.loop_stall_probe" if self.stall_probe else "ipvsd"
        argv = [sys.executable, "-m", module, "run", "--config", str(self.config)]
        env = {**os.environ, "IPVSD_STALL_OUT": str(self.stall_out)}
        tail = LogTail(self.log)
        with self.log.open("ab") as stderr:
            self.proc = self.topo.popen(
                self.ns,
                [*argv, "--log-format", "json"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
        self.wait_event(tail, ("daemon.ready",), 300)

    def wait_event(self, tail: LogTail, names: tuple[str, ...], limit: float) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for event in tail.read():
                if event.get("event") in names:
                    return event
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ipvsd exited {self.proc.returncode}; see {self.log}")
            time.sleep(0.05)
        raise TimeoutError(f"ipvsd: no {names} within {limit} s; see {self.log}")

    def reload(self, limit: float = 900) -> tuple[float, bool]:
        """SIGHUP and wait for the verdict: (seconds, applied)."""
        assert self.proc is not None
        tail = LogTail(self.log)
        started = time.monotonic()
        self.proc.send_signal(signal.SIGHUP)
        event = self.wait_event(tail, ("config.reloaded", "config.reload_refused"), limit)
        return time.monotonic() - started, event["event"] == "config.reloaded"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


class Keepalived:
    def __init__(self, topo: Any, ns: str, workdir: Path) -> None:
        self.topo, self.ns, self.workdir = topo, ns, workdir
        self.config = workdir / "keepalived.conf"
        self.log = workdir / "keepalived.log"
        self.proc: subprocess.Popen[Any] | None = None
        self.starts = 0
        self.tag = "k0"

    def start(self) -> None:
        w = self.workdir
        self.starts += 1  # fresh pid files: a stale one makes keepalived refuse to start
        self.tag = f"k{self.starts}"
        with self.log.open("ab") as out:
            self.proc = self.topo.popen(
                self.ns,
                [
                    "keepalived",
                    "--dont-fork",
                    # No logging at all: there is no syslog in UML, and --log-console
                    # writes every passing check to the UML console (slow, and a load
                    # of its own). ipvsd logs nothing per passing check either.
                    "--no-syslog",
                    "-f",
                    str(self.config),
                    "-p",
                    str(w / f"{self.tag}.pid"),
                    "-r",
                    str(w / f"{self.tag}.vrrp.pid"),
                    "-c",
                    str(w / f"{self.tag}.check.pid"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def child(self, kind: str) -> int | None:
        try:
            return int((self.workdir / f"{self.tag}.{kind}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGTERM to the process group this benchmark started (keepalived and its children)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# --- loads -------------------------------------------------------------------------------------


@dataclass
class Spans:
    """Wall-clock intervals (time.time()) during which a load was busy."""

    done: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0
    current: float | None = None

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the load was busy at some moment of [start, end]."""
        if self.current is not None and end >= self.current:
            return True
        return any(a <= end and start <= b for a, b in self.done)

    def durations(self, start: float, end: float) -> list[float]:
        return [b - a for a, b in self.done if start <= a and b <= end + 600]


class Load:
    """A background thread repeating one action until stopped (bounded by `stop`)."""

    def __init__(self, name: str, action: Any) -> None:
        self.name = name
        self.spans = Spans()
        self._action = action
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.spans.current = time.time()
            try:
                ok = self._action()
            except Exception as exc:  # report it, stop this load
                self.error = exc
                self.spans.current = None
                return
            self.spans.done.append((self.spans.current, time.time()))
            self.spans.current = None
            if not ok:
                self.spans.failures += 1
            self._stop.wait(0.2)

    def stop(self, limit: float = 900) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(limit)
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed: {self.error!r}")


def scrape_once(ns: str) -> bool:
    """One GET /metrics from inside `ns`, read to the end into a small buffer."""
    from lab.netns import in_netns

    with in_netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    buf = bytearray(1 << 20)
    size = 0
    with sock:
        sock.settimeout(300)
        sock.connect(("127.0.0.1", METRICS_PORT))
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while received := sock.recv_into(buf):
            if not first:
                first = bytes(buf[:16])
            size += received
    return first.startswith(b"HTTP/1.0 200") or first.startswith(b"HTTP/1.1 200")


# --- one repetition ----------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: str
    ipvsd: Lateness
    keepalived: Lateness
    ipvsd_cpu: float
    keepalived_cpu: dict[str, float]
    checks_per_s: dict[str, float]
    reloads: list[float]
    keepalived_reloads: int
    scrapes: list[float]
    late_during: dict[str, int]
    loop_lag_warnings: int
    longest_loop_lag_s: float
    sender_events: dict[str, int]
    """Reports of the advert sender process (vrrp.advert_sender_*: late, expired, died)."""
    sender_major_faults: int | None
    """Pages the sender had to read back in during the case (it locks them: 0)."""
    load1: float
    seconds: float
    false_failovers: int | None = None
    """Times the backup of the ipvsd master's VRID acted as master (None: no backup)."""


def build(topo: Any, backup: bool = False) -> dict[str, str]:
    from lab.netns import ip

    seg = topo.netns("seg")
    topo.bridge("br0", ns=seg)
    d1, k1, reals, obs = (topo.netns(n) for n in ("d1", "k1", "reals", "obs"))
    topo.veth(d1, "eth1", bridge="br0", bridge_ns=seg, address=f"{IPVSD_ADDR}/24")
    topo.veth(k1, "eth1", bridge="br0", bridge_ns=seg, address=f"{KEEPALIVED_ADDR}/24")
    topo.veth(obs, "eth0", bridge="br0", bridge_ns=seg, address=f"{OBSERVER_ADDR}/24")
    for ns, peer, net in ((d1, "rd1", "10.201.0"), (k1, "rk1", "10.202.0")):
        topo.veth(ns, "eth2", peer_ns=reals, peer_name=peer, address=f"{net}.1/30")
        topo.address(reals, peer, f"{net}.2/30")
        ip("route", "add", "172.16.0.0/16", "via", f"{net}.2", ns=ns)
    ip("route", "add", "local", "172.16.0.0/16", "dev", "lo", ns=reals)
    found = {"d1": d1, "k1": k1, "reals": reals, "obs": obs}
    if backup:
        found["b1"] = topo.netns("b1")
        topo.veth(found["b1"], "eth1", bridge="br0", bridge_ns=seg, address=f"{BACKUP_ADDR}/24")
    return found


def wait_for(what: str, predicate: Any, limit: float, interval: float = 0.2) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {limit} s")


def run_repetition(args: argparse.Namespace, rep: int, log: Any) -> list[CaseResult]:
    from lab.netns import Topology

    workdir = Path(tempfile.mkdtemp(prefix=f"advert-lateness-{rep}-"))
    files = {
        v: workdir / f"ipvsd.{v}.yaml" for v in (None, 0, 1)
    }  # None: idle, 0/1: weight variants
    for variant, path in files.items():
        path.write_text(ipvsd_config(workdir, args, variant=variant))
    kfiles = {v: workdir / f"keepalived.{v}.conf" for v in (None, 0, 1)}
    for variant, path in kfiles.items():
        path.write_text(keepalived_config(args, variant=variant))
    results: list[CaseResult] = []
    with Topology() as topo:
        ns = build(topo, backup=args.backup != "none")
        counts_path = workdir / "reals.json"
        listener = topo.popen(
            ns["reals"],
            [sys.executable, "-m", "bench.advert_lateness", "--serve-reals", str(counts_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != b"ready":
            raise RuntimeError("reals listener failed")
        observer = Observer(ns["obs"])
        ipvsd = Ipvsd(topo, ns["d1"], workdir, args.stall_probe)
        keepalived = Keepalived(topo, ns["k1"], workdir)
        try:
            os.replace(_copy(files[None]), ipvsd.config)
            os.replace(_copy(kfiles[None]), keepalived.config)
            ipvsd.start()
            keepalived.start()
            since = time.time()
            wait_for(
                "both masters advertising",
                lambda: (
                    len(observer.master_adverts(IPVSD_VRID, IPVSD_ADDR, since)) >= 2
                    and len(observer.master_adverts(KEEPALIVED_VRID, KEEPALIVED_ADDR, since)) >= 2
                ),
                30,
            )
            watched = start_backup(args, topo, ns, workdir, log)
            loaded = False
            for case in args.cases:
                if case != "idle" and not loaded:
                    go_full(args, ipvsd, keepalived, files, kfiles, observer, log)
                    loaded = True
                result = measure(args, case, ipvsd, keepalived, observer, files, kfiles, ns)
                log(format_case(rep, result))
                results.append(result)
            if watched is not None:
                backup = observer.master_adverts(IPVSD_VRID, BACKUP_ADDR, watched)
                whole = episodes([a.at for a in backup], args.advert_int)
                log(
                    f"  backup ({args.backup}): {len(whole)} false failover(s) in the whole run"
                    f" ({time.time() - watched:.0f} s from its start, table load included)"
                )
        finally:
            keepalived.stop()
            observer.close()
            if listener.stdin is not None:
                listener.stdin.close()
            if args.stall_probe:
                print_stalls(ipvsd.stall_out, results)
    return results


def start_backup(
    args: argparse.Namespace, topo: Any, ns: dict[str, str], workdir: Path, log: Any
) -> float | None:
    """The backup of the ipvsd master's VRID (`--backup`); when it started (time.time())."""
    from lab.daemon import DaemonProcess
    from lab.vrrp_pair import KeepalivedProcess, ipvsd_config, keepalived_config

    if args.backup == "none":
        return None
    started = time.time()
    settings = {"version": args.version, "advert_int": args.advert_int}
    if args.backup == "keepalived":
        config = workdir / "backup.keepalived.conf"
        config.write_text(keepalived_config("b1", BACKUP_PRIORITY, **settings))
        KeepalivedProcess(topo, ns["b1"], config, workdir / "backup.keepalived.log").start()
    else:
        config = workdir / "backup.yaml"
        config.write_text(ipvsd_config("b1", BACKUP_PRIORITY, workdir, **settings))
        DaemonProcess(topo, ns["b1"], config, workdir / "backup.log").start()
    log(f"  backup ({args.backup}, priority {BACKUP_PRIORITY}) started for VRID {IPVSD_VRID}")
    return started


def _copy(path: Path) -> Path:
    tmp = path.with_name(path.name + ".cur")
    tmp.write_bytes(path.read_bytes())
    return tmp


def _lines(pid: int) -> int:
    try:
        return table_lines(pid)
    except OSError:
        return 0


def expected_lines(n: int) -> int:
    return 3 + n * (1 + REALS_PER_SERVICE)


def go_full(
    args: argparse.Namespace,
    ipvsd: Ipvsd,
    keepalived: Keepalived,
    files: dict[int | None, Path],
    kfiles: dict[int | None, Path],
    observer: Observer,
    log: Any,
) -> None:
    """Load the N x 4 table with checks into both daemons and wait until steady."""
    started = time.monotonic()
    os.replace(_copy(files[0]), ipvsd.config)
    seconds, ok = ipvsd.reload()
    if not ok:
        raise RuntimeError(f"ipvsd refused the full config; see {ipvsd.log}")
    assert ipvsd.pid is not None
    want = expected_lines(args.services)
    pid = ipvsd.pid
    wait_for("ipvsd table", lambda: _lines(pid) >= want, 600)
    log(f"  ipvsd: table of {args.services}x4 complete after {time.monotonic() - started:.1f} s")
    ipvsd_s = time.monotonic() - started
    if args.keepalived_job != "none":
        keepalived.stop()
        os.replace(_copy(kfiles[0]), keepalived.config)
        kstart = time.monotonic()
        keepalived.start()
        assert keepalived.proc is not None
        kpid = keepalived.proc.pid
        log(f"  keepalived restarted with {args.services}x4; waiting for its table")
        # Services and unchecked reals at least (a checked real may still be failing).
        floor = want - checked_services(args) * REALS_PER_SERVICE
        proc = keepalived.proc

        def programmed() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"keepalived exited {proc.returncode}")
            return _lines(kpid) >= floor

        try:
            wait_for("keepalived table", programmed, 300)
        except TimeoutError:
            raise TimeoutError(
                f"keepalived (pid {kpid}) table has {_lines(kpid)} lines, not {floor}+;"
                f" children {keepalived.child('vrrp')} {keepalived.child('check')}"
            ) from None
        since = time.time()
        wait_for(
            "keepalived master again",
            lambda: len(observer.master_adverts(KEEPALIVED_VRID, KEEPALIVED_ADDR, since)) >= 2,
            60,
        )
        log(f"  keepalived: {args.services}x4 programmed in {time.monotonic() - kstart:.1f} s")
    # Health checks: two rounds for rise 2, then a little more.
    settle = 2 * args.check_interval + 3
    log(
        f"  ipvsd: {args.services}x4 reload applied in {seconds:.1f} s, table in {ipvsd_s:.1f} s;"
        f" settling {settle:g} s"
    )
    time.sleep(settle)


def measure(
    args: argparse.Namespace,
    case: str,
    ipvsd: Ipvsd,
    keepalived: Keepalived,
    observer: Observer,
    files: dict[int | None, Path],
    kfiles: dict[int | None, Path],
    ns: dict[str, str],
) -> CaseResult:
    variant = [0]
    kreloads = [0]

    def reload_both() -> bool:
        variant[0] ^= 1
        os.replace(_copy(files[variant[0]]), ipvsd.config)
        _, ok = ipvsd.reload()
        if args.keepalived_job != "none":
            os.replace(_copy(kfiles[variant[0]]), keepalived.config)
            keepalived.reload()
            kreloads[0] += 1
        return ok

    loads = []
    if case in ("reload", "all"):
        loads.append(Load("reload", reload_both))
    if case in ("scrape", "all"):
        loads.append(Load("scrape", lambda: scrape_once(ns["d1"])))
    kpids = {"vrrp": keepalived.child("vrrp"), "checker": keepalived.child("check")}
    counts_path = ipvsd.workdir / "reals.json"
    tail = LogTail(ipvsd.log)
    load1 = os.getloadavg()[0]
    for load in loads:
        load.start()
    time.sleep(2.0)  # the loads get going before the window opens
    cpu0 = cpu_seconds(ipvsd.pid)
    faults0 = advert_sender_faults()
    kcpu0 = {k: cpu_seconds(p) for k, p in kpids.items()}
    counts0 = read_counts(counts_path)
    start = time.time()
    time.sleep(args.seconds)
    end = time.time()
    cpu1 = cpu_seconds(ipvsd.pid)
    faults1 = advert_sender_faults()
    kcpu1 = {k: cpu_seconds(p) for k, p in kpids.items()}
    counts1 = read_counts(counts_path)
    for load in loads:
        load.stop()
    wall = end - start
    interval = args.advert_int
    ipvsd_adverts = observer.master_adverts(IPVSD_VRID, IPVSD_ADDR)
    ipvsd_late = Lateness.of(ipvsd_adverts, start, end, interval)
    keep_adverts = observer.master_adverts(KEEPALIVED_VRID, KEEPALIVED_ADDR)
    keep_late = Lateness.of(keep_adverts, start, end, interval)
    false_failovers = None
    if args.backup != "none":
        backup = observer.master_adverts(IPVSD_VRID, BACKUP_ADDR, start)
        false_failovers = len(episodes([a.at for a in backup if a.at <= end], interval))
    late_during = {"late adverts": len(ipvsd_late.late)}
    for load in loads:
        # An advert arrives when the stall ends: did the load run while it was overdue?
        late_during[load.name] = sum(
            1 for at, late in ipvsd_late.late if load.spans.overlaps(at - late, at)
        )
    reloads = [b - a for a, b in loads[0].spans.done] if case in ("reload", "all") else []
    scrape_load = next((x for x in loads if x.name == "scrape"), None)
    scrapes = [b - a for a, b in scrape_load.spans.done] if scrape_load else []
    events = tail.read()
    lags = [float(str(e.get("lag_s", 0))) for e in events if e.get("event") == "loop.lag"]
    sender_events = collections.Counter(
        str(e["event"]).removeprefix("vrrp.advert_sender_")
        for e in events
        if str(e.get("event", "")).startswith("vrrp.advert_sender_")
        and e.get("event") not in ("vrrp.advert_sender_started", "vrrp.advert_sender_memory")
    )
    return CaseResult(
        case=case,
        ipvsd=ipvsd_late,
        keepalived=keep_late,
        ipvsd_cpu=(cpu1 - cpu0) / wall,
        keepalived_cpu={k: (kcpu1[k] - kcpu0[k]) / wall for k in kpids},
        checks_per_s={
            "ipvsd": (counts1.get("10.201.0.1", 0) - counts0.get("10.201.0.1", 0)) / wall,
            "keepalived": (counts1.get("10.202.0.1", 0) - counts0.get("10.202.0.1", 0)) / wall,
        },
        reloads=reloads,
        keepalived_reloads=kreloads[0],
        scrapes=scrapes,
        late_during=late_during,
        loop_lag_warnings=len(lags),
        longest_loop_lag_s=max(lags, default=0.0),
        sender_events=dict(sender_events),
        sender_major_faults=(None if faults0 is None or faults1 is None else faults1 - faults0),
        load1=load1,
        seconds=wall,
        false_failovers=false_failovers,
    )


# --- reporting ---------------------------------------------------------------------------------


def format_case(rep: int, r: CaseResult) -> str:
    def one(name: str, lat: Lateness) -> str:
        return (
            f"{name} n={lat.adverts} p50 {lat.p50_ms:.1f} p99 {lat.p99_ms:.1f} "
            f"max {lat.max_ms:.1f} slip {lat.slip_ms:.0f} ms"
        )

    extra = ""
    if r.reloads:
        extra += f"; {len(r.reloads)} reloads, mean {statistics.mean(r.reloads):.1f} s"
    if r.scrapes:
        extra += f"; {len(r.scrapes)} scrapes, mean {statistics.mean(r.scrapes):.1f} s"
    return (
        f"  rep {rep + 1} {r.case:6}: {one('ipvsd', r.ipvsd)} | {one('keepalived', r.keepalived)}"
        f" | ipvsd CPU {r.ipvsd_cpu:.2f}, checks/s {r.checks_per_s['ipvsd']:.0f} /"
        f" {r.checks_per_s['keepalived']:.0f}{extra}; late>10ms: {r.late_during};"
        f" loop.lag warnings {r.loop_lag_warnings} (longest {r.longest_loop_lag_s:.1f} s);"
        f" advert sender {r.sender_events or 'quiet'}, major faults {r.sender_major_faults};"
        f" load1 {r.load1:.2f}"
        + ("" if r.false_failovers is None else f"; false failovers {r.false_failovers}")
    )


def summarize(args: argparse.Namespace, reps: list[list[CaseResult]]) -> None:
    header = (
        "case",
        "router",
        "adverts",
        "p50 ms",
        "p99 ms",
        "max ms",
        "slip ms",
        "detail",
    )
    rows = []
    for case in args.cases:
        runs = [r for rep in reps for r in rep if r.case == case]
        if not runs:
            continue
        for name in ("ipvsd", "keepalived"):
            lats: list[Lateness] = [getattr(r, name) for r in runs]

            def med(attr: str, lats: list[Lateness] = lats) -> float:
                return float(statistics.median(getattr(x, attr) for x in lats))

            if name == "ipvsd":
                detail = (
                    f"CPU {statistics.median(r.ipvsd_cpu for r in runs):.2f} core;"
                    f" checks/s {statistics.median(r.checks_per_s['ipvsd'] for r in runs):.0f}"
                )
                reloads = [d for r in runs for d in r.reloads]
                scrapes = [d for r in runs for d in r.scrapes]
                if reloads:
                    detail += f"; {len(reloads)} reloads of {statistics.median(reloads):.1f} s"
                if scrapes:
                    detail += f"; {len(scrapes)} scrapes of {statistics.median(scrapes):.1f} s"
                if args.backup != "none":
                    false = sum(r.false_failovers or 0 for r in runs)
                    detail += f"; false failovers {false} ({args.backup} backup)"
            else:
                vrrp = statistics.median(r.keepalived_cpu["vrrp"] for r in runs)
                check = statistics.median(r.keepalived_cpu["checker"] for r in runs)
                if args.keepalived_job == "none" or math.isnan(check):
                    detail = f"VRRP only; VRRP process CPU {vrrp:.2f} core"
                else:
                    checks = statistics.median(r.checks_per_s["keepalived"] for r in runs)
                    detail = f"CPU vrrp {vrrp:.2f} + checker {check:.2f}; checks/s {checks:.0f}"
                kre = sum(r.keepalived_reloads for r in runs)
                if kre:
                    detail += f"; {kre} SIGHUPs"
            detail += f"; worst max {max(x.max_ms for x in lats):.1f}"
            rows.append(
                (
                    case,
                    name,
                    f"{statistics.median(x.adverts for x in lats):.0f}",
                    f"{med('p50_ms'):.1f}",
                    f"{med('p99_ms'):.1f}",
                    f"{med('max_ms'):.1f}",
                    f"{med('slip_ms'):.0f}",
                    detail,
                )
            )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(
        f"\nVRRPv{args.version} advert lateness on the wire"
        f" (advert arrival - previous - {args.advert_int:g} s), "
        f"median of {len(reps)} repetition(s), {args.seconds:g} s per case\n"
    )
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")
    print()
    loaded = [r for rep in reps for r in rep if r.case == "all"] or [
        r for rep in reps for r in rep if r.case != "idle"
    ]
    if loaded:
        p99 = statistics.median(r.ipvsd.p99_ms for r in loaded)
        worst = statistics.median(r.ipvsd.max_ms for r in loaded)
        verdict = "met" if p99 < 10 and worst < 50 else "NOT met"
        print(
            f"targets for ipvsd under load ({loaded[0].case}): p99 < 10 ms and max < 50 ms:"
            f" {verdict} (p99 {p99:.1f} ms, max {worst:.1f} ms)"
        )
    if args.backup != "none":
        runs = [r for rep in reps for r in rep if r.case != "idle"]
        under = "under load" if runs else "idle"
        runs = runs or [r for rep in reps for r in rep]
        false = sum(r.false_failovers or 0 for r in runs)
        gap = max((r.ipvsd.max_ms for r in runs), default=float("nan")) + args.advert_int * 1e3
        limit = master_down_interval(args.advert_int) * 1e3
        print(
            f"no false failover {under} ({args.backup} backup, advert_int"
            f" {args.advert_int:g} s): {'met' if false == 0 else 'NOT met'} ({false} false"
            f" failover(s); worst ipvsd advert gap {gap:.1f} ms, Master_Down_Interval"
            f" {limit:.1f} ms)"
        )


def print_stalls(path: Path, results: list[CaseResult]) -> None:
    """Where the loop thread was while stalled, by innermost ipvsd frame."""
    if not path.exists():
        print("stall probe: no samples")
        return
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_main: collections.Counter[str] = collections.Counter()
    by_other: collections.Counter[str] = collections.Counter()
    worst: dict[str, float] = {}
    for s in samples:
        main = s["main"]
        inner = next((f for f in main if f.startswith("ipvsd/")), main[0] if main else "?")
        outer = next((f for f in reversed(main) if "ipvsd/" in f and "cli.py" not in f), "")
        key = f"{inner}  <- {main[0] if main else '?'}  (task: {outer})"
        by_main[key] += 1
        worst[key] = max(worst.get(key, 0.0), s["late"])
        for name, stack in s["others"].items():
            if stack and not name.startswith("stall-probe"):
                by_other[f"{name}: {stack[0]}"] += 1
    print(f"\nstall probe: {len(samples)} samples (5 ms apart) of a loop > 20 ms late")
    print("loop thread, innermost ipvsd frame <- innermost frame (outermost ipvsd frame):")
    for key, n in by_main.most_common(15):
        print(f"  {n * 5:6d} ms  worst {worst[key] * 1e3:6.0f} ms  {key}")
    print("other threads at the same moments:")
    for key, n in by_other.most_common(10):
        print(f"  {n:6d} samples  {key}")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 4, 250 checked/s, 21 s")
    parser.add_argument("--services", type=int, default=None, help="default 10000 (quick 1000)")
    parser.add_argument("--checked-reals", type=int, default=None, help="default 250")
    parser.add_argument("--check-interval", type=float, default=None, help="seconds, default 1")
    parser.add_argument("--seconds", type=float, default=None, help="per case (61; quick 21)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {','.join(CASES)}")
    parser.add_argument(
        "--keepalived-job",
        choices=("checks", "none"),
        default="none",
        help="checks: keepalived also holds the table with TCP_CHECK (stalls in UML, see README)",
    )
    parser.add_argument("--stall-probe", action="store_true", help="run ipvsd under the probe")
    parser.add_argument("--version", type=int, choices=(2, 3), default=2, help="VRRP version")
    parser.add_argument(
        "--advert-int", type=float, default=ADVERT_INT, help="seconds (v3: down to 0.01)"
    )
    parser.add_argument(
        "--backup",
        choices=BACKUPS,
        default="none",
        help="a backup (priority 90) for the ipvsd master's VRID: count false failovers",
    )
    parser.add_argument("--mem", default="2G", help="UML memory when UML is booted")
    parser.add_argument("--serve-reals", metavar="COUNTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "services": 1000 if quick else 10_000,
        "checked_reals": 250,
        "check_interval": 1.0,
        "seconds": 21.0 if quick else 61.0,
        "repeats": 1 if quick else 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.version == 2 and args.advert_int != int(args.advert_int):
        parser.error("--advert-int: VRRPv2 advertises whole seconds; use --version 3")
    args.cases = [c for c in args.cases.split(",") if c]
    if not set(args.cases) <= set(CASES):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks (UML, namespaces)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if args.serve_reals:
        return serve_reals(REAL_PORT, Path(args.serve_reals))
    from lab.uml import host_has_ipvs, run_with_ipvs

    signal.signal(signal.SIGTERM, _on_sigterm)
    if not os.environ.get("IPVSD_UML") and not host_has_ipvs():
        load = os.getloadavg()[0]
        print(f"host 1-minute load average at start: {load:.2f}", flush=True)
        status = run_with_ipvs(
            [sys.executable, "-m", "bench.advert_lateness", *raw],
            mem=args.mem,
            timeout=7200,
            env={HOST_LOAD_ENV: f"{load:.2f}"},
        )
        print(f"host 1-minute load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
        return status
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    host_load = os.environ.get(HOST_LOAD_ENV, "unknown (run without lab.uml to record it)")
    print(
        f"advert lateness: {args.services} x {REALS_PER_SERVICE} services,"
        f" {checked_services(args) * REALS_PER_SERVICE} reals checked every"
        f" {args.check_interval:g} s, cases {','.join(args.cases)}, {args.seconds:g} s each,"
        f" {args.repeats} repetition(s); keepalived job: {args.keepalived_job};"
        f" VRRPv{args.version}, advert_int {args.advert_int:g} s, backup {args.backup};"
        f" host load1 at start {host_load}, this kernel's {os.getloadavg()[0]:.2f}"
        f" ({os.uname().release})",
        flush=True,
    )

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.monotonic()
    reps = []
    for rep in range(args.repeats):
        reps.append(run_repetition(args, rep, log))
    summarize(args, reps)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
