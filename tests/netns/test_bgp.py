"""BGP mode on the host kernel: a router namespace running BIRD with ECMP, three directors.

Each director is ipvsd with a ``bgp:`` section (its own BIRD child) over a
fake IPVS table (`tests.netns.bgp_director`: this kernel has no IPVS, and
what is announced does not depend on it). Its one service's real is a TCP
listener in its own namespace, checked every 0.2 s.

The router's BIRD merges the three directors' routes for the VIP into one
multipath route in its kernel FIB (``merge paths``; L4 hashing with
``fib_multipath_hash_policy=1``). The test watches that FIB, as a router's
forwarding would see it, and times each withdrawal: drain, a failed real,
SIGKILL of ipvsd (its BIRD dies with it, the kernel closes the session) and
a graceful stop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.daemon import DaemonProcess
from lab.netns import Topology


@pytest.fixture(autouse=True)
def bird_installed() -> None:
    """BIRD 2 is needed (scripts/setup.sh installs bird2): a skip, or under CI a failure."""
    if shutil.which("bird") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("BIRD 2 is not installed (apt-get install bird2); CI=true", pytrace=False)
    pytest.skip("needs BIRD 2 (apt-get install bird2)")


ROOT = Path(__file__).resolve().parents[2]
VIP = "10.97.100.1"
ROUTER = "10.97.0.1"
DIRECTORS = {"d1": "10.97.0.11", "d2": "10.97.0.12", "d3": "10.97.0.13"}
REAL_PORT = 8080

LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.close()
"""

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
  hold time 9;
  bfd {bfd};
  ipv4 {{ import all; export none; }};
}}
{peers}
"""


def director_config(name: str, address: str, tmp: Path, *, bfd: bool, hold_time: int) -> str:
    run = tmp / name
    return f"""\
node_name: {name}
state_dir: {run}/state
control: {{socket: {run}/ipvsd.sock}}
metrics: {{listen: "{address}:9477"}}
ipvs:
  services:
    - address: {VIP}
      port: 80
      scheduler: mh
      forward: nat
      check: {{type: tcp, interval: 0.2, timeout: 0.5, rise: 1, fall: 2}}
      reals:
        - {{address: {address}, port: {REAL_PORT}}}
bgp:
  local_as: 65001
  router_id: {address}
  hold_time: {hold_time}
  bfd: {"true" if bfd else "false"}
  run_dir: {run}/bird
  neighbors:
    - {{address: {ROUTER}, remote_as: 65000}}
