"""Field types of the configuration model: validators, ranges, names from fixed sets.

Each alias here is an ``Annotated`` type that the config models use as a field
annotation. Static type checkers see the plain type (``int``, ``IPv4Address``,
`Protocol`); `ipvsd.config.strict` sees the rules that convert and check the
YAML value. Conversions happen at this boundary only: strings from YAML become
`IPv4Address` / `IPv4Interface` / enum values, and JSON serialisation turns
them back into the strings the YAML contract uses (so a dumped config loads
again).

Every failure is an `Invalid` with a finished, short message
("must be between 1 and 255", "'10.0.0.300' is not a valid IPv4 address"),
which `ipvsd.config` prints verbatim.

The limits are those of what consumes the value at run time, so that a
config ``check-config`` accepts does not fail later: the kernel (IPVS in
net/netfilter/ipvs/ip_vs_ctl.c, IFNAMSIZ, sun_path), the VRRPv2 wire format
(RFC 3768 §5.1), and h11, which sends the HTTP checks' requests. Ranges also
go into the JSON Schema (`ipvsd.config.schema`), through `Check`.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    ip_address,
)
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from ipvsd.config.groups import parse_member
from ipvsd.config.strict import Check, Invalid, Plain, Serialize
from ipvsd.model import (
    Family,
    ForwardMethod,
    IPAddress,
    Protocol,
    ServiceFlag,
    TunnelChecksum,
    TunnelType,
    parse_endpoint,
    parse_service_spec,
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

VipInterface = IPv4Interface | IPv6Interface
"""A VIP with its prefix: IPv4, or IPv6 (VRRPv3 instances only, `ipvsd.config.checks`)."""
U32_MAX = 2**32 - 1

MAX_VIPS = 255
"""VIPs of one instance: the VRRPv2 advert's Count IP Addrs field is 8 bits (RFC 3768 §5.3.5)."""
IFNAME_MAX = 15
"""Bytes of an interface name: IFNAMSIZ (16) includes the NUL."""
SUN_PATH_MAX = 107
"""Bytes of a unix socket path on Linux: ``sun_path`` is 108 bytes including the NUL."""
BGP_PASSWORD_MAX = 80
"""Characters of a TCP MD5 key: TCP_MD5SIG_MAXKEYLEN."""
PENAME_MAX = 15
"""Bytes of a persistence engine name: IP_VS_PENAME_MAXLEN (16) includes the NUL."""
PERSISTENCE_MAX = 31 * 86400
"""Longest persistence timeout, seconds: ipvsadm's and keepalived's limit (31 days). The
kernel keeps it as ``timeout * HZ`` in 32 bits and does not check it; 31 days fits for
any HZ up to 1000."""
IPVS_TIMEOUT_MAX = (2**31 - 1) // 1000
"""Longest ``ipvsadm --set`` timeout, seconds: the kernel refuses more than INT_MAX / HZ
(ip_vs_set_timeout), and HZ is at most 1000."""


def _int_range(lo: int, hi: int, why: str = "") -> Check:
    """`lo` <= value <= `hi`; `why` (the limit's origin) is added to the message."""
    message = f"must be between {lo} and {hi}" + (f" ({why})" if why else "")

    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise Invalid("range", message)
        return value

    return Check(check, (("minimum", lo), ("maximum", hi)))


def _at_least(lo: int) -> Check:
    def check(value: int) -> int:
        if value < lo:
            raise Invalid("range", f"must be at least {lo}")
        return value

    return Check(check, (("minimum", lo),))


def _in_seconds(value: float) -> str:
    return f"{value:g} second" + ("" if value == 1 else "s")


def _seconds(lo: float, hi: float | None = None) -> Check:
    """A finite duration of at least `lo` (and at most `hi`) seconds."""

    def check(value: float) -> float:
        if not math.isfinite(value):
            raise Invalid("range", "must be a finite number of seconds")
        if value < lo or (hi is not None and value > hi):
            if hi is not None:
                raise Invalid("range", f"must be between {lo:g} and {_in_seconds(hi)}")
            raise Invalid("range", f"must be at least {_in_seconds(lo)}")
        return value

    schema: tuple[tuple[str, object], ...] = (("minimum", lo),)
    return Check(check, schema if hi is None else (*schema, ("maximum", hi)))


