"""Every VRRP instance of the daemon, with the I/O they share.

One raw socket per mode and one GARP sender per interface and family (instances
on the same interface and of the same family share them, `InterfaceEndpoint`), one rtnetlink link
watcher, one receive task per socket. The receive task decodes and
validates each packet for the instance its VRID names; a packet that fails
gets dropped and counted by (interface, reason) — it never reaches a state
machine. Sync groups couple
instances: a transition of one member forces the others (`SyncGroup`).

Reloads compare each instance's config: an unchanged instance is not touched
(no transition, no advert burst); a changed one with the same VRID and
interface is reconfigured in place and keeps its state (`VrrpInstance.reconfigure`,
issue #11 item 2); a new VRID or interface is a new virtual router: the new
one starts before the old one stops (priority-0 advert if master), unless
the new one's (interface, VRID) is still taken; removed ones are stopped,
their notify program told STOP.

A sync group's notify programs run once per group transition
(`SyncGroup.state`), from a queue of the group's own; a reload that keeps a
group's members keeps its state, and one that removes a running group tells
it STOP.

Supervision (issue #11, item 4): each instance restarts itself after a
failure (`VrrpInstance.run`); a receive task that dies is restarted after a
back-off while its socket is open; the rtnetlink watch is restarted with the
links it knew, and address events (IPv4 and IPv6) wake the instances waiting in FAULT
for an address. None of this waits on a healthy instance's adverts.

An interface deleted and created again (a new ifindex) takes its sockets with
it: the link watcher closes them when the interface goes (its instances go to
FAULT) and opens new ones when an interface of that name is up again, then
lets the instances leave FAULT (`vrrp.relink`). A failed re-open is logged
and retried with back-off while the link stays up.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from ipvsd.config.model import SyncGroupConfig, VrrpInstanceConfig, VrrpScriptConfig
from ipvsd.errors import KernelError, PacketError, RejectReason
from ipvsd.model import parse_service_spec
from ipvsd.netlink import nftables
from ipvsd.netlink.links import AddressChange, LinkInfo
from ipvsd.vrrp.accept import AcceptGuard
from ipvsd.vrrp.backoff import Backoff, RestartPolicy
from ipvsd.vrrp.instance import NOTIFY_DRAIN_S, FailureHook, VrrpInstance
from ipvsd.vrrp.machine import LinkChanged, Shutdown, Transitioned, VrrpState
from ipvsd.vrrp.notify import NotifyQueue, notify_state
from ipvsd.vrrp.pacer import AdvertPacer, AdvertProcess
from ipvsd.vrrp.packet import vmac
from ipvsd.vrrp.ports import LinkSource, RouteWriter, VipWriter, VmacWriter
from ipvsd.vrrp.prelisten import EarlyListeners
from ipvsd.vrrp.receive import accept, accept6
from ipvsd.vrrp.relink import AnySocket, EndpointKey, Family, InterfaceEndpoint, plan_relink
from ipvsd.vrrp.sync_group import SyncGroup
from ipvsd.vrrp.track_services import ServiceQuorumFeed, script_name
from ipvsd.vrrp.tracking import FilePool, ScriptPool, ScriptSpec
from ipvsd.vrrp.transport import ReceivedPacket
from ipvsd.vrrp.transport6 import ReceivedPacket6

log = structlog.get_logger("ipvsd.vrrp")

#: A rejected-packet log line per (interface, reason) at most this often.
REJECT_LOG_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 5.0
#: First wait before retrying a failed re-open of a re-created interface's
#: sockets; doubles up to REOPEN_RETRY_MAX_S.
REOPEN_RETRY_S = 1.0
REOPEN_RETRY_MAX_S = 30.0
#: Seconds a removed instance's vmac outlives it: its priority-0 advert goes out first.
VMAC_GRACE_S = 0.2


class VrrpRouter:
    """Runs the configured instances; `start`, `update` (reload) and `stop`.

    Args:
        addresses: writes the VIPs and finds each instance's source address.
        links: link state, for FAULT and for re-binding a re-created interface.
        on_transition: called after every instance transition.
        on_reject: called with (interface, reason label) for each dropped packet.
        on_failure: called with (instance name, reason) each time an
            instance's runner fails (it is then FAULT and restarts after a back-off).
        restart: the back-off of restarted instances, receivers and link watch.
        endpoint_factory: builds the `InterfaceEndpoint` of an interface and
            family, called as ``(interface, family=...)`` (tests pass one with
            fake sockets).
        routes: writes the instances' ``virtual_routes`` and ``virtual_rules``;
            None: instances with some log that they cannot.
        vmacs: makes and removes the vmac interfaces (``vmac: true``), each
            before its instance starts and after it stopped.
        on_route_error: called with (instance name, error) for each route or
            rule the kernel refused.
    """

    def __init__(
        self,
        addresses: VipWriter,
        links: LinkSource,
        on_transition: Callable[[VrrpInstance, Transitioned], None] | None = None,
        on_reject: Callable[[str, str], None] | None = None,
        *,
        on_failure: FailureHook | None = None,
        restart: RestartPolicy | None = None,
        endpoint_factory: Callable[..., InterfaceEndpoint] = InterfaceEndpoint,
        pacer: AdvertPacer | None = None,
        services: ServiceQuorumFeed | None = None,
        routes: RouteWriter | None = None,
        vmacs: VmacWriter | None = None,
        on_route_error: FailureHook | None = None,
        accept_guard: AcceptGuard | None = None,
    ) -> None:
        self._addresses = addresses
        self._accept_guard = accept_guard
        self._routes = routes
        self._vmacs = vmacs
        self._reviving: set[str] = set()  # vmacs being made again (`_revive_vmacs`)
        self._on_route_error = on_route_error
        self._link_source = links
        self._on_transition = on_transition
        self._on_reject = on_reject
        self._on_failure = on_failure
        self._restart = restart or RestartPolicy()
        self._new_endpoint = endpoint_factory
        # Real sockets: a MASTER's adverts repeat from their own process.
        self._pacer = pacer or AdvertProcess()
        self._pacer_started = False
        self._endpoints: dict[EndpointKey, InterfaceEndpoint] = {}
        self._instances: dict[str, VrrpInstance] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._receivers: dict[AnySocket, asyncio.Task[None]] = {}
        self._reopening: dict[EndpointKey, asyncio.Task[None]] = {}
        #: Every link as the watcher last reported it, by ifindex.
        self._links: dict[int, LinkInfo] = {}
        self._groups: dict[str, SyncGroup] = {}
        self._group_configs: dict[str, SyncGroupConfig] = {}
        self._group_notifiers: dict[str, NotifyQueue] = {}
        self._group_of: dict[str, str] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._last_reject_log: dict[tuple[str, str], float] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()
        # vrrp.scripts: one runner per script, whatever number of instances track it.
        self._scripts = ScriptPool()
        self._script_configs: dict[str, VrrpScriptConfig] = {}
        self._files = FilePool()  # track_files: one watcher per path
        self._listening: dict[str, list[Callable[[], None]]] = {}  # instance → unsubscribers
        self._services = services or ServiceQuorumFeed()  # track_services: quorum by service

    @property
    def instances(self) -> dict[str, VrrpInstance]:
        return self._instances

    async def start(
        self,
        instances: Sequence[VrrpInstanceConfig],
        groups: Sequence[SyncGroupConfig],
        scripts: Sequence[VrrpScriptConfig] = (),
        *,
        listening: EarlyListeners | None = None,
    ) -> None:
        """Start every instance (each removes its stale VIPs before entering BACKUP).

        An interface that is missing or has no address to send from does not stop the
        start: its instances wait in FAULT until it appears.

        Args:
            listening: advert sockets opened before the daemon loaded
                (`ipvsd.vrrp.prelisten`): the instances use them, start as of
                when they opened, and get what they queued before they run.
        """
        self._set_groups(groups)
        if not self._pacer_started:
            self._pacer_started = True
            self._reset_accept_guard()
            await self._pacer.start()
        await self._set_scripts(scripts)
        await self._files.update(_paths(instances))
        for config in instances:
            self._start_instance(config, listening)
        if listening is not None:
            # Synchronously, before any instance runs: a queued advert must be in
            # its inbox before the instance's (backdated) timer can fire.
            for key, sock in listening.taken():
                lookup = functools.partial(self._for_vrid, key)
                for packet in sock.pending():
                    self._dispatch(key[0], lookup, packet)
            listening.close()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def update(
        self,
        instances: Sequence[VrrpInstanceConfig],
        groups: Sequence[SyncGroupConfig],
        scripts: Sequence[VrrpScriptConfig] = (),
    ) -> None:
        """Apply a reloaded config: unchanged instances untouched, changed ones
        reconfigured in place, a new VRID or interface re-created (see the module doc).

        Scripts first: a changed script restarts (its state unknown again) and
        every instance hears its tracked scripts' states before its new config,
        so a newly tracked script that already succeeds causes no FAULT.
        """
        wanted = {config.name: config for config in instances}
        self._set_groups(groups)
        await self._set_scripts(scripts)
        await self._files.update(_paths(instances))
        for running in self._instances.values():
            self._track(running, wanted.get(running.name, running.config))
        stopping = [self._detach(name) for name in list(self._instances) if name not in wanted]
        recreate: list[VrrpInstanceConfig] = []
        for name, config in wanted.items():
            instance = self._instances.get(name)
            weights = self._weights(config)
            if instance is None or (
                instance.config == config and instance.script_weights == weights
            ):
                continue
            if _key(config) != _key(instance.config):
                recreate.append(config)
                continue
            self._switch_mode(instance, config)
            log.info("vrrp.instance_reconfigured", instance=name)
            instance.reconfigure(config, weights)
        await self._stop_all(stopping)
        for config in recreate:
            old = self._detach(config.name)
            key = _key(config)
            holder = next((i for i, _ in self._running() if _key(i.config) == key), None)
            if holder is not None:
                # Still taken (VRIDs swapped between instances): stop the holder first.
                await self._stop_all([self._detach(holder.name)])
                if holder.name in wanted and holder.name not in self._instances:
                    self._start_instance(wanted[holder.name])
            log.info("vrrp.instance_recreated", instance=config.name)
            previous = old[0].config
            if (
                config.vmac
                and previous.vmac
                and previous.advert_interface == config.advert_interface
            ):
                # The old vmac has the new one's name (on another parent): out first.
                await self._stop_all([old])
                self._start_instance(config)
                continue
            self._start_instance(config)  # before the old one resigns
            await self._stop_all([old])
        for name, config in wanted.items():
            if name not in self._instances:
                self._start_instance(config)

    async def stop(self) -> None:
        """Graceful stop: priority-0 adverts from masters, VIPs removed, notify
        STOP, sockets closed. Instances stop concurrently."""
        await self._stop_all([self._detach(name) for name in list(self._instances)])
        # The members' STOPs have made each group's STOP (if it has one to run).
        await asyncio.gather(*(q.close(NOTIFY_DRAIN_S) for q in self._group_notifiers.values()))
        self._group_notifiers.clear()
        await self._scripts.stop()
        await self._files.stop()
        await self._pacer.close()  # after the resignations it sends
        self._pacer_started = False
        if self._watcher is not None:
            self._watcher.cancel()
        for task in [*self._receivers.values(), *self._reopening.values()]:
            task.cancel()
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()

    def states(self) -> dict[str, VrrpState]:
        return {name: inst.status.state for name, inst in self._instances.items()}

    def _set_groups(self, groups: Sequence[SyncGroupConfig]) -> None:
        """The reloaded groups; one with the same members keeps its state (and so does not
        notify again), a removed one that ran is told STOP."""
        old, self._groups = self._groups, {}
        for config in groups:
            kept = old.pop(config.name, None)
            if kept is None or kept.members != tuple(config.instances):
                kept = SyncGroup(list(config.instances))
            self._groups[config.name] = kept
        for name, gone in old.items():
            if gone.state is not VrrpState.INIT and name in self._group_configs:
                self._group_notify(self._group_configs[name], VrrpState.INIT)
        self._group_configs = {group.name: group for group in groups}
        self._group_of = {m: group.name for group in groups for m in group.instances}

    def _group_notify(self, config: SyncGroupConfig, state: VrrpState) -> None:
        queue = self._group_notifiers.get(config.name)
        if queue is None:
            queue = self._group_notifiers[config.name] = NotifyQueue(config.name, "GROUP")
        log.info("vrrp.sync_group_transition", group=config.name, state=state.value)
        # keepalived passes priority 0 for a group.
        queue.put(config, notify_state(state), 0)

    async def _set_scripts(self, scripts: Sequence[VrrpScriptConfig]) -> None:
        self._script_configs = {script.name: script for script in scripts}
        await self._scripts.update(
            [
                ScriptSpec(
                    name=s.name,
                    command=s.command,
                    interval=s.interval,
                    timeout=s.interval if s.timeout is None else s.timeout,
                    rise=s.rise,
                    fall=s.fall,
                    user=s.user,
                )
                for s in scripts
            ]
        )

    def _weights(self, config: VrrpInstanceConfig) -> dict[str, int]:
        """Tracked script → weight: the instance's, else the script's (keepalived)."""
        known = self._script_configs
        weights = {
            t.script: known[t.script].weight if t.weight is None else t.weight
            for t in config.track_scripts
            if t.script in known  # config checks report the others
        }
        # A tracked service counts as a script that succeeds while it has quorum.
        for t in config.track_services:
            weights[script_name(parse_service_spec(t.service))] = t.weight
        return weights

    def _track(self, instance: VrrpInstance, config: VrrpInstanceConfig) -> None:
        """(Re)subscribe `instance` to the scripts and files `config` tracks."""
        self._untrack(instance.name)
        undo = self._listening[instance.name] = []
        for track in config.track_scripts:
            runner = self._scripts.runners.get(track.script)
            if runner is not None:
                runner.subscribe(instance.script_changed)
                undo.append(functools.partial(runner.unsubscribe, instance.script_changed))
        for tracked in config.track_services:
            key = parse_service_spec(tracked.service)
            undo.append(self._services.subscribe(key, instance.script_changed))
        for file in config.track_files:
            watcher = self._files.watchers.get(file.path)
            if watcher is None:  # an instance being removed by this update
                continue
            watcher.subscribe(instance.file_changed)
            undo.append(functools.partial(watcher.unsubscribe, instance.file_changed))

    def _untrack(self, name: str) -> None:
        for unsubscribe in self._listening.pop(name, []):
            unsubscribe()

    def _running(self) -> list[tuple[VrrpInstance, asyncio.Task[None]]]:
        return [(self._instances[n], self._tasks[n]) for n in self._instances]

    def _endpoint(self, config: VrrpInstanceConfig) -> InterfaceEndpoint:
        endpoint = self._endpoints.get(_endpoint_key(config))
        if endpoint is None:
            endpoint = self._new_endpoint(config.advert_interface, family=config.family)
            self._endpoints[endpoint.key] = endpoint
        return endpoint

    def _acquire(self, endpoint: InterfaceEndpoint, *, unicast: bool, vmac: bool = False) -> None:
        """Count one user of the mode; a missing interface is opened when it appears.

        A vmac is made by the instance's task (`_run`), after this: its absence
        now is expected, and the link watch opens it a moment later.
        """
        try:
            endpoint.acquire(unicast=unicast)
        except (KernelError, OSError) as exc:
            report = log.debug if vmac else log.warning
            report("vrrp.interface_unavailable", interface=endpoint.interface, error=str(exc))
            endpoint.close_gone()
            endpoint.acquire(unicast=unicast)  # gone: counted, opened by the link watch
        self._start_receivers(endpoint)

    def _switch_mode(self, instance: VrrpInstance, config: VrrpInstanceConfig) -> None:
        """Multicast <-> unicast in place: the other mode's socket, then release the old."""
        old, new = bool(instance.config.unicast_peers), bool(config.unicast_peers)
        if old != new:
            endpoint = self._endpoint(config)
            self._acquire(endpoint, unicast=new)
            endpoint.release(unicast=old)

    def _reset_accept_guard(self) -> None:
        """Delete the ``accept_mode: false`` drop rules a killed daemon left behind."""
        if self._accept_guard is None:
            return
        try:
            self._accept_guard.reset()
        except KernelError as exc:
            # A kernel without nf_tables for IP has no table to delete either.
            report = log.debug if exc.errno in nftables.UNSUPPORTED else log.error
            report("vrrp.accept_mode_error", drop=[], error=str(exc))

    def _start_instance(
        self, config: VrrpInstanceConfig, listening: EarlyListeners | None = None
    ) -> None:
        endpoint = self._endpoint(config)
        unicast = bool(config.unicast_peers)
        if listening is not None:
            listening.adopt(endpoint, unicast)
        self._acquire(endpoint, unicast=unicast, vmac=config.vmac)
        # Checked after: an acquire that failed closed the early socket and its queue.
        since = None if listening is None else listening.since(endpoint, unicast)
        instance = VrrpInstance(
            config,
            addresses=self._addresses,
            routes=self._routes,
            links=self._link_source,
            endpoint=endpoint,
            on_transition=self._transitioned,
            on_failure=self._on_failure,
            on_route_error=self._on_route_error,
            accept_guard=self._accept_guard,
            restart=self._restart,
            pacer=self._pacer,
            script_weights=self._weights(config),
            listening_since=since,
        )
        self._track(instance, config)
        self._instances[config.name] = instance
        task = asyncio.get_running_loop().create_task(self._run(instance))
        self._tasks[config.name] = task
        task.add_done_callback(functools.partial(self._instance_done, config.name))

    async def _run(self, instance: VrrpInstance) -> None:
        """Make the instance's vmac (if any), then run it.

        A vmac that cannot be made is logged; the instance runs anyway: its
        sockets open when an interface of that name appears (`vrrp.relink`).
        """
        if instance.config.vmac:
            await self._ensure_vmac(instance.config)
        await instance.run()

    async def _ensure_vmac(self, config: VrrpInstanceConfig) -> None:
        """Make (or adopt) `config`'s vmac and open its sockets; a failure is logged."""
        try:
            if self._vmacs is None:
                raise KernelError("no vmac writer", operation="add vmac")
            await self._vmacs.ensure(config.interface, config.advert_interface, vmac(config.vrid))
        except KernelError as exc:
            log.error("vrrp.vmac_failed", instance=config.name, error=str(exc))
        endpoint = self._endpoints.get(_endpoint_key(config))
        if endpoint is not None and endpoint.gone:
            # Now, not at the link watch's event: an owner is MASTER at once.
            self._reopen(endpoint)

    def _revive_vmacs(self, link: LinkInfo) -> None:
        """`link` is up: make again the vmacs that went with an earlier link of its name.

        The kernel deletes a macvlan with its parent; an instance whose
        interface comes back (a new ifindex) needs its vmac back too.
        """
        for instance in self._on_interface(link.name):
            config = instance.config
            endpoint = self._endpoints.get(_endpoint_key(config))
            if (
                not config.vmac
                or endpoint is None
                or not endpoint.gone
                or endpoint.last_ifindex is None  # never opened: `_run` is making it
                or config.advert_interface in self._reviving
            ):
                continue
            self._reviving.add(config.advert_interface)
            task = asyncio.get_running_loop().create_task(self._ensure_vmac(config))
            task.add_done_callback(functools.partial(self._revived, config.advert_interface))

    def _revived(self, name: str, task: asyncio.Task[None]) -> None:
        self._reviving.discard(name)

    async def _drop_vmacs(self, configs: Sequence[VrrpInstanceConfig]) -> None:
        """Remove the vmacs of stopped instances that no running instance uses.

        Their priority-0 adverts left through the vmac from the advert
        process: they are given `VMAC_GRACE_S` to go out first.
        """
        used = {i.config.advert_interface for i in self._instances.values()}
        drop = {
            (c.interface, c.advert_interface)
            for c in configs
            if c.vmac and c.advert_interface not in used
        }
        if not drop or self._vmacs is None:
            return
        await asyncio.sleep(VMAC_GRACE_S)
        for parent, name in sorted(drop):
            try:
                await self._vmacs.remove(parent, name)
            except KernelError as exc:
                log.error("vrrp.vmac_remove_failed", vmac=name, error=str(exc))

    def _instance_done(self, name: str, task: asyncio.Task[None]) -> None:
        # run() restarts after failures; an exception here is a bug in the supervisor.
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "vrrp.instance_supervisor_failed", instance=name, error=repr(task.exception())
            )

    def _detach(self, name: str) -> tuple[VrrpInstance, asyncio.Task[None]]:
        """Take an instance out of the router (no more adverts routed to it)."""
        self._untrack(name)
        return self._instances.pop(name), self._tasks.pop(name)

    async def _stop_all(self, stopping: list[tuple[VrrpInstance, asyncio.Task[None]]]) -> None:
        await asyncio.gather(*(self._stop(instance, task) for instance, task in stopping))
        await self._drop_vmacs([instance.config for instance, _ in stopping])

    async def _stop(self, instance: VrrpInstance, task: asyncio.Task[None]) -> None:
        """Shutdown (priority 0 if master, VIPs removed, notify STOP), then the sockets."""
        instance.inbox.put_nowait(Shutdown())
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except TimeoutError as exc:
            log.error("vrrp.stop_failed", instance=instance.name, error=repr(exc))
            task.cancel()
        except Exception as exc:
            log.error("vrrp.stop_failed", instance=instance.name, error=repr(exc))
        await instance.notifier.close(NOTIFY_DRAIN_S)
        endpoint = self._endpoints.get(_endpoint_key(instance.config))
        if endpoint is None:
            return
        endpoint.release(unicast=bool(instance.config.unicast_peers))
        if endpoint.users == 0:
            del self._endpoints[endpoint.key]
            retry = self._reopening.pop(endpoint.key, None)
            if retry is not None:
                retry.cancel()

    def _start_receivers(self, endpoint: InterfaceEndpoint) -> None:
        """One reader task per open socket of the endpoint (it ends when the socket closes)."""
        for sock in endpoint.sockets():
            if sock not in self._receivers:
                self._spawn_receiver(endpoint.key, sock, Backoff(self._restart))

    def _spawn_receiver(self, key: EndpointKey, sock: AnySocket, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._receive(key, sock))
        self._receivers[sock] = task
        done = functools.partial(self._receiver_done, key, sock, backoff, loop.time())
        task.add_done_callback(done)

    def _receiver_done(
        self,
        key: EndpointKey,
        sock: AnySocket,
        backoff: Backoff,
        started: float,
        task: asyncio.Task[None],
    ) -> None:
        if self._receivers.get(sock) is task:
            del self._receivers[sock]
        if task.cancelled() or task.exception() is None:
            return  # the socket closed: its successor has a reader of its own
        loop = asyncio.get_running_loop()
        delay = backoff.after_failure(loop.time() - started)
        log.error(
            "vrrp.receive_failed",
            interface=key[0],
            family=key[1],
            error=repr(task.exception()),
            restart_in_s=delay,
        )
        self._receivers[sock] = loop.create_task(self._restart_receiver(key, sock, backoff, delay))

    async def _restart_receiver(
        self, key: EndpointKey, sock: AnySocket, backoff: Backoff, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        endpoint = self._endpoints.get(key)
        if self._receivers.get(sock) is asyncio.current_task():
            del self._receivers[sock]
        if endpoint is not None and sock in endpoint.sockets():
            self._spawn_receiver(key, sock, backoff)

    def _transitioned(self, instance: VrrpInstance, action: Transitioned) -> None:
        if self._on_transition is not None:
            self._on_transition(instance, action)
        name = self._group_of.get(instance.name, "")
        group = self._groups.get(name)
        current = self._instances.get(instance.name, instance)
        if group is None or current is not instance:
            return  # not in a group, or an old instance re-created under its name stopping
        before = group.state
        forces = group.on_transition(instance.name, action.new, action.old)
        if group.state is not before:
            self._group_notify(self._group_configs[name], group.state)
        for member, force in forces:
            target = self._instances.get(member)
            if target is not None:
                target.inbox.put_nowait(force)

    async def _receive(self, key: EndpointKey, sock: AnySocket) -> None:
        interface = key[0]
        lookup = functools.partial(self._for_vrid, key)
        async for packet in sock.packets():
            self._dispatch(interface, lookup, packet)

    def _dispatch(
        self,
        interface: str,
        lookup: Callable[[int], VrrpInstance | None],
        packet: ReceivedPacket | ReceivedPacket6,
    ) -> None:
        """Validate one received packet and put its advert in its instance's inbox."""
        try:
            if isinstance(packet, ReceivedPacket6):
                instance, event = accept6(packet, lookup)
            else:
                instance, event = accept(packet.packet, lookup)  # by the instance's version
        except PacketError as exc:
            self._rejected(interface, exc, packet.source)
            return
        log.debug(
            "vrrp.advert_received",
            interface=interface,
            vrid=instance.config.vrid,
            src=str(event.src),
            priority=event.priority,
            **({} if event.advert_int is None else {"advert_int": event.advert_int}),
        )
        instance.inbox.put_nowait(event)

    def _for_vrid(self, key: EndpointKey, vrid: int) -> VrrpInstance | None:
        """The instance of `vrid` on the socket's (interface, family)."""
        for instance in self._instances.values():
            if instance.config.vrid == vrid and _endpoint_key(instance.config) == key:
                return instance
        return None

    def _rejected(self, interface: str, exc: PacketError, source: object) -> None:
        reason = exc.reason
        key = (interface, reason.value)
        if self._on_reject is not None:
            self._on_reject(interface, reason.value)
        now = time.monotonic()
        if now - self._last_reject_log.get(key, -REJECT_LOG_INTERVAL_S) < REJECT_LOG_INTERVAL_S:
            self._suppressed[key] += 1
            return
        self._last_reject_log[key] = now
        level = log.debug if reason is RejectReason.UNKNOWN_VRID else log.warning
        level(
            "vrrp.packet_rejected",
            interface=interface,
            reason=reason.value,
            detail=exc.detail,
            source=str(source),
            suppressed=self._suppressed.pop(key, 0),
        )

    async def _watch(self) -> None:
        """Follow links and addresses; restart the watch (with the links we knew)
        after a netlink failure, with back-off."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._restart)
        while True:
            started = loop.time()
            try:
                async for change in self._link_source.watch(known=list(self._links.values())):
                    if isinstance(change, AddressChange):
                        self._on_address(change)
                    else:
                        self._on_link(change)
                return  # the source was closed: the daemon is stopping
            except Exception as exc:
                delay = backoff.after_failure(loop.time() - started)
                log.error("vrrp.link_watch_failed", error=repr(exc), restart_in_s=delay)
            await asyncio.sleep(delay)

    def _on_address(self, change: AddressChange) -> None:
        """Wake the instances on that link to re-read their source address
        (their own VIPs coming and going do not count)."""
        link = self._links.get(change.index)
        if link is None:
            return
        for instance in self._on_interface(link.name):
            if change.address is not None and change.address.ip in instance.expectation.addresses:
                continue
            instance.addresses_changed()

    def _on_link(self, link: LinkInfo) -> None:
        """Re-bind sockets if needed (`vrrp.relink`), then tell the instances."""
        if link.deleted:
            self._links.pop(link.index, None)
        else:
            self._links[link.index] = link
        for each in list(self._endpoints.values()):
            self._relink(each, link)
        if link.up and not link.deleted:
            self._revive_vmacs(link)
        for instance in self._instances.values():
            if link.name not in instance.interested_in:
                continue
            up = link.up and not link.deleted
            endpoint = self._endpoints.get(_endpoint_key(instance.config))
            if link.name == instance.config.advert_interface and endpoint is not None:
                if endpoint.ifindex is not None and link.index != endpoint.ifindex:
                    continue  # about an older or newer ifindex than our sockets'
                up = up and not endpoint.gone
            instance.inbox.put_nowait(LinkChanged(link.name, up))

    def _relink(self, endpoint: InterfaceEndpoint, link: LinkInfo) -> None:
        plan = plan_relink(endpoint.interface, endpoint.ifindex, link)
        if plan.close:
            endpoint.close_gone()
            for instance in self._on_endpoint(endpoint):
                log.warning(
                    "vrrp.interface_gone",
                    instance=instance.name,
                    interface=endpoint.interface,
                    old_index=endpoint.last_ifindex,
                    deleted=link.deleted,
                    renamed_to=link.name if link.name != endpoint.interface else None,
                )
                if link.name != endpoint.interface:  # renamed away: no event for our name
                    instance.inbox.put_nowait(LinkChanged(endpoint.interface, False))
        if plan.open:
            self._reopen(endpoint)

    def _reopen(self, endpoint: InterfaceEndpoint) -> bool:
        """Open sockets on the interface's current ifindex; False (and a retry) on failure."""
        try:
            endpoint.reopen()
        except (KernelError, OSError) as exc:
            log.error("vrrp.interface_reopen_failed", interface=endpoint.interface, error=str(exc))
            self._schedule_reopen(endpoint)
            return False
        self._start_receivers(endpoint)
        for instance in self._on_endpoint(endpoint):
            log.info(
                "vrrp.interface_back",
                instance=instance.name,
                interface=endpoint.interface,
                old_index=endpoint.last_ifindex,
                new_index=endpoint.ifindex,
            )
        return True

    def _schedule_reopen(self, endpoint: InterfaceEndpoint) -> None:
        if endpoint.key not in self._reopening:
            task = asyncio.get_running_loop().create_task(self._retry_reopen(endpoint))
            self._reopening[endpoint.key] = task
            task.add_done_callback(functools.partial(self._reopen_done, endpoint))

    def _reopen_done(self, endpoint: InterfaceEndpoint, task: asyncio.Task[None]) -> None:
        if self._reopening.get(endpoint.key) is task:
            del self._reopening[endpoint.key]
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "vrrp.reopen_retry_failed", interface=endpoint.interface, error=repr(task.exception())
        )
        if endpoint.gone and self._endpoints.get(endpoint.key) is endpoint:
            self._schedule_reopen(endpoint)  # supervised: a bug in one try is not the end

    async def _retry_reopen(self, endpoint: InterfaceEndpoint) -> None:
        """Retry a failed re-open with back-off while the interface is up and still ours."""
        delay = REOPEN_RETRY_S
        while endpoint.gone and self._endpoints.get(endpoint.key) is endpoint:
            await asyncio.sleep(delay)
            delay = min(2 * delay, REOPEN_RETRY_MAX_S)
            if not endpoint.gone or not self._is_up(endpoint.interface):
                return  # done meanwhile, or down: the next link-up event re-opens
            if self._reopen(endpoint):
                for instance in self._on_interface(endpoint.interface, endpoint.family):
                    instance.inbox.put_nowait(LinkChanged(endpoint.interface, True))

    def _is_up(self, interface: str) -> bool:
        return any(link.up for link in self._links.values() if link.name == interface)

    def _on_interface(self, interface: str, family: Family | None = None) -> list[VrrpInstance]:
        """The instances on `interface` (not on a vmac of it), of `family` if given."""
        return [
            i
            for i in self._instances.values()
            if i.config.interface == interface and family in (None, i.config.family)
        ]

    def _on_endpoint(self, endpoint: InterfaceEndpoint) -> list[VrrpInstance]:
        """The instances whose sockets `endpoint` holds (on their vmac, or their interface)."""
        return [i for i in self._instances.values() if _endpoint_key(i.config) == endpoint.key]


def _paths(instances: Sequence[VrrpInstanceConfig]) -> list[str]:
    """Every tracked file's path, once."""
    return list(dict.fromkeys(t.path for config in instances for t in config.track_files))


def _endpoint_key(config: VrrpInstanceConfig) -> EndpointKey:
    """The endpoint whose sockets an instance uses (`InterfaceEndpoint.key`)."""
    return (config.advert_interface, config.family)


def _key(config: VrrpInstanceConfig) -> tuple[str, int, str, str]:
    """What makes a virtual router: a change of any of it is a new instance (RFC 5798:
    an IPv4 and an IPv6 virtual router are two, whatever their VRIDs). The version is
    not in it: a reload from VRRPv2 to VRRPv3 changes the codec in place."""
    return (config.interface, config.vrid, config.advert_interface, config.family)
