"""Smoke tests of the netns test bed itself (lab.netns) on the host kernel."""

from __future__ import annotations

import socket

from lab.netns import Topology, in_netns, netns_exists, sysctl_get


def _two_hosts(topo: Topology) -> tuple[str, str]:
    switch = topo.netns("sw")
    bridge = topo.bridge("br0", ns=switch)
    a, b = topo.netns("a"), topo.netns("b")
    topo.veth(a, "eth0", bridge=bridge, bridge_ns=switch, address="10.98.0.1/24")
    topo.veth(b, "eth0", bridge=bridge, bridge_ns=switch, address="10.98.0.2/24")
    return a, b


def test_two_namespaces_ping_over_a_bridge() -> None:
    with Topology() as topo:
        a, b = _two_hosts(topo)
        topo.exec(a, ["ping", "-c", "1", "-W", "2", "10.98.0.2"])
        topo.exec(b, ["ping", "-c", "1", "-W", "2", "10.98.0.1"])
        made = list(topo.namespaces)
    assert made
    assert not any(netns_exists(ns) for ns in made), "teardown left namespaces behind"


def test_in_netns_sockets_and_sysctl(topology: Topology) -> None:
    a, b = _two_hosts(topology)
    topology.sysctl(a, "net.ipv4.ip_forward", 1)
    assert sysctl_get(a, "net.ipv4.ip_forward") == "1"
    assert sysctl_get(b, "net.ipv4.ip_forward") == "0"
    with in_netns(a):
        server = socket.create_server(("10.98.0.1", 0))
    with server:
        port = server.getsockname()[1]
        with in_netns(b):
            client = socket.create_connection(("10.98.0.1", port), timeout=2)
        with client:
            conn, peer = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
    assert peer[0] == "10.98.0.2"