def _off_or_seconds(lo: float, hi: float) -> Check:
    """0 (off), or a duration of `lo` to `hi` seconds: a period, where a tiny one would
    be a flood."""

    def check(value: float) -> float:
        if value != 0 and not lo <= value <= hi:  # NaN fails both: not a duration
            raise Invalid("range", f"must be 0 (off) or between {lo:g} and {_in_seconds(hi)}")
        return value

    return Check(check, (("minimum", 0), ("maximum", hi)))


def _parsed(
    what: str, parse: Callable[[str], T], types: tuple[type, ...], schema: dict[str, Any]
) -> Plain:
    """Validate a string with `parse`; accept values that already have one of `types`.

    `schema` is the JSON Schema of the strings `parse` accepts (or a looser one).
    """

    def check(value: object) -> T:
        if isinstance(value, types):
            return value  # type: ignore[return-value]  # isinstance on a runtime tuple
        if not isinstance(value, str):
            raise Invalid("address_type", f"must be an {what} written as a string (quote it)")
        try:
            return parse(value)
        except ValueError:
            raise Invalid("address", f"'{value}' is not a valid {what}") from None

    return Plain(check, json.dumps({"type": "string", **schema}))


def _choice(what: str, options: Mapping[str, T]) -> Plain:
    """Map a name from a fixed set to its value; say which names exist otherwise."""
    values = set(options.values())
    names = ", ".join(dict.fromkeys(options))

    def check(value: object) -> T:
        if isinstance(value, str) and value in options:
            return options[value]
        for known in values:
            # Already one of the values. Of its exact type: 6 equals Protocol.TCP (an
            # IntEnum) but is not one, and a mapping or a list never is.
            if type(value) is type(known) and value == known:
                return known
        raise Invalid("choice", f"unknown {what} {value!r} (expected one of: {names})")

    return Plain(check, json.dumps({"type": "string", "enum": list(dict.fromkeys(options))}))


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_DOTTED_QUAD = re.compile(r"\.".join([_OCTET] * 4))
"""Exactly the IPv4 addresses `ipaddress` accepts as strings (no leading zeros)."""

# JSON Schemas of the address types. The formats are exact where a validator checks
# them; the patterns are short and looser than the loader (an editor flags a host name,
# the loader says precisely what is wrong).
_IPV4_SCHEMA: dict[str, Any] = {
    "format": "ipv4",
    "pattern": r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$",
    "examples": ["192.168.1.20"],
}
_IP_SCHEMA: dict[str, Any] = {
    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
    "examples": ["192.168.1.30", "2001:db8::30"],
}
_NET_SCHEMA: dict[str, Any] = {
    "pattern": r"^([0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?|default)$",
    "examples": ["10.1.0.0/16", "default"],
}
_VIP_SCHEMA: dict[str, Any] = {
    "pattern": r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)(/[0-9.]+)?$",
    "examples": ["192.168.1.200/24", "192.168.1.200", "2001:db8::200/64"],
}


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
        raise Invalid("regex", f"invalid regular expression: {exc}") from None
    return value


def _hex(value: str) -> str:
    try:
        bytes.fromhex(value)
    except ValueError:
        raise Invalid("hex", "must be hex digits, two per byte (e.g. 0a1bff)") from None
    return value


_STATUS_TEXT = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_STATUS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"},
    ]
}


def _status_codes(item: object) -> list[int]:
    """One item of ``expected_status``: a code (``200``) or a range (``"200-299"``)."""
    if isinstance(item, int) and not isinstance(item, bool):
        first = last = item
        shown = str(item)
    elif isinstance(item, str) and (match := _STATUS_TEXT.fullmatch(item.strip())):
        first, last = int(match[1]), int(match[2] or match[1])
        shown = f"'{item}'"
        if first > last:
            raise Invalid("status", f"{shown}: a range goes from the lower code to the higher")
    else:
        raise Invalid(
            "status",
            f"{_quoted(str(item))} is not a status code (200) or a range ('200-299')",
        )
    if first < 100 or last > 599:  # RFC 9110 §15: 1xx to 5xx
        raise Invalid("status", f"{shown}: status codes are between 100 and 599")
    return list(range(first, last + 1))


