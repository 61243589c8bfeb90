"""keepalived's real-server checkers → ipvsd checks. Pure.

keepalived's semantics (2.2, keepalived/check/check_api.c and friends), and
their ipvsd form:

- A checker runs every ``delay_loop`` seconds (default 60) → ``interval``;
  a TCP/HTTP/SSL connection gives up after ``connect_timeout`` (default 5) →
  ``timeout``; MISC_CHECK's ``misc_timeout`` defaults to ``delay_loop``.
- A checker that fails while its real is up is retried ``retry`` times
  (default 1, MISC_CHECK 0, DNS_CHECK 3) before the real goes down → ``fall:
  retry + 1``; each retry ``delay_before_retry`` after the failure (default
  1 s, HTTP_GET and SSL_GET 3 s, DNS_CHECK ``delay_loop``) →
  ``retry_interval``, written out whenever there are retries and it is less
  than ``interval``. keepalived counts it from the failed check's end (the
  MISC_CHECK from its start), ipvsd from its start: a timing-out check's
  retry comes up to ``timeout`` sooner. ipvsd retries no slower than it
  checks: a ``delay_before_retry`` above ``delay_loop`` is reported (retries
  every ``interval``; so are HTTP's 3 s above a shorter ``delay_loop``, with
  no directive to report), one below 0.1 s is 0.1 s (reported).
- One good check brings a real back → ``rise: 1``.
- Each value is the checker's own, else the real_server's, else the
  virtual_server's (`Timing` carries the inherited ones), else the default.
- TCP_CHECK → ``tcp``; HTTP_GET → ``http``; SSL_GET → ``https`` (neither
  verifies certificates); MISC_CHECK → ``exec`` (``misc_path`` split as
  keepalived splits it; ``misc_dynamic`` → ``dynamic_weight``, the same exit
  status rules); SMTP_CHECK → ``smtp`` (``helo_name``, keepalived's default
  ``smtpchecker.keepalived.org`` written out; each deprecated ``host`` block
  → one smtp check to its address); UDP_CHECK → ``udp``
  (``payload`` → ``payload_hex``, ``require_reply`` → ``require_reply`` and
  its hex data, a prefix of the reply, → ``reply_regex``); DNS_CHECK → ``dns``
  (``type`` → ``query_type``, ``name`` → ``query_name``); PING_CHECK →
  ``ping``. ``connect_ip``, ``connect_port``, ``bindto`` → ``address``, ``port``,
  ``source_address``. HTTP's ``url``: ``path``, ``status_code`` (default
  200-299, written as ``"200-299"``) → ``expected_status``, ``regex`` →
  ``body_regex``, ``digest`` → ``digest``, ``virtualhost`` (url, checker,
  real, virtual server) → ``host``; several ``url`` blocks → ``urls``.
- A real with several checkers is up while every one passes, in keepalived
  as in ipvsd: the first becomes the real's ``check``, the others its
  ``checks``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ipvsd.config.model import CheckConfig, UrlConfig
from ipvsd.config.types import DNS_TYPES, status_ranges
from ipvsd.importers import keepalived_keywords as keywords
from ipvsd.importers.keepalived_ledger import (
    Ledger,
    argument,
    flag,
    integer,
    number,
    seconds,
)
from ipvsd.importers.keepalived_parse import Node
from ipvsd.importers.keepalived_tracking import command
from ipvsd.importers.keepalived_vrrp import unknown
from ipvsd.importers.report import ordered

DELAY_LOOP = 60.0  # KEEPALIVED_DEFAULT_DELAY
CONNECT_TIMEOUT = 5.0  # alloc_vs(): connection_to = 5 * TIMER_HZ
DEFAULT_STATUS = tuple(range(200, 300))  # HTTP_DEFAULT_STATUS_CODE_MIN..MAX
FALL_MAX = 1000
RETRY_MIN = 0.1  # ipvsd's least retry_interval
_RETRIES = {"exec": 0, "dns": 3}  # check_misc.c, check_dns.c DNS_DEFAULT_RETRY; others: 1
_RETRY_DELAYS = {"http": 3.0, "https": 3.0, "dns": None}  # None: delay_loop; others: 1 s

_TYPES = {
    "TCP_CHECK": "tcp",
    "HTTP_GET": "http",
    "SSL_GET": "https",
    "MISC_CHECK": "exec",
    "SMTP_CHECK": "smtp",
    "UDP_CHECK": "udp",
    "DNS_CHECK": "dns",
    "PING_CHECK": "ping",
}
SMTP_HELO = "smtpchecker.keepalived.org"  # check_smtp.h SMTP_DEFAULT_HELO
CHECKERS = frozenset(_TYPES) | frozenset(keywords.UNSUPPORTED_CHECKERS)


@dataclass(frozen=True, slots=True)
class Timing:
    """Checker settings a virtual_server or real_server passes down (None: not set there).

    Attributes:
        delay_loop: seconds between checks.
        connect_timeout: seconds a connection may take.
        retry: retries before a real goes down.
        delay_before_retry: seconds from a failed check to its retry, and the
            directive that set it.
        virtualhost: the HTTP Host header.
        alpha: reals start down until a check passes.
    """

    delay_loop: float | None = None
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: tuple[float, Node] | None = None
    virtualhost: str | None = None
    alpha: bool | None = None

    def under(self, outer: Timing) -> Timing:
        """These settings, each taken from `outer` where not set here."""
        return Timing(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(_values(self), _values(outer), strict=True)
            )
        )


def _values(timing: Timing) -> tuple[Any, ...]:
    return (
        timing.delay_loop,
        timing.connect_timeout,
        timing.retry,
        timing.delay_before_retry,
        timing.virtualhost,
        timing.alpha,
    )


@dataclass(slots=True)
class Check:
    """A converted checker: the check's fields and the notes to write with them."""

    fields: dict[str, Any]
    notes: dict[str, str] = field(default_factory=dict)


