"""The BGP lab on a kernel with IPVS (issue 15 part 4): ECMP over three directors, DR reals.

::

    client (10.96.0.2 + 40 source addresses)
       |  10.96.0.0/24
    router (BIRD 2: BGP from the directors, BFD, ``merge paths``: one multipath route
       |    per VIP in its FIB; fib_multipath_hash_policy=1 hashes on L4)
       |  10.97.0.0/24 (a bridge)
    d1 d2 d3   ``ipvsd run`` each, BGP mode, its own BIRD child, real IPVS (DR)
    r1 r2 r3   DR reals: the VIPs on lo (arp_ignore=1, arp_announce=2), answering the
               client directly through the router

Two services on the same reals, each on its own VIP: ``VIP_MH`` with BGP mode's
default scheduler (``mh`` with ``mh-fallback``) and ``VIP_RR`` with ``rr``, the
control: a flow that ECMP moves to another director keeps its real only with
``mh``. The directors add the VIPs to their ``lo`` and set ``sloppy_tcp``
themselves (``bgp.vip_interface``, ``bgp.sloppy_tcp``).

The reals' servers run in a thread of the calling process (one listening socket
per real's namespace, `TaggedEcho`): each answers a line with its own name, so the
client sees which real holds a connection. The client's connections are
sockets of the calling process too (`Flow`), made in the client's namespace.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from lab.daemon import DaemonProcess
from lab.netns import Topology, in_netns

VIP_MH = "10.97.100.1"
VIP_RR = "10.97.100.2"
PORT = 80
#: The reals' health-check listener (on the real's own address: the VIP's port
#: answers on the VIPs only), and the one `TaggedEcho.open_late_check` opens late.
CHECK_PORT, LATE_CHECK_PORT = 81, 82
CHECK_TIMING = "interval: 1, timeout: 1, rise: 1, fall: 2"
ROUTER = "10.97.0.1"
ROUTER_CLIENT_SIDE = "10.96.0.1"
CLIENT = "10.96.0.2"
#: The client's source addresses: mh hashes the source address (no mh-port).
SOURCES = [str(IPv4Address("10.96.0.100") + i) for i in range(40)]
DIRECTORS = {"d1": "10.97.0.11", "d2": "10.97.0.12", "d3": "10.97.0.13"}
REALS = {"r1": "10.97.0.21", "r2": "10.97.0.22", "r3": "10.97.0.23"}

ROUTER_CONF = """\
router id {router};
protocol device {{ }}
protocol kernel {{
  ipv4 {{ import none; export all; }};
  merge paths on;
}}
protocol bfd {{
  interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
template bgp director {{
  local as 65000;
  hold time {hold_time};
  connect retry time 1;
  error wait time 1, 5;
  bfd {bfd};
  ipv4 {{ import all; export none; }};
}}
{peers}
"""


def director_yaml(
    name: str, address: str, run: Path, services: str, *, bfd: bool, hold_time: int
) -> str:
    """A director's whole config around `services` (the YAML items under ``ipvs.services``,
    each line indented by 4): its files in `run`, metrics on `address`, the ``bgp:``
    section: AS 65001, one session to the router (AS 65000)."""
    return f"""\
node_name: {name}
state_dir: {run}/state
control: {{socket: {run}/ipvsd.sock}}
metrics: {{listen: "{address}:9477"}}
ipvs:
  services:{services}
bgp:
  local_as: 65001
  router_id: {address}
  hold_time: {hold_time}
  bfd: {"true" if bfd else "false"}
  run_dir: {run}/bird
  neighbors:
    - {{address: {ROUTER}, remote_as: 65000}}
"""


def director_config(
    name: str,
    address: str,
    run: Path,
    *,
    bfd: bool,
    hold_time: int,
    late: tuple[str, str] | None = None,
) -> str:
    """``ipvsd run``'s config for director `name`: both services, BGP to the router.