def _statuses(value: object) -> tuple[int, ...]:
    """``expected_status``: a code, a range, or a list of both → the codes, in order, once."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise Invalid("empty", "must not be empty")
    codes: dict[int, None] = {}
    for item in items:
        codes.update(dict.fromkeys(_status_codes(item)))
    return tuple(codes)


def status_ranges(codes: Sequence[int]) -> str:
    """``200-299, 401``: `codes` with runs of consecutive codes written as ranges."""
    parts: list[str] = []
    ordered = sorted(set(codes))
    start = previous = ordered[0] if ordered else 0
    for code in [*ordered[1:], None]:
        if code is not None and code == previous + 1:
            previous = code
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if code is not None:
            start = previous = code
    return ", ".join(parts)


def _md5_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise Invalid("digest", "must be an MD5 digest: 32 hex digits (as md5sum prints it)")
    return value.lower()


def _dns_name(value: str) -> str:
    labels = [] if value == "." else value.removesuffix(".").split(".")
    if (
        not value.isascii()
        or any(not 1 <= len(label) <= 63 for label in labels)
        or len(value) > 253
    ):
        raise Invalid(
            "dns_name",
            "must be '.' or a DNS name: ASCII labels of 1 to 63 characters joined by dots, "
            "at most 253 in all",
        )
    return value


def _non_empty(value: T) -> T:
    if not value:
        raise Invalid("empty", "must not be empty")
    return value


def _name(value: str) -> str:
    """Non-empty, and no NUL: paths, argv items and kernel names end at the first one."""
    if not value:
        raise Invalid("empty", "must not be empty")
    if "\0" in value:
        raise Invalid("nul", "must not contain a NUL character")
    return value


_NAME = Check(_name, (("minLength", 1),))
"""`_name` with its JSON Schema."""


def _quoted(value: str) -> str:
    """`value` in quotes for a one-line message; escaped if it holds unprintable characters."""
    return f"'{value}'" if value.isprintable() else repr(value)


def _bytes_at_most(limit: int, why: str) -> Check:
    """At most `limit` bytes in UTF-8; `why` completes "is N bytes; ..."."""

    def check(value: str) -> str:
        size = len(value.encode())
        if size > limit:
            raise Invalid("length", f"is {size} bytes; {why}")
        return value

    return Check(check, (("maxLength", limit),))


# dev_valid_name() in net/core/dev.c: not "." or "..", no '/', ':' or isspace() byte. The
# kernel's isspace() is Latin-1's: it includes 0xa0 (a byte of many UTF-8 characters).
_IFNAME_BANNED = frozenset(b"/: \t\n\v\f\r\xa0")


def _interface_name(value: str) -> str:
    raw = value.encode()
    if len(raw) > IFNAME_MAX:
        raise Invalid(
            "interface",
            f"{_quoted(value)} is {len(raw)} bytes; an interface name has at most {IFNAME_MAX} "
            "(IFNAMSIZ is 16 with the NUL)",
        )
    if not raw or value in (".", "..") or any(byte in _IFNAME_BANNED for byte in raw):
        raise Invalid(
            "interface",
            f"{_quoted(value)} is not a valid interface name (no '/', ':' or whitespace; "
            "not '.' or '..'; 1-15 bytes)",
        )
    return value


_LOOPBACK = "a loopback address"


def _not_unicast(address: IPAddress) -> str | None:
    """What `address` is when it is no host's unicast address ("a multicast address"...)."""
    if isinstance(address, IPv4Address):
        value = int(address)
        if value == 0:
            return "the unspecified address"
        if value >> 24 == 0:
            return "in 0.0.0.0/8 (no host's address)"
        if value == U32_MAX:
            return "the broadcast address"
        if value >> 28 == 0xE:
            return "a multicast address"
        return _LOOPBACK if value >> 24 == 127 else None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    return _LOOPBACK if address.is_loopback else None


def _unicast(what: str, loopback: str) -> Callable[[IPAddress], IPAddress]:
    """Refuse what cannot be `what`; `loopback` says why a loopback address cannot."""

    def check(address: IPAddress) -> IPAddress:
        kind = _not_unicast(address)
        if kind is not None:
            reason = loopback if kind == _LOOPBACK else f"{what} needs a unicast address"
            raise Invalid("address", f"{address} is {kind}: {reason}")
        return address

    return check


_real_unicast = _unicast(
    "a real server",
    # ip_vs_nat_xmit(): "stopping DNAT to loopback address" for packets from the network.
    "IPVS does not forward to loopback (the kernel drops NAT to it for traffic from the "
    "network); to serve from this director, use one of its own addresses",
)
_service_address = _unicast("a virtual service", "no client on the network can reach it")
_vip_address = _unicast("a VIP", "no client on the network can reach it")


