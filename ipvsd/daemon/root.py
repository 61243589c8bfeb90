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
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from ipvsd import __version__
from ipvsd.config import Config, load_config
from ipvsd.control.server import ControlServer
from ipvsd.control.status import VrrpView, status_document
from ipvsd.desired import desired_table
from ipvsd.errors import (
    ConfigError,
    ControlRequestError,
    IpvsdError,
    IpvsUnavailable,
    KernelError,
)
from ipvsd.health.manager import HealthManager, adopted_reals
from ipvsd.health.tracker import Health
from ipvsd.ipvs.plan import DeleteService
from ipvsd.ipvs.reconciler import PassReport, Reconciler
from ipvsd.ipvs.sync_daemon import SyncDaemonController, SyncDaemonStatus, SyncTarget, resolve
from ipvsd.metrics import DaemonMetrics, EventLoopLag, IpvsExporter, MetricsServer, serve
from ipvsd.model import DestKey, ServiceKey, Table
from ipvsd.netlink.addresses import AddressManager
from ipvsd.netlink.ipvs import IpvsClient, Timeouts
from ipvsd.netlink.routes import warn_reals_behind_vips
from ipvsd.systemd import Notifier
from ipvsd.vrrp.instance import VrrpInstance
from ipvsd.vrrp.machine import Transitioned, VrrpState
from ipvsd.vrrp.router import VrrpRouter

log = structlog.get_logger("ipvsd.daemon")

#: Seconds a scrape waits for its kernel dump before it reports a scrape error.
SCRAPE_TIMEOUT_S = 60.0