    Every real is health-checked (TCP to its `CHECK_PORT`). The order in which
    the first checks pass differs between directors; ipvsd's ``mh`` table does
    not depend on it (docs/consistent-hashing.md). `late` = (director, real): that
    director checks that real's `LATE_CHECK_PORT` instead, where nothing listens
    until `TaggedEcho.open_late_check`: its first checks fail.
    """

    def real(real_name: str, real_address: str) -> str:
        entry = f"\n        - {{address: {real_address}, port: {PORT}"
        if late == (name, real_name):
            entry += f", check: {{type: tcp, port: {LATE_CHECK_PORT}, {CHECK_TIMING}}}"
        return entry + "}"

    reals = "".join(real(n, a) for n, a in REALS.items())
    services = "".join(
        f"""
    - address: {vip}
      port: {PORT}
      forward: dr{scheduler}
      check: {{type: tcp, port: {CHECK_PORT}, {CHECK_TIMING}}}
      reals:{reals}"""
        for vip, scheduler in ((VIP_MH, ""), (VIP_RR, "\n      scheduler: rr"))
    )
    return director_yaml(name, address, run, services, bfd=bfd, hold_time=hold_time)


class TaggedEcho:
    """The reals' servers: in each real's namespace, listeners on the VIPs' port that answer
    every chunk it reads with the real's name and a newline; one thread serves all."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._namespaces = namespaces
        for name, ns in namespaces.items():
            for endpoint in ((VIP_MH, PORT), (VIP_RR, PORT), (REALS[name], CHECK_PORT)):
                self._listen(name, ns, endpoint)
        self._thread = threading.Thread(target=self._serve, name="tagged-echo", daemon=True)
        self._thread.start()

