"""A small blocking client of the control socket (``ipvsd status`` / ``reload`` / ``drain``).

Plain `socket`, no asyncio: the CLI sends one JSON request line and reads one
JSON answer line (the protocol is described in `ipvsd.control.server`). Failing to
reach the daemon is turned into errors that say what to do about it.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipvsd.errors import IpvsdError

DEFAULT_SOCKET = "/run/ipvsd/ipvsd.sock"
"""Where the daemon listens unless ``control.socket`` says otherwise."""
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""Largest answer accepted (the status of 10k services is a few MB)."""
_NOT_RUNNING = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR}
_DENIED = {errno.EACCES, errno.EPERM}


class ControlClientError(IpvsdError):
    """The daemon could not be asked, or its answer was not understood."""


class DaemonNotRunning(ControlClientError):
    """Nothing listens on the control socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"ipvsd is not running (no daemon at {path})")


class ControlAccessDenied(ControlClientError):
    """The socket's mode does not let this user connect."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"permission denied on {path} (run as root, or as a member of the "
            "group set in control.group)"
        )


def request(
    socket_path: str | Path, payload: Mapping[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    """Send one request to the daemon and return its answer.

    Args:
        socket_path: the daemon's control socket.
        payload: the request object, e.g. ``{"command": "status"}``.
        timeout: seconds for the whole exchange.

    Returns:
        The answer object: ``{"ok": True, "result": ...}`` or
        ``{"ok": False, "error": "..."}`` (the daemon refused the request).

    Raises:
        DaemonNotRunning: no socket there, or nothing listening on it.
        ControlAccessDenied: the socket's permissions keep us out.
        ControlClientError: timeout, connection lost, or an unreadable answer.
    """
    path = str(socket_path)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise _connect_error(path, exc) from None
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            raw = _read_line(sock, deadline)
        except TimeoutError:
            raise ControlClientError(
                f"ipvsd did not answer within {timeout:g} s ({path})"
            ) from None
        except OSError as exc:
            raise ControlClientError(
                f"lost the connection to ipvsd ({path}): {exc.strerror or exc}"
            ) from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ControlClientError(f"ipvsd sent an answer that is not JSON ({path})") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise ControlClientError(f'ipvsd sent an answer without "ok" ({path})')
    return answer


def _connect_error(path: str, exc: OSError) -> ControlClientError:
    if exc.errno in _NOT_RUNNING:
        return DaemonNotRunning(path)
    if exc.errno in _DENIED:
        return ControlAccessDenied(path)
    if isinstance(exc, TimeoutError):
        return ControlClientError(f"ipvsd did not accept the connection ({path})")
    return ControlClientError(f"cannot connect to {path}: {exc.strerror or exc}")


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 16)
        if not chunk:
            if not chunks:
                raise ConnectionAbortedError(errno.ECONNABORTED, "closed without an answer")
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
        if size > MAX_RESPONSE_BYTES:
            raise ControlClientError(f"answer longer than {MAX_RESPONSE_BYTES} bytes")
    return b"".join(chunks).split(b"\n", 1)[0]