class Daemon:
    """One running ipvsd. `run()` returns the process exit code."""

    def __init__(self, config_path: Path, config: Config) -> None:
        self._config_path = config_path
        self._config = config
        self._client: IpvsClient | None = None
        self._addresses: AddressManager | None = None
        self._registry = CollectorRegistry(auto_describe=False)
        self.metrics = DaemonMetrics(self._registry, version=__version__, node=config.node_name)
        self._metrics_server: MetricsServer | None = None
        self._scrape_client: IpvsClient | None = None
        self._health = HealthManager(
            on_change=self._health_changed,
            on_health=lambda real, health: self.metrics.backend_up(*real, health is Health.UP),
            on_check=self.metrics.health_check_duration,
        )
        self._notifier = Notifier()
        self._ready = False
        self._control: ControlServer | None = None
        self._vrrp: VrrpRouter | None = None
        self._reconciler: Reconciler | None = None
        self._sync: SyncDaemonController | None = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        # Long-running components run in this group, so an unexpected exception
        # in one of them (a bug) ends the daemon non-zero and systemd restarts it.
        self._group: asyncio.TaskGroup | None = None
        self._components: set[asyncio.Task[None]] = set()
        self._reloads: set[asyncio.Task[list[str]]] = set()

    @property
    def config(self) -> Config:
        return self._config

    @property
    def reconciler(self) -> Reconciler | None:
        return self._reconciler

    async def run(self) -> int:
        tune_garbage_collector()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        log.info(
            "daemon.start",
            version=__version__,
            config=str(self._config_path),
            node=self._config.node_name,
            services=len(self._config.ipvs.services),
        )
        try:
            if self._config.ipvs.services:
                await self._start_ipvs(self._config)
        except IpvsUnavailable as exc:
            log.error("daemon.ipvs_unavailable", error=str(exc))
            raise
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if self._reconciler is not None:
                    self._start_component(self._health.monitor.run())
                    self._start_component(self._reconciler.run())
                    # IPVS services exist on every director before VRRP moves VIPs.
                    await self._reconciler.first_pass_done.wait()
                # The socket first: a second daemon fails here, before touching VIPs.
                await self._start_control(self._config)
                # Before VRRP: a starting director receives the sync as backup.
                self._configure_sync_daemon(self._config)
                await self._start_vrrp(self._config)
                self._start_metrics(self._config)
                self._start_component(_warn_reals_behind_vips(self._config))
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
        if not config.vrrp.instances:
            return
        self._addresses = await AddressManager.open()
        self._vrrp = VrrpRouter(
            self._addresses,
            on_transition=self._vrrp_transitioned,
            on_reject=self.metrics.invalid_packet,
        )
        await self._vrrp.start(config.vrrp.instances, config.vrrp.sync_groups)

    def _start_metrics(self, config: Config) -> None:
        """The /metrics endpoint (its own thread) and the event-loop lag probe."""
        intervals = [instance.advert_int for instance in config.vrrp.instances]
        lag = EventLoopLag(self.metrics, threshold_s=min(intervals, default=1) / 4)
        self._start_component(lag.run())
        if config.metrics.listen is None:
            return
        exporter = None
        if config.ipvs.services:
            loop = asyncio.get_running_loop()
            exporter = IpvsExporter(lambda: self._scrape_table(loop))
        try:
            self._metrics_server = serve(self._registry, config.metrics.listen, ipvs=exporter)
        except OSError as exc:
            raise IpvsdError(f"metrics.listen: {exc}") from exc

    def _scrape_table(self, loop: asyncio.AbstractEventLoop) -> Table:
        """Runs in the HTTP thread: a fresh dump on the loop, never a cached one."""
        future = asyncio.run_coroutine_threadsafe(self._scrape_dump(), loop)
        return future.result(timeout=SCRAPE_TIMEOUT_S)

    async def _scrape_dump(self) -> Table:
        # A socket of its own: a scrape's dump never queues behind a reconcile.
        if self._scrape_client is None:
            self._scrape_client = await IpvsClient.open()
        return await self._scrape_client.dump()

    def _reconcile_report(self, report: PassReport) -> None:
        self.metrics.reconcile_operations(report.operations)
        if report.errors:
            self.metrics.reconcile_error(len(report.errors))

    async def _start_control(self, config: Config) -> None:
        self._control = ControlServer(config.control.socket, self, group=config.control.group)
        await self._control.start()

    # --- ControlView (what `ipvsd status / reload / drain` see) ------------------------

    version = __version__

    async def status(self) -> dict[str, Any]:
        """The status document, with the kernel's counters read now."""
        kernel = await self._client.dump() if self._client is not None else None
        return status_document(
            node=self._config.node_name,
            version=__version__,
            config=self._config,
            kernel=kernel,
            health=self._health.monitor.states(),
            drained=self._health.drained,
            vrrp=self._vrrp_views(),
            sync_daemon=await self._sync_status(),
        )

    def _vrrp_views(self) -> list[VrrpView]:
        if self._vrrp is None:
            return []
        return [
            VrrpView(
                name=inst.name,
                state=inst.status.state.value,
                interface=inst.config.interface,
                vrid=inst.config.vrid,
                priority=inst.config.priority,
                effective_priority=inst.status.effective_priority,
                virtual_ipaddresses=inst.vips,
            )
            for inst in self._vrrp.instances.values()
        ]

    def drain(self, service: ServiceKey, real: DestKey) -> None:
        """Administrative drain: weight 0 until undrained; survives reloads."""
        self._configured_real(service, real)
        self._health.drained.add((service, real))
        log.info("ipvs.drained", service=str(service), real=str(real))
        self._health_changed()

    def undrain(self, service: ServiceKey, real: DestKey) -> None:
        self._configured_real(service, real)
        self._health.drained.discard((service, real))
        log.info("ipvs.undrained", service=str(service), real=str(real))
        self._health_changed()

    def _configured_real(self, service: ServiceKey, real: DestKey) -> None:
        for configured in self._config.ipvs.services:
            if configured.key == service:
                if any(configured.dest_key(r) == real for r in configured.reals):
                    return
                raise ControlRequestError(f"service {service} has no real {real}")
        raise ControlRequestError(f"no service {service} is configured")

    def ready(self) -> bool:
        """First reconcile done, VRRP started, and no instance in INIT."""
        states = self._vrrp.states() if self._vrrp is not None else {}
        return self._ready and all(state is not VrrpState.INIT for state in states.values())

    async def _announce_ready(self) -> None:
        """READY=1 once the config is loaded, IPVS reconciled and VRRP started."""
        if self._reconciler is not None:
            await self._reconciler.first_pass_done.wait()
        self._ready = True
        log.info("daemon.ready", services=len(self._config.ipvs.services))
        self._notifier.ready(self.status_line())

    def status_line(self) -> str:
        """systemd's STATUS=: the VRRP states and the service count."""
        states = self._vrrp.states() if self._vrrp is not None else {}
        vrrp = ", ".join(f"{name} {state.value}" for name, state in sorted(states.items()))
        services = f"{len(self._config.ipvs.services)} services"
        return f"{vrrp}; {services}" if vrrp else services

    def _vrrp_transitioned(self, instance: VrrpInstance, action: Transitioned) -> None:
        config = instance.config
        self.metrics.vrrp_transition(instance.name, action.new.value)
        self.metrics.vrrp_state(instance.name, config.interface, config.vrid, action.new.value)
        self.metrics.vrrp_priority(instance.name, instance.status.effective_priority)
        if self._ready:
            self._notifier.status(self.status_line())
        if self._sync is not None:
            self._sync.vrrp_transitioned(instance.name, action.new)

    # --- IPVS connection sync (ipvsd/ipvs/sync_daemon.py) -----------------------------------

    def _configure_sync_daemon(self, config: Config) -> None:
        """Start the sync-daemon controller, or hand it a reloaded config.

        Its own netlink socket: a failover's master/backup switch never waits
        behind a long reconcile batch on the reconciler's socket.
        """
        target = sync_target(config)
        if self._sync is None:
            if target is None or self._group is None:
                return
            self._sync = SyncDaemonController(
                IpvsClient.open,
                resync_interval_s=config.ipvs.resync_interval,
                on_pass=self.metrics.sync_daemon_pass,
            )
            self._start_component(self._sync.run())
        # Also when unchanged: the followed instance may have been restarted by the reload.
        self._sync.configure(target, self._followed_state(target))

    async def _sync_status(self) -> SyncDaemonStatus | None:
        """None (status shows null) unless ``ipvs.sync_daemon`` is configured now."""
        if self._sync is None or self._sync.target is None:
            return None
        return await self._sync.status()

    def _followed_state(self, target: SyncTarget | None) -> VrrpState:
        instance = None
        if target is not None and self._vrrp is not None:
            instance = self._vrrp.instances.get(target.vrrp_instance)
        return instance.status.state if instance is not None else VrrpState.INIT

    def _start_component(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._group is not None
        task = self._group.create_task(coroutine)
        self._components.add(task)
        task.add_done_callback(self._components.discard)

    async def _start_ipvs(self, config: Config) -> None:
        self._client = await IpvsClient.open()
        await self._apply_timeouts(config)
        self._reconciler = Reconciler(
            self._client,
            resync_interval_s=config.ipvs.resync_interval,
            on_report=self._reconcile_report,
        )
        # Reals already in the kernel are adopted UP: a restart must not pull
        # them out until their checks have run.
        actual = await self._client.dump(with_stats=False)
        self._health.configure(config, adopted=adopted_reals(config, actual))
        self._reconciler.prime(actual)
        self._reconciler.set_desired(self._health.desired(), reason="adopt")

    def _health_changed(self) -> None:
        if self._reconciler is not None:
            self._reconciler.set_desired(self._health.desired(), reason="health")

    async def _apply_timeouts(self, config: Config) -> None:
        timeouts = config.ipvs.timeouts
        if timeouts is None or self._client is None:
            return
        wanted = Timeouts(tcp=timeouts.tcp or 0, tcpfin=timeouts.tcpfin or 0, udp=timeouts.udp or 0)
        try:
            await self._client.set_timeouts(wanted)
        except KernelError as exc:
            log.error("ipvs.timeouts_error", error=str(exc))

    def _spawn_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> list[str]:
        """Re-read the config; apply it, or keep the running one and return the errors."""
        self._notifier.send(RELOADING=1)
        try:
            return await self._reload()
        finally:
            self._notifier.ready(self.status_line())

    async def _reload(self) -> list[str]:
        errors = await self._reload_config()
        self.metrics.config_reload(not errors)
        return errors

    async def _reload_config(self) -> list[str]:
        async with self._reload_lock:
            try:
                new = load_config(self._config_path)
            except ConfigError as exc:
                errors = [str(issue) for issue in exc.issues]
                log.error("config.reload_refused", errors=errors)
                return errors
            except OSError as exc:
                log.error("config.reload_refused", errors=[str(exc)])
                return [str(exc)]
            refusal = await self._check_reload(new)
            if refusal:
                log.error("config.reload_refused", errors=[refusal])
                return [refusal]
            self._config = new
            if self._reconciler is None and new.ipvs.services:
                await self._start_ipvs(new)
                if self._reconciler is not None and self._group is not None:
                    self._start_component(self._health.monitor.run())
                    self._start_component(self._reconciler.run())
            elif self._reconciler is not None:
                await self._apply_timeouts(new)
                self._health.configure(new)
                self._reconciler.set_desired(self._health.desired(), reason="reload")
            if self._vrrp is not None:
                await self._vrrp.update(new.vrrp.instances, new.vrrp.sync_groups)
            elif new.vrrp.instances and self._group is not None:
                await self._start_vrrp(new)
            self._configure_sync_daemon(new)
            if self._group is not None:
                self._start_component(_warn_reals_behind_vips(new))
            gc.freeze()
            log.info("config.reloaded", config=str(self._config_path))
            return []

    async def _check_reload(self, new: Config) -> str | None:
        """A reason to refuse `new`, or None: IPVS must exist, and the delete guard must pass."""
        if new.ipvs.services and self._reconciler is None:
            try:
                client = await IpvsClient.open()
                client.close()
            except IpvsUnavailable as exc:
                return str(exc)
        if self._reconciler is not None and new.ipvs.max_deletes is not None:
            try:
                _plan, refusal = await self._reconciler.preview(
                    desired_table(new), new.ipvs.max_deletes
                )
            except KernelError as exc:
                return f"cannot check the reload against the kernel: {exc}"
            return refusal
        return None

    async def _shutdown(self) -> None:
        self._notifier.stopping()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self._scrape_client is not None:
            self._scrape_client.close()
        if self._control is not None:
            await self._control.close()
        self._health.monitor.stop()
        if self._vrrp is not None:
            await self._vrrp.stop()
        if self._sync is not None:
            await self._sync.stop()
        if self._addresses is not None:
            self._addresses.close()
        if self._client is not None and self._reconciler is not None:
            if self._config.ipvs.cleanup_on_exit:
                keys = sorted(self._reconciler.desired.services)
                result = await self._client.apply([DeleteService(key) for key in keys])
                log.info(
                    "ipvs.cleanup_on_exit",
                    deleted=result.applied,
                    errors=[str(f.error) for f in result.failures],
                )
            self._client.close()
        log.info("daemon.stop")


async def _warn_reals_behind_vips(config: Config) -> None:
    """design.md's pitfall: a real this director reaches only through a VRRP address."""
    reals = [real.address for service in config.ipvs.services for real in service.reals]
    vips = {vip.ip for i in config.vrrp.instances for vip in i.virtual_ipaddresses}
    await warn_reals_behind_vips(reals, vips)


def sync_target(config: Config) -> SyncTarget | None:
    """``ipvs.sync_daemon`` resolved against its VRRP instance; None when not configured."""
    sync = config.ipvs.sync_daemon
    if sync is None:
        return None
    # The config checks guarantee the instance exists.
    instance = next(i for i in config.vrrp.instances if i.name == sync.vrrp_instance)
    return resolve(sync, instance)


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
    gc.set_threshold(50_000, 20, 100)


async def run(config_path: Path) -> int:
    """Load the config and run the daemon until SIGTERM/SIGINT.

    Raises:
        ConfigError: the config is invalid (nothing was touched).
        IpvsUnavailable: services are configured but the kernel has no IPVS.
    """
    config = load_config(config_path)
    return await Daemon(config_path, config).run()
