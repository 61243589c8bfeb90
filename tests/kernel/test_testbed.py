"""Smoke tests of the kernel test bed: IPVS is really there and usable.

Inside UML (IPVSD_UML=1) the test bed owns the whole kernel; on a native IPVS
kernel these tests touch only what they create (10.99.0.0/24 services and
namespaces), so cleanup deletes our own services rather than `ipvsadm -C`.
"""

from __future__ import annotations

import subprocess

import pytest

from lab.netns import Topology, ip, ns_exec

from .conftest import IPVS_PROC, in_uml

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]


def ipvsadm(*args: str) -> str:
    done = subprocess.run(["ipvsadm", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ipvsadm {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def test_proc_net_ip_vs_is_readable() -> None:
    lines = IPVS_PROC.read_text().splitlines()
    assert lines[0].startswith("IP Virtual Server version")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_ipvsadm_adds_and_lists_a_service(scheduler: str) -> None:
    service = "10.99.0.1:80"
    ipvsadm("-A", "-t", service, "-s", scheduler)
    try:
        ipvsadm("-a", "-t", service, "-r", "10.99.0.2:80", "-m", "-w", "2")
        listing = ipvsadm("-Ln", "-t", service)
        assert f"TCP  {service} {scheduler}" in listing
        assert "-> 10.99.0.2:80" in listing
    finally:
        ipvsadm("-D", "-t", service)
    assert service not in ipvsadm("-Ln")


def test_kernel_loads_modules_on_demand(topology: Topology) -> None:
    """`ip link add type ipip` makes the kernel request_module() rtnl-link-ipip,
    which inside UML only works through lab.uml's modprobe wrapper."""
    if not in_uml():
        pytest.skip("checks lab.uml's modprobe wrapper; the native kernel uses its own modprobe")
    ns = topology.netns("mod")
    ip("link", "add", "tun0", "type", "ipip", "local", "10.99.3.1", "remote", "10.99.3.2", ns=ns)
    assert "tun0" in ip("-br", "link", ns=ns).stdout


def test_two_namespaces_ping_over_a_bridge(topology: Topology) -> None:
    # Inside UML the bridge sits in the root namespace (as the demo's will);
    # natively it gets its own namespace so the host's root namespace is untouched.
    switch = None if in_uml() else topology.netns("sw")
    bridge = topology.bridge("br0", ns=switch)
    a, b = topology.netns("a"), topology.netns("b")
    topology.veth(a, "eth0", bridge=bridge, bridge_ns=switch, address="10.99.0.11/24")
    topology.veth(b, "eth0", bridge=bridge, bridge_ns=switch, address="10.99.0.12/24")
    ns_exec(a, ["ping", "-c", "1", "-W", "3", "10.99.0.12"])
    ns_exec(b, ["ping", "-c", "1", "-W", "3", "10.99.0.11"])