def _real_address(address: IPAddress) -> IPAddress:
    """A real or sorry server: an address the kernel accepts as an IPVS destination."""
    _real_unicast(address)
    if isinstance(address, IPv6Address) and address.is_link_local:
        # ip_vs_new_dest() refuses IPv6 link-local dests (unless local): they have no scope.
        raise Invalid(
            "address",
            f"{address} is an IPv6 link-local address: the kernel refuses it as a real "
            "(a real has no interface scope)",
        )
    return address


def _vip(vip: VipInterface) -> VipInterface:
    _vip_address(vip.ip)
    return vip


def _vip_interface(text: str) -> VipInterface:
    """``ip_interface(text)``, fast for the usual dotted quad."""
    if ":" in text:
        return IPv6Interface(text)
    return IPv4Interface(text)


def _vip_count(vips: tuple[VipInterface, ...]) -> tuple[VipInterface, ...]:
    if len(vips) > MAX_VIPS:
        raise Invalid(
            "vips",
            f"{len(vips)} addresses: VRRPv2 carries at most {MAX_VIPS} (count_ip is 8 bits); "
            "put the others in virtual_ipaddresses_excluded (not advertised) or in another "
            "instance",
        )
    return vips


def _destination(text: str) -> IPv4Network:
    """A route's or rule's destination: an exact network (``10.1.0.0/16``) or ``default``."""
    return IPv4Network("0.0.0.0/0" if text == "default" else text)


def _endpoint(value: str) -> str:
    try:
        _address, port = parse_endpoint(value)
        valid = port != 0
    except ValueError:
        valid = False
    if not valid:
        raise Invalid("endpoint", f"'{value}' is not ADDRESS:PORT (IPv6 in brackets, port 1-65535)")
    return value


# RFC 9112 §3.2.1 origin-form, "absolute-path [ '?' query ]", of RFC 3986 pchars. h11 itself
# refuses only non-ASCII (it cannot encode it), controls and spaces; the other characters
# outside these sets ('"', '<', '{', '#', a stray '%'...) make a request that strict servers
# answer with 400, and a '#' starts a fragment, which a client never sends.
_PATH_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@/?"
_HTTP_PATH = re.compile(rf"/(?:[{_PATH_CHARS}]|%[0-9A-Fa-f]{{2}})*")
_PATH_CHAR = re.compile(rf"[{_PATH_CHARS}]")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _http_path(path: str) -> str:
    if _HTTP_PATH.fullmatch(path):
        return path
    if not path.startswith("/"):
        raise Invalid("path", f"{_quoted(path)} must start with '/'")
    for index, char in enumerate(path):
        if _PATH_CHAR.fullmatch(char):
            continue
        if char == "%":
            if _PERCENT_ESCAPE.match(path, index):
                continue
            message = "'%' must start a percent-escape of two hex digits (%25 for '%' itself)"
        elif char == "#":
            message = f"a fragment ({_quoted(path[index:])}) is never sent to the server"
        else:
            message = (
                f"{char!r} cannot be sent in a request target: "
                f"percent-encode it as {quote(char, safe='')}"
            )
        raise Invalid("path", f"{_quoted(path)}: {message}")
    raise AssertionError("unreachable: the path matched character by character")


# Host header (RFC 9110 §7.2) and TLS server name: an IP address (IPv6 without brackets,
# `ipvsd.health.http.host_header` adds them) or an ASCII DNS name. h11 refuses non-ASCII
# header values; ssl refuses empty labels; a port would be added a second time.
_LABEL = r"[A-Za-z0-9_-]{1,63}"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST_NAME_MAX = 253


def _http_host(host: str) -> str:
    if _HOST_NAME.fullmatch(host) and len(host) <= _HOST_NAME_MAX:
        return host
    try:
        ip_address(host)
    except ValueError:
        pass
    else:
        return host
    shown = _quoted(host)
    name, _colon, port = host.rpartition(":")
    if not host.isascii() and host.isprintable():
        try:
            ascii_form = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        else:
            raise Invalid(
                "host",
                f"{shown} is not ASCII: write it as '{ascii_form}' (IDNA), the form that the "
                "Host header and TLS carry",
            )
    if host.startswith("[") and host.endswith("]"):
        raise Invalid(
            "host", f"{shown}: write an IPv6 address without brackets (the check adds them)"
        )
    if port.isdigit() and _HOST_NAME.fullmatch(name):
        raise Invalid("host", f"{shown}: no port: the check's port is added (set check.port)")
    raise Invalid(
        "host",
        f"{shown} is not a host name or IP address (letters, digits, '-' and '_' in "
        f"dot-separated labels of 1-63 characters, at most {_HOST_NAME_MAX} in all)",
    )


