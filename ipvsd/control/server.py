"""The control socket's asyncio edge: a unix-socket server around `ipvsd.control.protocol`.

It owns everything the pure protocol does not: the socket file (mode, group,
a stale one left by a dead daemon), peer credentials from the kernel
(SO_PEERCRED), per-connection idle timeouts, the caps on concurrent
connections (`ipvsd.control.protocol.admit_connection` decides) and the
logging of each request. See `ipvsd.control.protocol` for the wire format and
the rules.

Logging a peer's refusals must not let the peer fill the journal: refusals
(``control.refused``, ``control.busy``) are rate-limited per uid by a token
bucket (`_LogBudget`: a burst of `LOG_BURST`, then one per
`LOG_REFILL_S`; the next entry logged says how many were ``suppressed``), and
every peer-supplied string in them is cut to `LOG_FIELD_CHARS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import structlog

from ipvsd.control.protocol import (
    MAX_REQUEST_BYTES,
    MUTATING_COMMANDS,
    ConnectionLimits,
    ControlView,
    PeerCredentials,
    admit_connection,
    encode,
    error_response,
    evaluate_request,
)
from ipvsd.errors import IpvsdError

log = structlog.get_logger("ipvsd.control")

DEFAULT_IDLE_TIMEOUT_S = 10.0
"""Seconds a connection may wait for its next request line (or take to read an answer)."""
DEFAULT_MAX_CONNECTIONS = ConnectionLimits().max_connections
"""Connections served at once; the next one is answered "busy" and closed."""
DEFAULT_MAX_CONNECTIONS_PER_UID = ConnectionLimits().max_per_uid
"""Connections one non-root uid may hold at once."""
DEFAULT_ROOT_RESERVED = ConnectionLimits().root_reserved
"""Connection slots only root may take."""
LOG_BURST = 10
"""Refusals logged per uid before rate limiting starts."""
LOG_REFILL_S = 1.0
"""Seconds per further refusal logged, per uid, once the burst is spent."""
LOG_FIELD_CHARS = 200
"""Longest peer-supplied string copied into a log entry."""
WRITE_CHUNK_BYTES = 256 * 1024
"""A long answer (a status: 22 MB at 10,000 x 4) is written this much at a time."""
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


class ControlSocketError(IpvsdError):
    """The control socket cannot be set up (in use, unknown group, no permission)."""


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Who is on the other end of a connected unix socket, as the kernel vouches."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid, uid, gid)


class ControlServer:
    """The asyncio unix-socket server in front of `evaluate_request`.

    Args:
        path: where the socket lives (its directory is created 0755 if missing).
        view: the daemon.
        group: group allowed to connect besides root (socket 0660); None: 0600.
        max_connections: connections served at once.
        max_connections_per_uid: connections one non-root uid may hold.
        root_reserved: slots only root may take (at most
            ``max_connections - 1``).
        idle_timeout_s: seconds a connection may wait for its next request.
    """

    def __init__(
        self,
        path: str | Path,
        view: ControlView,
        *,
        group: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_uid: int = DEFAULT_MAX_CONNECTIONS_PER_UID,
        root_reserved: int = DEFAULT_ROOT_RESERVED,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self._view = view
        self._group = group
        self._limits = ConnectionLimits(max_connections, max_connections_per_uid, root_reserved)
        self._idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._open_by_uid: dict[int, int] = {}
        self._log_budget = _LogBudget(LOG_BURST, LOG_REFILL_S)
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
        try:
            peer = peer_credentials(writer.get_extra_info("socket"))
        except OSError as exc:  # the peer is already gone
            self._log.debug("control.disconnected", error=str(exc))
            writer.close()
            return
        refusal = admit_connection(self._limits, self._open_by_uid, peer.uid)
        if refusal is not None:
            if (suppressed := self._log_budget.take(peer.uid, _now())) is not None:
                self._log.warning(
                    "control.busy",
                    pid=peer.pid,
                    uid=peer.uid,
                    connections=len(self._connections),
                    of_uid=self._open_by_uid.get(peer.uid, 0),
                    suppressed=suppressed,
                )
            with contextlib.suppress(Exception):
                writer.write(encode(error_response(refusal)))
                writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._open_by_uid[peer.uid] = self._open_by_uid.get(peer.uid, 0) + 1
        try:
            await self._serve(reader, writer, peer)
        except ConnectionError as exc:
            self._log.debug("control.disconnected", error=str(exc))
        except TimeoutError:
            self._log.debug("control.slow_reader")
        except Exception:
            self._log.exception("control.error")
        finally:
            self._connections.discard(task)
            if (left := self._open_by_uid.pop(peer.uid) - 1) > 0:
                self._open_by_uid[peer.uid] = left
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerCredentials
    ) -> None:
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
            if isinstance(answer, bytes):
                writer.write(answer)
                async with asyncio.timeout(self._idle_timeout_s):
                    await writer.drain()
            else:
                await self._write_pieces(writer, answer)

    async def _write_pieces(self, writer: asyncio.StreamWriter, pieces: list[str]) -> None:
        """Write a long answer (a status) a `WRITE_CHUNK_BYTES` chunk at a time.

        Each chunk is joined and encoded when its turn comes, and the next one waits
        until the client has taken the last (an idle timeout each): the answer is
        never one buffer of tens of MB, nor one stall of the loop that VRRP shares.
        """
        chunk: list[str] = []
        size = 0
        for piece in pieces:
            chunk.append(piece)
            size += len(piece)
            if size >= WRITE_CHUNK_BYTES:
                writer.write("".join(chunk).encode())
                chunk.clear()
                size = 0
                async with asyncio.timeout(self._idle_timeout_s):
                    await writer.drain()
        writer.write("".join(chunk).encode())
        async with asyncio.timeout(self._idle_timeout_s):
            await writer.drain()

    async def _answer(self, line: bytes, peer: PeerCredentials) -> tuple[bytes | list[str], bool]:
        """The answer to one line (encoded, or a status's text pieces), and whether to
        hang up after it."""
        ids = {"pid": peer.pid, "uid": peer.uid}
        try:
            outcome = await evaluate_request(line, self._view, peer)
            answer = outcome.pieces if outcome.pieces is not None else encode(outcome.response)
        except Exception as exc:
            self._log.exception("control.error", **ids)
            return encode(error_response(f"internal error ({exc!r}); see the daemon log")), True
        response = outcome.response
        if not response["ok"]:
            if (suppressed := self._log_budget.take(peer.uid, _now())) is not None:
                self._log.warning(
                    "control.refused",
                    command=_cut(outcome.command),
                    **ids,
                    **_loggable(response),
                    suppressed=suppressed,
                )
        elif outcome.command in MUTATING_COMMANDS:
            self._log.info("control.command", command=outcome.command, **ids, **response)
        else:
            self._log.debug("control.command", command=outcome.command, **ids)
        return answer, outcome.close


def _now() -> float:
    return asyncio.get_running_loop().time()


def _cut(text: str | None) -> str | None:
    """`text` cut to `LOG_FIELD_CHARS` (with "..." when cut)."""
    if text is None or len(text) <= LOG_FIELD_CHARS:
        return text
    return text[:LOG_FIELD_CHARS] + "..."


def _loggable(response: dict[str, Any]) -> dict[str, Any]:
    """A refusal as it may be logged: its texts cut, at most 10 of its ``errors``."""
    fields: dict[str, Any] = {"error": _cut(str(response.get("error")))}
    if isinstance(errors := response.get("errors"), list):
        fields["errors"] = [_cut(str(error)) for error in errors[:10]]
        if len(errors) > 10:
            fields["errors_total"] = len(errors)
    return fields


class _LogBudget:
    """A token bucket per key (a uid): how often a peer's refusals are logged.

    ``take(key, now)`` returns None while the key's bucket is empty (do not
    log), else the number of entries suppressed since the last one logged.
    Time comes in as a monotonic float.
    """

    _MAX_KEYS = 1024  # a full bucket is forgotten; this bounds the rest

    def __init__(self, burst: int, refill_s: float) -> None:
        self._burst = burst
        self._refill_s = refill_s
        self._buckets: dict[int, tuple[float, float, int]] = {}  # tokens, at, suppressed

    def take(self, key: int, now: float) -> int | None:
        tokens, at, suppressed = self._buckets.get(key, (float(self._burst), now, 0))
        tokens = min(float(self._burst), tokens + (now - at) / self._refill_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now, suppressed + 1)
            return None
        if len(self._buckets) >= self._MAX_KEYS and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now, 0)
        return suppressed

    def _forget_full(self, now: float) -> None:
        for key, (tokens, at, suppressed) in list(self._buckets.items()):
            if suppressed == 0 and tokens + (now - at) / self._refill_s >= self._burst:
                del self._buckets[key]
        if len(self._buckets) >= self._MAX_KEYS:  # all busy: forget the lot
            self._buckets.clear()


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
