"""What the control socket sees of the daemon: `DaemonView` implements `ControlView`.

Read-only questions (status, ready, version) read the running components;
drain and undrain change the health manager's admin drains and wake the
reconciler; reload is the daemon's own (the view only forwards it). The
view keeps no state of its own, so a reload that replaces a component is
seen by the next request.

Drains are durable (``admin_state``): a drain or undrain is written to the
state directory before the drains in memory change, and a failed write
fails the request with nothing changed. `DaemonView.restore_drains` reads
them back at start, before the first reconcile.

The status document's modules (``ipvsd.control.status``, ``status_json``,
``ipvsd.daemon.status``) are imported at the first status request, not with
this module: the daemon builds its view before the first reconcile pass, which
needs none of them (~50 ms of imports in User-Mode Linux).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from ipvsd import __version__
from ipvsd.config import Config
from ipvsd.daemon.admin_state import AdminStateError, DirectorDrainFile, DrainStore
from ipvsd.daemon.components import Components
from ipvsd.errors import ControlRequestError
from ipvsd.loopslice import LoopSlice
from ipvsd.model import DestKey, RealId, ServiceKey
from ipvsd.vrrp.machine import VrrpState

if TYPE_CHECKING:
    from ipvsd.bgp.announcer import BgpAnnouncer
    from ipvsd.control.status import BgpStatus, StatusDocument
    from ipvsd.daemon.status import StatusPlan, VrrpView

log = structlog.get_logger("ipvsd.daemon")

#: A tracked script's rise/fall state (`ipvsd.vrrp.tracking`) as status shows it.
_SCRIPT_STATE = {True: "ok", False: "failing", None: "unknown"}


class DaemonView:
    """`ipvsd.control.protocol.ControlView` over the running components.

    Args:
        parts: the daemon's components (read at every request).
        reload: the daemon's reload (``reload(force=...)``: its errors, or []).
        drains_changed: called after a drain or undrain, to reconcile at once.
        drains: where drains are kept across restarts.
    """

    version = __version__

    def __init__(
        self,
        parts: Components,
        *,
        reload: Callable[..., Awaitable[list[str]]],
        drains_changed: Callable[[], None],
        drains: DrainStore,
    ) -> None:
        self._parts = parts
        self._reload = reload
        self._drains_changed = drains_changed
        self._store = drains
        self._director_file = DirectorDrainFile(drains.directory)
        self.director_drained = self._director_file.load()
        """The whole director is drained (``ipvsd drain --all``), kept across restarts."""
        # The status of 10,000 services is a second of CPU: built in loop slices.
        self._slice = LoopSlice()
        self._plan: StatusPlan | None = None
        """What the status text needs of the config in force, made at the first status."""

    @property
    def node(self) -> str:
        """This director's name (``node_name``): drains and undrains are its alone."""
        return self._parts.config.node_name

    async def status(self) -> StatusDocument:
        """The status document, with the kernel's counters read now: `status_text`
        decoded, as ``ipvsd status`` reads it."""
        from ipvsd.control.status_json import from_json

        return from_json(json.loads("".join(await self.status_text())))

    async def status_text(self, *, services: bool = True) -> list[str]:
        """The status document's JSON text (pieces to join), with the kernel's counters
        read now; written in loop slices, from a `StatusPlan` kept while the config is.
        Without `services` (``status --check``): none listed, and no kernel read."""
        from ipvsd.daemon.status import StatusPlan, status_text_steps

        parts = self._parts
        kernel = await parts.ipvs.dump() if parts.ipvs is not None and services else None
        sync = None
        if parts.sync is not None and parts.sync.target is not None:
            sync = await parts.sync.status()
        config = parts.config
        if self._plan is None or self._plan.config is not config:
            self._plan = StatusPlan(config)  # a start or a reload: the old one is dropped
        return await self._slice.drain(
            status_text_steps(
                node=config.node_name,
                version=__version__,
                config=config,
                kernel=kernel,
                health=parts.health.records(),
                drained=parts.health.drained,
                vrrp=self._vrrp_views(),
                sync_daemon=sync,
                quorum=parts.health.quorum.state,
                bgp=bgp_status(parts.bgp) if parts.bgp is not None else None,
                plan=self._plan,
                desired=parts.desired(),
            )
        )

    def drain_director(self, drained: bool) -> None:
        """``ipvsd drain --all`` / ``undrain --all``: BGP withdraws (announces) every VIP.

        Raises:
            ControlRequestError: no ``bgp:`` section (nothing to withdraw), or
                the state could not be kept on disk.
        """
        bgp = self._parts.bgp
        if bgp is None:
            raise ControlRequestError(
                "drain --all withdraws the BGP announcements; this director has no bgp: section"
            )
        try:
            self._director_file.save(drained)
        except AdminStateError as exc:
            raise ControlRequestError(f"not changed: {exc}") from None
        self.director_drained = drained
        from ipvsd.bgp.policy import DirectorDrained

        bgp.feed(DirectorDrained(drained))
        log.info("bgp.director_drained" if drained else "bgp.director_undrained")

    def _vrrp_views(self) -> list[VrrpView]:
        if self._parts.vrrp is None:
            return []
        from ipvsd.control.status import TrackedFileStatus, TrackedScriptStatus
        from ipvsd.daemon.status import VrrpView

        return [
            VrrpView(
                name=inst.name,
                state=inst.status.state.value,
                interface=inst.config.interface,
                vrid=inst.config.vrid,
                priority=inst.config.priority,
                effective_priority=inst.status.effective_priority,
                virtual_ipaddresses=inst.vips,
                fault_reason=inst.status.fault_reason,
                failures=inst.status.failures,
                master_address=inst.status.master_address,
                track_scripts=tuple(
                    TrackedScriptStatus(name, _SCRIPT_STATE[ok])
                    for name, ok in sorted(inst.status.scripts.items())
                ),
                track_files=tuple(
                    TrackedFileStatus(t.path, inst.status.files.get(t.path), t.weight)
                    for t in inst.config.track_files
                ),
                version=inst.config.version,
                family=inst.config.family,
                advert_int=inst.config.advert_int,
                master_adver_int=inst.status.master_adver_int,
                accept_mode=inst.config.accept_mode,
                accept_mode_error=inst.status.accept_mode_error,
            )
            for inst in self._parts.vrrp.instances.values()
        ]

    async def reload(self, *, force: bool = False) -> list[str]:
        """Re-read the config; its errors, or [] when it was applied.

        Args:
            force: apply it even if a guard refuses it (``ipvsd reload --force``).
        """
        return await self._reload(force=force)

    def drain(self, service: ServiceKey, real: DestKey) -> None:
        """Administrative drain: weight 0 until undrained; survives reloads and restarts.

        Raises:
            ControlRequestError: the real is not configured, or the drain could
                not be written to the state directory (then nothing changed).
        """
        self._configured_real(service, real)
        self._keep(self._parts.health.drained | {(service, real)})
        self._parts.health.drained.add((service, real))
        log.info("ipvs.drained", service=str(service), real=str(real))
        self._drains_changed()

    def undrain(self, service: ServiceKey, real: DestKey) -> None:
        """Give a drained real its configured weight back (on disk too).

        Raises:
            ControlRequestError: as for `drain`.
        """
        self._configured_real(service, real)
        self._keep(self._parts.health.drained - {(service, real)})
        self._parts.health.drained.discard((service, real))
        log.info("ipvs.undrained", service=str(service), real=str(real))
        self._drains_changed()

    def _keep(self, drained: set[RealId]) -> None:
        """Write `drained` to the state directory first (memory follows the disk)."""
        try:
            self._store.save(drained)
        except AdminStateError as exc:
            log.error("state.drains_not_saved", error=str(exc))
            raise ControlRequestError(f"not changed, the drains could not be kept: {exc}") from None

    def drains_pruned(self) -> None:
        """After a reload dropped reals: the file forgets their drains too.

        Otherwise a later config that brings the real back would find its old
        drain at the next restart. A failed write is logged: the reload itself
        went through, and the next drain or undrain rewrites the file.
        """
        try:
            self._store.save(set(self._parts.health.drained))
        except AdminStateError as exc:
            log.error("state.drains_not_saved", error=str(exc))

    def restore_drains(self, config: Config) -> None:
        """At start, before the first reconcile: the drains the last run kept.

        Drains of reals `config` no longer has are dropped (logged), and the
        file is rewritten without them. A bad file never stops the start
        (``admin_state`` Rule 3).
        """
        kept = self._store.load()
        drained = self._parts.health.drained
        if not kept:  # the usual start: no walk over every real
            drained.clear()
            return
        configured = {
            (key, s.dest_key(r)) for s in config.ipvs.services if (key := s.key) for r in s.reals
        }
        dropped = kept - configured
        for service, real in sorted(dropped, key=lambda r: (str(r[0]), str(r[1]))):
            log.warning("state.drain_dropped", service=str(service), real=str(real),
                        reason="not configured")  # fmt: skip
        drained.clear()
        drained.update(kept & configured)
        if kept:
            log.info("state.drains_restored", path=str(self._store.path), drains=len(drained))
        if dropped:
            try:
                self._store.save(drained)
            except AdminStateError as exc:
                log.error("state.drains_not_saved", error=str(exc))

    def _configured_real(self, service: ServiceKey, real: DestKey) -> None:
        for configured in self._parts.config.ipvs.services:
            if configured.key == service:
                if any(configured.dest_key(r) == real for r in configured.reals):
                    return
                raise ControlRequestError(f"service {service} has no real {real}")
        raise ControlRequestError(f"no service {service} is configured")

    def ready(self) -> bool:
        """First reconcile done, VRRP started, and no instance in INIT or FAULT.

        FAULT always has a reason (``status`` shows it): a missing interface or
        address, a link down, a failed instance waiting for its restart.
        """
        return self._parts.ready and all(
            state not in (VrrpState.INIT, VrrpState.FAULT) for state in self.vrrp_states().values()
        )

    def vrrp_states(self) -> dict[str, VrrpState]:
        """Each VRRP instance's state by name ({} without VRRP)."""
        return self._parts.vrrp.states() if self._parts.vrrp is not None else {}

    def status_line(self) -> str:
        """systemd's STATUS=: the VRRP states and the service count."""
        states = self.vrrp_states()
        vrrp = ", ".join(f"{name} {state.value}" for name, state in sorted(states.items()))
        services = f"{len(self._parts.config.ipvs.services)} services"
        return f"{vrrp}; {services}" if vrrp else services


def bgp_status(bgp: BgpAnnouncer) -> BgpStatus:
    """BGP mode as ``ipvsd status`` shows it."""
    from ipvsd.control.status import BgpPrefixStatus, BgpSession, BgpStatus

    return BgpStatus(
        speaker=bgp.greeting,
        running=bgp.running,
        local_as=bgp.config.local_as,
        drained=bgp.policy.drained,
        sessions=tuple(BgpSession(s.neighbor, s.remote_as, s.state, s.up) for s in bgp.sessions),
        prefixes=tuple(
            BgpPrefixStatus(str(p.prefix), p.announced, p.reason) for p in bgp.prefixes()
        ),
    )