    def _listen(self, name: str, ns: str, endpoint: tuple[str, int]) -> None:
        with in_netns(ns):
            listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(endpoint)
        listener.listen(512)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, (name, None))

    def open_late_check(self, name: str) -> None:
        """Start answering real `name`'s `LATE_CHECK_PORT` (`director_config`'s `late`)."""
        self._listen(name, self._namespaces[name], (REALS[name], LATE_CHECK_PORT))

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                name, _peer = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if _peer is None:  # a listener
                    with contextlib.suppress(BlockingIOError):
                        conn, peer = sock.accept()
                        conn.setblocking(False)
                        self._selector.register(conn, selectors.EVENT_READ, (name, peer))
                    continue
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    sock.close()
                    continue
                with contextlib.suppress(OSError):
                    sock.send(name.encode() + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


@dataclass
class Flow:
    """One client TCP connection to a VIP, and the real that answered it first."""

    sock: socket.socket
    source: tuple[str, int]
    vip: str
    real: str = ""

    def ask(self, timeout: float = 3.0) -> str | None:
        """Send a line; the name of the real that answered, or None (reset, closed, silent)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(b"ping\n")
            answer = self.sock.recv(64)
        except OSError:
            return None
        return answer.decode().strip() or None

    def close(self) -> None:
        self.sock.close()


@dataclass
class BgpLab:
    topo: Topology
    tmp: Path
    router: str
    client: str
    directors: dict[str, str]  # name -> namespace
    reals: dict[str, str]
    daemons: dict[str, DaemonProcess]
    echo: TaggedEcho | None = None
    flows: list[Flow] = field(default_factory=list)
    switch: str = ""
    ports: dict[str, str] = field(default_factory=dict)  # director -> its port on the switch
    _port: int = 20000

    # --- the router's FIB ------------------------------------------------------------

    def next_hops(self, vip: str = VIP_MH) -> set[str]:
        """The router's FIB entry for `vip`: the directors it forwards to."""
        return fib_next_hops(self.topo, self.router, vip)

    def wait_hops(self, wanted: set[str], timeout: float, vip: str = VIP_MH) -> float:
        """Seconds until the FIB's next hops for `vip` are `wanted`."""
        return wait_next_hops(self.topo, self.router, vip, wanted, timeout)

    def watch_withdrawal(self, address: str, vip: str = VIP_MH) -> RouteWatch:
        """Start `ip monitor route` in the router, to time `address`'s removal from `vip`."""
        return RouteWatch(self, address, vip)

    # --- the client's flows ----------------------------------------------------------

    def open_flows(
        self, vip: str, per_source: int = 1, sources: Iterable[str] = SOURCES
    ) -> list[Flow]:
        """One connection per source address (`per_source` each) to `vip`, each asked once."""
        flows = []
        for source in sources:
            for _ in range(per_source):
                with in_netns(self.client):
                    sock = socket.socket()
                sock.settimeout(5)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # A port of its own for every flow of the lab's life: a connection
                # entry of an earlier flow (closing, or left by a killed director)
                # never matches a later one in `directors_of`.
                self._port += 1
                sock.bind((source, self._port))
                sock.connect((vip, PORT))
                flow = Flow(sock, sock.getsockname(), vip)
                flow.real = flow.ask() or ""
                flows.append(flow)
        self.flows.extend(flows)
        return flows

    def directors_of(self, flows: Iterable[Flow]) -> dict[tuple[str, int], str]:
        """(source address, port) -> the director whose IPVS has a connection entry for it."""
        wanted = {(flow.source, int(IPv4Address(flow.vip))) for flow in flows}
        found = {}
        for name, ns in self.directors.items():
            with in_netns(ns), open("/proc/thread-self/net/ip_vs_conn") as table:
                lines = table.read().splitlines()[1:]
            for line in lines:
                words = line.split()
                client = (str(IPv4Address(int(words[1], 16))), int(words[2], 16))
                if (client, int(words[3], 16)) in wanted:
                    found[client] = name
        return found

    def close_flows(self) -> None:
        for flow in self.flows:
            flow.close()
        self.flows.clear()

    # --- the directors ---------------------------------------------------------------

    def ipvsd(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        socket_path = self.tmp / name / "ipvsd.sock"
        argv = [sys.executable, "-m", "ipvsd", *args, "--socket", str(socket_path)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)

    def sysctl(self, name: str, key: str) -> str:
        with in_netns(self.directors[name]):
            return Path("/proc/sys", key.replace(".", "/")).read_text().strip()

    def set_sysctl(self, name: str, key: str, value: int) -> None:
        with in_netns(self.directors[name]):
            Path("/proc/sys", key.replace(".", "/")).write_text(f"{value}\n")

    def lo_addresses(self, name: str) -> set[str]:
        out = self.topo.exec(self.directors[name], ["ip", "-o", "address", "show", "dev", "lo"])
        return {line.split()[3] for line in out.stdout.splitlines()}

    def close(self) -> None:
        self.close_flows()
        if self.echo is not None:
            self.echo.close()


class RouteWatch:
    """``ip monitor route`` in the router from now on: when a next hop left a VIP's route.

    Timestamps come from the monitor (``-timestamp``), so the time to withdrawal is
    measured by the kernel's notification, not by a polling loop.
    """

    def __init__(self, lab: BgpLab, address: str, vip: str) -> None:
        self.address, self.vip = address, vip
        self.log = lab.tmp / f"monitor-{time.monotonic_ns()}.log"
        self._out = self.log.open("w")
        self.proc = lab.topo.popen(
            lab.router, ["ip", "-timestamp", "monitor", "route"], stdout=self._out, text=True
        )
        self._lab = lab
        time.sleep(0.3)  # the monitor subscribes before the caller acts

    def wait(self, started: float, timeout: float) -> float:
        """Seconds from the wall-clock time `started` until the FIB lost `address` for the VIP."""
        self._lab.wait_hops(self._lab.next_hops(self.vip) - {self.address}, timeout, self.vip)
        time.sleep(0.2)
        self.proc.terminate()
        self.proc.wait(5)
        self._out.close()
        # "Timestamp: Sun Dec  6 13:40:01 2026 123456 usec" then the route lines
        stamp = None
        for line in self.log.read_text().splitlines():
            if line.startswith("Timestamp:"):
                words = line.split()
                clock = time.mktime(time.strptime(" ".join(words[1:6]), "%a %b %d %H:%M:%S %Y"))
                stamp = clock + int(words[6]) / 1e6
            elif stamp is not None and self.vip in line and stamp >= started:
                return stamp - started
        raise AssertionError(f"no route change for {self.vip} seen in {self.log}")


def fib_next_hops(topo: Topology, router: str, vip: str) -> set[str]:
    """The router's FIB entry for `vip`: the next hops (directors) it forwards to."""
    out = topo.exec(router, ["ip", "-o", "route", "show", f"{vip}/32"]).stdout
    words = out.split()
    return {words[i + 1] for i, word in enumerate(words) if word == "via"}


def wait_next_hops(
    topo: Topology, router: str, vip: str, wanted: set[str], timeout: float
) -> float:
    """Seconds until the router's next hops for `vip` are `wanted` (polled every 5 ms)."""
    start = time.monotonic()
    while (hops := fib_next_hops(topo, router, vip)) != wanted:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"next hops {hops}, wanted {wanted} within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def start_router(
    topo: Topology,
    sw: str,
    br: str,
    tmp: Path,
    directors: dict[str, str],
    *,
    bfd: bool,
    hold_time: int = 9,
) -> str:
    """The router's namespace on bridge `br` (in `sw`), its BIRD peering with `directors`
    (name -> address, AS 65001), ECMP over them with an L4 hash; returns the namespace."""
    router = topo.netns("router")
    topo.veth(router, "eth0", bridge=br, bridge_ns=sw, address=f"{ROUTER}/24")
    topo.sysctl(router, "net.ipv4.fib_multipath_hash_policy", 1)
    topo.sysctl(router, "net.ipv4.ip_forward", 1)
    peers = "\n".join(
        f"protocol bgp {name} from director {{ neighbor {address} as 65001; }}"
        for name, address in directors.items()
    )
    bfd_word = "on" if bfd else "off"
    conf = tmp / "router.conf"
    conf.write_text(
        ROUTER_CONF.format(router=ROUTER, peers=peers, bfd=bfd_word, hold_time=hold_time)
    )
    topo.popen(
        router,
        ["bird", "-f", "-c", str(conf), "-s", str(tmp / "router.ctl")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "router.log").open("w"),
    )
    return router


def build(
    topo: Topology,
    tmp: Path,
    *,
    bfd: bool = False,
    hold_time: int = 9,
    late: tuple[str, str] | None = None,
) -> BgpLab:
    """The whole lab, started: every ipvsd ready and the router's routes over all three.

    BFD is off by default: at 3 x 100 ms its sessions flapped in UML on a loaded
    2-core host (a flap withdraws routes and resets moving flows), and none of
    the lab's events needs it: a killed ipvsd's session is closed by the kernel,
    a drain withdraws by UPDATE. The dead-host case (BFD vs hold timer) is
    measured in the netns tier (tests/netns/test_bgp.py).

    `late`: see `director_config`; the caller opens the late port
    (`TaggedEcho.open_late_check`) when it likes.
    """
    sw = topo.netns("sw")
    br = topo.bridge("br0", ns=sw)
    router = start_router(topo, sw, br, tmp, DIRECTORS, bfd=bfd, hold_time=hold_time)
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"):
        topo.sysctl(router, key, 0)  # the reals answer from the VIPs
    client = topo.netns("client")
    topo.veth(client, "eth0", peer_ns=router, peer_name="eth1", address=f"{CLIENT}/24")
    topo.exec(router, ["ip", "address", "add", f"{ROUTER_CLIENT_SIDE}/24", "dev", "eth1"])
    commands = [f"address add {source}/24 dev eth0" for source in SOURCES]
    commands.append(f"route add default via {ROUTER_CLIENT_SIDE}")
    # One process for all of them: a fork and exec each costs ~50 ms in UML.
    subprocess.run(
        ["ip", "-n", client, "-batch", "-"], input="\n".join(commands), text=True, check=True
    )
    reals = {}
    for name, address in REALS.items():
        ns = reals[name] = topo.netns(name)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_ignore", 1)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_announce", 2)
        topo.veth(ns, "eth0", bridge=br, bridge_ns=sw, address=f"{address}/24")
        for vip in (VIP_MH, VIP_RR):
            topo.address(ns, "lo", f"{vip}/32")
        topo.route(ns, "default", via=ROUTER)
    directors, daemons, ports = {}, {}, {}
    for name, address in DIRECTORS.items():
        ns = directors[name] = topo.netns(name)
        # The LAN must not learn the VIPs (ipvsd puts them on lo) by ARP.
        topo.sysctl(ns, "net.ipv4.conf.all.arp_ignore", 1)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_announce", 2)
        ports[name] = topo.veth(ns, "eth0", bridge=br, bridge_ns=sw, address=f"{address}/24")
        run = tmp / name
        run.mkdir(exist_ok=True)
        config = tmp / f"{name}.yaml"
        config.write_text(
            director_config(name, address, run, bfd=bfd, hold_time=hold_time, late=late)
        )
        daemons[name] = DaemonProcess(topo, ns, config, tmp / f"{name}.log")
    lab = BgpLab(topo, tmp, router, client, directors, reals, daemons, switch=sw, ports=ports)
    lab.echo = TaggedEcho(reals)
    for daemon in daemons.values():  # in parallel: a Python start is slow in UML
        daemon.start(wait_ready=False)
    for daemon in daemons.values():
        daemon.wait_event("daemon.ready", timeout=120)
    for vip in (VIP_MH, VIP_RR):
        lab.wait_hops(set(DIRECTORS.values()), timeout=60, vip=vip)
    return lab


