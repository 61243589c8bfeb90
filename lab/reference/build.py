"""Building a layout's hosts as namespaces: links, addresses, sysctls, configs.

All hosts plug into bridges of one ``switch`` namespace: ``front``
(192.168.1.0/24: directors' eth1, client, DR reals), for NAT ``back``
(192.168.2.0/24: directors' eth2, reals) and, with a monitor, ``mgmt``
(192.168.100.0/24: directors' mgmt, the monitor host). Directors get the
interface names of design.md (eth1, eth2), the other hosts eth0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.reference.hosts import Real
from lab.reference.spec import (
    BACK_DEV,
    CLIENT,
    FRONT_DEV,
    FRONT_PREFIX,
    MGMT_DEV,
    MONITOR,
    LabSpec,
    director_config_text,
    metrics_listen,
)


@dataclass
class Director:
    """A director host.

    Attributes:
        name: ``director1`` ...
        ns: its namespace.
        address: its own eth1 address.
        priorities: VRRP instance name -> its priority there.
        daemon: its ipvsd process (``daemon.config`` is the config file,
            ``daemon.log`` the JSON log).
        socket: its control socket (``ipvsd status --socket``).
        metrics_listen: its /metrics ``ADDRESS:PORT`` (inside its namespace).
    """

    name: str
    ns: str
    address: str
    priorities: dict[str, int]
    daemon: DaemonProcess
    socket: Path
    metrics_listen: str


@dataclass
class Hosts:
    """What `build_hosts` made: directors and reals by name, the client's namespace."""

    directors: dict[str, Director]
    reals: dict[str, Real]
    client: str
    monitor: str | None = None
    """The monitor host's namespace (``spec.monitor``), else None."""


def build_hosts(topo: Topology, spec: LabSpec, workdir: Path) -> Hosts:
    """Create `spec`'s hosts in `topo` and write the directors' configs into `workdir`.

    Nothing is started: the directors' `DaemonProcess` and the reals' nginx
    are ready to be.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    switch = topo.netns("switch")
    topo.bridge("front", ns=switch)
    if spec.forward == "nat":
        topo.bridge("back", ns=switch)
    if spec.monitor:
        topo.bridge("mgmt", ns=switch)

    def plug(ns: str, dev: str, bridge: str, address: str) -> None:
        topo.veth(ns, dev, bridge=bridge, bridge_ns=switch, address=f"{address}/{FRONT_PREFIX}")

    directors = {}
    for director in spec.directors:
        ns = topo.netns(director.name)
        plug(ns, FRONT_DEV, "front", director.address)
        if director.back_address is not None:
            plug(ns, BACK_DEV, "back", director.back_address)
            topo.sysctl(ns, "net.ipv4.ip_forward", 1)
            for key in ("all", "default", FRONT_DEV, BACK_DEV):
                topo.sysctl(ns, f"net.ipv4.conf.{key}.send_redirects", 0)
        if spec.monitor:
            plug(ns, MGMT_DEV, "mgmt", director.mgmt_address)
        config = workdir / f"{director.name}.yaml"
        config.write_text(director_config_text(spec, director.name, workdir))
        directors[director.name] = Director(
            name=director.name,
            ns=ns,
            address=director.address,
            priorities={i.name: i.priorities[director.name] for i in spec.instances},
            daemon=DaemonProcess(topo, ns, config, workdir / f"{director.name}.log"),
            socket=workdir / f"{director.name}.sock",
            metrics_listen=metrics_listen(spec, director.name),
        )

    reals = {}
    for name, address in spec.reals.items():
        ns = topo.netns(name)
        if spec.forward == "nat":
            plug(ns, "eth0", "back", address)
            assert spec.real_gateway is not None
            topo.route(ns, "default", via=spec.real_gateway)
        else:
            # DR: the VIPs on lo; only the directors answer ARP for them.
            for key in ("all", "default"):
                topo.sysctl(ns, f"net.ipv4.conf.{key}.arp_ignore", 1)
                topo.sysctl(ns, f"net.ipv4.conf.{key}.arp_announce", 2)
            plug(ns, "eth0", "front", address)
            for vip in spec.service_vips:
                topo.address(ns, "lo", f"{vip}/32")
        reals[name] = Real(topo, name, ns, address, workdir / name)
        reals[name].prepare()

    client = topo.netns("client")
    plug(client, "eth0", "front", CLIENT)
    monitor = None
    if spec.monitor:
        monitor = topo.netns("monitor")
        plug(monitor, "eth0", "mgmt", MONITOR)
    return Hosts(directors, reals, client, monitor)
