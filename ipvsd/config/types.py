"""Field types of the configuration model: validators, ranges, names from fixed sets.

Each alias here is an ``Annotated`` type that the config models use as a field
annotation. Static type checkers see the plain type (``int``, ``IPv4Address``,
`Protocol`); pydantic sees the validator that converts and checks the YAML
value. Conversions happen at this boundary only: strings from YAML become
`IPv4Address` / `IPv4Interface` / enum values, and JSON serialisation turns
them back into the strings the YAML contract uses (so a dumped config loads
again).

Every failure is a `PydanticCustomError` with a finished, short message
("must be between 1 and 255", "'10.0.0.300' is not a valid IPv4 address"),
which `ipvsd.config` prints verbatim.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, ip_address
from typing import Annotated, TypeVar

from pydantic import AfterValidator, PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

from ipvsd.model import (
    Family,
    ForwardMethod,
    IPAddress,
    Protocol,
    ServiceFlag,
    TunnelChecksum,
    TunnelType,
    parse_endpoint,
)

T = TypeVar("T")

SCHEDULERS = (
    "rr",
    "wrr",
    "lc",
    "wlc",
    "lblc",
    "lblcr",
    "dh",
    "sh",
    "sed",
    "nq",
    "fo",
    "ovf",
    "mh",
    "twos",
)
"""The kernel's IPVS schedulers (net/netfilter/ipvs/ip_vs_*.c)."""

SCHEDULER_FLAGS: Mapping[str, ServiceFlag] = {
    "flag-1": ServiceFlag.SCHED1,
    "sh-fallback": ServiceFlag.SCHED1,
    "mh-fallback": ServiceFlag.SCHED1,
    "flag-2": ServiceFlag.SCHED2,
    "sh-port": ServiceFlag.SCHED2,
    "mh-port": ServiceFlag.SCHED2,
    "flag-3": ServiceFlag.SCHED3,
    "one-packet": ServiceFlag.ONEPACKET,
}
"""ipvsadm's ``-b`` flag names and the service flag each one sets."""

U32_MAX = 2**32 - 1
S32_MAX = 2**31 - 1


