"""Value types for the IPVS table, shared by config, netlink, reconcile, metrics and control.

Each kernel object is split into an identity *key* and changeable *attributes*
(seesaw's ``serviceKey`` / ``ipvsEqual``). Two objects with the same key are the
same kernel object; if only the attributes differ, the kernel can edit it in
place (IPVS_CMD_SET_SERVICE / IPVS_CMD_SET_DEST), which keeps its connections.
Changing a key means delete + add.

Counters (connections, packets, bytes, rates) only come from kernel dumps and
never take part in comparisons: `Service.dests` and `Table` equality look at
keys and attributes only (the stats fields are excluded with ``compare=False``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import MappingProxyType

IPAddress = IPv4Address | IPv6Address


class Family(enum.IntEnum):
    """Address family numbers as the kernel spells them.

    Compare with the members, never with 2 / 10. `label` is the family's one
    name (config, status JSON, the CLI's ``fwmark:N/ipv6``); prose says
    ``IPv{version}``, as the `ipaddress` classes do.
    """

    INET = 2
    INET6 = 10

    @property
    def version(self) -> int:
        """The IP version: 4 or 6."""
        return 4 if self is Family.INET else 6

    @property
    def label(self) -> str:
        """``ipv4`` or ``ipv6``."""
        return f"ipv{self.version}"

    @classmethod
    def of(cls, address: IPAddress) -> Family:
        return cls.INET if address.version == 4 else cls.INET6


class Protocol(enum.IntEnum):
    """IP protocol numbers IPVS balances."""

    TCP = 6
    UDP = 17
    SCTP = 132

    @property
    def label(self) -> str:
        """Lower-case name, as in the config and in metric labels."""
        return self.name.lower()


class ForwardMethod(enum.Enum):
    """How IPVS forwards to a real server (the kernel's IP_VS_CONN_F_FWD_MASK values)."""

    NAT = "nat"  # IP_VS_CONN_F_MASQ = 0
    DR = "dr"  # IP_VS_CONN_F_DROUTE = 3
    TUNNEL = "tunnel"  # IP_VS_CONN_F_TUNNEL = 2

    @property
    def kernel_value(self) -> int:
        return _FORWARD_TO_KERNEL[self]

    @classmethod
    def from_kernel(cls, conn_flags: int) -> ForwardMethod:
        """Decode the forwarding bits of a dest's conn flags.

        LOCALNODE (1) and BYPASS (4) are set by the kernel for local reals and
        are reported as NAT, which is what `ipvsadm -Ln` calls "Local"/"Masq".
        """
        return _KERNEL_TO_FORWARD.get(conn_flags & 0x7, cls.NAT)


_FORWARD_TO_KERNEL = {ForwardMethod.NAT: 0, ForwardMethod.TUNNEL: 2, ForwardMethod.DR: 3}
_KERNEL_TO_FORWARD = {value: method for method, value in _FORWARD_TO_KERNEL.items()}


class TunnelType(enum.IntEnum):
    """Encapsulation of a tunnel real (IP_VS_CONN_F_TUNNEL_TYPE_*, Linux 5.2+)."""

    IPIP = 0
    GUE = 1  # UDP encapsulation: needs the real's GUE port
    GRE = 2


class TunnelChecksum(enum.IntEnum):
    """Checksum option of a GUE / GRE tunnel (IP_VS_TUNNEL_ENCAP_FLAG_*)."""

    NONE = 0
    CSUM = 1
    REMCSUM = 2


class ServiceFlag(enum.IntFlag):
    """IP_VS_SVC_F_* service flags (include/uapi/linux/ip_vs.h)."""

    PERSISTENT = 0x0001
    HASHED = 0x0002  # kernel-internal: set on every live service, never sent by us
    ONEPACKET = 0x0004
    SCHED1 = 0x0008  # sh-fallback / mh-fallback
    SCHED2 = 0x0010  # sh-port / mh-port
    SCHED3 = 0x0020


NO_FLAGS = ServiceFlag(0)


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    """Identity of a virtual service.

    Either (address, port) with fwmark 0, or a firewall mark with address None
    and port 0. The kernel looks fwmark services up by (family, mark) only and
    forces their protocol to TCP (ip_vs_genl_parse_service), so a fwmark key
    always carries Protocol.TCP; use `fwmark_key()` to build one.
    """

    family: Family
    protocol: Protocol
    address: IPAddress | None
    port: int
    fwmark: int = 0
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.family, self.protocol, self.address, self.port, self.fwmark))
        )

    def __hash__(self) -> int:
        # Computed once: the keys index every table, and an address hashes slowly
        # (``hash(hex(int(ip)))``): at 10,000 x 4 a start hashed them 1.2 million times.
        return self._hash

    def __str__(self) -> str:
        if self.fwmark:
            suffix = "" if self.family is Family.INET else f"/{self.family.label}"
            return f"fwmark:{self.fwmark}{suffix}"
        prefix = "" if self.protocol is Protocol.TCP else f"{self.protocol.label}/"
        return f"{prefix}{format_endpoint(self.address, self.port)}"


