"""The BGP runtime: policy events in, BIRD commands out, session state polled.

Level-triggered, like the reconciler: `feed` changes the policy and wakes
`run`, which makes BIRD's static protocols match `BgpPolicy.announced`
(``enable`` / ``disable``, one command each) and, every `POLL_INTERVAL_S`,
reads ``show protocols`` for the sessions (status, metrics). A BIRD that
dies under a running ipvsd is restarted (after `RESTART_DELAY_S`) on a config
written from the announcements wanted then. `stop` withdraws every VIP
before BIRD is stopped, so the routers hear a withdrawal, then a Cease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from ipvsd.bgp.birdconf import Prefix, peer_protocol, render, vip_protocol
from ipvsd.bgp.birdctl import BirdCommandError, ProtocolState, ReplyLine, parse_protocols
from ipvsd.bgp.policy import (
    Announce,
    BgpPolicy,
    DirectorDrained,
    Event,
    ServicesConfigured,
    Stopping,
)
from ipvsd.bgp.speaker import BirdSpeaker
from ipvsd.config.model import BgpConfig
from ipvsd.errors import IpvsdError
from ipvsd.model import ServiceKey

log = structlog.get_logger("ipvsd.bgp")

#: Seconds between two reads of the sessions' state.
POLL_INTERVAL_S = 1.0
#: Seconds before a BIRD that died is started again.
RESTART_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class Session:
    """A neighbor's session as BIRD last reported it.

    Attributes:
        neighbor: the router's address.
        remote_as: its AS number.
        state: BIRD's word for it: ``Established``, ``Active``, ``Connect``,
            ``Idle``..., ``down`` (BIRD not running) or ``unknown``.
        up: the session is established.
    """

    neighbor: str
    remote_as: int
    state: str
    up: bool


@dataclass(frozen=True, slots=True)
class PrefixState:
    """A VIP's host route: announced (as BIRD was last told) or not, and why."""

    prefix: Prefix
    announced: bool
    reason: str


class Client(Protocol):
    """BIRD's control connection (`ipvsd.bgp.birdctl.BirdClient`)."""

    greeting: str

    async def command(self, line: str) -> list[ReplyLine]: ...


class Speaker(Protocol):
    """The BIRD process (`ipvsd.bgp.speaker.BirdSpeaker`), as the announcer uses it."""

    @property
    def client(self) -> Client | None: ...

    @property
    def running(self) -> bool: ...

    async def start(self, text: str) -> None: ...

    async def reconfigure(self, text: str) -> None: ...

    async def exited(self) -> int: ...

    async def stop(self) -> None: ...


OnSessions = Callable[[tuple[Session, ...]], None]
OnAnnounced = Callable[[tuple[Prefix, ...], frozenset[Prefix]], None]


