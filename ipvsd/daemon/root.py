"""The composition root: builds the components from the config and runs them.

Signals: SIGHUP re-reads the config (a bad config is refused, its errors are
logged, and the running state is kept); SIGTERM / SIGINT stop gracefully and
leave the IPVS table in place (unless ``ipvs.cleanup_on_exit``), so a restart
adopts it without dropping a connection.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ipvsd import __version__
from ipvsd.config import Config, load_config
from ipvsd.daemon.admin_state import DrainStore
from ipvsd.daemon.components import Components
from ipvsd.daemon.endpoints import Endpoints
from ipvsd.daemon.lock import DEFAULT_RUNTIME_DIR, HostLock
from ipvsd.daemon.ports import (
    Addresses,
    KernelPorts,
    Links,
    Routes,
    TableReader,
    Vmacs,
    real_ports,
)
from ipvsd.daemon.quorum import ServiceQuorum
from ipvsd.daemon.reload import refusal as reload_refusal
from ipvsd.daemon.view import DaemonView
from ipvsd.errors import ConfigError, IpvsdError, IpvsUnavailable, KernelError
from ipvsd.gcpause import THRESHOLDS
from ipvsd.health.manager import HealthManager, adopted_reals
from ipvsd.health.tracker import Health
from ipvsd.metrics.early import EarlyMetrics
from ipvsd.model import DestKey, ServiceKey, Table
from ipvsd.process import lower_this_thread_priority
from ipvsd.systemd import Notifier
from ipvsd.vrrp.machine import VrrpState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    # Imported where used: a pure VRRP daemon (no services) never loads the IPVS
    # side, a pure IPVS one (no VRRP instance) not the VRRP runtime.
    from ipvsd.bgp.birdconf import Prefix
    from ipvsd.config.model import BgpConfig
    from ipvsd.ipvs.reconciler import PassReport, Reconciler
    from ipvsd.ipvs.sync_daemon import SyncTarget
    from ipvsd.metrics.bgp import BgpMetrics
    from ipvsd.metrics.daemon import DaemonMetrics
    from ipvsd.metrics.ipvs import IpvsExporter
    from ipvsd.vrrp.instance import VrrpInstance
    from ipvsd.vrrp.machine import Transitioned
    from ipvsd.vrrp.prelisten import EarlyListeners

if TYPE_CHECKING:
    from ipvsd.config.model import VrrpInstanceConfig

log = structlog.get_logger("ipvsd.daemon")

#: Seconds a scrape waits for its kernel dump before it reports a scrape error.


class Daemon:
    """One running ipvsd. `run()` returns the process exit code.

    Args:
        config_path: the file a reload re-reads.
        config: the config it was started with (already validated).
        ports: how the kernel is reached; `real_ports()` unless a test fakes it.
        handle_signals: install the SIGHUP / SIGTERM / SIGINT handlers (off in
            in-process tests, which call `reload()` and `request_stop()`).
        runtime_dir: where the one-daemon-per-host lock lives (`lock`).
        host_lock: that lock, taken already (`ipvsd.daemon.early`); None: one
            in `runtime_dir`, taken when `run()` starts.
        listening: advert sockets opened before the daemon loaded
            (`ipvsd.vrrp.prelisten`), for the VRRP start to adopt.
    """

    def __init__(
        self,
        config_path: Path,
        config: Config,
        *,
        ports: KernelPorts | None = None,
        handle_signals: bool = True,
        runtime_dir: Path = DEFAULT_RUNTIME_DIR,
        host_lock: HostLock | None = None,
        listening: EarlyListeners | None = None,
    ) -> None:
        self._config_path = config_path
        self._listening = listening
        self._host_lock = host_lock or HostLock(runtime_dir)
        self._ports = ports or real_ports()
        self._handle_signals = handle_signals
        self._addresses: Addresses | None = None
        self._routes: Routes | None = None
        self._vmacs: Vmacs | None = None
        self._links: Links | None = None
        self._early_metrics = EarlyMetrics()
        self.metrics: DaemonMetrics | EarlyMetrics = self._early_metrics
        """The daemon's own metrics: `EarlyMetrics` until `_bind_metrics`."""
        self._node_name = config.node_name
        self._loaded_at = time.time()
        self._scrape_reader: TableReader | None = None
        self._mh_weights = _MhWeights(lambda: self._parts.config, lambda: self._parts.desired())
        self._parser = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ipvsd-parse", initializer=lower_this_thread_priority
        )
        self._quorum = ServiceQuorum(self.metrics)
        self._parts = Components(
            config=config,
            health=HealthManager(
                on_change=self._desired_changed,
                on_health=lambda real, health: self.metrics.backend_up(real, health is Health.UP),
                on_gone=lambda real: self.metrics.backend_gone(real),
                on_check=self.metrics.health_check_duration,
                on_quorum=self._quorum.changed,
                on_service_gone=self._quorum.gone,
            ),
        )
        self._quorum.follower = self._parts.health.is_follower
        self.view = DaemonView(
            self._parts,
            reload=self.reload,
            drains_changed=self._desired_changed,
            drains=DrainStore(Path(config.state_dir)),
        )
        """What the control socket sees (status, drain, undrain, ready, reload)."""
        self._endpoints = Endpoints(self.view, lambda: self.registry, self._exporter)
        self._notifier = Notifier()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.started = asyncio.Event()
        """Set once the daemon is ready (READY=1): IPVS reconciled, VRRP started."""
        # Long-running components run in this group, so an unexpected exception
        # in one of them (a bug) ends the daemon non-zero and systemd restarts it.
        self._group: asyncio.TaskGroup | None = None
        self._components: set[asyncio.Task[None]] = set()
        self._reloads: set[asyncio.Task[None]] = set()
        self._hup_task: asyncio.Task[None] | None = None
        self._hup_again = False
        self._bgp_metrics: BgpMetrics | None = None

    @property
    def config(self) -> Config:
        return self._parts.config

    @property
    def reconciler(self) -> Reconciler | None:
        return self._parts.reconciler

    @property
    def registry(self) -> CollectorRegistry:
        """The daemon's own metrics (the IPVS table's are added at scrape time)."""
        return self._bind_metrics().registry

    def _bind_metrics(self) -> DaemonMetrics:
        """Load prometheus-client and create the metrics, with what `EarlyMetrics` kept.

        Once, after the first reconcile pass (`_run`), or before it if asked
        for (a reload that serves /metrics or starts BGP mode, a test).
        """
        if self._early_metrics.bound:
            assert not isinstance(self.metrics, EarlyMetrics)
            return self.metrics
        from prometheus_client import CollectorRegistry

        from ipvsd.metrics.daemon import DaemonMetrics

        registry = CollectorRegistry(auto_describe=False)
        metrics = DaemonMetrics(
            registry, version=__version__, node=self._node_name, loaded_at=self._loaded_at
        )
        self._early_metrics.bind(metrics)
        self.metrics = metrics
        return metrics

    def request_stop(self) -> None:
        """Stop gracefully, as SIGTERM does."""
        self._stop.set()

    async def run(self) -> int:
        tune_garbage_collector()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
            loop.add_signal_handler(signal.SIGTERM, self._stop.set)
            loop.add_signal_handler(signal.SIGINT, self._stop.set)
        config = self._parts.config
        # Before any kernel write: a second daemon must leave the first one's table alone.
        self._host_lock.acquire()
        try:
            return await self._run(config)
        finally:
            self._host_lock.release()

    async def _run(self, config: Config) -> int:
        log.info(
            "daemon.start",
            version=__version__,
            config=str(self._config_path),
            node=config.node_name,
            services=len(config.ipvs.services),
        )
        try:
            if config.ipvs.services:
                await self._start_ipvs(config)
        except IpvsUnavailable as exc:
            log.error("daemon.ipvs_unavailable", error=str(exc))
            raise
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                reconciler = self._parts.reconciler
                if reconciler is not None:
                    self._start_component(self._parts.health.monitor.run())
                    self._start_component(reconciler.run())
                    # IPVS services exist on every director before VRRP moves VIPs.
                    await reconciler.first_pass_done.wait()
                # prometheus-client (http.server with it) once the table is written.
                self._bind_metrics()
                # The socket first: a second daemon fails here, before touching VIPs.
                await self._endpoints.start_control(config)
                # Before VRRP: a starting director receives the sync as backup.
                self._configure_sync_daemon(config)
                await self._start_vrrp(config)
                await self._start_bgp(config)
                self._start_metrics(config)
                self._start_component(self._ports.check_routes(config))
                self._start_component(self._announce_ready())
                self._start_component(self._notifier.watchdog())
                await self._stop.wait()
                for task in (*self._components, *self._reloads):
                    task.cancel()
        except ExceptionGroup as group:
            # An expected start-up failure (socket in use, no IPVS, bad interface)
            # becomes its one-line error; anything else is a bug and propagates.
            if all(isinstance(exc, IpvsdError) for exc in group.exceptions):
                raise group.exceptions[0] from None
            raise
        finally:
            self._group = None
            await self._shutdown()
        return 0

    async def _start_vrrp(self, config: Config) -> None:
        listening, self._listening = self._listening, None
        if not config.vrrp.instances:
            if listening is not None:
                listening.close()
            return
        self._addresses = await self._ports.open_addresses()
        self._links = await self._ports.open_links()
        self._routes = await self._ports.open_routes()
        self._vmacs = await self._ports.open_vmacs()
        from ipvsd.netlink import nftables
        from ipvsd.vrrp.accept import AcceptGuard
        from ipvsd.vrrp.router import VrrpRouter

        self._parts.vrrp = VrrpRouter(
            self._addresses,
            self._links,
            routes=self._routes,
            vmacs=self._vmacs,
            on_route_error=self.metrics.vrrp_route_error,
            on_transition=self._vrrp_transitioned,
            on_reject=self.metrics.invalid_packet,
            on_failure=self.metrics.vrrp_failure,
            services=self._quorum.feed,
            accept_guard=AcceptGuard(self._ports.write_accept, nftables.UNSUPPORTED),
        )
        await self._parts.vrrp.start(
            config.vrrp.instances,
            config.vrrp.sync_groups,
            config.vrrp.scripts,
            listening=listening,
        )

    # --- BGP mode (ipvsd/bgp/) ----------------------------------------------------------

    async def _start_bgp(self, config: Config) -> None:
        """Start the BGP speaker with nothing announced; the policy announces from Ready on."""
        if config.bgp is None or self._group is None:
            return
        from ipvsd.bgp.announcer import BgpAnnouncer
        from ipvsd.bgp.host import LocalVips
        from ipvsd.bgp.policy import QuorumChanged
        from ipvsd.metrics.bgp import BgpMetrics

        if self._bgp_metrics is None:
            self._bgp_metrics = BgpMetrics(self.registry)
        metrics = self._bgp_metrics
        bgp = BgpAnnouncer(
            config.bgp,
            str(self._config_path),
            vips=LocalVips(self._ports.open_addresses, config.bgp.vip_interface),
            on_sessions=lambda sessions: metrics.sessions((s.neighbor, s.up) for s in sessions),
            on_announced=lambda prefixes, announced: metrics.announced(
                map(str, prefixes), set(map(str, announced))
            ),
        )
        await bgp.start(_service_keys(config), drained=self.view.director_drained)
        self._parts.bgp = bgp
        _warn_host(config.bgp, bgp.policy.prefixes)
        _advise(config)
        for key, up in self._quorum.last.items():
            bgp.feed(QuorumChanged(key, up))
        self._quorum.listener = lambda key, up: bgp.feed(QuorumChanged(key, up))
        if self._parts.ready:
            from ipvsd.bgp.policy import Ready

            bgp.feed(Ready())
        self._start_component(bgp.run())

    async def _apply_bgp(self, new: Config, undo: list[Callable[[], Awaitable[None]]]) -> None:
        """A reload's BGP step: start, reconfigure (BIRD re-reads its config) or stop."""
        bgp = self._parts.bgp
        if bgp is None:
            if new.bgp is not None:
                await self._start_bgp(new)
            return
        if new.bgp is None:
            self._parts.bgp = None
            self._quorum.listener = None
            await bgp.stop()
            return
        old = bgp.config, bgp.policy.services
        await bgp.reconfigure(new.bgp, _service_keys(new))
        _warn_host(new.bgp, bgp.policy.prefixes)
        _advise(new)

        async def restore_bgp() -> None:
            await bgp.reconfigure(*old)

        undo.append(restore_bgp)

    def _start_metrics(self, config: Config) -> None:
        """The /metrics endpoint (its own thread) and the event-loop lag probe."""
        intervals = [instance.advert_int for instance in config.vrrp.instances]
        from ipvsd.metrics.daemon import EventLoopLag

        lag = EventLoopLag(self._bind_metrics(), threshold_s=min(intervals, default=1) / 4)
        self._start_component(lag.run())
        self._endpoints.start_metrics(config)

    def _exporter(self, config: Config) -> IpvsExporter:
        """The IPVS table's part of /metrics: silent while IPVS is not in use.

        Asked at every scrape, so the ``ipvs_*`` series appear as soon as a
        reload gives a pure VRRP daemon its first services.
        """
        from ipvsd.metrics.ipvs import IpvsExporter

        loop = asyncio.get_running_loop()
        return IpvsExporter(
            lambda: self._scrape_table(loop),
            enabled=lambda: self._parts.reconciler is not None,
            last_weights=self._mh_weights.of,
        )

    def _scrape_table(self, loop: asyncio.AbstractEventLoop) -> Table:
        """Runs in the HTTP thread: a fresh dump, never a cached one.

        The dump itself blocks this thread on a socket of its own, off the
        loop (see `ipvsd.netlink.table_reader`); only opening it (pyroute2's
        family lookup is async) visits the loop, once.
        """
        from ipvsd.netlink.table_reader import DUMP_TIMEOUT_S

        if self._scrape_reader is None:
            opening = asyncio.run_coroutine_threadsafe(self._ports.open_table_reader(), loop)
            self._scrape_reader = opening.result(timeout=DUMP_TIMEOUT_S)
        reconciler = self._parts.reconciler
        generation = reconciler.write_generation if reconciler is not None else 0
        started_at = time.monotonic()
        table = self._scrape_reader.dump()
        if reconciler is not None:  # the next drift repair need not read it again
            loop.call_soon_threadsafe(reconciler.offer_dump, table, generation, started_at)
        return table

    def _reconcile_report(self, report: PassReport) -> None:
        self.metrics.reconcile_operations(report.operations)
        if report.errors:
            self.metrics.reconcile_error(len(report.errors))

    async def _announce_ready(self) -> None:
        """READY=1 once the config is loaded, IPVS reconciled and VRRP started."""
        if self._parts.reconciler is not None:
            await self._parts.reconciler.first_pass_done.wait()
        self._parts.ready = True
        if self._parts.bgp is not None:
            from ipvsd.bgp.policy import Ready

            self._parts.bgp.feed(Ready())
        log.info("daemon.ready", services=len(self._parts.config.ipvs.services))
        self._notifier.ready(self.view.status_line())
        self.started.set()

    def _vrrp_transitioned(self, instance: VrrpInstance, action: Transitioned) -> None:
        config = instance.config
        self.metrics.vrrp_transition(instance.name, action.new.value)
        self.metrics.vrrp_state(instance.name, config.interface, config.vrid, action.new.value)
        self._vrrp_info(config)
        self.metrics.vrrp_priority(instance.name, instance.status.effective_priority)
        if self._parts.ready:
            self._notifier.status(self.view.status_line())
        master = action.new is VrrpState.MASTER
        self._parts.health.vrrp_state(instance.name, master=master)  # ha_suspend
        if self._parts.sync is not None:
            self._parts.sync.vrrp_transitioned(instance.name, master=master)

    # --- IPVS connection sync (ipvsd/ipvs/sync_daemon.py) ------------------------------

    def _configure_sync_daemon(self, config: Config) -> None:
        """Start the sync-daemon controller, or hand it a reloaded config.

        Its own netlink socket: a failover's master/backup switch never waits
        behind a long reconcile batch on the reconciler's socket.
        """
        target = sync_target(config)
        if self._parts.sync is None:
            if target is None or self._group is None:
                return
            from ipvsd.ipvs.sync_daemon import SyncDaemonController

            self._parts.sync = SyncDaemonController(
                self._ports.open_ipvs,
                resync_interval_s=config.ipvs.resync_interval,
                on_pass=self.metrics.sync_daemon_pass,
            )
            self._start_component(self._parts.sync.run())
        # Also when unchanged: the followed instance may have been restarted by the reload.
        self._parts.sync.configure(target, master=self._followed_is_master(target))

    def _followed_is_master(self, target: SyncTarget | None) -> bool:
        instance = None
        if target is not None and self._parts.vrrp is not None:
            instance = self._parts.vrrp.instances.get(target.vrrp_instance)
        return instance is not None and instance.status.state is VrrpState.MASTER

    def _start_component(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._group is not None
        task = self._group.create_task(coroutine)
        self._components.add(task)
        task.add_done_callback(self._components.discard)

    async def _start_ipvs(self, config: Config) -> None:
        from ipvsd.ipvs.reconciler import Reconciler

        client = self._parts.ipvs = await self._ports.open_ipvs()
        await self._apply_timeouts(config)
        reconciler = self._parts.reconciler = Reconciler(
            client,
            resync_interval_s=config.ipvs.resync_interval,
            on_report=self._reconcile_report,
        )
        # Reals already in the kernel are adopted UP (at weight 0: DOWN until
        # `rise` checks pass): a restart must not pull them out until their
        # checks have run. The kept drains come first: weight 0 from the first write.
        actual = await client.dump(with_stats=False)
        self.view.restore_drains(config)
        await self._parts.health.configure(config, adopted=adopted_reals(config, actual))
        reconciler.prime(actual)
        reconciler.set_desired(self._parts.health.desired(), reason="adopt")

    def _desired_changed(self) -> None:
        """Health or a drain changed: reconcile now."""
        if self._parts.reconciler is not None:
            self._parts.reconciler.set_desired(self._parts.health.desired(), reason="health")

    async def _apply_timeouts(self, config: Config) -> None:
        timeouts = config.ipvs.timeouts
        if timeouts is None or self._parts.ipvs is None:
            return
        from ipvsd.netlink.ipvs import Timeouts

        wanted = Timeouts(tcp=timeouts.tcp or 0, tcpfin=timeouts.tcpfin or 0, udp=timeouts.udp or 0)
        try:
            await self._parts.ipvs.set_timeouts(wanted)
        except KernelError as exc:
            log.error("ipvs.timeouts_error", error=str(exc))

    def _spawn_reload(self) -> None:
        """SIGHUP: reload, coalescing the signals that arrive meanwhile into one more."""
        if self._hup_task is not None and not self._hup_task.done():
            self._hup_again = True
            return
        self._hup_task = asyncio.get_running_loop().create_task(self._reload_on_hup())
        self._reloads.add(self._hup_task)
        self._hup_task.add_done_callback(self._reloads.discard)

    async def _reload_on_hup(self) -> None:
        # Signals before this reload reads the file are covered by it; one that
        # arrives while it runs may come with an edit it missed: one more then.
        while True:
            self._hup_again = False
            await self.reload()  # never forced: SIGHUP is safe by default
            if not self._hup_again:
                return

    async def reload(self, *, force: bool = False) -> list[str]:
        """Re-read the config and apply it, or keep the running one and return why not.

        Args:
            force: apply a reload that the guards refuse (every VRRP instance
                removed, more deletions than ``ipvs.max_deletes``).

        Returns:
            [] when applied; else one message per problem (config errors with
            their lines, a guard's refusal, or what failed while applying —
            then the running config was restored).
        """
        self._notifier.send(RELOADING=1)
        try:
            async with self._reload_lock:
                errors = await self._reload_config(force=force)
        finally:
            self._notifier.ready(self.view.status_line())
        self.metrics.config_reload(not errors)
        if errors:
            log.error("config.reload_refused", config=str(self._config_path), errors=errors)
        else:
            log.info("config.reloaded", config=str(self._config_path), forced=force)
        return errors

    async def _reload_config(self, *, force: bool) -> list[str]:
        try:
            # In a thread of its own at background priority: 10k x 4 reals
            # take ~0.6 s to parse, which would stall the loop, and on a busy
            # CPU the loop and the advert sender go first.
            new = await asyncio.get_running_loop().run_in_executor(
                self._parser, load_config, self._config_path
            )
        except ConfigError as exc:
            return [str(issue) for issue in exc.issues]
        except OSError as exc:
            return [f"cannot read {self._config_path}: {exc.strerror or exc}"]
        refused = await reload_refusal(
            new,
            self._parts,
            self._ports.open_ipvs,
            interface_exists=self._ports.interface_exists,
            force=force,
        )
        if refused:
            return [refused]
        old = self._parts.config
        drained_before = set(self._parts.health.drained)
        undo: list[Callable[[], Awaitable[None]]] = []
        try:
            await self._apply(new, undo)
        except IpvsdError as exc:
            log.error("config.reload_failed", error=str(exc), rolling_back=len(undo))
            await self._roll_back(old, undo)
            return [f"reload failed, the running config is kept: {exc}"]
        self._retain_metrics(new)
        if self._parts.health.drained != drained_before:
            self.view.drains_pruned()
        gc.freeze()
        return []

    async def _roll_back(self, old: Config, undo: list[Callable[[], Awaitable[None]]]) -> None:
        """Undo the applied steps, newest first; an undo that fails is logged, not raised."""
        self._parts.config = old
        for step in reversed(undo):
            try:
                await step()
            except IpvsdError as exc:
                log.error("config.rollback_failed", error=str(exc))

    def _retain_metrics(self, config: Config) -> None:
        """Drop the series of instances the applied config no longer has.

        Removed reals' series went already, as the health manager configured
        the new config (``on_gone``): no walk over every real here.
        """
        self.metrics.retain([(i.name, i.interface, i.vrid) for i in config.vrrp.instances])
        for instance in config.vrrp.instances:  # an interval changed in place (issue 14)
            self._vrrp_info(instance)

    def _vrrp_info(self, config: VrrpInstanceConfig) -> None:
        self.metrics.vrrp_instance_info(
            config.name, version=config.version, family=config.family, advert_int=config.advert_int
        )

    async def _apply(self, new: Config, undo: list[Callable[[], Awaitable[None]]]) -> None:
        """Hand a config that passed the reload policy to every component.

        Each step that changes something pushes its inverse onto `undo` first
        thing after it succeeded, so a later failure can restore the old state.
        Order: what can fail and is cheap to undo first (sockets bound before
        the old ones close), then IPVS, then VRRP.
        """
        parts = self._parts
        old = parts.config
        await self._endpoints.rebind(old, new, undo)
        parts.config = new

        drained = set(parts.health.drained)

        async def restore_ipvs() -> None:
            # The old desired table; services this reload added are deleted again.
            await self._apply_timeouts(old)
            await parts.health.configure(old)
            parts.health.drained.update(drained)  # configure(new) forgot removed reals'
            self._desired_changed()

        if parts.reconciler is None and new.ipvs.services:
            await self._start_ipvs(new)
            undo.append(restore_ipvs)
            if parts.reconciler is not None and self._group is not None:
                self._start_component(parts.health.monitor.run())
                self._start_component(parts.reconciler.run())
        elif parts.reconciler is not None:
            await self._apply_timeouts(new)
            await parts.health.configure(new)
            parts.reconciler.set_desired(parts.health.desired(), reason="reload")
            undo.append(restore_ipvs)
        if parts.vrrp is not None:
            vrrp = parts.vrrp

            async def restore_vrrp() -> None:
                await vrrp.update(old.vrrp.instances, old.vrrp.sync_groups, old.vrrp.scripts)

            undo.append(restore_vrrp)  # first: a half-done update is undone too
            await vrrp.update(new.vrrp.instances, new.vrrp.sync_groups, new.vrrp.scripts)
            # A change in place fires no transition: the priority gauge follows here.
            for instance in vrrp.instances.values():
                self.metrics.vrrp_priority(instance.name, instance.status.effective_priority)
        elif new.vrrp.instances and self._group is not None:
            await self._start_vrrp(new)
        await self._apply_bgp(new, undo)
        self._configure_sync_daemon(new)
        if self._group is not None:
            self._start_component(self._ports.check_routes(new))
        retired = self._endpoints.commit()
        if retired is not None:  # after the reload's answer is written on it
            self._start_component(retired.close())

    async def _shutdown(self) -> None:
        parts = self._parts
        self._parser.shutdown(wait=False, cancel_futures=True)
        self._notifier.stopping()
        if parts.bgp is not None:  # first: the routers send new flows elsewhere
            await parts.bgp.stop()
        if parts.vrrp is not None:
            # Next, the backup's takeover: nothing before it may wait (the /metrics
            # server's stop waited up to its 0.5 s poll, and kept a MASTER's
            # priority-0 advert waiting as long).
            await parts.vrrp.stop()
        await self._endpoints.close()
        if self._scrape_reader is not None:
            self._scrape_reader.close()
        parts.health.monitor.stop()
        await self._quorum.stop(parts.health.quorum if parts.reconciler is not None else None)
        if parts.sync is not None:
            await parts.sync.stop()
        # After VRRP has let go: queued notify_up/down programs finish, within a bound.
        await parts.health.notifier.close()
        if self._addresses is not None:
            self._addresses.close()
        if self._links is not None:
            self._links.close()
        for writer in (self._routes, self._vmacs):
            if writer is not None:
                writer.close()
        if parts.ipvs is not None and parts.reconciler is not None:
            # Never after a failed start: whatever made it fail (a port in use,
            # a bad interface) is no reason to empty the table.
            if parts.config.ipvs.cleanup_on_exit and parts.ready:
                from ipvsd.ipvs.plan import DeleteService

                # By text: a fwmark key (no address) does not order against others.
                keys = sorted(parts.reconciler.desired.services, key=str)
                result = await parts.ipvs.apply([DeleteService(key) for key in keys])
                log.info(
                    "ipvs.cleanup_on_exit",
                    deleted=result.applied,
                    errors=[str(f.error) for f in result.failures],
                )
            parts.ipvs.close()
        log.info("daemon.stop")


def sync_target(config: Config) -> SyncTarget | None:
    """``ipvs.sync_daemon`` resolved against its VRRP instance; None when not configured."""
    sync = config.ipvs.sync_daemon
    if sync is None:
        return None
    from ipvsd.ipvs.sync_daemon import resolve

    # The config checks guarantee the instance exists.
    instance = next(i for i in config.vrrp.instances if i.name == sync.vrrp_instance)
    return resolve(sync, instance)


def _warn_host(config: BgpConfig, prefixes: tuple[Prefix, ...]) -> None:
    """Set ``sloppy_tcp`` (unless told not to); warn about what the host still lacks."""
    from ipvsd.bgp.host import enable_sloppy_tcp, host_problems

    if config.sloppy_tcp:
        enable_sloppy_tcp()
    for problem in host_problems(prefixes):
        log.warning("bgp.host_problem", problem=problem)


def _advise(config: Config) -> None:
    """`ipvsd.config.advice` as log events: check-config prints the same with lines."""
    from ipvsd.config.advice import consistent_hashing_advice

    services = config.ipvs.services
    for advice in consistent_hashing_advice(services):
        service = services[advice.index]
        log.warning(
            "config.advice", service=str(service.key), field=advice.field, advice=advice.message
        )


def _service_keys(config: Config) -> tuple[ServiceKey, ...]:
    return tuple(service.key for service in config.ipvs.services)


def tune_garbage_collector() -> None:
    """Keep full collections off the event loop's critical path.

    Measured with 10,000 reals checked every second (bench/health_checks.py):
    with the default thresholds, objects of in-flight checks are promoted and
    trigger full collections that walk the whole config (~100 ms each, 58 in
    20 s), which pushed p99 check lateness to 843 ms; freezing the long-lived
    objects and raising the young threshold brought it to 25 ms. A late loop
    is also what makes VRRP fail over spuriously.
    """
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


async def run(
    config_path: Path, host_lock: HostLock | None = None, listening: EarlyListeners | None = None
) -> int:
    """Load the config and run the daemon until SIGTERM/SIGINT.

    Args:
        config_path: the config file.
        host_lock: the host lock, held already (`ipvsd.daemon.early`).
        listening: advert sockets opened already (`ipvsd.vrrp.prelisten`).

    Raises:
        ConfigError: the config is invalid (nothing was touched but stale VIPs).
        IpvsUnavailable: services are configured but the kernel has no IPVS.
    """
    config = load_config(config_path)
    return await Daemon(config_path, config, host_lock=host_lock, listening=listening).run()


class _MhWeights:
    """The last weights of each ``mh`` service's reals as best known, for the /metrics
    fingerprint (`ipvsd.mh.known_last_weights`): the desired table's over the configured
    ones, which are made again only when the running config changes. Read from the HTTP
    thread: the config and the desired table are swapped whole, never mutated."""

    def __init__(self, config: Callable[[], Config], desired: Callable[[], Table | None]) -> None:
        self._config = config
        self._desired = desired
        self._made_from: Config | None = None
        self._weights: dict[ServiceKey, dict[DestKey, int]] = {}

    def of(self, key: ServiceKey) -> Mapping[DestKey, int]:
        from ipvsd.mh import MH, known_last_weights

        config = self._config()
        if config is not self._made_from:
            self._weights = {
                service.key: {service.dest_key(real): real.weight for real in service.reals}
                for service in config.ipvs.services
                if service.scheduler == MH
            }
            self._made_from = config
        desired = self._desired()
        service = None if desired is None else desired.services.get(key)
        return known_last_weights(self._weights.get(key, {}), service)