def fail(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is used verbatim (braces included)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def _int_range(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise fail("range", f"must be between {lo} and {hi}")
        return value

    return AfterValidator(check)


def _at_least(lo: int) -> AfterValidator:
    def check(value: int) -> int:
        if value < lo:
            raise fail("range", f"must be at least {lo}")
        return value

    return AfterValidator(check)


def _seconds(lo: float, hi: float | None = None, *, zero_ok: bool = True) -> AfterValidator:
    def check(value: float) -> float:
        if not math.isfinite(value):
            raise fail("range", "must be a finite number of seconds")
        if value < lo or (value == lo and not zero_ok) or (hi is not None and value > hi):
            if hi is not None:
                raise fail("range", f"must be between {lo:g} and {hi:g} seconds")
            raise fail(
                "range", f"must be {'at least' if zero_ok else 'greater than'} {lo:g} seconds"
            )
        return value

    return AfterValidator(check)


def _parsed(what: str, parse: Callable[[str], T], types: tuple[type, ...]) -> PlainValidator:
    """Validate a string with `parse`; accept values that already have one of `types`."""

    def check(value: object) -> T:
        if isinstance(value, types):
            return value  # type: ignore[return-value]  # isinstance on a runtime tuple
        if not isinstance(value, str):
            raise fail("address_type", f"must be an {what} written as a string (quote it)")
        try:
            return parse(value)
        except ValueError:
            raise fail("address", f"'{value}' is not a valid {what}") from None

    return PlainValidator(check)


def _choice(what: str, options: Mapping[str, T]) -> PlainValidator:
    """Map a name from a fixed set to its value; say which names exist otherwise."""
    values = set(options.values())

    def check(value: object) -> T:
        if isinstance(value, str) and value in options:
            return options[value]
        if not isinstance(value, str | dict | tuple) and value in values:
            return value  # already one of the values (a mapping or a list cannot be)
        names = ", ".join(dict.fromkeys(options))
        raise fail("choice", f"unknown {what} {value!r} (expected one of: {names})")

    return PlainValidator(check)


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_DOTTED_QUAD = re.compile(r"\.".join([_OCTET] * 4))
"""Exactly the IPv4 addresses `ipaddress` accepts as strings (no leading zeros)."""


def _dotted_quad(text: str) -> IPv4Address | None:
    """`text` as `ipaddress` reads a dotted quad, about five times faster; None if not one."""
    match = _DOTTED_QUAD.fullmatch(text)
    if match is None:
        return None
    a, b, c, d = match.groups()
    return IPv4Address(int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d))


def _ipv4(text: str) -> IPv4Address:
    """``IPv4Address(text)``, fast for the usual dotted quad."""
    address = _dotted_quad(text)
    return IPv4Address(text) if address is None else address  # the exact error, if any


def _ip_any(text: str) -> IPAddress:
    """``ip_address(text)``, fast for the usual dotted quad."""
    address = _dotted_quad(text)
    return ip_address(text) if address is None else address


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise fail("regex", f"invalid regular expression: {exc}") from None
    return value


def _non_empty(value: T) -> T:
    if not value:
        raise fail("empty", "must not be empty")
    return value


def _interface_name(value: str) -> str:
    # IFNAMSIZ is 16 with the NUL; the kernel's dev_valid_name() also bans '/', ':' and spaces.
    if not 1 <= len(value) <= 15 or any(c in value for c in "/: \t\n") or value in (".", ".."):
        raise fail("interface", f"'{value}' is not a valid interface name (1-15 characters)")
    return value


def _endpoint(value: str) -> str:
    try:
        _address, port = parse_endpoint(value)
        valid = port != 0
    except ValueError:
        valid = False
    if not valid:
        raise fail("endpoint", f"'{value}' is not ADDRESS:PORT (IPv6 in brackets, port 1-65535)")
    return value


def _http_path(path: str) -> str:
    if not path.startswith("/"):
        raise fail("path", f"'{path}' must start with '/'")
    return path


def _auth_pass(value: str) -> str:
    if not 1 <= len(value.encode()) <= 8:
        raise fail("auth_pass", "must be 1 to 8 characters (VRRPv2 auth data is 8 bytes)")
    return value


def _label(value: Protocol) -> str:
    return value.label


def _family_name(value: Family) -> str:
    return value.label


Name = Annotated[str, AfterValidator(_non_empty)]
Interface = Annotated[str, AfterValidator(_interface_name)]
Port = Annotated[int, _int_range(1, 65535)]
PortOrZero = Annotated[int, _int_range(0, 65535)]
NonZeroByte = Annotated[int, _int_range(1, 255)]
NonNegative = Annotated[int, _at_least(0)]
IPAny = Annotated[
    IPAddress,
    _parsed("IPv4 or IPv6 address", _ip_any, (IPv4Address, IPv6Address)),
    PlainSerializer(str, when_used="json"),
]
IPv4 = Annotated[
    IPv4Address,
    _parsed("IPv4 address", _ipv4, (IPv4Address,)),
    PlainSerializer(str, when_used="json"),
]
Vip = Annotated[
    IPv4Interface,
    _parsed("IPv4 address or ADDRESS/PREFIX", IPv4Interface, (IPv4Interface,)),
    PlainSerializer(str, when_used="json"),
]
ProtocolName = Annotated[
    Protocol,
    _choice("protocol", {p.label: p for p in Protocol}),
    PlainSerializer(_label, when_used="json"),
]
FamilyName = Annotated[
    Family,
    _choice("family", {family.label: family for family in Family}),
    PlainSerializer(_family_name, when_used="json"),
]
ForwardName = Annotated[
    ForwardMethod,
    _choice("forward method", {m.value: m for m in ForwardMethod}),
    PlainSerializer(lambda m: m.value, when_used="json"),
]
TunnelTypeName = Annotated[
    TunnelType,
    _choice("tunnel type", {t.name.lower(): t for t in TunnelType}),
    PlainSerializer(lambda t: t.name.lower(), when_used="json"),
]
TunnelChecksumName = Annotated[
    TunnelChecksum,
    _choice("tunnel checksum", {c.name.lower(): c for c in TunnelChecksum}),
    PlainSerializer(lambda c: c.name.lower(), when_used="json"),
]
Scheduler = Annotated[str, _choice("scheduler", {s: s for s in SCHEDULERS})]
SchedulerFlag = Annotated[str, _choice("scheduler flag", {f: f for f in SCHEDULER_FLAGS})]


class CheckType(enum.Enum):
    """How a real server is health-checked."""

    TCP = "tcp"  # connect() succeeds
    HTTP = "http"  # a GET gets an expected status (and body)
    HTTPS = "https"  # the same over TLS
    EXEC = "exec"  # a command exits 0
    NONE = "none"  # always up


class OnFailure(enum.Enum):
    """What happens to a real whose check fails."""

    DRAIN = "drain"  # weight 0: established connections go on, no new ones
    REMOVE = "remove"  # the dest is deleted from the kernel


CheckTypeName = Annotated[
    CheckType,
    _choice("check type", {t.value: t for t in CheckType}),
    PlainSerializer(lambda t: t.value, when_used="json"),
]
OnFailureName = Annotated[
    OnFailure,
    _choice("on_failure action", {a.value: a for a in OnFailure}),
    PlainSerializer(lambda a: a.value, when_used="json"),
]
Interval = Annotated[float, _seconds(0, zero_ok=False)]
Count = Annotated[int, _int_range(1, 1000)]
HttpStatus = Annotated[int, _int_range(100, 599)]
HttpPath = Annotated[str, AfterValidator(_http_path)]
Regex = Annotated[str, AfterValidator(_regex)]
Command = Annotated[tuple[Name, ...], AfterValidator(_non_empty)]
Statuses = Annotated[tuple[HttpStatus, ...], AfterValidator(_non_empty)]
Weight = Annotated[int, _int_range(0, 65535)]
Threshold = Annotated[int, _int_range(0, U32_MAX)]
Fwmark = Annotated[int, _int_range(1, U32_MAX)]
Seconds32 = Annotated[int, _int_range(0, S32_MAX)]
Netmask = Annotated[int, _int_range(0, 128)]
TrackWeight = Annotated[int, _int_range(-254, 254)]
GarpRepeat = Annotated[int, _int_range(0, 255)]
SyncId = Annotated[int, _int_range(0, 255)]
Ttl = Annotated[int, _int_range(0, 255)]
PreemptDelay = Annotated[float, _seconds(0, 1000)]
GarpDelay = Annotated[float, _seconds(0)]
AuthPass = Annotated[str, AfterValidator(_auth_pass)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
Vips = Annotated[tuple[Vip, ...], AfterValidator(_non_empty)]
Names = Annotated[tuple[Name, ...], AfterValidator(_non_empty)]
