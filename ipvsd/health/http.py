"""One HTTP/1.1 GET over an open stream, parsed by h11: the HTTP half of http/https checks.

`ipvsd.health.checks` opens the connection (TCP, then TLS for https) and
hands the stream over. This module is the only one that talks to h11 (style
G5), and h11's ``RemoteProtocolError`` becomes a failure value here.

Why h11 and not string matching: h11 is a complete HTTP/1.1 client state
machine with no I/O of its own (design.md: write no parser a well-kept library
provides). Matching ``HTTP/1.1 200`` by hand goes wrong on chunked bodies, 1xx
interim responses, bodies cut short and bad framing. h11 turns these into
events or errors.

The request is ``GET path`` with ``Host``, a recognisable ``User-Agent`` and
``Connection: close``. The status must be one of the expected ones (RFC 9110
§15). With a body regex, up to `BODY_LIMIT` bytes of the body are read,
decoded as UTF-8 (invalid bytes replaced), and searched with `re.search`.
With a digest (keepalived's ``digest``), the whole body is read and its MD5
compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import h11

from ipvsd import __version__
from ipvsd.config.types import status_ranges

__all__ = ["BODY_LIMIT", "USER_AGENT", "Progress", "get", "host_header"]

BODY_LIMIT = 1 << 20
"""Bytes of a response body that a body regex searches; the rest is not read."""
USER_AGENT = f"ipvsd-healthcheck/{__version__}"
"""User-Agent of HTTP(S) checks, so that reals can leave them out of access logs."""
ERROR_IN_REASON = 200
"""Characters of h11's error message kept in a reason (it may quote the peer's bytes)."""
_READ_SIZE = 65536


@dataclass(slots=True)
class Progress:
    """How far one check got; its phase goes into timeout and error reasons."""

    phase: str = "connect"


def host_header(
    host: str | None, address: IPv4Address | IPv6Address, port: int, default_port: int
) -> str:
    """The Host header (RFC 9110 §7.2): ``host[:port]``.

    Args:
        host: the configured host name; None uses the address.
        address: the address connected to.
        port: the port connected to; appended unless it is `default_port`.
        default_port: 80 for http, 443 for https.

    Returns:
        E.g. ``www.example.com``, ``10.0.0.1:8080``, ``[2001:db8::1]:8443``.
    """
    name = host or str(address)
    with contextlib.suppress(ValueError):
        if ip_address(name).version == 6:
            name = f"[{name}]"
    return name if port == default_port else f"{name}:{port}"


async def get(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    path: str,
    host: str,
    expected_status: Sequence[int],
    body_regex: str | None,
    progress: Progress,
    digest: str | None = None,
) -> tuple[bool, str]:
    """Send ``GET path`` and judge the response.

    Args:
        reader: the connection's reading side.
        writer: the connection's writing side (the caller closes it).
        path: the request target, starting with ``/``.
        host: the Host header value (see `host_header`).
        expected_status: status codes that mean up.
        body_regex: when set, the body must match it (``re.search``).
        progress: its phase is updated (``request``, ``response``, ``body``).
        digest: when set, the MD5 of the whole body, in lower-case hex, must be it.

    Returns:
        ``(ok, reason)``; a malformed response is ``(False, "bad HTTP response: ...")``.

    Raises:
        OSError: the connection failed (the caller turns it into a reason).
        h11.LocalProtocolError: `path` or `host` cannot go into a request (a
            bug: config validation should have refused them).
    """
    import h11  # only when an http check runs: not on a pure VRRP daemon's start

    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=path,
        headers=[
            ("Host", host),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    progress.phase = "request"
    writer.write(_send(conn, request) + _send(conn, h11.EndOfMessage()))
    await writer.drain()
    progress.phase = "response"
    try:
        return await _read_response(reader, conn, expected_status, body_regex, digest, progress)
    except h11.RemoteProtocolError as exc:
        return False, f"bad HTTP response: {str(exc)[:ERROR_IN_REASON]}"


async def _read_response(
    reader: asyncio.StreamReader,
    conn: h11.Connection,
    expected_status: Sequence[int],
    body_regex: str | None,
    digest: str | None,
    progress: Progress,
) -> tuple[bool, str]:
    """Feed the response to h11 until the status (and, with body_regex or digest, the body)
    is known. A digest covers the whole body (keepalived's): it is hashed as it comes,
    past `BODY_LIMIT` too, within the check's timeout."""
    import h11

    status = 0
    received = False
    body = bytearray()
    md5 = hashlib.md5(usedforsecurity=False) if digest is not None else None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            if not data and not status:
                return False, (
                    "connection closed mid-response"
                    if received
                    else "connection closed, no response"
                )
            received = True
            conn.receive_data(data)  # b"" is EOF: h11 ends a close-delimited body
        elif isinstance(event, h11.Response):
            status = event.status_code
            if status not in expected_status:
                return False, f"HTTP {status} (expected {status_ranges(expected_status)})"
            if body_regex is None and md5 is None:
                return True, f"HTTP {status}"
            progress.phase = "body"
        elif isinstance(event, h11.Data):
            if md5 is not None:
                md5.update(event.data)
            if len(body) < BODY_LIMIT and body_regex is not None:
                body += event.data
            elif md5 is None:
                break
        elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
        # InformationalResponse (1xx): the final response follows.
    if md5 is not None and md5.hexdigest() != digest:
        return False, f"body digest {md5.hexdigest()} (expected {digest})"
    if body_regex is None:
        return True, f"HTTP {status}, digest matches"
    text = bytes(body[:BODY_LIMIT]).decode("utf-8", errors="replace")
    if re.search(body_regex, text) is None:
        return False, f"body does not match {body_regex!r}"
    return True, f"HTTP {status}, body matches"


def _send(conn: h11.Connection, event: h11.Request | h11.EndOfMessage) -> bytes:
    data = conn.send(event)
    assert data is not None  # h11 returns None only for ConnectionClosed
    return data