def timing_keyword(ledger: Ledger, node: Node, timing: Timing) -> Timing | None:
    """`timing` updated by `node` if it is a timing keyword; else None.

    An invalid value is reported and leaves `timing` as it was.
    """
    match node.directive:
        case "delay_loop":
            value = seconds(ledger, node, 0.1)
            return _taken(ledger, node, timing, delay_loop=value)
        case "connect_timeout":
            value = seconds(ledger, node, 0.01)
            return _taken(ledger, node, timing, connect_timeout=value)
        case "retry" | "nb_get_retry":
            count = integer(ledger, node, 0, 2**32 - 1)
            return _taken(ledger, node, timing, retry=count)
        case "delay_before_retry":
            delay = seconds(ledger, node)
            if delay is not None and delay < RETRY_MIN:
                ledger.report(
                    node, f"ipvsd retries {RETRY_MIN:g} s after a failed check at the soonest"
                )
                delay = RETRY_MIN
            return _taken(
                ledger, node, timing, delay_before_retry=None if delay is None else (delay, node)
            )
        case "virtualhost":
            host = argument(ledger, node)
            return _taken(ledger, node, timing, virtualhost=host)
        case "alpha":
            on = flag(ledger, node)
            return _taken(ledger, node, timing, alpha=on)
        case "warmup":
            ledger.report(node, keywords.CHECKER["warmup"])
            return timing
    return None


def _taken(ledger: Ledger, node: Node, timing: Timing, **change: Any) -> Timing:
    """`timing` with `change` applied and `node` converted; unchanged if the value is None."""
    if any(value is None for value in change.values()):
        return timing
    ledger.take(node)
    return replace(timing, **change)


def checks(ledger: Ledger, nodes: Sequence[Node], timing: Timing) -> list[Check]:
    """The checks of one real from its checker blocks, in order; unsupported ones reported."""
    converted: list[Check] = []
    for node in nodes:
        unsupported = keywords.UNSUPPORTED_CHECKERS.get(node.directive)
        if unsupported is not None:
            ledger.drop_block(node, unsupported)
            continue
        converted.extend(_checker(ledger, node, timing))
    return converted


