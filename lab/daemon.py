"""Run `ipvsd run` in a namespace and read what it logged (JSON events)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ipvsd.model import Table
from ipvsd.netlink.ipvs import IpvsClient
from lab.netns import Topology, in_netns


class DaemonProcess:
    """One `ipvsd run` process started through a Topology (so it is always stopped)."""

    def __init__(self, topo: Topology, ns: str, config: Path, log: Path) -> None:
        self.topo, self.ns, self.config, self.log = topo, ns, config, log
        self.proc: subprocess.Popen[Any] | None = None
        self._log_offset = 0

    def start(self, *, wait_ready: bool = True, env: dict[str, str] | None = None) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        stderr = self.log.open("ab")
        self.proc = self.topo.popen(
            self.ns,
            [
                sys.executable,
                "-m",
                "ipvsd",
                "run",
                "--config",
                str(self.config),
                "--log-format",
                "json",
            ],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )
        stderr.close()
        if wait_ready:
            self.wait_event("daemon.ready", timeout=60)

    def events(self) -> list[dict[str, Any]]:
        """Events logged since the last start()."""
        with self.log.open("rb") as f:
            f.seek(self._log_offset)
            lines = f.read().decode(errors="replace").splitlines()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                events.append({"event": "raw", "line": line})
        return events

    def wait_event(self, name: str, timeout: float, *, after: int = 0) -> dict[str, Any]:
        """The first event called `name` (index ≥ after), waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events()[after:] if e.get("event") == name]
            if found:
                return found[0]
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"ipvsd exited {self.proc.returncode}: {self.events()}")
            time.sleep(0.1)
        raise AssertionError(f"no {name!r} event within {timeout} s: {self.events()}")

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM without waiting (graceful stop: priority 0, VIPs removed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def kernel_table(ns: str) -> Table:
    """The IPVS table of namespace `ns`, read with ipvsd's own netlink client."""

    async def dump() -> Table:
        async with await IpvsClient.open() as client:
            return await client.dump()

    with in_netns(ns):
        return asyncio.run(dump())