@contextlib.contextmanager
def running(tmp: Path, **kwargs: object) -> Iterator[BgpLab]:
    """`build` inside a Topology; everything is stopped and removed on exit."""
    with Topology() as topo:
        lab = build(topo, tmp, **kwargs)  # type: ignore[arg-type]
        try:
            yield lab
        finally:
            lab.close()


@dataclass(frozen=True)
class Survival:
    """What one SIGKILL of a director's ipvsd did to the established connections.

    ``*_moved`` count the connections that went through the killed director;
    ``*_moved_kept`` those of them that still reach their real afterwards.
    """

    withdrawal_s: float
    mh_total: int
    mh_kept: int
    mh_moved: int
    mh_moved_kept: int
    rr_total: int
    rr_kept: int
    rr_moved: int
    rr_moved_kept: int


def kill_director(lab: BgpLab, name: str, per_source: int = 1) -> Survival:
    """Open `per_source` connections per client source to each VIP, SIGKILL `name`'s
    ipvsd, time its withdrawal from the router's FIB, and ask every connection again.
    The connections are closed again; the director stays dead (`restart_director`)."""
    mh, rr = lab.open_flows(VIP_MH, per_source), lab.open_flows(VIP_RR, per_source)
    try:
        where = lab.directors_of(mh + rr)
        moved = {source for source, director in where.items() if director == name}
        address = DIRECTORS[name]
        watch = lab.watch_withdrawal(address)
        killed_at = time.time()
        lab.daemons[name].kill()
        withdrawal_s = watch.wait(killed_at, timeout=15)
        rest = set(DIRECTORS.values()) - {address}
        lab.wait_hops(rest, timeout=5, vip=VIP_RR)
        counts = []
        for flows in (mh, rr):
            # In a shuffled order: asked in the order they were opened, the moved
            # flows reach a survivor's rr in the same sequence as they reached the
            # dead director's, and all or none of them land on their own real.
            order = list(flows)
            random.Random(len(order)).shuffle(order)  # noqa: S311 (an order, not a secret)
            kept = {f.source for f in order if f.ask() == f.real}
            went = {f.source for f in flows} & moved
            counts += [len(flows), len(kept), len(went), len(went & kept)]
    finally:
        lab.close_flows()
    return Survival(withdrawal_s, *counts)


def restart_director(lab: BgpLab, name: str) -> tuple[float, float]:
    """Start `name`'s ipvsd again: (seconds to ready, then seconds until its route is back)."""
    started = time.monotonic()
    lab.daemons[name].start(wait_ready=False)
    lab.daemons[name].wait_event("daemon.ready", timeout=120)
    ready_s = time.monotonic() - started
    return ready_s, lab.wait_hops(set(DIRECTORS.values()), timeout=30)
