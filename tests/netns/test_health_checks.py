"""Health checkers against a real server in another network namespace, on the host kernel.

Two namespaces joined by a veth pair: ``dir`` (the director, 10.97.0.1/24),
where the checks run, and ``real`` (10.97.0.2/24), where a Python HTTP server
listens on port 8080. The server answers with the status written in a
control file, so a test can break and fix it without restarting it.

Each check runs on a fresh event loop with the thread inside ``dir``
(`probe`), so every socket it opens, and every command it runs, lives there.

How a real is blackholed here: this kernel has no qdiscs (no netem) and the
host has no iptables/nft binaries, and a ``blackhole`` route fails connect()
at once with EINVAL rather than hanging. So ``dir`` gets a permanent neighbour
entry mapping 10.97.0.2 to a MAC address nobody has. Frames still cross the
veth, but the real's stack drops them (PACKET_OTHERHOST), exactly as if the
host had died: the SYN goes unanswered and connect() hangs. Deleting the entry
lets ARP find the real again. A stuck application (listening, accepting in the
kernel's backlog, never answering) is a SIGSTOPped server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import CheckType
from ipvsd.health.checks import CheckResult, run_check, target_for
from lab.netns import Topology, in_netns

DIR_IP = ip_address("10.97.0.1")
REAL_IP = ip_address("10.97.0.2")
PORT = 8080
TIMEOUT_S = 0.5
SLACK_S = 0.5
NOBODYS_MAC = "02:00:5e:97:00:99"

SERVER = """
import http.server, pathlib, sys
control = pathlib.Path(sys.argv[1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(control.read_text())
        body = b"ok\\n" if status == 200 else b"broken\\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), Handler)
print("ready", flush=True)
server.serve_forever()
"""


@dataclass
class Lab:
    topo: Topology
    dir: str
    real: str
    control: Path
    server: subprocess.Popen[Any] | None = None

    def start_server(self) -> None:
        assert self.server is None
        argv = [sys.executable, "-c", SERVER, str(self.control), str(REAL_IP), str(PORT)]
        proc = self.topo.popen(self.real, argv, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        with proc.stdout:  # it prints nothing after this line
            assert proc.stdout.readline() == "ready\n", "the test server did not start"
        self.server = proc

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.terminate()  # our own child, by PID
        self.server.wait(timeout=5)
        self.server = None

    def set_status(self, status: int) -> None:
        self.control.write_text(f"{status}\n")

    def blackhole(self) -> None:
        self.topo.exec(self.dir, ["ip", "neigh", "replace", str(REAL_IP), "lladdr",
                                  NOBODYS_MAC, "dev", "eth0", "nud", "permanent"])  # fmt: skip

    def unblackhole(self) -> None:
        self.topo.exec(self.dir, ["ip", "neigh", "del", str(REAL_IP), "dev", "eth0"])

    def rx_packets(self) -> int:
        """Packets the real's eth0 has received."""
        out = self.topo.exec(self.real, ["ip", "-j", "-s", "link", "show", "dev", "eth0"]).stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


@pytest.fixture
def lab(topology: Topology, tmp_path: Path) -> Iterator[Lab]:
    director, real = topology.netns("dir"), topology.netns("real")
    topology.veth(director, "eth0", peer_ns=real, peer_name="eth0", address=f"{DIR_IP}/24")
    topology.address(real, "eth0", f"{REAL_IP}/24")
    made = Lab(topology, director, real, tmp_path / "status")
    made.set_status(200)
    made.start_server()
    yield made
    if made.server is not None:
        os.kill(made.server.pid, signal.SIGCONT)  # in case a test stopped it


def probe(ns: str, cfg: CheckConfig) -> CheckResult:
    """Run one check of the real from namespace `ns`, on a loop of its own."""
    with in_netns(ns):
        return asyncio.run(run_check(target_for(cfg, REAL_IP, PORT)))


def tcp(**fields: Any) -> CheckConfig:
    return CheckConfig(type=CheckType.TCP, timeout=TIMEOUT_S, **fields)


def http(**fields: Any) -> CheckConfig:
    return CheckConfig(type=CheckType.HTTP, timeout=TIMEOUT_S, **fields)


CONNECT = (
    "import os, socket; "
    "socket.create_connection((os.environ['IPVSD_REAL_ADDRESS'], "
    "int(os.environ['IPVSD_REAL_PORT'])), timeout=1).close()"
)


def exec_connect() -> CheckConfig:
    """An exec check that connects to the target it is given in its environment."""
    return CheckConfig(type=CheckType.EXEC, timeout=2.0, command=(sys.executable, "-c", CONNECT))


def assert_timed_out(result: CheckResult, phase: str) -> None:
    assert not result.ok
    assert result.reason == f"timeout after {TIMEOUT_S} s ({phase})"
    assert TIMEOUT_S <= result.duration_s < TIMEOUT_S + SLACK_S


def test_every_check_passes_against_a_healthy_real(lab: Lab) -> None:
    result = probe(lab.dir, tcp())
    assert (result.ok, result.reason) == (True, "connected")
    assert result.duration_s < TIMEOUT_S
    result = probe(lab.dir, http(body_regex="^ok$", host="www.example"))
    assert result.ok, result.reason
    result = probe(lab.dir, exec_connect())
    assert result.ok, result.reason
    result = probe(lab.dir, tcp(source_address=DIR_IP))
    assert result.ok, result.reason


def test_a_stopped_server_is_refused_then_recovers(lab: Lab) -> None:
    lab.stop_server()
    assert probe(lab.dir, tcp()).reason == "connection refused"
    assert probe(lab.dir, http()).reason == "connection refused"
    result = probe(lab.dir, exec_connect())
    assert not result.ok
    assert result.reason.startswith("exit status 1: ConnectionRefusedError"), result.reason

    lab.start_server()
    assert probe(lab.dir, tcp()).ok
    assert probe(lab.dir, http()).ok
    assert probe(lab.dir, exec_connect()).ok


def test_an_http_error_is_down_until_the_server_is_fixed(lab: Lab) -> None:
    lab.set_status(500)
    assert probe(lab.dir, http()).reason == "HTTP 500 (expected 200)"
    assert probe(lab.dir, tcp()).ok  # still listening: only the HTTP check sees it

    lab.set_status(200)
    result = probe(lab.dir, http(body_regex="ok"))
    assert result.ok, result.reason


def test_a_blackholed_real_times_out_then_recovers(lab: Lab) -> None:
    assert probe(lab.dir, tcp()).ok  # ARP has resolved the real's MAC
    lab.blackhole()
    assert_timed_out(probe(lab.dir, tcp()), "connect")
    assert_timed_out(probe(lab.dir, http()), "connect")

    lab.unblackhole()
    result = probe(lab.dir, tcp())
    assert result.ok, result.reason
    assert probe(lab.dir, http()).ok


def test_a_hung_server_times_out_in_the_response_then_recovers(lab: Lab) -> None:
    assert lab.server is not None
    os.kill(lab.server.pid, signal.SIGSTOP)  # our own child, by PID
    try:
        assert probe(lab.dir, tcp()).ok  # the kernel still completes handshakes (backlog)
        assert_timed_out(probe(lab.dir, http()), "response")
    finally:
        os.kill(lab.server.pid, signal.SIGCONT)
    result = probe(lab.dir, http())
    assert result.ok, result.reason


def test_the_source_address_must_be_one_of_the_directors(lab: Lab) -> None:
    result = probe(lab.dir, tcp(source_address=ip_address("10.97.0.3")))
    assert not result.ok
    assert result.reason == "cannot assign requested address (bind to 10.97.0.3)"
    assert probe(lab.dir, tcp(source_address=DIR_IP)).ok


def test_the_blackhole_delivers_frames_that_the_real_drops(lab: Lab) -> None:
    """A wrong destination MAC, not a missing route or a down link: the SYNs arrive, unanswered."""
    lab.blackhole()
    before = lab.rx_packets()
    assert_timed_out(probe(lab.dir, tcp()), "connect")
    assert lab.rx_packets() > before
    route = lab.topo.exec(lab.dir, ["ip", "route", "get", str(REAL_IP)]).stdout
    assert route.startswith(f"{REAL_IP} dev eth0")
