"""The three reference layouts as data, and each director's ipvsd config built from them (pure).

Addresses follow design.md. Every variant has a client 192.168.1.50 and two
nginx reals; what differs is the directors, the VRRP instances and how
traffic reaches the reals:

``dr``
    One segment 192.168.1.0/24: director1 .10 (priority 100), director2 .20
    (90), reals .30 and .40 holding the VIP on ``lo``. Instance VI_1 (vrid 51)
    on eth1 owns VIP 192.168.1.200/24; services VIP:80 (http check) and
    VIP:9000 (line echo, tcp check) forward by DR.

``nat``
    The client side as in ``dr``; the reals on their own segment
    192.168.2.0/24 (directors' eth2 .10/.20, reals .30/.40). The reals' default
    gateway is a second VIP, 192.168.2.254, of instance VI_2 (vrid 52) on
    eth2, in one sync group with VI_1, so both addresses move together. The
    directors' own eth2 addresses are on-link for the reals (same /24), so the
    BACKUP's health checks are answered directly, never through the master
    (design.md's pitfall).

``all-active``
    The ``dr`` segment with three directors (.10, .20, .25) and the VIPs and
    priorities ``ipvsd plan`` gives for design.md's question (3 directors,
    1 failure tolerated, 1.5 Gbit/s over 1 Gbit/s links; `all_active_plan`):
    six VIPs 192.168.1.201-.206, one VRRP instance each (VI_1..VI_6, vrids
    51-56). Director *k* is MASTER (priority 100) for two VIPs; for the first
    the next director has 90 and the one after 80, for the second the other
    way round, so a failed director's two VIPs fall to two different
    survivors.

DR and NAT run the IPVS connection-sync daemon following VI_1
(``ipvs.sync_daemon``), so established connections survive a failover.

``dualstack``
    The ``dr`` layout plus IPv6 on the same segment, fd00:1::/64 (a ULA
    prefix): directors ::10/::20, reals ::30/::40, client ::50, every lab
    address added ``nodad`` so nothing waits for Duplicate Address Detection.
    Instance VI_6 (VRRPv3, vrid 61) owns VIP fd00:1::200/64 and is in one
    sync group with VI_1, so both VIPs move together. Services: the ``dr``
    ones plus [fd00:1::200]:80 (DR, http check to the reals' IPv6 addresses).
    The reals hold fd00:1::200/128 on ``lo`` and need no counterpart of
    ``arp_ignore``/``arp_announce``: Linux answers a Neighbor Solicitation
    only for an address of the interface it arrived on (``ndisc_recv_ns``
    looks the target up with ``ipv6_get_ifaddr(..., dev, strict=1)``), and
    picks an NS's source from the outgoing interface's addresses the same
    way, so an address on ``lo`` is never announced on eth0; IPv4's
    ``arp_ignore=0`` default answers ARP for any local address on any
    interface, hence the sysctls there. The directors keep their IPv6
    addresses when eth1 goes down (``keep_addr_on_down``), as IPv4 addresses
    are kept, so a failed-and-restored director can check its reals again,
    and give the IPv6 VIP an address label of its own so that their health
    checks never leave from it (`lab.reference.build` explains).

With ``monitor`` (any layout) a management segment 192.168.100.0/24 joins
the directors (``mgmt``, .10/.20/.25 as on the front) and a ``monitor`` host
(.100) that runs Prometheus (`lab.prometheus`); each director's metrics then
listen on its management address, so they stay reachable while its eth1 is
down, as an operator's monitoring network would.

``examples/dr.yaml``, ``examples/nat-sync-group.yaml``,
``examples/dualstack.yaml`` and ``examples/all-active/`` are these configs
written out for operators, with comments; tests/unit/test_config_examples.py
fails when a layout here and its example differ, so change both together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from ipvsd.plan.configs import vip_pool
from ipvsd.plan.layout import plan_layout
from ipvsd.plan.render import Plan
from ipvsd.plan.units import parse_rate

Variant = Literal["dr", "nat", "all-active", "dualstack"]
VARIANTS: tuple[Variant, ...] = ("dr", "nat", "all-active", "dualstack")

CLIENT = "192.168.1.50"
VIP = "192.168.1.200"
FRONT6 = "fd00:1::"
"""The front segment's IPv6 prefix (a /64) in the ``dualstack`` layout."""
CLIENT6 = f"{FRONT6}50"
VIP6 = f"{FRONT6}200"
FRONT6_PREFIX = 64
NAT_GATEWAY = "192.168.2.254"
"""The reals' default gateway in the NAT variant: a VIP that moves with VIP."""
ALL_ACTIVE_DIRECTORS = {
    "director1": "192.168.1.10",
    "director2": "192.168.1.20",
    "director3": "192.168.1.25",
}
ALL_ACTIVE_TOLERATE = 1
ALL_ACTIVE_DEMAND = "1.5G"
ALL_ACTIVE_LINK = "1G"
ALL_ACTIVE_POOL = "192.168.1.201/24"
"""The All-Active question (design.md), as `ipvsd plan` arguments."""
ALL_ACTIVE_PLAN_ARGS = (
    "--directors",
    ",".join(ALL_ACTIVE_DIRECTORS),
    "--tolerate",
    str(ALL_ACTIVE_TOLERATE),
    "--demand",
    ALL_ACTIVE_DEMAND,
    "--link",
    ALL_ACTIVE_LINK,
    "--vip-pool",
    ALL_ACTIVE_POOL,
)
WEB_PORT = 80
ECHO_PORT = 9000
ADVERT_INT = 1
"""Seconds between VRRP adverts (every instance)."""
METRICS_LISTEN = "127.0.0.1:9477"
"""Each director's metrics endpoint, inside its own namespace (without ``monitor``)."""
METRICS_PORT = 9477
FRONT_DEV = "eth1"
BACK_DEV = "eth2"
MGMT_DEV = "mgmt"
FRONT_PREFIX = 24
MGMT_NETWORK = "192.168.100"
MONITOR = f"{MGMT_NETWORK}.100"
"""The monitor host's address on the management segment (``monitor`` layouts)."""