@dataclass(frozen=True, slots=True)
class ServiceAttrs:
    """What can be changed on a service in place.

    Attributes:
        scheduler: IPVS scheduler name (rr, wrr, lc, wlc, sh, mh, ...).
        flags: ServiceFlag bits, HASHED excluded; PERSISTENT iff timeout > 0.
        timeout: persistence timeout in seconds (0 = not persistent).
        netmask: persistence granularity as a prefix length (32 / 128 = per client).
        pe_name: persistence engine name ("" for none, "sip").
    """

    scheduler: str = "wlc"
    flags: ServiceFlag = NO_FLAGS
    timeout: int = 0
    netmask: int = 32
    pe_name: str = ""


@dataclass(frozen=True, slots=True, order=True)
class DestKey:
    """Identity of a real server within its service."""

    address: IPAddress
    port: int
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.address, self.port)))

    def __hash__(self) -> int:  # computed once, as `ServiceKey`'s
        return self._hash

    @property
    def family(self) -> Family:
        return Family.of(self.address)

    def __str__(self) -> str:
        return format_endpoint(self.address, self.port)


RealId = tuple[ServiceKey, DestKey]
"""A real server: its service and its key within that service (health, drains, status)."""


@dataclass(frozen=True, slots=True)
class DestAttrs:
    """What can be changed on a real server in place.

    Attributes:
        forward: forwarding method.
        weight: scheduling weight; 0 = drained (no new connections).
        upper_threshold: connection limit above which it gets no new ones (0 = none).
        lower_threshold: connection count under which it gets new ones again (0 = none).
        tunnel_type: encapsulation of a tunnel real (IPIP for every other method).
        tunnel_port: the real's GUE UDP port (0 otherwise).
        tunnel_checksum: GUE / GRE checksum option.
    """

    forward: ForwardMethod = ForwardMethod.NAT
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    tunnel_type: TunnelType = TunnelType.IPIP
    tunnel_port: int = 0
    tunnel_checksum: TunnelChecksum = TunnelChecksum.NONE


