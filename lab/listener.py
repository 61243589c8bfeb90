"""A socket read in a thread of its own, each datagram timestamped on arrival."""

from __future__ import annotations

import socket
import threading
import time


class Listener:
    """Calls `received(data, source, monotonic time)` for each datagram until `close`."""

    def __init__(self, sock: socket.socket, size: int = 65536) -> None:
        self._sock = sock
        self._size = size
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def received(self, data: bytes, source: object, at: float) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self._sock.recvfrom(self._size)
            except TimeoutError:
                continue
            self.received(data, source, time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