def is_ipv6(address: str) -> bool:
    """Whether `address` (no prefix length) is an IPv6 address."""
    return ":" in address


def url_host(address: str) -> str:
    """`address` as the host part of a URL or ``HOST:PORT``: IPv6 in brackets."""
    return f"[{address}]" if is_ipv6(address) else address


def endpoint(address: str, port: int) -> str:
    """``ADDRESS:PORT``, an IPv6 address in brackets (``[fd00:1::200]:80``)."""
    return f"{url_host(address)}:{port}"


@dataclass(frozen=True)
class DirectorSpec:
    """A director: its name, eth1 address, (NAT) eth2 address, (dualstack) eth1 IPv6 address."""

    name: str
    address: str
    back_address: str | None = None
    address6: str | None = None

    @property
    def mgmt_address(self) -> str:
        """Its address on the management segment: the front address's host part."""
        return f"{MGMT_NETWORK}.{self.address.rsplit('.', 1)[1]}"


@dataclass(frozen=True)
class InstanceSpec:
    """One VRRP instance as configured on every director."""

    name: str
    vrid: int
    interface: str
    vips: tuple[str, ...]
    """Virtual addresses as ``ADDRESS/PREFIX``."""
    priorities: Mapping[str, int]
    """Director name -> priority; the highest one is the expected MASTER."""
    version: int = 2
    """VRRP version: 3 for an IPv6 instance (RFC 5798)."""

    @property
    def addresses(self) -> tuple[str, ...]:
        """The VIPs without their prefix length."""
        return tuple(vip.split("/")[0] for vip in self.vips)

    @property
    def master(self) -> str:
        """The director that should be MASTER while all are up."""
        return max(self.priorities, key=lambda name: self.priorities[name])

    def failover_order(self) -> list[str]:
        """Directors from the highest priority to the lowest."""
        return sorted(self.priorities, key=lambda name: -self.priorities[name])

    def skew_time(self, director: str) -> float:
        """RFC 3768 §6.1 Skew_Time of `director`: (256 - priority) / 256 seconds."""
        return (256 - self.priorities[director]) / 256


@dataclass(frozen=True)
class CheckSpec:
    """Health-check timing shared by every service of a layout."""

    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2