def _checker(ledger: Ledger, node: Node, outer: Timing) -> list[Check]:
    """One checker block; several checks for an SMTP_CHECK with ``host`` blocks."""
    kind = _TYPES[node.directive]
    check: dict[str, Any] = {"type": kind}
    timing = Timing()
    urls: list[Node] = []
    hosts: list[dict[str, Any]] = []
    misc: dict[str, Any] = {}
    for child in ledger.block(node):
        updated = timing_keyword(ledger, child, timing)
        if updated is not None:
            timing = updated
        elif _connection(ledger, child, check):
            pass
        elif child.directive == "url" and kind in ("http", "https"):
            urls.append(child)
        elif child.directive == "host" and kind == "smtp" and child.children is not None:
            hosts.append(_smtp_host(ledger, child))
        elif child.directive in ("misc_path", "misc_timeout", "misc_dynamic") and kind == "exec":
            _misc(ledger, child, misc)
        elif _own_keyword(ledger, child, kind, check):
            pass
        elif child.directive in keywords.CHECKER:
            message = keywords.CHECKER[child.directive]
            if child.children is not None:
                ledger.drop_block(child, message)
            else:
                ledger.report(child, message)
        else:
            unknown(ledger, child, node.directive)
    timing = timing.under(outer)
    if kind == "exec":
        if "command" not in misc:
            ledger.drop_block(node, "has no misc_path: not converted")
            return []
        check["command"] = misc["command"]
        if misc.get("dynamic_weight"):
            check["dynamic_weight"] = True
    if kind in ("http", "https"):
        _url(ledger, urls, check, timing)
    notes: dict[str, str] = {}
    if kind == "smtp" and "helo_name" not in check:
        check["helo_name"] = SMTP_HELO
        notes["helo_name"] = "keepalived's default helo_name"
    ledger.take(node)
    # keepalived checks each host block instead of the checker's own address, and the
    # real only while all answer: one check each here.
    converted = []
    for host in hosts or [{}]:
        timed = _timed(ledger, {**check, **host}, timing, kind, misc.get("timeout"))
        timed.notes.update(notes)
        converted.append(timed)
    return converted


def _smtp_host(ledger: Ledger, node: Node) -> dict[str, Any]:
    """An SMTP_CHECK ``host`` block's connect_ip / connect_port / bindto."""
    ledger.take(node)
    fields: dict[str, Any] = {}
    for child in ledger.block(node):
        if not _connection(ledger, child, fields):
            ledger.report(child, "ipvsd takes a host's other settings from its SMTP_CHECK: ignored")
    return fields


_UDP_LENGTHS = "ipvsd does not bound a reply's length (reply_regex can): ignored"


def _own_keyword(ledger: Ledger, node: Node, kind: str, check: dict[str, Any]) -> bool:
    """A keyword of SMTP_CHECK, UDP_CHECK or DNS_CHECK; False when `node` is none of them."""
    match kind, node.directive:
        case "smtp", "helo_name":
            name = argument(ledger, node)
            if name is not None:
                check["helo_name"] = name
                ledger.take(node)
        case "udp", "payload":
            data = _hex(ledger, node)
            if data is not None:
                check["payload_hex"] = data.hex()
                ledger.take(node)
        case "udp", "require_reply":
            check["require_reply"] = True
            if node.args:
                data = _hex(ledger, node)
                if data is None:
                    return True
                # keepalived compares the reply's first bytes with these (no mask here)
                check["reply_regex"] = r"\A" + re.escape(data.decode("latin-1"))
            ledger.take(node)
        case "udp", "min_reply_length" | "max_reply_length":
            ledger.report(node, _UDP_LENGTHS)
        case "dns", "type":
            written = argument(ledger, node)
            if written is None:
                return True
            qtype = written.upper()
            if qtype in DNS_TYPES:
                check["query_type"] = qtype
                ledger.take(node)
            else:
                ledger.report(node, f"not one of {', '.join(DNS_TYPES)}: ignored (SOA)")
        case "dns", "name":
            name = argument(ledger, node)
            if name is not None:
                check["query_name"] = name
                ledger.take(node)
        case _:
            return False
    return True