ADVERT_INT_V3_MAX = 40.95
"""VRRPv3's Max Adver Int: 12 bits of centiseconds (RFC 5798 §5.2.5)."""


def _advert_int(value: float) -> float:
    """The range both versions share; `ipvsd.config.checks` applies the version's own."""
    if not math.isfinite(value):
        raise Invalid("range", "must be a finite number of seconds")
    if not 0.01 <= value <= 255:
        raise Invalid(
            "range",
            "must be between 0.01 and 255 seconds (VRRPv2: whole seconds between 1 and 255; "
            f"VRRPv3: 0.01 to {ADVERT_INT_V3_MAX:g} in centisecond steps)",
        )
    return value


def _auth_pass(value: str) -> str:
    if not 1 <= len(value.encode()) <= 8:
        raise Invalid("auth_pass", "must be 1 to 8 characters (VRRPv2 auth data is 8 bytes)")
    return value


def _label(value: Protocol) -> str:
    return value.label


def _family_name(value: Family) -> str:
    return value.label


_IFNAME_SCHEMA = (("minLength", 1), ("maxLength", IFNAME_MAX), ("pattern", r"^(?!\.\.?$)[^/:\s]+$"))
_IP_ANY = _parsed("IPv4 or IPv6 address", _ip_any, (IPv4Address, IPv6Address), _IP_SCHEMA)
_NON_EMPTY_LIST = Check(_non_empty, (("minItems", 1),))

Name = Annotated[str, _NAME]
Interface = Annotated[str, Check(_interface_name, _IFNAME_SCHEMA)]
SocketPath = Annotated[
    str,
    _NAME,
    _bytes_at_most(
        SUN_PATH_MAX,
        f"a unix socket path has at most {SUN_PATH_MAX} (sun_path is 108 bytes with the NUL)",
    ),
]
PersistenceEngine = Annotated[
    str,
    _NAME,
    _bytes_at_most(PENAME_MAX, f"the kernel takes at most {PENAME_MAX} (IP_VS_PENAME_MAXLEN)"),
]
Port = Annotated[int, _int_range(1, 65535)]
PortOrZero = Annotated[int, _int_range(0, 65535)]
NonZeroByte = Annotated[int, _int_range(1, 255)]
NonNegative = Annotated[int, _at_least(0)]
IPAny = Annotated[IPAddress, _IP_ANY, Serialize(str)]
RealAddress = Annotated[
    IPAddress,
    _IP_ANY,
    Check(_real_address),
    Serialize(str),
]
ServiceAddress = Annotated[
    IPAddress,
    _IP_ANY,
    Check(_service_address),
    Serialize(str),
]
IPv4 = Annotated[
    IPv4Address,
    _parsed("IPv4 address", _ipv4, (IPv4Address,), _IPV4_SCHEMA),
    Serialize(str),
]
_VIP_PARSED = _parsed(
    "IP address or ADDRESS/PREFIX", _vip_interface, (IPv4Interface, IPv6Interface), _VIP_SCHEMA
)
Vip = Annotated[
    VipInterface,
    _VIP_PARSED,
    Check(_vip),
    Serialize(str),
]
ProtocolName = Annotated[
    Protocol,
    _choice("protocol", {p.label: p for p in Protocol}),
    Serialize(_label),
]
FamilyName = Annotated[
    Family,
    _choice("family", {family.label: family for family in Family}),
    Serialize(_family_name),
]
ForwardName = Annotated[
    ForwardMethod,
    _choice("forward method", {m.value: m for m in ForwardMethod}),
    Serialize(lambda m: m.value),
]
TunnelTypeName = Annotated[
    TunnelType,
    _choice("tunnel type", {t.name.lower(): t for t in TunnelType}),
    Serialize(lambda t: t.name.lower()),
]
TunnelChecksumName = Annotated[
    TunnelChecksum,
    _choice("tunnel checksum", {c.name.lower(): c for c in TunnelChecksum}),
    Serialize(lambda c: c.name.lower()),
]
Scheduler = Annotated[str, _choice("scheduler", {s: s for s in SCHEDULERS})]
InitialState = Annotated[str, _choice("initial state", {"backup": "backup", "master": "master"})]
SchedulerFlag = Annotated[str, _choice("scheduler flag", {f: f for f in SCHEDULER_FLAGS})]