@dataclass(frozen=True)
class LabSpec:
    """Everything that tells one layout from another."""

    variant: Variant
    forward: Literal["dr", "nat"]
    directors: tuple[DirectorSpec, ...]
    reals: Mapping[str, str]
    """Real name -> address."""
    instances: tuple[InstanceSpec, ...]
    service_vips: tuple[str, ...]
    """One web service (port 80) per VIP here, to the reals of the VIP's family."""
    echo: bool = True
    """Also a line-echo service on ECHO_PORT of the first VIP (long-lived connections)."""
    sync_groups: tuple[tuple[str, ...], ...] = ()
    sync_daemon: str | None = None
    """VRRP instance the IPVS connection-sync daemon follows; None: no sync daemon."""
    real_gateway: str | None = None
    """NAT: the reals' default gateway (a VIP)."""
    check: CheckSpec = field(default_factory=CheckSpec)
    monitor: bool = False
    """A management segment and a monitor host for Prometheus (see the module docstring)."""
    reals6: Mapping[str, str] = field(default_factory=dict)
    """Real name -> IPv6 address (``dualstack``), empty in IPv4-only layouts."""
    client6: str | None = None
    """The client's IPv6 address (``dualstack``)."""

    def director(self, name: str) -> DirectorSpec:
        """The director called `name`."""
        return next(d for d in self.directors if d.name == name)

    def instance_of(self, vip: str) -> InstanceSpec:
        """The instance that owns `vip` (an address, no prefix)."""
        return next(i for i in self.instances if vip in i.addresses)

    @property
    def all_vips(self) -> tuple[str, ...]:
        """Every virtual address (service VIPs and, in NAT, the gateway)."""
        return tuple(a for i in self.instances for a in i.addresses)

    @property
    def clients(self) -> tuple[str, ...]:
        """The client's addresses: IPv4, and IPv6 in ``dualstack``."""
        return (CLIENT,) if self.client6 is None else (CLIENT, self.client6)

    def real_addresses(self, vip: str) -> dict[str, str]:
        """Real name -> its address of `vip`'s family (what a service on `vip` forwards to)."""
        return dict(self.reals6 if is_ipv6(vip) else self.reals)


def dr_spec() -> LabSpec:
    """design.md's reference scenario with DR forwarding."""
    return LabSpec(
        variant="dr",
        forward="dr",
        directors=(
            DirectorSpec("director1", "192.168.1.10"),
            DirectorSpec("director2", "192.168.1.20"),
        ),
        reals={"real1": "192.168.1.30", "real2": "192.168.1.40"},
        instances=(
            InstanceSpec(
                "VI_1", 51, FRONT_DEV, (f"{VIP}/24",), {"director1": 100, "director2": 90}
            ),
        ),
        service_vips=(VIP,),
        sync_daemon="VI_1",
    )


def nat_spec() -> LabSpec:
    """The reference scenario with NAT: reals behind the directors on 192.168.2.0/24."""
    priorities = {"director1": 100, "director2": 90}
    return LabSpec(
        variant="nat",
        forward="nat",
        directors=(
            DirectorSpec("director1", "192.168.1.10", "192.168.2.10"),
            DirectorSpec("director2", "192.168.1.20", "192.168.2.20"),
        ),
        reals={"real1": "192.168.2.30", "real2": "192.168.2.40"},
        instances=(
            InstanceSpec("VI_1", 51, FRONT_DEV, (f"{VIP}/24",), priorities),
            InstanceSpec("VI_2", 52, BACK_DEV, (f"{NAT_GATEWAY}/24",), priorities),
        ),
        service_vips=(VIP,),
        sync_groups=(("VI_1", "VI_2"),),
        sync_daemon="VI_1",
        real_gateway=NAT_GATEWAY,
    )


def all_active_plan() -> tuple[Plan, tuple[str, ...]]:
    """`ipvsd plan` for ALL_ACTIVE_PLAN_ARGS: the plan, and its VIPs as ``ADDRESS/PREFIX``."""
    layout = plan_layout(tuple(ALL_ACTIVE_DIRECTORS), ALL_ACTIVE_TOLERATE)
    vips = vip_pool(ALL_ACTIVE_POOL, layout.vips)
    names = tuple(vip.split("/")[0] for vip in vips)
    return Plan(layout, parse_rate(ALL_ACTIVE_DEMAND), parse_rate(ALL_ACTIVE_LINK), names), vips


ALL_ACTIVE_VIPS = all_active_plan()[0].vip_names
"""192.168.1.201-.206: six, as the planner answers design.md's question."""


def all_active_spec() -> LabSpec:
    """design.md's All-Active, laid out by the planner: six VIPs, each director MASTER for two."""
    plan, vips = all_active_plan()
    instances = tuple(
        InstanceSpec(f"VI_{n + 1}", 51 + n, FRONT_DEV, (vip,), plan.layout.priorities(n))
        for n, vip in enumerate(vips)
    )
    return LabSpec(
        variant="all-active",
        forward="dr",
        directors=tuple(DirectorSpec(n, a) for n, a in ALL_ACTIVE_DIRECTORS.items()),
        reals={"real1": "192.168.1.30", "real2": "192.168.1.40"},
        instances=instances,
        service_vips=plan.vip_names,
        echo=False,
        # 6 services x 2 reals x 3 directors = 36 checks: every 2 s is plenty.
        check=CheckSpec(interval=2.0, timeout=1.0, rise=1, fall=2),
    )


