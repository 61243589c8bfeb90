"""A fake BIRD for the announcer: protocols enabled and disabled as BIRD would.

`FakeBird` keeps what a real BIRD keeps: the config it was started or
reconfigured with, each static protocol's state (from the config's
``disabled`` lines, then from ``enable`` / ``disable``), and whether it runs.
Tests assert on that state, and on the order of the commands where order is
the point (withdraw before ``down``).
"""

from __future__ import annotations

import asyncio
import re

from ipvsd.bgp.birdctl import BirdCommandError, BirdUnavailable, ReplyLine

_STATIC = re.compile(r"protocol static (\S+) \{\n  ipv[46];\n  disabled (yes|no);")
_BGP = re.compile(r"protocol bgp (\S+) \{")


class FakeBird:
    """The speaker (`ipvsd.bgp.announcer.Speaker`) and its control client in one."""

    greeting = "BIRD 2.0.12 ready."

    def __init__(self) -> None:
        self.config = ""
        self.enabled: dict[str, bool] = {}
        self.sessions: dict[str, str] = {}
        self.commands: list[str] = []
        self.refuse: set[str] = set()
        self._running = False
        self._exit: asyncio.Future[int] | None = None

    @property
    def client(self) -> FakeBird | None:
        return self if self._running else None

    @property
    def running(self) -> bool:
        return self._running

    def _load(self, text: str) -> None:
        self.config = text
        self.enabled = {name: state == "no" for name, state in _STATIC.findall(text)}
        self.sessions = dict.fromkeys(_BGP.findall(text), "Established")

    async def start(self, text: str) -> None:
        self._load(text)
        self._running = True
        self._exit = asyncio.get_running_loop().create_future()

    async def reconfigure(self, text: str) -> None:
        self._load(text)

    async def exited(self) -> int:
        assert self._exit is not None
        return await self._exit

    def crash(self) -> None:
        """BIRD dies (SIGKILL): its sessions and routes are gone."""
        self._running = False
        self.enabled = {}
        assert self._exit is not None
        self._exit.set_result(-9)

    async def stop(self) -> None:
        self.commands.append("down")
        self._running = False
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(0)

    async def command(self, line: str) -> list[ReplyLine]:
        if not self._running:
            raise BirdUnavailable("BIRD closed its control socket")
        self.commands.append(line)
        verb, _, name = line.partition(" ")
        name = name.strip('"')
        if verb in ("enable", "disable"):
            if name in self.refuse or name not in self.enabled:
                raise BirdCommandError(8003, "No protocols match")
            self.enabled[name] = verb == "enable"
            return [ReplyLine(0, "")]
        if line == "show protocols":
            rows = [ReplyLine(2002, "Name Proto Table State Since Info")]
            rows += [
                ReplyLine(1002, f"{n} BGP --- {'up' if s == 'Established' else 'start'} 1 {s}")
                for n, s in self.sessions.items()
            ]
            return [*rows, ReplyLine(0, "")]
        return [ReplyLine(0, "")]