class CheckType(enum.Enum):
    """How a real server is health-checked."""

    TCP = "tcp"  # connect() succeeds
    HTTP = "http"  # a GET gets an expected status (and body)
    HTTPS = "https"  # the same over TLS
    EXEC = "exec"  # a command exits 0
    UDP = "udp"  # a datagram draws no ICMP port unreachable (or an expected reply)
    DNS = "dns"  # a query is answered with NOERROR and a record of its type
    PING = "ping"  # an ICMP echo request is answered
    SMTP = "smtp"  # a 220 banner, then 250 to HELO
    NONE = "none"  # always up


PORT_CHECKS = frozenset(
    {CheckType.TCP, CheckType.HTTP, CheckType.HTTPS, CheckType.UDP, CheckType.DNS, CheckType.SMTP}
)
"""The check types that connect to a port (the check's, else the real's)."""


class OnFailure(enum.Enum):
    """What happens to a real whose check fails."""

    DRAIN = "drain"  # weight 0: established connections go on, no new ones
    REMOVE = "remove"  # the dest is deleted from the kernel


def _as_list(statuses: tuple[int, ...]) -> list[int]:
    return list(statuses)


CheckTypeName = Annotated[
    CheckType,
    _choice("check type", {t.value: t for t in CheckType}),
    Serialize(lambda t: t.value),
]
OnFailureName = Annotated[
    OnFailure,
    _choice("on_failure action", {a.value: a for a in OnFailure}),
    Serialize(lambda a: a.value),
]
CheckInterval = Annotated[float, _seconds(0.1)]
CheckTimeout = Annotated[float, _seconds(0.01)]
ResyncInterval = Annotated[float, _seconds(1)]
Count = Annotated[int, _int_range(1, 1000)]
HttpPath = Annotated[str, Check(_http_path, (("pattern", f"^{_HTTP_PATH.pattern}$"),))]
HttpHost = Annotated[str, _NAME, Check(_http_host, (("maxLength", _HOST_NAME_MAX),))]
Regex = Annotated[str, Check(_regex, (("format", "regex"),))]
HexBytes = Annotated[str, Check(_hex, (("pattern", "^([0-9a-fA-F]{2}| )*$"),))]
DnsName = Annotated[str, Check(_dns_name, (("maxLength", 253),))]
DNS_TYPES = ("A", "AAAA", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "SRV")
"""The record types a dns check asks for (``ipvsd.health.dns.QUERY_TYPES``)."""
DnsType = Annotated[str, _choice("DNS record type", {name: name for name in DNS_TYPES})]
Command = Annotated[tuple[Name, ...], _NON_EMPTY_LIST]
Statuses = Annotated[
    tuple[int, ...],
    Plain(
        _statuses,
        json.dumps(
            {
                "anyOf": [
                    *_STATUS_SCHEMA["anyOf"],
                    {"type": "array", "minItems": 1, "items": _STATUS_SCHEMA},
                ]
            }
        ),
    ),
    Serialize(_as_list),  # the validator makes any form a tuple
]
Md5Hex = Annotated[str, Check(_md5_hex, (("pattern", "^[0-9a-fA-F]{32}$"),))]
Weight = Annotated[int, _int_range(0, 65535)]
Threshold = Annotated[int, _int_range(0, U32_MAX)]
Fwmark = Annotated[int, _int_range(1, U32_MAX)]
Quorum = Annotated[int, _int_range(1, U32_MAX)]
Hysteresis = Annotated[int, _int_range(0, U32_MAX)]
PersistenceTimeout = Annotated[
    int,
    _int_range(
        0,
        PERSISTENCE_MAX,
        "31 days, as ipvsadm and keepalived; the kernel keeps it in jiffies, in 32 bits",
    ),
]
IpvsTimeout = Annotated[
    int,
    _int_range(0, IPVS_TIMEOUT_MAX, "INT_MAX / HZ, the kernel's limit for HZ up to 1000"),
]
Netmask = Annotated[int, _int_range(0, 128)]
AsNumber = Annotated[int, _int_range(1, U32_MAX)]
BgpHoldTime = Annotated[int, _int_range(3, 65535)]
BfdInterval = Annotated[float, _seconds(0.01, 10)]


