"""The control socket: what ``ipvsd status`` / ``reload`` / ``drain`` talk to.

Protocol: JSON lines over a unix stream socket. A client sends one JSON
object per line and gets exactly one JSON object per line back, in order;
several requests may share a connection.

```
{"command": "status"}    -> {"ok": true, "result": {...the status JSON contract...}}
{"command": "ready"}     -> {"ok": true, "result": {"ready": true}}
{"command": "version"}   -> {"ok": true, "result": {"version": "0.1.0"}}
{"command": "reload"}    -> {"ok": true, "result": {"reloaded": true}}, or refused:
                            {"ok": false, "error": "...", "errors": ["PATH:LINE: ...", ...]}
{"command": "drain", "service": "192.168.1.200:80", "real": "192.168.1.30:80"}
                         -> {"ok": true, "result": {"service": ..., "real": ..., "drained": true}}
{"command": "undrain", ...}  -> the same with "drained": false
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
3. The server defends the daemon: an idle timeout per connection, a cap on
   concurrent connections (the next one is answered "busy" and closed), and no
   exception from a connection reaches the daemon. Even a bug behind ``status``
   is logged (``control.error``) and answered as an internal error: ending the
   daemon would fail the VIPs over for an operator's ``ipvsd status``.

`handle_request` is the pure part (no sockets, no logging): it parses a line,
checks permissions and calls the `ControlView` the daemon implements;
`ControlServer` is the asyncio edge around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from ipvsd.errors import ControlRequestError, IpvsdError
from ipvsd.model import DestKey, ServiceKey, parse_endpoint, parse_service_spec

log = structlog.get_logger("ipvsd.control")

MAX_REQUEST_BYTES = 64 * 1024
"""Longest request line accepted, without its newline."""
DEFAULT_IDLE_TIMEOUT_S = 10.0
"""Seconds a connection may wait for its next request line (or take to read an answer)."""
DEFAULT_MAX_CONNECTIONS = 64
"""Connections served at once; the next one is answered "busy" and closed."""

READ_ONLY_COMMANDS = frozenset({"status", "ready", "version"})
MUTATING_COMMANDS = frozenset({"reload", "drain", "undrain"})
_COMMANDS = ", ".join(sorted(READ_ONLY_COMMANDS | MUTATING_COMMANDS))
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who is on the other end of a unix socket, as the kernel vouches (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock: socket.socket) -> PeerCredentials:
        """Read the credentials of a connected unix socket's peer."""
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
        return cls(pid, uid, gid)


class ControlView(Protocol):
    """What the daemon exposes to the control socket (implemented by `daemon.py`)."""

    @property
    def version(self) -> str:
        """The daemon's version (``ipvsd.__version__``)."""

    async def status(self) -> dict[str, Any]:
        """The status JSON contract, with counters read from the kernel now."""

    async def reload(self) -> list[str]:
        """Re-read the config; return its errors (empty: reloaded, else the old one is kept)."""

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

    def ready(self) -> bool:
        """True once the first reconcile is done and no VRRP instance is in INIT."""


class ControlSocketError(IpvsdError):
    """The control socket cannot be set up (in use, unknown group, no permission)."""


class _MalformedRequest(ControlRequestError):
    """The request cannot be parsed at all; the connection is closed after the answer."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request line, with what the server needs besides."""

    response: dict[str, Any]
    command: str | None = None  # the command, if the request got that far (for logs)
    close: bool = False  # hang up after answering: the input could not be parsed


async def handle_request(line: bytes, view: ControlView, peer: PeerCredentials) -> dict[str, Any]:
    """Answer one request line.

    Args:
        line: the request, one JSON object (a trailing newline is allowed).
        view: the daemon.
        peer: who sent it (mutating commands need uid 0).

    Returns:
        ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
    """
    return (await evaluate_request(line, view, peer)).response


async def evaluate_request(line: bytes, view: ControlView, peer: PeerCredentials) -> Outcome:
    """`handle_request`, also saying which command it was and whether to hang up."""
    try:
        request = _parse(line)
    except _MalformedRequest as exc:
        return Outcome(_error(str(exc)), close=True)
    command = request.get("command")
    if not isinstance(command, str):
        return Outcome(_error(f'missing "command" (one of: {_COMMANDS})'))
    try:
        response = await _dispatch(command, request, view, peer)
    except ControlRequestError as exc:
        response = _error(str(exc))
    except IpvsdError as exc:  # e.g. the kernel refused the status dump
        response = _error(f"{command} failed: {exc}")
    return Outcome(response, command=command)


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
        case "status":
            return _ok(await view.status())
        case "ready":
            return _ok({"ready": view.ready()})
        case "version":
            return _ok({"version": view.version})
        case "reload":
            errors = await view.reload()
            if errors:
                return {
                    "ok": False,
                    "error": "reload refused; the running config is kept",
                    "errors": errors,
                }
            return _ok({"reloaded": True})
        case _:
            service, real = _target(request)
            drained = command == "drain"
            (view.drain if drained else view.undrain)(service, real)
            return _ok({"service": str(service), "real": str(real), "drained": drained})