@dataclass(frozen=True, slots=True)
class Stats:
    """Kernel counters (totals since creation or the last zero) and estimated rates."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True, slots=True)
class DestCounters:
    """Connection gauges of one real server, plus its traffic counters."""

    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True, slots=True)
class Dest:
    """One real server of one service. `counters` is only set for kernel dumps."""

    key: DestKey
    attrs: DestAttrs
    counters: DestCounters | None = field(default=None, compare=False)


#: No dest whose last weight differs from its weight (`Service.last_weights`).
NO_LAST_WEIGHTS: Mapping[DestKey, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Service:
    """One virtual service with its real servers, keyed by DestKey.

    `last_weights` is set on desired ``mh`` services only: the weight a dest
    desired at weight 0 is to be added at first (a real's configured one; an
    inhibited sorry server's 1 with ``mh-fallback``), so that the kernel's
    ``last_weight``, and the Maglev table, do not depend on health history
    (docs/consistent-hashing.md). The kernel does not report it, so it takes no
    part in comparisons; the fingerprints count such a dest with it
    (`ipvsd.mh.known_last_weights`).
    """

    key: ServiceKey
    attrs: ServiceAttrs
    dests: Mapping[DestKey, Dest] = field(default_factory=dict)
    stats: Stats | None = field(default=None, compare=False)
    last_weights: Mapping[DestKey, int] = field(
        default_factory=lambda: NO_LAST_WEIGHTS, compare=False
    )


@dataclass(frozen=True, slots=True)
class Table:
    """A whole IPVS table: desired (from config) or actual (from a dump)."""

    services: Mapping[ServiceKey, Service] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services.values())

    def __len__(self) -> int:
        return len(self.services)

    @classmethod
    def of(cls, services: list[Service] | tuple[Service, ...]) -> Table:
        return cls({service.key: service for service in services})

    def dest_count(self) -> int:
        return sum(len(service.dests) for service in self.services.values())


def dest_order(key: DestKey) -> tuple[int, int, int]:
    """Total sort key for dest keys (a tunnel service may mix IPv4 and IPv6 dests;
    the address classes refuse to compare with each other)."""
    return (key.address.version, int(key.address), key.port)


def fwmark_key(family: Family, fwmark: int) -> ServiceKey:
    """The key of a fwmark service, normalised as the kernel stores it."""
    return ServiceKey(family, Protocol.TCP, None, 0, fwmark)


def make_service(
    key: ServiceKey,
    attrs: ServiceAttrs,
    dests: list[Dest] | tuple[Dest, ...] = (),
    last_weights: Mapping[DestKey, int] = NO_LAST_WEIGHTS,
) -> Service:
    """Build a Service from a list of dests."""
    return Service(key, attrs, {dest.key: dest for dest in dests}, last_weights=last_weights)


def format_endpoint(address: IPAddress | None, port: int) -> str:
    """``1.2.3.4:80`` or ``[2001:db8::1]:80``, as ipvsadm prints them."""
    if address is None:
        return f"*:{port}"
    if address.version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def parse_endpoint(text: str) -> tuple[IPAddress, int]:
    """Parse ``ADDRESS:PORT`` with IPv6 addresses in brackets.

    Raises:
        ValueError: the text is not an address and a port in 0..65535.
    """
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected ADDRESS:PORT")
    address = ip_address(host)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be 0..65535")
    return address, int(port_text)


def parse_service_spec(text: str) -> ServiceKey:
    """Parse the CLI's SERVICE syntax: ``ADDR:PORT`` (tcp), ``udp/ADDR:PORT``,
    ``sctp/ADDR:PORT`` or ``fwmark:N`` (IPv4; ``fwmark:N/ipv6`` for IPv6).

    Raises:
        ValueError: the text matches none of these forms.
    """
    if text.startswith("fwmark:"):
        mark_text, _, family_text = text[len("fwmark:") :].partition("/")
        if not mark_text.isdigit() or not 0 < int(mark_text) < 2**32:
            raise ValueError(f"{text!r}: fwmark must be 1..4294967295")
        families = {family.label: family for family in Family}
        if family_text and family_text not in families:
            raise ValueError(f"{text!r}: family must be ipv4 or ipv6")
        return fwmark_key(families.get(family_text, Family.INET), int(mark_text))
    protocol = Protocol.TCP
    proto_text, sep, rest = text.partition("/")
    if sep and not proto_text.startswith("["):
        try:
            protocol = Protocol[proto_text.upper()]
        except KeyError:
            raise ValueError(f"{text!r}: protocol must be tcp, udp or sctp") from None
        text = rest
    address, port = parse_endpoint(text)
    return ServiceKey(Family.of(address), protocol, address, port)
