"""What the client host does: curl bursts, a long-lived echo connection, a failover prober.

Process creation costs ~0.3 s inside UML, so each tool is one process (or
none) however many requests it makes:

- `curl_requests`: N ``curl -sI`` requests in ONE curl process (a globbed URL
  per VIP, ``Connection: close`` so that each request is its own TCP
  connection, hence its own IPVS scheduling decision). An IPv6 VIP goes in
  brackets (``http://[fd00:1::200]:80/?n=[1-50]``): curl's URL globbing
  recognises a bracketed IPv6 address, so no ``-g`` is needed.
- `LongConnection`: a TCP socket opened in the client's namespace by *this*
  process (``lab.netns.in_netns``), exchanging lines with a real's echo server.
- `Prober`: one small asyncio program in the client's namespace that starts a
  ``HEAD /`` on a fresh connection every `interval` seconds per target and
  timestamps each with CLOCK_MONOTONIC (which every process of a kernel
  shares, so its times compare with ours). `FailoverReport` turns its
  attempts into the longest stretch without a successful request.
"""

from __future__ import annotations

import itertools
import json
import math
import selectors
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from lab.netns import Topology, in_netns
from lab.reference.spec import url_host

CURL_FORMAT = "%{http_code} %{url_effective} %header{x-real-server}\\n"


@dataclass(frozen=True)
class Reply:
    """One request's outcome: the VIP asked, the HTTP status (0: failed), the real that answered."""

    vip: str
    status: int
    real: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200


def curl_requests(
    topo: Topology, client: str, vips: list[str], count: int, port: int = 80
) -> list[Reply]:
    """`count` ``curl -sI`` requests to each of `vips`, from namespace `client`, in one process.

    Returns:
        One `Reply` per request, in the order curl made them (VIP by VIP).
    """
    argv = [
        "curl",
        "-s",
        "-I",
        "-H",
        "Connection: close",
        "--connect-timeout",
        "1",
        "--max-time",
        "3",
        "-w",
        CURL_FORMAT.replace("\\n", "\n"),
    ]
    for vip in vips:
        argv += ["-o", "/dev/null", f"http://{url_host(vip)}:{port}/?n=[1-{count}]"]
    done = topo.exec(client, argv, check=False, timeout=30 + 4 * count * len(vips))
    replies = []
    for line in done.stdout.splitlines():
        code, url, *real = line.split()
        replies.append(Reply(urlsplit(url).hostname or "", int(code), real[0] if real else None))
    if len(replies) != count * len(vips):
        raise RuntimeError(
            f"curl exited {done.returncode} after {len(replies)} requests: {done.stderr}"
        )
    return replies


class LongConnection:
    """A TCP connection from the client's namespace to an echo service, one line at a time."""

    def __init__(self, client_ns: str, vip: str, port: int, timeout: float = 3.0) -> None:
        """Connect (in namespace `client_ns`) and learn which real answers.

        Raises:
            OSError: the connection could not be made or the first echo failed.
        """
        self.vip, self.port, self.timeout = vip, port, timeout
        with in_netns(client_ns):
            self.sock = socket.create_connection((vip, port), timeout=timeout)
        self._sent = 0
        first = self.exchange("hello")
        if first is None:
            self.sock.close()
            raise OSError(f"no echo from {vip}:{port}")
        self.real = first.split()[0]
        """The real's name, from its first answer."""
        self.local_port: int = self.sock.getsockname()[1]
        """The client's port: finds this connection in a director's IPVS table."""

    def exchange(self, text: str | None = None) -> str | None:
        """Send one line and return the echo (``REAL LINE``), or None if the connection failed."""
        self._sent += 1
        line = text if text is not None else f"ping {self._sent}"
        try:
            self.sock.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = self.sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
        except OSError:
            return None
        return data.decode().strip()

    def alive(self) -> bool:
        """Whether a line still comes back, from the same real, unchanged."""
        reply = self.exchange()
        return reply == f"{self.real} ping {self._sent}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