class BgpAnnouncer:
    """The policy and the BIRD speaker of one director.

    Args:
        config: the ``bgp:`` section.
        source: the config file's path (named in the generated BIRD config).
        on_sessions: told the sessions after every poll (metrics).
        on_announced: told every prefix and the announced ones after every change.
        speaker: the BIRD process; None: a `BirdSpeaker` in ``run_dir`` (tests pass a fake).
    """

    def __init__(
        self,
        config: BgpConfig,
        source: str,
        *,
        on_sessions: OnSessions | None = None,
        on_announced: OnAnnounced | None = None,
        speaker: Speaker | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.policy = BgpPolicy(config.require)
        self.speaker: Speaker = speaker or BirdSpeaker(config.bird, Path(config.run_dir))
        self._applied: dict[Prefix, bool] = {}
        self._wake = asyncio.Event()
        self._sessions: tuple[Session, ...] = ()
        self._on_sessions = on_sessions
        self._on_announced = on_announced
        self._stopped = False

    def _render(self, config: BgpConfig) -> str:
        return render(config, self.policy.prefixes, self.policy.announced, source=self.source)

    async def start(self, services: tuple[ServiceKey, ...], *, drained: bool) -> None:
        """Start BIRD with every VIP withdrawn (nothing is announced before `Ready`).

        Raises:
            SpeakerError: no BIRD, or it refused the generated config or did not start.
        """
        self.policy.handle(ServicesConfigured(services))
        self.policy.handle(DirectorDrained(drained))
        await self.speaker.start(self._render(self.config))
        self._applied = dict.fromkeys(self.policy.prefixes, False)
        self._report()

    async def reconfigure(self, config: BgpConfig, services: tuple[ServiceKey, ...]) -> None:
        """A reload: new services and/or a new ``bgp:`` section; BIRD re-reads its config.

        Raises:
            SpeakerError: BIRD refuses the new config (the running one is kept).
        """
        old_config, old_services = self.config, self.policy.services
        self.policy.require = config.require
        self.policy.handle(ServicesConfigured(services))
        try:
            if config.bird != self.config.bird or config.run_dir != self.config.run_dir:
                raise IpvsdError("bgp.bird and bgp.run_dir cannot change in a reload")
            await self.speaker.reconfigure(self._render(config))
        except IpvsdError:
            self.policy.require = old_config.require
            self.policy.handle(ServicesConfigured(old_services))
            raise
        self.config = config
        self._applied = {p: p in self.policy.announced for p in self.policy.prefixes}
        self.feed(ServicesConfigured(services))

    def feed(self, event: Event) -> None:
        """Hand the policy an event; BIRD follows at once (`run`)."""
        for action in self.policy.handle(event):
            log.info(
                "bgp.announce" if isinstance(action, Announce) else "bgp.withdraw",
                prefix=str(action.prefix),
                reason=self.policy.reason(action.prefix),
            )
        self._wake.set()

    async def run(self) -> None:
        """Keep BIRD in line with the policy; poll the sessions; restart a dead BIRD."""
        loop = asyncio.get_running_loop()
        next_poll = 0.0
        exited: asyncio.Future[int] | None = None
        try:
            while not self._stopped:
                if not self.speaker.running:
                    await self._restart()
                    exited = None
                    continue
                if exited is None:
                    exited = asyncio.ensure_future(self.speaker.exited())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    (woken, exited),
                    timeout=max(0.0, next_poll - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                if exited.done():  # BIRD died: restart it at once (above)
                    exited = None
                    continue
                self._wake.clear()
                await self._pass(loop.time() >= next_poll)
                if loop.time() >= next_poll:
                    next_poll = loop.time() + POLL_INTERVAL_S
        finally:
            if exited is not None:
                exited.cancel()

    async def _pass(self, poll: bool) -> None:
        try:
            await self._sync()
            if poll:
                await self._poll()
        except IpvsdError as exc:
            log.error("bgp.speaker_error", error=str(exc))
            await asyncio.sleep(RESTART_DELAY_S)

    async def _restart(self) -> None:
        status = await self.speaker.exited()
        if self._stopped:  # `stop` ended it
            return
        log.error("bgp.speaker_died", status=status, restart_in_s=RESTART_DELAY_S)
        self._sessions = self._down()
        self._report()
        await asyncio.sleep(RESTART_DELAY_S)
        if self._stopped:
            return
        try:
            await self.speaker.start(self._render(self.config))
        except IpvsdError as exc:
            log.error("bgp.speaker_restart_failed", error=str(exc))
            return
        self._applied = {p: p in self.policy.announced for p in self.policy.prefixes}

    async def _sync(self) -> None:
        client = self.speaker.client
        if client is None:
            return
        changed = False
        for prefix in self.policy.prefixes:
            wanted = prefix in self.policy.announced
            if self._applied.get(prefix) == wanted:
                continue
            verb = "enable" if wanted else "disable"
            try:
                await client.command(f'{verb} "{vip_protocol(prefix)}"')
            except BirdCommandError as exc:
                log.error("bgp.command_refused", command=verb, prefix=str(prefix), error=str(exc))
                continue
            self._applied[prefix] = wanted
            changed = True
        if changed:
            self._report()

    async def _poll(self) -> None:
        client = self.speaker.client
        if client is None:
            return
        rows = {row.name: row for row in parse_protocols(await client.command("show protocols"))}
        self._sessions = tuple(
            _session(n.address, n.remote_as, rows.get(peer_protocol(n)))
            for n in self.config.neighbors
        )
        if self._on_sessions is not None:
            self._on_sessions(self._sessions)

    def _report(self) -> None:
        if self._on_announced is not None:
            announced = frozenset(p for p, on in self._applied.items() if on)
            self._on_announced(self.policy.prefixes, announced)
        if self._on_sessions is not None:
            self._on_sessions(self._sessions)

    async def stop(self) -> None:
        """Graceful stop: withdraw every VIP (UPDATEs), then stop BIRD (Cease)."""
        self._stopped = True
        self.feed(Stopping())
        with contextlib.suppress(IpvsdError):
            await self._sync()
        await self.speaker.stop()
        self._sessions = self._down()
        self._applied = dict.fromkeys(self._applied, False)
        self._report()

    def _down(self) -> tuple[Session, ...]:
        return tuple(
            Session(str(n.address), n.remote_as, "down", False) for n in self.config.neighbors
        )

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The sessions as last polled (``down`` while BIRD is not running)."""
        return self._sessions

    @property
    def running(self) -> bool:
        return self.speaker.running

    @property
    def greeting(self) -> str:
        """BIRD's hello (``BIRD 2.0.12 ready.``); empty while it is not running."""
        client = self.speaker.client
        return client.greeting if client is not None else ""

    def prefixes(self) -> list[PrefixState]:
        """Every VIP of the services: announced or not, and why."""
        return [
            PrefixState(p, self._applied.get(p, False), self.policy.reason(p))
            for p in self.policy.prefixes
        ]


def _session(address: object, remote_as: int, row: ProtocolState | None) -> Session:
    if row is None:
        return Session(str(address), remote_as, "unknown", False)
    state = row.info.split()[0] if row.info else row.state
    return Session(str(address), remote_as, state, row.established)