def _target(request: dict[str, Any]) -> tuple[ServiceKey, DestKey]:
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


def _ok(result: object) -> dict[str, Any]:
    return {"ok": True, "result": result}


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _encode(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode() + b"\n"


class ControlServer:
    """The asyncio unix-socket server in front of `handle_request`.

    Args:
        path: where the socket lives (its directory is created 0755 if missing).
        view: the daemon.
        group: group allowed to connect besides root (socket 0660); None: 0600.
        max_connections: connections served at once.
        idle_timeout_s: seconds a connection may wait for its next request.
    """

    def __init__(
        self,
        path: str | Path,
        view: ControlView,
        *,
        group: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self._view = view
        self._group = group
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._log = log.bind(socket=str(self.path))

    async def start(self) -> None:
        """Create the socket and start serving.

        Raises:
            ControlSocketError: another daemon listens on the path, something
                other than a socket is there, the group is unknown, or the
                socket cannot be created.
        """
        gid = _group_id(self._group)
        _make_directory(self.path.parent)
        _remove_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            sock.bind(str(self.path))
            bound = True
            # The mode is set before listen(): until then connect() is refused,
            # so no client ever reaches the socket with the umask's mode.
            if gid is None:
                os.chmod(self.path, 0o600)
            else:
                os.chown(self.path, -1, gid)
                os.chmod(self.path, 0o660)
            sock.listen(socket.SOMAXCONN)  # over the cap: accepted, then told busy
            sock.setblocking(False)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            sock.close()
            if bound:
                self.path.unlink(missing_ok=True)
            raise ControlSocketError(
                f"cannot listen on {self.path}: {exc.strerror or exc}"
            ) from None
        self._server = await asyncio.start_unix_server(
            self._on_connect, sock=sock, limit=MAX_REQUEST_BYTES + 2
        )
        self._log.info("control.listening", group=self._group)

    async def close(self) -> None:
        """Stop serving, hang up on every client and remove the socket file."""
        if self._server is None:
            return
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        # Only our own socket: a newer daemon may already have replaced it.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        self._log.info("control.closed")

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self._max_connections:
            self._log.warning("control.busy", connections=len(self._connections))
            with contextlib.suppress(Exception):
                writer.write(_encode(_error("busy: too many control connections; try again")))
                writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except ConnectionError as exc:
            self._log.debug("control.disconnected", error=str(exc))
        except TimeoutError:
            self._log.debug("control.slow_reader")
        except Exception:
            self._log.exception("control.error")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = PeerCredentials.of(writer.get_extra_info("socket"))
        close = False
        while not close:
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    line = await reader.readline()
            except TimeoutError:
                self._log.debug("control.idle_timeout", pid=peer.pid, uid=peer.uid)
                return
            except ValueError:  # the line overran the reader's limit (and was discarded)
                line = b" " * (MAX_REQUEST_BYTES + 1)  # answered as oversized below
            if not line:
                return
            answer, close = await self._answer(line, peer)
            writer.write(answer)
            async with asyncio.timeout(self._idle_timeout_s):
                await writer.drain()

    async def _answer(self, line: bytes, peer: PeerCredentials) -> tuple[bytes, bool]:
        """The encoded answer to one line, and whether to hang up after it."""
        ids = {"pid": peer.pid, "uid": peer.uid}
        try:
            outcome = await evaluate_request(line, self._view, peer)
            answer = _encode(outcome.response)
        except Exception as exc:
            self._log.exception("control.error", **ids)
            return _encode(_error(f"internal error ({exc!r}); see the daemon log")), True
        response = outcome.response
        if not response["ok"]:
            self._log.warning("control.refused", command=outcome.command, **ids, **response)
        elif outcome.command in MUTATING_COMMANDS:
            self._log.info("control.command", command=outcome.command, **ids, **response)
        else:
            self._log.debug("control.command", command=outcome.command, **ids)
        return answer, outcome.close


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlSocketError(f"control.group: unknown group {group!r}") from None


def _make_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # mkdir's mode is masked by the umask
    except OSError as exc:
        raise ControlSocketError(f"cannot create {directory}: {exc.strerror}") from None


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a daemon that died; refuse if one is still listening."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(f"{path} exists and is not a socket; not replacing it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            log.info("control.stale_socket_removed", socket=str(path))
            return
        except OSError as exc:
            raise ControlSocketError(f"cannot check {path}: {exc.strerror or exc}") from None
    raise ControlSocketError(f"another ipvsd is already listening on {path}")