PROBER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    interval, timeout, targets = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    attempts = []

    async def attempt(target):
        host, port = target.rsplit(":", 1)
        start, ok, real, error, writer = time.monotonic(), False, "", "", None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(f"HEAD / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
                head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode("latin-1")
            lines = head.split("\\r\\n")
            ok = lines[0].split()[1:2] == ["200"]
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "x-real-server":
                    real = value.strip()
            error = "" if ok else lines[0]
        except Exception as exc:
            error = type(exc).__name__
        finally:
            if writer is not None:
                writer.close()
        attempts.append([target, start, time.monotonic(), ok, real, error])

    def successes(target, since):
        return sum(1 for a in attempts if a[0] == target and a[3] and a[2] > since)

    async def main():
        loop = asyncio.get_running_loop()
        tasks = set()

        async def launch():
            next_at = time.monotonic()
            while True:
                for target in targets:
                    task = asyncio.create_task(attempt(target))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        launcher = asyncio.create_task(launch())
        while not all(successes(t, 0) for t in targets):
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        while True:
            words = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not words or words[0] == "stop":
                break
            if words[0] == "since":
                since = float(words[1])
                print(min(successes(t, since) for t in targets), flush=True)
        launcher.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(launcher, *tasks, return_exceptions=True)
        print(json.dumps(attempts), flush=True)

    asyncio.run(main())
    """
)


@dataclass(frozen=True)
class Attempt:
    """One prober request: ``target`` is ``VIP:PORT`` (``[VIP]:PORT`` for IPv6); times are
    CLOCK_MONOTONIC seconds."""

    target: str
    start: float
    end: float
    ok: bool
    real: str
    error: str


@dataclass(frozen=True)
class Gap:
    """The longest stretch without a successful request to `target`: [start, end]."""

    target: str
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass
class FailoverReport:
    """What the prober saw around an action (a link going down, a director coming back).

    Attributes:
        action_at: CLOCK_MONOTONIC time the action started.
        attempts: every request the prober made.
        holders_before: VIP -> director holding it just before the action.
        holders_after: VIP -> director holding it once the probing ended.
    """

    action_at: float
    attempts: list[Attempt] = field(repr=False)
    holders_before: dict[str, str | None]
    holders_after: dict[str, str | None]

    @property
    def targets(self) -> list[str]:
        return sorted({a.target for a in self.attempts})

    def gap(self, target: str | None = None) -> Gap:
        """The longest time between two successive successful requests (of `target`, or any)."""
        targets = [target] if target else self.targets
        gaps = [self._gap(t) for t in targets]
        return max(gaps, key=lambda g: g.length)

    def _gap(self, target: str) -> Gap:
        ends = sorted(a.end for a in self.attempts if a.target == target and a.ok)
        if len(ends) < 2:
            return Gap(target, self.action_at, math.inf)
        start, end = max(itertools.pairwise(ends), key=lambda pair: pair[1] - pair[0])
        return Gap(target, start, end)

    def recovered_after(self, target: str | None = None) -> float:
        """Seconds from the action to the end of the longest gap (0 if it ended before)."""
        return max(0.0, self.gap(target).end - self.action_at)

    def failures(self, target: str | None = None) -> int:
        """Requests that failed (refused, reset, timed out, not 200)."""
        return sum(1 for a in self.attempts if not a.ok and target in (None, a.target))

    def errors(self) -> Counter[str]:
        """Failed requests by error kind."""
        return Counter(a.error for a in self.attempts if not a.ok)

    def summary(self) -> str:
        """One line per target: the gap (times relative to the action), failures, holders."""
        lines = []
        for target in self.targets:
            gap = self.gap(target)
            total = sum(1 for a in self.attempts if a.target == target)
            vip = target.rsplit(":", 1)[0].strip("[]")
            lines.append(
                f"{target}: longest gap {gap.length:.2f} s "
                f"(from {gap.start - self.action_at:+.2f} to {gap.end - self.action_at:+.2f} s "
                f"after the action), {self.failures(target)}/{total} requests failed, "
                f"{self.holders_before.get(vip)} -> {self.holders_after.get(vip)}"
            )
        return "\n".join(lines)


class Prober:
    """The prober program in the client's namespace (see the module docstring).

    Use as a context manager; :meth:`stop` returns the attempts.
    """

    def __init__(
        self,
        topo: Topology,
        client_ns: str,
        targets: list[str],
        script: Path,
        *,
        interval: float = 0.05,
        timeout: float = 2.0,
    ) -> None:
        script.write_text(PROBER)
        self.proc = topo.popen(
            client_ns,
            [sys.executable, str(script), str(interval), str(timeout), *targets],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until every target has answered once.

        Raises:
            AssertionError: some target never answered within `timeout` seconds.
        """
        line = self._readline(timeout)
        if line != "ready":
            raise AssertionError(f"prober not ready within {timeout} s: {line!r}")

    def successes_since(self, since: float) -> int:
        """The fewest successful requests any target had that ended after `since`."""
        self._send(f"since {since!r}")
        return int(self._readline(10))

    def stop(self) -> list[Attempt]:
        """End the prober and return its attempts."""
        self._send("stop")
        attempts: list[list[Any]] = json.loads(self._readline(30))
        self.proc.wait(10)
        return [Attempt(t, s, e, bool(ok), r, err) for t, s, e, ok, r, err in attempts]

    def close(self) -> None:
        """Kill the prober if it still runs (by PID)."""
        self._selector.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        if not self._selector.select(timeout):
            return ""
        line: str = self.proc.stdout.readline()
        return line.strip()