"""


@dataclass
class Lab:
    topo: Topology
    router: str
    directors: dict[str, str]  # name -> namespace
    daemons: dict[str, DaemonProcess]
    reals: dict[str, subprocess.Popen[Any]]
    tmp: Path
    switch: str
    ports: dict[str, str]  # name -> its veth's end on the switch

    def next_hops(self, vip: str = VIP) -> set[str]:
        """The router's FIB entry for `vip`: the directors it forwards to."""
        out = self.topo.exec(self.router, ["ip", "-o", "route", "show", f"{vip}/32"]).stdout
        words = out.split()
        return {words[i + 1] for i, word in enumerate(words) if word == "via"}

    def wait_hops(self, wanted: set[str], timeout: float, vip: str = VIP) -> float:
        """Seconds until the FIB's next hops for `vip` are `wanted` (polled every 5 ms)."""
        start = time.monotonic()
        while True:
            hops = self.next_hops(vip)
            if hops == wanted:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"next hops {hops}, wanted {wanted} within {timeout} s")
            time.sleep(0.005)

    def ipvsd(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        socket = self.tmp / name / "ipvsd.sock"
        argv = [sys.executable, "-m", "ipvsd", *args, "--socket", str(socket)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.ipvsd(name, "status", "--json").stdout)
        return result


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Three directors with BFD (3 x 100 ms), hold time 9 s."""
    with Topology() as topo:
        yield build(topo, tmp_path, DIRECTORS, bfd=True, hold_time=9)


def build(
    topo: Topology, tmp_path: Path, names: dict[str, str], *, bfd: bool, hold_time: int
) -> Lab:
    """The switch, the router and the directors `names` (name -> address), started."""
    sw = topo.netns("sw")
    br = topo.bridge("br0", ns=sw)
    router = topo.netns("router")
    topo.veth(router, "eth0", bridge=br, bridge_ns=sw, address=f"{ROUTER}/24")
    topo.sysctl(router, "net.ipv4.fib_multipath_hash_policy", 1)
    topo.sysctl(router, "net.ipv4.ip_forward", 1)
    peers = "\n".join(
        f"protocol bgp {name} from director {{ neighbor {address} as 65001; }}"
        for name, address in names.items()
    )
    conf = tmp_path / "router.conf"
    conf.write_text(ROUTER_CONF.format(router=ROUTER, peers=peers, bfd="on" if bfd else "off"))
    topo.popen(
        router,
        ["bird", "-f", "-c", str(conf), "-s", str(tmp_path / "router.ctl")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "router.log").open("w"),
    )
    directors, daemons, reals, ports = {}, {}, {}, {}
    for name, address in names.items():
        ns = directors[name] = topo.netns(name)
        ports[name] = topo.veth(ns, "eth0", bridge=br, bridge_ns=sw, address=f"{address}/24")
        # The VIP lives on the director (IPVS needs it local), on loopback (a dummy
        # interface in production; this kernel has no dummy module); the LAN must not
        # learn it by ARP: the router reaches it through BGP.
        topo.address(ns, "lo", f"{VIP}/32")
        topo.sysctl(ns, "net.ipv4.conf.all.arp_ignore", 1)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_announce", 2)
        reals[name] = topo.popen(ns, [sys.executable, "-c", LISTENER, address, str(REAL_PORT)])
        config = tmp_path / f"{name}.yaml"
        config.write_text(director_config(name, address, tmp_path, bfd=bfd, hold_time=hold_time))
        daemons[name] = DaemonProcess(topo, ns, config, tmp_path / f"{name}.log")
    for daemon in daemons.values():
        start(daemon)
    return Lab(topo, router, directors, daemons, reals, tmp_path, sw, ports)


def start(daemon: DaemonProcess) -> None:
    """`DaemonProcess.start` with `tests.netns.bgp_director` instead of ``ipvsd run``."""
    daemon._log_offset = daemon.log.stat().st_size if daemon.log.exists() else 0
    with daemon.log.open("ab") as stderr:
        daemon.proc = daemon.topo.popen(
            daemon.ns,
            [sys.executable, "-m", "tests.netns.bgp_director", str(daemon.config)],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    daemon.wait_event("daemon.ready", timeout=60)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not reaped by whoever inherited it, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def bird_pid(lab: Lab, name: str) -> int:
    return int((lab.tmp / name / "bird" / "bird.pid").read_text().split()[0])


def test_ecmp_over_three_directors_and_every_withdrawal(lab: Lab) -> None:
    everyone = set(DIRECTORS.values())
    lab.wait_hops(everyone, timeout=30)

    # The sessions are polled every second: the FIB may be quicker than the status.
    deadline = time.monotonic() + 5
    while not (status := lab.status("d1")["bgp"])["sessions"][0]["up"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["announced"] == [f"{VIP}/32"]
    assert status["sessions"] == [
        {"neighbor": ROUTER, "remote_as": 65000, "state": "Established", "up": True}
    ]
    text = lab.ipvsd("d1", "status").stdout
    assert "BGP: AS 65001, speaker BIRD 2" in text
    assert f"{VIP}/32" in text

    # Drain: withdrawn at once, announced again on undrain.
    started = time.monotonic()
    lab.ipvsd("d1", "drain", "--all")
    drained_s = time.monotonic() - started
    drained_s += lab.wait_hops(everyone - {DIRECTORS["d1"]}, timeout=5)
    assert lab.status("d1")["bgp"]["prefixes"][0]["reason"] == "director drained"
    lab.ipvsd("d1", "undrain", "--all")
    lab.wait_hops(everyone, timeout=5)

    # A reload that only BIRD refuses (a link-local neighbor needs an interface) changes
    # nothing.
    config = lab.daemons["d1"].config
    good = config.read_text()
    config.write_text(
        good.replace(
            "remote_as: 65000}", 'remote_as: 65000}\n    - {address: "fe80::1", remote_as: 1}'
        )
    )
    refused = lab.ipvsd("d1", "reload", check=False)
    assert refused.returncode != 0
    assert "BIRD refused the generated config" in refused.stdout + refused.stderr
    assert lab.status("d1")["bgp"]["sessions"][0]["up"]
    # A reload that adds a service on a second VIP announces it, the first stays.
    second = "10.97.100.2"
    config.write_text(
        good.replace(
            "bgp:",
            f"    - {{address: {second}, port: 80, reals: [{{address: {DIRECTORS['d1']}, "
            f"port: {REAL_PORT}}}]}}\nbgp:",
        )
    )
    lab.ipvsd("d1", "reload")
    lab.wait_hops({DIRECTORS["d1"]}, timeout=5, vip=second)
    assert lab.next_hops() == everyone
    assert lab.status("d1")["bgp"]["announced"] == [f"{VIP}/32", f"{second}/32"]

    # The real fails (its listener stops): withdrawn after `fall` checks; back when it is up.
    lab.reals["d1"].kill()
    failed_s = lab.wait_hops(everyone - {DIRECTORS["d1"]}, timeout=10)
    lab.reals["d1"] = lab.topo.popen(
        lab.directors["d1"], [sys.executable, "-c", LISTENER, DIRECTORS["d1"], str(REAL_PORT)]
    )
    lab.wait_hops(everyone, timeout=10)

    # A dead host (its link cut: nothing is sent, no FIN): BFD sees it, 3 x 100 ms.
    started = time.monotonic()
    lab.topo.exec(lab.switch, ["ip", "link", "set", lab.ports["d1"], "down"])
    lab.wait_hops(everyone - {DIRECTORS["d1"]}, timeout=15)
    dead_s = time.monotonic() - started

    # SIGKILL: BIRD dies with ipvsd, the kernel ends the session, the router withdraws.
    pid = bird_pid(lab, "d2")
    started = time.monotonic()
    lab.daemons["d2"].kill()
    lab.wait_hops({DIRECTORS["d3"]}, timeout=15)
    killed_s = time.monotonic() - started
    assert not alive(pid), "BIRD outlived its SIGKILLed ipvsd"

    # BIRD itself dies: its session ends (withdrawn), ipvsd starts it again (announced).
    os.kill(bird_pid(lab, "d3"), signal.SIGKILL)
    lab.wait_hops(set(), timeout=5)
    lab.wait_hops({DIRECTORS["d3"]}, timeout=15)

    # Graceful stop: withdraws first, then stops.
    started = time.monotonic()
    lab.daemons["d3"].terminate()
    lab.wait_hops(set(), timeout=15)
    stopped_s = time.monotonic() - started
    assert lab.daemons["d3"].proc is not None
    assert lab.daemons["d3"].proc.wait(30) == 0
    print(
        f"\nwithdrawal seen in the router's FIB: drain {drained_s * 1000:.0f} ms, "
        f"failed real {failed_s * 1000:.0f} ms (checks every 0.2 s, fall 2), "
        f"dead host {dead_s * 1000:.0f} ms (BFD 3 x 100 ms), "
        f"SIGKILL {killed_s * 1000:.0f} ms, graceful stop {stopped_s * 1000:.0f} ms"
    )
    assert killed_s < 2, "SIGKILL must not wait for the hold timer"
    assert dead_s < 2, "BFD must see a dead host before the hold timer (9 s)"


def test_without_bfd_a_dead_host_waits_for_the_hold_timer(tmp_path: Path) -> None:
    names = {"d1": DIRECTORS["d1"], "d2": DIRECTORS["d2"]}
    with Topology() as topo:
        lab = build(topo, tmp_path, names, bfd=False, hold_time=3)
        lab.wait_hops(set(names.values()), timeout=30)
        started = time.monotonic()
        lab.topo.exec(lab.switch, ["ip", "link", "set", lab.ports["d1"], "down"])
        lab.wait_hops({DIRECTORS["d2"]}, timeout=15)
        dead_s = time.monotonic() - started
        print(f"\nwithout BFD, hold time 3 s: a dead host withdrawn after {dead_s:.2f} s")
        assert 1.5 < dead_s < 5  # the hold timer runs from the last keepalive heard
