"""tcp checks with no task, coroutine or event-loop timer of their own.

Theory of operation
===================

A tcp check is a non-blocking ``connect()`` and a ``close()``. Everything
around them is bookkeeping, and at 10,000 checks a second the bookkeeping is
what costs (``bench/health_checks.py``, issue #4). asyncio's ``sock_connect``
under ``asyncio.timeout`` spent about 26 us of Python per check on a chain of
coroutines and a task, a Handle and a selector key for the writer callback
(added, then removed: two ``epoll_ctl`` calls), a TimerHandle in the loop's
heap (whose entries compare in Python) for the deadline, and a context
manager. `TcpProber` does the same work with less:

* **An epoll instance of its own.** Each connecting socket is registered
  once, with ``EPOLLOUT | EPOLLONESHOT``, on an epoll instance whose
  descriptor the event loop watches (one ``add_reader`` for all checks). When
  it is readable, one ``epoll_wait`` collects every connect that has
  completed. A one-shot entry fires once, and the kernel drops it when the
  socket is closed (epoll(7)), so there is no ``epoll_ctl(EPOLL_CTL_DEL)``
  and no Handle or selector key per check.
* **Deadlines in FIFO queues, one timer.** A check's deadline is its start
  plus its timeout, so among the checks that share a timeout, deadlines come
  in the order the checks start: a deque per distinct timeout is sorted by
  construction, with no comparisons. One loop timer is armed for the earliest
  deadline of a check still connecting. When it fires, the checks whose
  deadline has come fail with ``timeout after 1.0 s (connect)``, and entries
  of checks that ended meanwhile are dropped from the front of the queues.
  The timeout stays hard: the timer fires at the deadline itself.
* **The future is the probe.** `start` returns a `TcpProbe`, an
  ``asyncio.Future`` that holds the check's socket, so a check in flight is
  one object besides its socket and result. Cancelling it (the monitor
  retiring a real, or a task that awaits it being cancelled) closes the
  socket at once.

Outcomes are those the coroutine checker gave: connected means up, and the
socket is then closed with a reset (SO_LINGER 0, as HAProxy's checks do), so
no TIME_WAIT socket is left per check (10,000 checks a second would fill the
kernel's TIME_WAIT table; bench/README); a failed connect is its errno's text
(``connection refused``); a failed bind to ``source_address`` is named
(``cannot assign requested address (bind to 192.0.2.1)``).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import math
import select
import socket
import struct

from ipvsd.health.target import CheckResult, CheckTarget, errno_text, log_failure

__all__ = ["TcpProbe", "TcpProber"]

_ONE_SHOT_OUT = select.EPOLLOUT | select.EPOLLONESHOT
_FAILED = select.EPOLLERR | select.EPOLLHUP
_LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on with 0 s: close() sends a reset and leaves no TIME_WAIT behind."""
_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
"""Non-blocking from socket(2) on: no ioctl(FIONBIO) per check."""


class TcpProbe(asyncio.Future[CheckResult]):
    """One tcp check: the future of its result, owning its socket while it connects.

    Attributes:
        target: what is checked.
        sock: the connecting socket; None once the check has ended.
        started: loop time at which the check started.
        deadline: loop time at which the check times out.
    """

    __slots__ = ("_prober", "deadline", "sock", "started", "target")

    _prober: TcpProber
    target: CheckTarget
    sock: socket.SocketType | None
    started: float
    deadline: float

    def cancel(self, msg: object = None) -> bool:
        """Cancel the check, closing its socket now rather than at its deadline."""
        if self.done():
            return False
        self._prober.forget(self)
        return super().cancel(msg)


