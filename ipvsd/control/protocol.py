"""The control protocol (pure): what ``ipvsd status`` / ``reload`` / ``drain`` talk to.

Protocol: JSON lines over a unix stream socket. A client sends one JSON
object per line and gets exactly one JSON object per line back, in order;
several requests may share a connection.

```
{"command": "status"}    -> {"ok": true, "result": {...the status JSON contract...}}
                            (the view writes the contract's text, `ControlView.status_text`)
{"command": "status", "services": false}  -> the same with "services": [] (no kernel
                            read: ``ipvsd status --check`` reads only the VRRP states)
{"command": "ready"}     -> {"ok": true, "result": {"ready": true}}
{"command": "version"}   -> {"ok": true, "result": {"version": "0.1.0"}}
{"command": "reload"}    -> {"ok": true, "result": {"reloaded": true}}, or refused:
                            {"ok": false, "error": "...", "errors": ["PATH:LINE: ...", ...]}
{"command": "reload", "force": true}  -> the same, applying what only the guards refuse
{"command": "drain", "service": "192.168.1.200:80", "real": "192.168.1.30:80"}
                         -> {"ok": true, "result": {"service": ..., "real": ..., "drained": true,
                                                    "node": "director1"}}
                            (a drain is this director's alone: "node" says whose)
{"command": "undrain", ...}  -> the same with "drained": false
{"command": "drain", "all": true}  -> {"ok": true, "result": {"all": true, "drained": true,
                                                               "node": "director1"}}
                            (BGP mode: the whole director withdraws its VIPs; "undrain"
                            announces them again)
anything wrong           -> {"ok": false, "error": "what was wrong"}
```

Rules:

1. Read-only commands (status, ready, version) are for anyone who can connect:
   the socket's mode decides who (0600 root only, 0660 with ``control.group``).
   Mutating ones (reload, drain, undrain) also need the peer to be uid 0, as
   the kernel reports it (SO_PEERCRED): group members can look, not change.
2. A peer's bad request is a value, not a crash (style G9): it is answered with
   ``ok: false`` and logged. Input that cannot be framed (not JSON, not an
   object, a line over 64 KiB) also closes the connection.
3. The server defends the daemon: an idle timeout per connection, caps on
   concurrent connections (`admit_connection`: one for all, one per non-root
   uid, and a few slots only root may take, so group members cannot lock root
   out; a refused connection is answered
   ``{"ok": false, "error": "busy: ..."}`` and closed), and no exception from
   a connection reaches the daemon. Even a bug behind ``status`` is logged
   (``control.error``) and answered as an internal error: ending the daemon
   would fail the VIPs over for an operator's ``ipvsd status``. Input nested
   too deeply for the JSON parser is a malformed request, not a bug.
4. Logs of refusals are rate-limited per uid and truncated: a peer's request
   is never copied whole into the journal.

This module is the pure part (no sockets, no logging): `evaluate_request`
parses a line, checks permissions and calls the `ControlView` the daemon
implements; `ipvsd.control.server.ControlServer` is the asyncio edge around it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ipvsd.errors import ControlRequestError, IpvsdError
from ipvsd.model import DestKey, RealId, ServiceKey, parse_endpoint, parse_service_spec

MAX_REQUEST_BYTES = 64 * 1024
"""Longest request line accepted, without its newline."""

READ_ONLY_COMMANDS = frozenset({"status", "ready", "version"})
MUTATING_COMMANDS = frozenset({"reload", "drain", "undrain"})
_COMMANDS = ", ".join(sorted(READ_ONLY_COMMANDS | MUTATING_COMMANDS))


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who is on the other end of a unix socket, as the kernel vouches (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Caps on concurrent control connections (see `admit_connection`)."""

    max_connections: int = 64
    """Connections served at once, all peers together."""
    max_per_uid: int = 8
    """Connections one non-root uid may hold."""
    root_reserved: int = 4
    """Slots only uid 0 may take (at most ``max_connections - 1`` of them)."""

    def __post_init__(self) -> None:
        for name, least in (("max_connections", 1), ("max_per_uid", 1), ("root_reserved", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, not {getattr(self, name)}")


def admit_connection(
    limits: ConnectionLimits, open_by_uid: Mapping[int, int], uid: int
) -> str | None:
    """Whether a new connection from `uid` may be served.

    Root may use every slot. Any other uid may hold ``max_per_uid``
    connections and only while more than ``root_reserved`` slots are free,
    so however many uids a group has, root is still answered.

    Args:
        limits: the caps.
        open_by_uid: connections being served now, by peer uid.
        uid: the new peer's uid (SO_PEERCRED).

    Returns:
        None to serve it, else the refusal to answer with before closing.
    """
    total = sum(open_by_uid.values())
    busy = "busy: too many control connections; try again"
    if uid == 0:
        return busy if total >= limits.max_connections else None
    if open_by_uid.get(uid, 0) >= limits.max_per_uid:
        return f"busy: too many control connections from uid {uid}; try again"
    reserved = min(limits.root_reserved, limits.max_connections - 1)
    return busy if total >= limits.max_connections - reserved else None


class ControlView(Protocol):
    """What the daemon exposes to the control socket (implemented by `daemon.py`)."""

    @property
    def version(self) -> str:
        """The daemon's version (``ipvsd.__version__``)."""

    @property
    def node(self) -> str:
        """This director's name (``node_name``)."""

    async def status_text(self, *, services: bool = True) -> list[str]:
        """The status document's JSON text in pieces to join, with counters read from
        the kernel now (`ipvsd.control.status_json.document_text`); without
        `services`, an empty list of them and no kernel read."""

    async def reload(self, *, force: bool = False) -> list[str]:
        """Re-read the config; return its errors (empty: reloaded, else the old one is kept).

        `force` applies a config that only the guards refuse (every VRRP
        instance removed, more deletions than ``ipvs.max_deletes``).
        """

    def drain(self, service: ServiceKey, real: DestKey) -> None:
        """Drain a real (weight 0 in the kernel) until `undrain`.

        Raises:
            ControlRequestError: the service or the real is not configured.
        """

    def undrain(self, service: ServiceKey, real: DestKey) -> None:
        """Give a drained real its configured weight back.

        Raises:
            ControlRequestError: the service or the real is not configured.
        """

    def drain_director(self, drained: bool) -> None:
        """Drain (True) or undrain the whole director: BGP withdraws / announces its VIPs.

        Raises:
            ControlRequestError: BGP is not configured, or the state could not be kept.
        """

    def ready(self) -> bool:
        """True once the first reconcile is done and no VRRP instance is in INIT or FAULT."""


class _MalformedRequest(ControlRequestError):
    """The request cannot be parsed at all; the connection is closed after the answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one request line, with what the server needs besides."""

    response: dict[str, Any]
    """The answer; for a status, only ``{"ok": true}``: its text is `pieces`."""
    command: str | None = None  # the command, if the request got that far (for logs)
    close: bool = False  # hang up after answering: the input could not be parsed
    pieces: list[str] | None = None
    """A status answer's line as text pieces to write in turn (tens of MB at 10,000
    services, written from the daemon's parts, never one dict); None: `encode(response)`."""


async def handle_request(line: bytes, view: ControlView, peer: PeerCredentials) -> dict[str, Any]:
    """Answer one request line.

    Args:
        line: the request, one JSON object (a trailing newline is allowed).
        view: the daemon.
        peer: who sent it (mutating commands need uid 0).

    Returns:
        ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
    """
    answer = await evaluate_request(line, view, peer)
    if answer.pieces is not None:
        response: dict[str, Any] = json.loads("".join(answer.pieces))
        return response
    return answer.response


async def evaluate_request(line: bytes, view: ControlView, peer: PeerCredentials) -> Answer:
    """`handle_request`, also saying which command it was and whether to hang up."""
    try:
        request = _parse(line)
    except _MalformedRequest as exc:
        return Answer(error_response(str(exc)), close=True)
    command = request.get("command")
    if not isinstance(command, str):
        return Answer(error_response(f'missing "command" (one of: {_COMMANDS})'))
    try:
        if command == "status":  # no permission to check; a text of its own
            services = request.get("services", True)
            if not isinstance(services, bool):
                raise ControlRequestError('"services" must be true or false')
            pieces = await view.status_text(services=services)
            return Answer({"ok": True}, command, pieces=[_OK_RESULT, *pieces, "}\n"])
        response = await _dispatch(command, request, view, peer)
    except ControlRequestError as exc:
        response = error_response(str(exc))
    except IpvsdError as exc:  # e.g. the kernel refused the status dump
        response = error_response(f"{command} failed: {exc}")
    return Answer(response, command=command)


def _parse(line: bytes) -> dict[str, Any]:
    body = line.rstrip(b"\r\n")
    if len(body) > MAX_REQUEST_BYTES:
        raise _MalformedRequest(f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")  # json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError:
        raise _MalformedRequest("request is not valid UTF-8") from None
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise _MalformedRequest(f"request is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. 60,000 "[": the parser recurses once per level
        raise _MalformedRequest("request is nested too deeply") from None
    if not isinstance(request, dict):
        raise _MalformedRequest(
            f'request must be a JSON object like {{"command": "status"}}, '
            f"not {type(request).__name__}"
        )
    return request


async def _dispatch(
    command: str, request: dict[str, Any], view: ControlView, peer: PeerCredentials
) -> dict[str, Any]:
    if command not in READ_ONLY_COMMANDS | MUTATING_COMMANDS:
        raise ControlRequestError(f"unknown command {command!r} (one of: {_COMMANDS})")
    if command in MUTATING_COMMANDS and peer.uid != 0:
        raise ControlRequestError(
            f"permission denied: {command} needs root (you are uid {peer.uid})"
        )
    match command:
        case "ready":
            return _ok({"ready": view.ready()})
        case "version":
            return _ok({"version": view.version})
        case "reload":
            force = request.get("force", False)
            if not isinstance(force, bool):
                raise ControlRequestError('"force" must be true or false')
            errors = await view.reload(force=True) if force else await view.reload()
            if errors:
                return {
                    "ok": False,
                    "error": "reload refused; the running config is kept",
                    "errors": errors,
                }
            return _ok({"reloaded": True})
        case _ if request.get("all", False) is not False:
            if request.get("all") is not True:
                raise ControlRequestError('"all" must be true or false')
            if "service" in request or "real" in request:
                raise ControlRequestError('"all" drains the whole director: no service or real')
            drained = command == "drain"
            view.drain_director(drained)
            return _ok({"all": True, "drained": drained, "node": view.node})
        case _:
            service, real = _target(request)
            drained = command == "drain"
            (view.drain if drained else view.undrain)(service, real)
            return _ok(
                {"service": str(service), "real": str(real), "drained": drained, "node": view.node}
            )


def _target(request: dict[str, Any]) -> RealId:
    """The (service, real) a drain / undrain names."""
    texts = []
    for field, example in (("service", "192.168.1.200:80"), ("real", "192.168.1.30:80")):
        value = request.get(field)
        if not isinstance(value, str):
            raise ControlRequestError(f'"{field}" is required, as a string like "{example}"')
        texts.append(value)
    try:
        service = parse_service_spec(texts[0])
    except ValueError as exc:
        raise ControlRequestError(f"service: {exc}") from None
    try:
        address, port = parse_endpoint(texts[1])
    except ValueError as exc:
        raise ControlRequestError(f"real: {exc}") from None
    return service, DestKey(address, port)


_OK_RESULT = '{"ok":true,"result":'
"""`encode` of ``_ok(result)`` up to the result's text."""


def _ok(result: object) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error_response(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def encode(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode() + b"\n"
