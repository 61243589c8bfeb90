"""The reference scenario's hosts as namespaces (one director, no VRRP yet), for tests and the demo.

NAT: the client segment 192.168.1.0/24 (director 192.168.1.10 + VIP .200,
client .50) and a real-server segment 192.168.2.0/24 (director .1, reals .30
and .40 with the director as default gateway), so replies pass the director.

DR: one segment: director .10 + VIP, reals .30 and .40 holding the VIP on lo
with arp_ignore=1 / arp_announce=2 (only the director answers ARP for it),
client .50.

Each real runs a small Python server: HTTP on port 80 answering its own name
(HTTP/1.0, so every request is a connection that closes and lingers in IPVS
as InActConn), and a line echo server on port 9000 for long-lived connections.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.netns import Topology

VIP = "192.168.1.200"

REAL_SERVER = textwrap.dedent(
    """
    import http.server, socketserver, sys, threading
    name = sys.argv[1]
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_HEAD = do_GET
        def log_message(self, *args):
            pass
    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(name.encode() + b" " + line)
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
    http_server = Server(("0.0.0.0", 80), Page)
    echo_server = Server(("0.0.0.0", 9000), Echo)
    threading.Thread(target=echo_server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    http_server.serve_forever()
    """
)

CLIENT = textwrap.dedent(
    """
    import http.client, json, sys
    host, count = sys.argv[1], int(sys.argv[2])
    results = []
    for _ in range(count):
        try:
            conn = http.client.HTTPConnection(host, 80, timeout=3)
            conn.request("GET", "/")
            response = conn.getresponse()
            results.append([response.status, response.read().decode()])
            conn.close()
        except OSError as exc:
            results.append([0, str(exc)])
    print(json.dumps(results))
    """
)


@dataclass
class Scenario:
    """Namespaces of one scenario; `director`, `client`, `reals` are namespace names."""

    topo: Topology
    director: str
    client: str
    reals: dict[str, str]  # namespace -> address
    workdir: Path
    servers: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    def start_real_servers(self) -> None:
        for ns in self.reals:
            self.start_server(ns)

    def start_server(self, ns: str, name: str | None = None) -> None:
        """Start the web + echo server in namespace `ns`, answering `name` (its address)."""
        script = self.workdir / "real_server.py"
        script.write_text(REAL_SERVER)
        proc = self.topo.popen(
            ns,
            [sys.executable, str(script), name or self.reals[ns]],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        self.servers[ns] = proc

    def stop_server(self, ns: str) -> None:
        """Stop the server in `ns` (connections to it are then refused)."""
        proc = self.servers.pop(ns)
        proc.terminate()
        proc.wait(10)

    def requests(self, count: int) -> list[tuple[int, str]]:
        """`count` HTTP requests from the client to the VIP, each on its own connection."""
        script = self.workdir / "client.py"
        script.write_text(CLIENT)
        out = self.topo.exec(
            self.client, [sys.executable, str(script), VIP, str(count)], timeout=120
        )
        return [(status, body) for status, body in json.loads(out.stdout)]


def nat_scenario(topo: Topology, workdir: Path, *, sorry: str | None = None) -> Scenario:
    front = topo.netns("front")
    back = topo.netns("back")
    topo.bridge("br0", ns=front)
    topo.bridge("br0", ns=back)
    director = topo.netns("dir")
    client = topo.netns("cl")
    topo.veth(
        director, "eth1", bridge="br0", bridge_ns=front, address=["192.168.1.10/24", f"{VIP}/24"]
    )
    topo.veth(director, "eth2", bridge="br0", bridge_ns=back, address="192.168.2.1/24")
    topo.sysctl(director, "net.ipv4.ip_forward", 1)
    topo.veth(client, "eth0", bridge="br0", bridge_ns=front, address="192.168.1.50/24")
    reals = {}
    for name, address in (("r1", "192.168.2.30"), ("r2", "192.168.2.40")):
        ns = topo.netns(name)
        topo.veth(ns, "eth0", bridge="br0", bridge_ns=back, address=f"{address}/24")
        topo.route(ns, "default", via="192.168.2.1")
        reals[ns] = address
    scenario = Scenario(topo, director, client, reals, workdir)
    if sorry is not None:
        # A sorry server on the real-server segment (not one of `reals`).
        ns = topo.netns("sorry")
        topo.veth(ns, "eth0", bridge="br0", bridge_ns=back, address=f"{sorry}/24")
        topo.route(ns, "default", via="192.168.2.1")
        scenario.start_server(ns, name="sorry")
    return scenario


def dr_scenario(topo: Topology, workdir: Path) -> Scenario:
    segment = topo.netns("seg")
    topo.bridge("br0", ns=segment)
    director = topo.netns("dir")
    client = topo.netns("cl")
    topo.veth(
        director, "eth1", bridge="br0", bridge_ns=segment, address=["192.168.1.10/24", f"{VIP}/24"]
    )
    topo.veth(client, "eth0", bridge="br0", bridge_ns=segment, address="192.168.1.50/24")
    reals = {}
    for name, address in (("r1", "192.168.1.30"), ("r2", "192.168.1.40")):
        ns = topo.netns(name)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_ignore", 1)
        topo.sysctl(ns, "net.ipv4.conf.all.arp_announce", 2)
        topo.veth(ns, "eth0", bridge="br0", bridge_ns=segment, address=f"{address}/24")
        topo.address(ns, "lo", f"{VIP}/32")
        reals[ns] = address
    return Scenario(topo, director, client, reals, workdir)


def one_arm_nat_scenario(topo: Topology, workdir: Path, *, with_vip: bool = True) -> Scenario:
    """design.md's one segment: director .10 + VIP, reals .30/.40, client .50, NAT.

    Replies must pass the director to be un-NATed, so each real holds its
    address as /32 (no on-link route to the client) with an on-link route to
    the director and the director as default gateway; the director forwards
    without ICMP redirects. (With VRRP, the gateway becomes a second VIP.)
    """
    segment = topo.netns("seg")
    topo.bridge("br0", ns=segment)
    director = topo.netns("director1")
    client = topo.netns("client")
    topo.veth(
        director,
        "eth1",
        bridge="br0",
        bridge_ns=segment,
        address=["192.168.1.10/24", f"{VIP}/24"] if with_vip else "192.168.1.10/24",
    )
    topo.sysctl(director, "net.ipv4.ip_forward", 1)
    for key in ("all", "default", "eth1"):
        topo.sysctl(director, f"net.ipv4.conf.{key}.send_redirects", 0)
    topo.veth(client, "eth0", bridge="br0", bridge_ns=segment, address="192.168.1.50/24")
    reals = {}
    for name, address in (("real1", "192.168.1.30"), ("real2", "192.168.1.40")):
        ns = topo.netns(name)
        topo.sysctl(ns, "net.ipv4.conf.all.accept_redirects", 0)
        topo.veth(ns, "eth0", bridge="br0", bridge_ns=segment, address=f"{address}/32")
        topo.route(ns, "192.168.1.10", dev="eth0")
        topo.route(ns, "default", via="192.168.1.10")
        reals[ns] = address
    return Scenario(topo, director, client, reals, workdir)


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> float:
    """Seconds until `predicate()` is true; AssertionError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
