"""The exceptions ipvsd raises, in one tree.

```
IpvsdError
├── ConfigError            .issues: tuple[ConfigIssue, ...]  (every problem, with its line)
├── KernelError            .errno, .operation
│   ├── IpvsUnavailable    the ip_vs module is not loaded / not built
│   ├── SchedulerUnavailable
│   ├── AlreadyExists      EEXIST
│   └── NotFound           ENOENT / ESRCH
├── PacketError            .reason  (a peer's bad VRRP packet: drop and count)
└── ControlRequestError    a bad request on the control socket
```

Expected failures are values, not exceptions (a health check that fails returns
a result). Exceptions outside this tree are bugs and are allowed to propagate.
"""

from __future__ import annotations

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


class PacketError(IpvsdError):
    """A received packet was invalid; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ControlRequestError(IpvsdError):
    """A control-socket request was malformed or not allowed."""