def _bgp_password(value: str) -> str:
    if not 1 <= len(value) <= BGP_PASSWORD_MAX:
        raise Invalid("length", f"must be 1-{BGP_PASSWORD_MAX} characters (TCP_MD5SIG_MAXKEYLEN)")
    if not value.isascii() or not value.isprintable() or '"' in value or "\\" in value:
        raise Invalid("password", "must be printable ASCII without a double quote or a backslash")
    return value


BgpNeighbors = _NON_EMPTY_LIST
"""A non-empty list (``bgp.neighbors``)."""
BgpPassword = Annotated[
    str, Check(_bgp_password, (("minLength", 1), ("maxLength", BGP_PASSWORD_MAX)))
]
TrackWeight = Annotated[int, _int_range(-254, 254)]
GarpRepeat = Annotated[int, _int_range(0, 255)]
SyncId = Annotated[int, _int_range(0, 255)]
Ttl = Annotated[int, _int_range(0, 255)]
PreemptDelay = Annotated[float, _seconds(0, 1000)]
AdvertInt = Annotated[float, Check(_advert_int, (("minimum", 0.01), ("maximum", 255)))]
GarpDelay = Annotated[float, _seconds(0)]
GarpRefresh = Annotated[float, _off_or_seconds(1, 86400)]
AuthPass = Annotated[str, Check(_auth_pass, (("minLength", 1), ("maxLength", 8)))]
# Looser than parse_endpoint: an editor flags a missing port, the loader says the rest.
_ENDPOINT_SCHEMA = (
    ("pattern", r"^(\[[^\]]+\]|[0-9A-Fa-f.:]+):[0-9]+$"),
    ("examples", ("127.0.0.1:9477", "[::1]:9477")),
)
Endpoint = Annotated[str, Check(_endpoint, _ENDPOINT_SCHEMA)]
VIPS_LIMITS = (
    Check(_non_empty),
    Check(_vip_count, (("minItems", 1), ("maxItems", MAX_VIPS))),
)
"""What `virtual_ipaddresses` checks of its list: 1-255 entries (an advert's 8-bit count)."""
VIP_STRING = Plain(lambda value: _vip(_VIP_PARSED.check(value)), _VIP_PARSED.schema)
"""A VIP written as a string, ``ADDRESS[/PREFIX]`` (`StringOr`'s parser)."""
#: rtnetlink address scopes by the names ``ip`` gives them (linux/rtnetlink.h RT_SCOPE_*).
SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
Scope = Annotated[
    int,
    _choice("address scope", SCOPES),
    Serialize({v: k for k, v in SCOPES.items()}.__getitem__),
]
Label = Annotated[str, _NAME, _bytes_at_most(IFNAME_MAX, "the kernel's IFNAMSIZ")]
RouteTable = Annotated[int, _int_range(1, U32_MAX)]
RouteMetric = Annotated[int, _int_range(0, U32_MAX)]
RulePriority = Annotated[int, _int_range(0, U32_MAX)]
Destination = Annotated[
    IPv4Network,
    _parsed("IPv4 network ADDRESS/PREFIX (or default)", _destination, (IPv4Network,), _NET_SCHEMA),
    Serialize(str),
]


Names = Annotated[tuple[Name, ...], _NON_EMPTY_LIST]


def _group_member(value: str) -> str:
    try:
        parse_member(value)
    except ValueError as exc:
        raise Invalid("member", str(exc)) from None
    return value


GroupMember = Annotated[
    str,
    Check(
        _group_member,
        (("examples", ("192.168.1.200:80", "10.0.0.1-10:80", "[2001:db8::1]:80", "fwmark:7")),),
    ),
]
GroupMembers = Annotated[tuple[GroupMember, ...], _NON_EMPTY_LIST]


def _service_spec(value: str) -> str:
    try:
        parse_service_spec(value)
    except ValueError:
        raise Invalid(
            "service",
            f"'{value}' is not ADDRESS:PORT, udp/ADDRESS:PORT, sctp/ADDRESS:PORT or fwmark:N "
            "(IPv6 in brackets)",
        ) from None
    return value


ServiceSpec = Annotated[
    str,
    Check(_service_spec, (("examples", ("192.168.1.200:80", "udp/192.168.1.200:53", "fwmark:7")),)),
]