class TcpProber:
    """Runs tcp checks on one event loop (see the module docstring).

    Args:
        loop: the loop to run on; `start` is called from its thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._connecting: dict[int, TcpProbe] = {}
        """Checks whose connect is in progress, by socket descriptor."""
        self._queues: dict[float, collections.deque[tuple[float, int]]] = {}
        """Per timeout: ``(deadline, fd)`` of the checks started with it, oldest
        first. Entries of checks that ended stay until they reach the front."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        loop.add_reader(self._epoll.fileno(), self._collect)

    def start(self, target: CheckTarget) -> TcpProbe:
        """Start a tcp check of `target`.

        Args:
            target: a tcp check's target.

        Returns:
            The check's future. It resolves to a `CheckResult` within the check's
            timeout and never to an exception.
        """
        probe = TcpProbe(loop=self.loop)
        probe._prober = self
        probe.target = target
        probe.started = started = self.loop.time()
        probe.deadline = deadline = started + target.check.timeout
        try:
            sock = socket.SocketType(target.family, _STREAM)
        except OSError as exc:  # out of descriptors or buffers: this check fails
            probe.sock = None
            self._resolve(probe, False, errno_text(exc))
            return probe
        probe.sock = sock
        if target.source is not None:
            try:
                sock.bind(target.source)
            except OSError as exc:
                self._end(probe, False, f"{errno_text(exc)} (bind to {target.source[0]})")
                return probe
        code = sock.connect_ex(target.sockaddr)
        if code != errno.EINPROGRESS:
            self._end(probe, code == 0, errno_text(code) if code else "connected")
            return probe
        fd = sock.fileno()
        try:
            self._epoll.register(fd, _ONE_SHOT_OUT)
        except OSError as exc:  # ENOSPC: past fs.epoll.max_user_watches
            self._end(probe, False, errno_text(exc))
            return probe
        self._connecting[fd] = probe
        queue = self._queues.get(target.check.timeout)
        if queue is None:
            queue = self._queues[target.check.timeout] = collections.deque()
        queue.append((deadline, fd))
        if deadline < self._timer_at:
            self._arm(deadline)
        return probe

    def forget(self, probe: TcpProbe) -> None:
        """Drop `probe` (being cancelled) and close its socket."""
        sock = probe.sock
        if sock is None:
            return
        probe.sock = None
        if self._connecting.get(sock.fileno()) is probe:
            del self._connecting[sock.fileno()]
        sock.close()

    def close(self) -> None:
        """Cancel the checks in flight and release the epoll instance."""
        live = not self.loop.is_closed()
        for probe in list(self._connecting.values()):
            if live:
                probe.cancel()
            else:  # a cancelled future would schedule its callbacks on a closed loop
                self.forget(probe)
        self._connecting.clear()
        self._queues.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        if live:
            self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    # --- ends of checks -----------------------------------------------------------------

    def _collect(self) -> None:
        """End every check whose connect has completed (the epoll is readable)."""
        connecting = self._connecting
        for fd, events in self._epoll.poll(0):
            probe = connecting.pop(fd, None)
            if probe is None:  # cancelled after its event was queued
                continue
            if events & _FAILED:
                sock = probe.sock
                assert sock is not None
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self._end(probe, False, errno_text(code))
                    continue
            self._end(probe, True, "connected")

    def _sweep(self) -> None:
        """Time out the checks whose deadline has come (the timer callback)."""
        self._timer = None
        self._timer_at = math.inf
        self._collect()  # a connect that completed by now beat its deadline
        now = self.loop.time()
        connecting = self._connecting
        earliest = math.inf
        for timeout, queue in list(self._queues.items()):
            while queue:
                deadline, fd = queue[0]
                probe = connecting.get(fd)
                if probe is None or probe.deadline != deadline:  # it ended already
                    queue.popleft()
                elif deadline <= now:
                    queue.popleft()
                    del connecting[fd]
                    self._end(probe, False, f"timeout after {timeout} s (connect)")
                else:
                    earliest = min(earliest, deadline)
                    break
            if not queue:
                del self._queues[timeout]
        if earliest < math.inf:
            self._arm(earliest)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._sweep)

    def _end(self, probe: TcpProbe, ok: bool, reason: str) -> None:
        """Close the probe's socket (with a reset if it connected) and resolve it."""
        sock = probe.sock
        assert sock is not None
        probe.sock = None
        if ok:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()
        self._resolve(probe, ok, reason)

    def _resolve(self, probe: TcpProbe, ok: bool, reason: str) -> None:
        result = CheckResult(ok, reason, self.loop.time() - probe.started)
        if not ok:
            log_failure(probe.target, result)
        probe.set_result(result)
