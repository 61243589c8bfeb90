"""The exceptions ipvsd raises, in one tree.

```
IpvsdError
├── ConfigError            .issues: tuple[ConfigIssue, ...]  (every problem, with its line)
├── KernelError            .errno, .operation
│   ├── IpvsUnavailable    the ip_vs module is not loaded / not built
│   ├── SchedulerUnavailable
│   ├── AlreadyExists      EEXIST
│   ├── NotFound           ENOENT / ESRCH
│   └── WireError          a netlink reply the codec cannot parse (ipvsd.netlink.wire)
├── PacketError            .reason: RejectReason  (a peer's bad VRRP packet: drop and count)
├── ControlRequestError    a bad request on the control socket
├── MalformedStatus        a status document off the contract (ipvsd.control.status_json)
├── AlreadyRunning         another ipvsd holds this netns's lock (ipvsd.daemon.lock)
└── SourceError            .file, .line: a keepalived.conf or ipvsadm rule file that
                           cannot be read or parsed (ipvsd.importers.report)
```

Expected failures are values, not exceptions (a health check that fails returns
a result). Exceptions outside this tree are bugs and are allowed to propagate.
"""

from __future__ import annotations

import enum
import errno as errno_codes
from dataclasses import dataclass


class IpvsdError(Exception):
    """Base of every error ipvsd raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file.

    Attributes:
        path: the file the problem is in.
        line: 1-based line number, or 0 when the problem has no single place.
        field: dotted path of the offending field (``ipvs.services.0.port``).
        message: what is wrong, for a human.
    """

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class ConfigError(IpvsdError):
    """A configuration was refused; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class KernelError(IpvsdError):
    """The kernel refused a netlink request.

    Attributes:
        errno: the positive errno the kernel returned (0 if not applicable).
        operation: a short description of the request, for logs.
    """

    def __init__(self, message: str, *, errno: int = 0, operation: str = "") -> None:
        self.errno = errno
        self.operation = operation
        super().__init__(message)


class IpvsUnavailable(KernelError):
    """The kernel has no IPVS generic-netlink family."""

    def __init__(self) -> None:
        super().__init__(
            "IPVS is not available in this kernel (load the ip_vs module)",
            errno=errno_codes.ENOENT,
        )


class SchedulerUnavailable(KernelError):
    """The kernel has no scheduler of that name (its ip_vs_NAME module is missing)."""

    def __init__(self, scheduler: str, *, operation: str = "") -> None:
        self.scheduler = scheduler
        super().__init__(
            f"scheduler {scheduler!r} is not available (no ip_vs_{scheduler} module)",
            errno=errno_codes.ENOENT,
            operation=operation,
        )


class AlreadyExists(KernelError):
    """EEXIST: the service or destination is already in the kernel."""


class NotFound(KernelError):
    """ENOENT / ESRCH: the service or destination is not in the kernel."""


@enum.unique
class RejectReason(enum.Enum):
    """Why a received VRRP packet was dropped (`ipvsd.vrrp.packet` raises them).

    Each value is a stable lowercase snake_case string: the ``reason`` label
    of ``ipvsd_vrrp_invalid_packets_total``. Never rename one.

    It lives here rather than next to the codec so that `PacketError` can
    carry it typed while this base module imports no domain; the metrics
    layer, which may not import vrrp, can name it too.
    """

    NOT_IPV4 = "not_ipv4"
    """The IP version nibble is not 4."""
    IP_HEADER = "ip_header"
    """IHL below 5, or an IP total length shorter than the IP header."""
    PROTOCOL = "protocol"
    """The IP protocol is not 112 (RFC 3768 §5.2.4)."""
    TOO_SHORT = "too_short"
    """Fewer bytes than the IP header, the IP total length or the fixed VRRP header need."""
    LENGTH = "length"
    """Bytes after the IP total length, or a VRRP length ≠ 16 + 4·count (§5.3.5, §7.1)."""
    TTL = "ttl"
    """IP TTL ≠ 255 in multicast mode (RFC 3768 §7.1, §5.2.3)."""
    VERSION = "version"
    """VRRP version ≠ 2, e.g. a VRRPv3 advert (RFC 3768 §7.1)."""
    TYPE = "type"
    """VRRP type ≠ 1 (RFC 3768 §5.3.2)."""
    CHECKSUM = "checksum"
    """The VRRP checksum does not verify (RFC 3768 §5.3.8, §7.1)."""
    UNKNOWN_VRID = "unknown_vrid"
    """The VRID is not the one this instance runs (RFC 3768 §7.1)."""
    AUTH_TYPE = "auth_type"
    """Unknown auth type, AH, or not the configured type (RFC 3768 §5.3.6, §7.1)."""
    AUTH_PASSWORD = "auth_password"  # noqa: S105 - a metric label, not a password
    """Auth type 1 with a password that is not ours (keepalived ``auth_type PASS``)."""
    ADVERT_INTERVAL = "advert_interval"
    """Adver Int ≠ the configured one (RFC 3768 §7.1)."""
    VIP_MISMATCH = "vip_mismatch"
    """Count or set of addresses differs from ours (RFC 3768 §7.1; vrrp-notes §2.2)."""
    OWNER = "owner"
    """We are the address owner (priority 255), which discards adverts (RFC 3768 §7.1)."""
    UNEXPECTED_UNICAST = "unexpected_unicast"
    """Multicast mode, but the advert was not sent to 224.0.0.18 (keepalived)."""
    UNEXPECTED_MULTICAST = "unexpected_multicast"
    """Unicast mode, but the advert was sent to a multicast group (keepalived)."""
    UNKNOWN_PEER = "unknown_peer"
    """Unicast mode, and the source is not a configured peer (keepalived)."""


class PacketError(IpvsdError):
    """A received packet was invalid; ``reason.value`` is the metric label."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class ControlRequestError(IpvsdError):
    """A control-socket request was malformed or not allowed."""