def dualstack_spec() -> LabSpec:
    """``dr`` plus IPv6: VI_6 (VRRPv3) with VIP fd00:1::200 in VI_1's sync group."""
    dr = dr_spec()
    priorities = {"director1": 100, "director2": 90}
    return replace(
        dr,
        variant="dualstack",
        directors=tuple(
            replace(d, address6=f"{FRONT6}{d.address.rsplit('.', 1)[1]}") for d in dr.directors
        ),
        reals6={name: f"{FRONT6}{a.rsplit('.', 1)[1]}" for name, a in dr.reals.items()},
        client6=CLIENT6,
        instances=(
            *dr.instances,
            InstanceSpec(
                "VI_6", 61, FRONT_DEV, (f"{VIP6}/{FRONT6_PREFIX}",), priorities, version=3
            ),
        ),
        service_vips=(VIP, VIP6),
        sync_groups=(("VI_1", "VI_6"),),
    )


def spec_for(variant: Variant, *, monitor: bool = False) -> LabSpec:
    """The layout called `variant` (one of VARIANTS), with a monitor host if `monitor`."""
    builders = {
        "dr": dr_spec,
        "nat": nat_spec,
        "all-active": all_active_spec,
        "dualstack": dualstack_spec,
    }
    if variant not in builders:
        raise ValueError(f"unknown lab variant {variant!r} (one of: {', '.join(VARIANTS)})")
    return replace(builders[variant](), monitor=monitor)


def metrics_listen(spec: LabSpec, director: str) -> str:
    """Where `director`'s metrics listen: loopback, or its management address (``monitor``)."""
    if spec.monitor:
        return f"{spec.director(director).mgmt_address}:{METRICS_PORT}"
    return METRICS_LISTEN


def director_config(spec: LabSpec, director: str, workdir: Path) -> dict[str, Any]:
    """The ipvsd config (as a mapping ready for YAML) of `director` in `spec`.

    Args:
        spec: the layout.
        director: one of ``spec.directors``' names.
        workdir: where the control socket goes (``WORKDIR/DIRECTOR.sock``).

    Returns:
        A mapping in the contract's config format (design.md).
    """
    vrrp: dict[str, Any] = {
        "instances": [_instance(inst, director) for inst in spec.instances],
        "sync_groups": [
            {"name": f"G{n + 1}", "instances": list(group)}
            for n, group in enumerate(spec.sync_groups)
        ],
    }
    ipvs: dict[str, Any] = {"services": _services(spec)}
    if spec.sync_daemon is not None:
        ipvs["sync_daemon"] = {"interface": FRONT_DEV, "vrrp_instance": spec.sync_daemon}
    return {
        "node_name": director,
        "control": {"socket": str(workdir / f"{director}.sock")},
        "state_dir": str(workdir / f"{director}.state"),
        "metrics": {"listen": metrics_listen(spec, director)},
        "vrrp": vrrp,
        "ipvs": ipvs,
    }


def director_config_text(spec: LabSpec, director: str, workdir: Path) -> str:
    """`director_config` rendered as YAML, with a header saying where it comes from."""
    body = yaml.safe_dump(director_config(spec, director, workdir), sort_keys=False)
    return f"# {director} of the {spec.variant!r} reference lab (lab/reference/spec.py)\n{body}"


def _instance(inst: InstanceSpec, director: str) -> dict[str, Any]:
    version = {} if inst.version == 2 else {"version": inst.version}  # 2 is the default
    return {
        "name": inst.name,
        **version,
        "interface": inst.interface,
        "vrid": inst.vrid,
        "priority": inst.priorities[director],
        "advert_int": ADVERT_INT,
        "preempt": True,
        "virtual_ipaddresses": list(inst.vips),
    }


def _services(spec: LabSpec) -> list[dict[str, Any]]:
    check = spec.check
    timing = {
        "interval": check.interval,
        "timeout": check.timeout,
        "rise": check.rise,
        "fall": check.fall,
    }
    services = [
        {
            "address": vip,
            "port": WEB_PORT,
            "protocol": "tcp",
            "scheduler": "rr",
            "forward": spec.forward,
            "check": {"type": "http", "path": "/", **timing},
            "reals": [{"address": a, "port": WEB_PORT} for a in spec.real_addresses(vip).values()],
        }
        for vip in spec.service_vips
    ]
    if spec.echo:
        services.append(
            {
                "address": spec.service_vips[0],
                "port": ECHO_PORT,
                "protocol": "tcp",
                "scheduler": "rr",
                "forward": spec.forward,
                "check": {"type": "tcp", **timing},
                "reals": [{"address": a, "port": ECHO_PORT} for a in spec.reals.values()],
            }
        )
    return services
