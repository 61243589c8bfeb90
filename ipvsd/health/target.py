"""What a check probes and what it found: `CheckTarget`, `CheckResult`, and their reasons.

Shared by the checkers (``ipvsd.health.checks`` runs http, https and exec
checks as coroutines, ``ipvsd.health.tcp`` runs tcp checks without one). A
target carries its socket address already converted (``sockaddr``,
``family``, ``source``), since a real is checked every interval for as long
as the daemon runs and its address does not change.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

import structlog

from ipvsd.config.model import CheckConfig
from ipvsd.config.types import PORT_CHECKS, CheckType
from ipvsd.health.tracker import CheckPart
from ipvsd.model import format_endpoint

__all__ = ["CheckPart", "CheckResult", "CheckTarget", "errno_text", "log_failure", "target_for"]

log = structlog.get_logger("ipvsd.health.checks")


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """What one check probes: an endpoint and the check's settings.

    Attributes:
        address: the address to check (the check's ``address``, else the real's).
        port: the port to check (the check's ``port``, else the real's); 0 only
            for exec and none checks.
        check: the check's configuration.
        real: the real server as ``ADDRESS:PORT``, for logs.
        tls: for https checks, a context to reuse (see `tls_context`); None
            builds one on every check.
        family: ``AF_INET`` or ``AF_INET6``, from `address` (derived).
        sockaddr: ``(address, port)`` as ``connect()`` takes it (derived).
        helo_name: for smtp checks, the name sent with ``HELO`` (the check's
            ``helo_name``, else the node's name); empty for the others.
        also: the real's other checks (``checks``), run with this one: the real
            passes only when all pass (`CheckResult.parts` has each outcome).
        source: ``(source_address, 0)`` as ``bind()`` takes it, or None (derived).
    """

    address: IPv4Address | IPv6Address
    port: int
    check: CheckConfig
    real: str
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    helo_name: str = ""
    also: tuple[CheckTarget, ...] = ()
    family: int = field(init=False, compare=False, repr=False)
    sockaddr: tuple[str, int] = field(init=False, compare=False, repr=False)
    source: tuple[str, int] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        family = socket.AF_INET if self.address.version == 4 else socket.AF_INET6
        source = self.check.source_address
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "sockaddr", (str(self.address), self.port))
        object.__setattr__(self, "source", None if source is None else (str(source), 0))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        ok: the real passed the check.
        reason: a short explanation for humans, e.g. ``connection refused``,
            ``HTTP 500 (expected 200)``, ``exit status 1: <last output line>``.
        duration_s: seconds from the start of the check to its outcome.
        weight: the weight the check gives the real (an exec check with
            ``dynamic_weight`` that exited 2-255); None: the configured one.
        parts: for a real with several checks, each check's outcome, in order;
            empty for a real with one.
    """

    ok: bool
    reason: str
    duration_s: float
    weight: int | None = None
    parts: tuple[CheckPart, ...] = ()


def target_for(
    check: CheckConfig,
    real_address: IPv4Address | IPv6Address,
    real_port: int,
    *,
    tls: ssl.SSLContext | None = None,
    node_name: str | None = None,
) -> CheckTarget:
    """The target of `check` for one real: the check's address/port overrides applied.

    Args:
        check: the real's (merged) check.
        real_address: the real's address.
        real_port: the real's port (0: the packet's port, fwmark services).
        tls: an https context to share between targets (see `tls_context`).
        node_name: this director's name, an smtp check's default ``helo_name``
            (None: the host name).

    Returns:
        The target to pass to `run_check`.

    Raises:
        ValueError: a tcp/http/https check has no port to connect to (a bug:
            config validation requires ``check.port`` when the real's port is 0).
    """
    port = check.port or real_port
    if check.type in PORT_CHECKS and not port:
        raise ValueError(f"{check.type.value} check of {real_address} has no port")
    return CheckTarget(
        address=check.address or real_address,
        port=port,
        check=check,
        real=format_endpoint(real_address, real_port),
        tls=tls,
        # Only smtp checks say it: a renamed node restarts no other check.
        helo_name=_helo_name(check, node_name) if check.type is CheckType.SMTP else "",
    )


def _helo_name(check: CheckConfig, node_name: str | None) -> str:
    return check.helo_name or node_name or socket.gethostname()


def errno_text(exc: OSError | int) -> str:
    """``connection refused``: the error's text in lower case (an errno number, or an OSError)."""
    if isinstance(exc, int):
        return os.strerror(exc).lower()
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def log_failure(target: CheckTarget, result: CheckResult) -> None:
    """One debug event per failed check; passing checks (the common case) log nothing."""
    log.debug(
        "health.check",
        real=target.real,
        target=format_endpoint(target.address, target.port),
        type=target.check.type.value,
        ok=result.ok,
        reason=result.reason,
        duration_s=round(result.duration_s, 6),
    )