def _hex(ledger: Ledger, node: Node) -> bytes | None:
    """keepalived's hex string (spaces allowed); None, reported, when it has a mask or typo."""
    text = "".join(node.args)
    try:
        return bytes.fromhex(text)
    except ValueError:
        ledger.report(node, f"'{' '.join(node.args)}' is not plain hex bytes: not converted")
        return None


def _connection(ledger: Ledger, node: Node, check: dict[str, Any]) -> bool:
    """connect_ip / connect_port / bindto; False when `node` is none of them."""
    names = {"connect_ip": "address", "connect_port": "port", "bindto": "source_address"}
    target = names.get(node.directive)
    if target is None:
        return False
    if target == "port":
        port = integer(ledger, node, 1, 65535)
        if port is not None:
            check["port"] = port
            ledger.take(node)
    else:
        address = argument(ledger, node)
        if address is not None:
            check[target] = address
            ledger.take(node)
    return True


def _misc(ledger: Ledger, node: Node, misc: dict[str, Any]) -> None:
    if node.directive == "misc_path":
        argv = command(ledger, node, "has no command: ignored")
        if argv:
            misc["command"] = argv
    elif node.directive == "misc_dynamic":
        on = flag(ledger, node)
        if on is not None:
            misc["dynamic_weight"] = on
            ledger.take(node)
    else:
        timeout = seconds(ledger, node, 0.01)
        if timeout is not None:
            misc["timeout"] = timeout
            ledger.take(node)


def _url(ledger: Ledger, urls: list[Node], check: dict[str, Any], timing: Timing) -> None:
    """The ``url`` blocks: one is the check's own fields, several its ``urls``.

    keepalived's default status_code (200-299) is written out, since ipvsd's is 200.
    """
    host = timing.virtualhost
    converted: list[dict[str, Any]] = []
    for url in urls:
        ledger.take(url)
        fields: dict[str, Any] = {}
        statuses: tuple[int, ...] = ()
        for child in ledger.block(url):
            match child.directive:
                case "path" | "regex" | "digest":
                    value = argument(ledger, child)
                    if value is not None:
                        name = {"path": "path", "regex": "body_regex", "digest": "digest"}
                        fields[name[child.directive]] = value
                        ledger.take(child)
                case "status_code":
                    statuses = _statuses(ledger, child)
                case "virtualhost":
                    written = argument(ledger, child)
                    if written is None:
                        continue
                    if converted and written != host:
                        ledger.report(
                            child,
                            "ipvsd sends one Host per check (the first url's): not converted",
                        )
                    else:
                        host = written
                        ledger.take(child)
                case _ if child.directive in keywords.URL:
                    ledger.report(child, keywords.URL[child.directive])
                case _:
                    unknown(ledger, child, "url")
        fields["expected_status"] = status_value(statuses or DEFAULT_STATUS)
        converted.append(ordered(fields, UrlConfig))
    if len(converted) == 1:
        check.update(converted[0])
    elif converted:
        check["urls"] = converted
    else:
        check["expected_status"] = status_value(DEFAULT_STATUS)
    if host is not None:
        check["host"] = host


def status_value(codes: Sequence[int]) -> int | str | list[int | str]:
    """``expected_status`` as written: ``"200-299"``, ``200``, or a list of both."""
    items: list[int | str] = []
    for part in status_ranges(codes).split(", "):
        items.append(part if "-" in part else int(part))
    return items[0] if len(items) == 1 else items


def _statuses(ledger: Ledger, node: Node) -> tuple[int, ...]:
    """``status_code 200-299 301 503``: every code of the ranges, in order."""
    codes: list[int] = []
    for word in node.args:
        low, _, high = word.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            first, last = 0, -1
        if not 100 <= first <= last <= 599:
            ledger.report(node, f"'{word}' is not a status code or range from 100 to 599: ignored")
            continue
        codes.extend(code for code in range(first, last + 1) if code not in codes)
    if codes:
        ledger.take(node)
    return tuple(codes)


