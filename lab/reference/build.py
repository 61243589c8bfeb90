"""Building a layout's hosts as namespaces: links, addresses, sysctls, configs.

All hosts plug into bridges of one ``switch`` namespace: ``front``
(192.168.1.0/24: directors' eth1, client, DR reals), for NAT ``back``
(192.168.2.0/24: directors' eth2, reals) and, with a monitor, ``mgmt``
(192.168.100.0/24: directors' mgmt, the monitor host). Directors get the
interface names of design.md (eth1, eth2), the other hosts eth0.

In the ``dualstack`` layout the front hosts also get their fd00:1::/64
address, and the reals the IPv6 VIP on ``lo`` (`lab.reference.spec` says why
no ND counterpart of ``arp_ignore`` is needed). On the directors ipvsd adds
the IPv6 VIP deprecated (``preferred_lft 0``), so the directors' own
connections (health checks) never leave from it: the reals, which hold the
VIP on ``lo``, would answer themselves (docs/vrrp-ipv6.md). Every IPv6 address is added
``nodad``: nothing waits for Duplicate Address Detection, and no address
stays "tentative" (unusable as a source) after a link comes back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.daemon import DaemonProcess
from lab.netns import Topology, ip
from lab.reference.hosts import Real
from lab.reference.spec import (
    BACK_DEV,
    CLIENT,
    FRONT6_PREFIX,
    FRONT_DEV,
    FRONT_PREFIX,
    MGMT_DEV,
    MONITOR,
    LabSpec,
    director_config_text,
    is_ipv6,
    metrics_listen,
)


def add_ipv6(ns: str, dev: str, cidr: str) -> None:
    """Add IPv6 address `cidr` to `dev` in `ns` without DAD (its namespace takes it away)."""
    ip("address", "add", cidr, "dev", dev, "nodad", ns=ns)


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

    if spec.client6 is not None:
        # Snooping would forward ff02::12 (VRRPv3) and the solicited-node groups only to
        # ports that reported them in MLD, with no querier here: a plain switch floods.
        ip("link", "set", "front", "type", "bridge", "mcast_snooping", "0", ns=switch)

    def plug(ns: str, dev: str, bridge: str, address: str, address6: str | None = None) -> None:
        topo.veth(ns, dev, bridge=bridge, bridge_ns=switch, address=f"{address}/{FRONT_PREFIX}")
        if address6 is not None:
            add_ipv6(ns, dev, f"{address6}/{FRONT6_PREFIX}")

    directors = {}
    for director in spec.directors:
        ns = topo.netns(director.name)
        plug(ns, FRONT_DEV, "front", director.address, director.address6)
        if director.address6 is not None:
            # Keep the own IPv6 address across `ip link set eth1 down` as IPv4 keeps its.
            topo.sysctl(ns, f"net.ipv6.conf.{FRONT_DEV}.keep_addr_on_down", 1)
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
            plug(ns, "eth0", "front", address, spec.reals6.get(name))
            for vip in spec.service_vips:
                if is_ipv6(vip):
                    add_ipv6(ns, "lo", f"{vip}/128")
                else:
                    topo.address(ns, "lo", f"{vip}/32")
        reals[name] = Real(topo, name, ns, address, workdir / name, spec.reals6.get(name))
        reals[name].prepare()

    client = topo.netns("client")
    plug(client, "eth0", "front", CLIENT, spec.client6)
    monitor = None
    if spec.monitor:
        monitor = topo.netns("monitor")
        plug(monitor, "eth0", "mgmt", MONITOR)
    return Hosts(directors, reals, client, monitor)