def _timed(
    ledger: Ledger,
    check: dict[str, Any],
    timing: Timing,
    kind: str,
    misc_timeout: float | None,
) -> Check:
    """The check with keepalived's timing made explicit (its defaults are not ipvsd's)."""
    notes: dict[str, str] = {}
    interval = timing.delay_loop if timing.delay_loop is not None else DELAY_LOOP
    if timing.delay_loop is None:
        notes["interval"] = "keepalived's default delay_loop"
    if kind == "exec":
        timeout = misc_timeout if misc_timeout is not None else interval
    elif timing.connect_timeout is not None:
        timeout = timing.connect_timeout
    else:
        timeout = CONNECT_TIMEOUT
        notes["timeout"] = "keepalived's default connect_timeout"
    retry = timing.retry if timing.retry is not None else _RETRIES.get(kind, 1)
    fall = min(retry + 1, FALL_MAX)
    check["interval"] = number(interval)
    check["timeout"] = number(timeout)
    check["rise"] = 1
    check["fall"] = fall
    notes["rise"] = "keepalived puts a real back after one good check"
    notes["fall"] = f"keepalived retry {retry}: down after {fall} failed check" + (
        "s in a row" if fall > 1 else ""
    )
    if fall > 1:
        _retry_interval(ledger, check, notes, timing, kind, interval)
    return Check(ordered(check, CheckConfig), notes)


def _retry_interval(
    ledger: Ledger,
    check: dict[str, Any],
    notes: dict[str, str],
    timing: Timing,
    kind: str,
    interval: float,
) -> None:
    """keepalived's delay_before_retry (or its default) as ``retry_interval`` (the
    module docstring); nothing when it is ``interval`` (ipvsd's null)."""
    if timing.delay_before_retry is not None:
        delay, node = timing.delay_before_retry
        if delay > interval:
            if not ledger.reported(node):
                ledger.report(
                    node,
                    f"ipvsd retries no slower than it checks: retries every interval "
                    f"({number(interval)} s, delay_loop) instead of every {number(delay)} s",
                )
            return
    else:
        delay = _RETRY_DELAYS.get(kind, 1.0) or interval
        notes["retry_interval"] = "keepalived's default delay_before_retry"
    if delay < interval:
        check["retry_interval"] = number(delay)


def share(checks: Sequence[Check | None]) -> tuple[Check | None, list[Check | None]]:
    """One service check with the reals' common fields, and each real's own fields.

    Args:
        checks: the check of each real (None: keepalived checks it never).

    Returns:
        The service's check (None when no real is checked) and, per real,
        the fields it sets itself, with their notes (None: none); an
        unchecked real among checked ones gets ``type: none``.
    """
    checked = [check for check in checks if check is not None]
    if not checked:
        return None, [None] * len(checks)
    first = checked[0].fields
    if any(
        check.fields["type"] != first["type"] or check.fields.get("command") != first.get("command")
        for check in checked
    ):
        # A service check needs a type (and exec a command): with none common, each real
        # gets its whole check and the unchecked ones none.
        return None, list(checks)
    common = {
        key: value
        for key, value in first.items()
        if all(key in other.fields and other.fields[key] == value for other in checked)
    }
    common.setdefault("type", first["type"])
    if "interval" not in common:
        # retry_interval is at most interval: the service check would have ipvsd's default
        common.pop("retry_interval", None)
    notes = {key: note for key, note in checked[0].notes.items() if key in common}
    base = Check(ordered(common, CheckConfig), notes)
    overrides: list[Check | None] = []
    for check in checks:
        if check is None:
            overrides.append(Check({"type": "none"}, {"type": "keepalived runs no check on it"}))
            continue
        own = {key: value for key, value in check.fields.items() if common.get(key) != value}
        own_notes = {key: note for key, note in check.notes.items() if key in own}
        overrides.append(Check(own, own_notes) if own else None)
    return base, overrides
