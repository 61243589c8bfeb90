"""Every VRRP instance of the daemon, with the I/O they share.

One raw socket per mode and one GARP sender per interface (instances on
the same interface share them, `InterfaceEndpoint`), one rtnetlink link
watcher, one receive task per socket. The receive task decodes and
validates each packet for the instance its VRID names; a packet that fails
gets dropped and counted by (interface, reason) — it never reaches a state
machine. Sync groups couple
instances: a transition of one member forces the others (`SyncGroup`).

Reloads compare each instance's config: an unchanged instance is not touched
(no transition, no advert burst); a changed one is stopped (priority-0 advert
if master) and started again with its new config; removed ones are stopped.

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

from ipvsd.config.model import SyncGroupConfig, VrrpInstanceConfig
from ipvsd.errors import KernelError, PacketError, RejectReason
from ipvsd.netlink.links import LinkInfo
from ipvsd.vrrp.instance import VrrpInstance
from ipvsd.vrrp.machine import AdvertReceived, LinkChanged, Shutdown, Transitioned, VrrpState
from ipvsd.vrrp.packet import decode, validate
from ipvsd.vrrp.ports import LinkSource, VipWriter
from ipvsd.vrrp.relink import InterfaceEndpoint, plan_relink
from ipvsd.vrrp.sync_group import SyncGroup
from ipvsd.vrrp.transport import VrrpSocket

log = structlog.get_logger("ipvsd.vrrp")

#: A rejected-packet log line per (interface, reason) at most this often.
REJECT_LOG_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 5.0
#: First wait before retrying a failed re-open of a re-created interface's
#: sockets; doubles up to REOPEN_RETRY_MAX_S.
REOPEN_RETRY_S = 1.0
REOPEN_RETRY_MAX_S = 30.0


class VrrpRouter:
    """Runs the configured instances; `start`, `update` (reload) and `stop`.

    Args:
        addresses: writes the VIPs and finds each instance's source address.
        links: link state, for FAULT and for re-binding a re-created interface.
        on_transition: called after every instance transition.
        on_reject: called with (interface, reason label) for each dropped packet.
    """

    def __init__(
        self,
        addresses: VipWriter,
        links: LinkSource,
        on_transition: Callable[[VrrpInstance, Transitioned], None] | None = None,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self._addresses = addresses
        self._link_source = links
        self._on_transition = on_transition
        self._on_reject = on_reject
        self._endpoints: dict[str, InterfaceEndpoint] = {}
        self._instances: dict[str, VrrpInstance] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._receivers: dict[VrrpSocket, asyncio.Task[None]] = {}
        self._reopening: dict[str, asyncio.Task[None]] = {}
        #: Every link as the watcher last reported it, by ifindex.
        self._links: dict[int, LinkInfo] = {}
        self._groups: dict[str, SyncGroup] = {}
        self._group_of: dict[str, str] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._last_reject_log: dict[tuple[str, str], float] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()

    @property
    def instances(self) -> dict[str, VrrpInstance]:
        return self._instances

    async def start(
        self, instances: Sequence[VrrpInstanceConfig], groups: Sequence[SyncGroupConfig]
    ) -> None:
        """Start every instance (each removes its stale VIPs before entering BACKUP).

        Raises:
            KernelError: an interface is missing or has no IPv4 address.
        """
        self._set_groups(groups)
        for config in instances:
            await self._start_instance(config)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_links())

    async def update(
        self, instances: Sequence[VrrpInstanceConfig], groups: Sequence[SyncGroupConfig]
    ) -> None:
        """Apply a reloaded config: only instances whose config changed are restarted."""
        wanted = {config.name: config for config in instances}
        for name, instance in list(self._instances.items()):
            if wanted.get(name) != instance.config:
                await self._stop_instance(name)
        self._set_groups(groups)
        for name, config in wanted.items():
            if name not in self._instances:
                await self._start_instance(config)

    async def stop(self) -> None:
        """Graceful stop: priority-0 adverts from masters, VIPs removed, sockets closed."""
        for name in list(self._instances):
            await self._stop_instance(name)
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
        self._groups = {group.name: SyncGroup(list(group.instances)) for group in groups}
        self._group_of = {m: group.name for group in groups for m in group.instances}

    async def _start_instance(self, config: VrrpInstanceConfig) -> None:
        endpoint = self._endpoints.get(config.interface) or InterfaceEndpoint(config.interface)
        endpoint.acquire(unicast=bool(config.unicast_peers))
        self._endpoints[config.interface] = endpoint
        instance = VrrpInstance(
            config,
            addresses=self._addresses,
            links=self._link_source,
            endpoint=endpoint,
            on_transition=self._transitioned,
        )
        self._instances[config.name] = instance
        self._start_receivers(endpoint)
        task = asyncio.get_running_loop().create_task(instance.run())
        self._tasks[config.name] = task
        task.add_done_callback(self._instance_done)

    def _instance_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("vrrp.instance_failed", error=str(task.exception()))

    async def _stop_instance(self, name: str) -> None:
        instance = self._instances.pop(name)
        task = self._tasks.pop(name)
        instance.inbox.put_nowait(Shutdown())
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except (TimeoutError, KernelError) as exc:
            log.error("vrrp.stop_failed", instance=name, error=str(exc))
            task.cancel()
        endpoint = self._endpoints.get(instance.config.interface)
        if endpoint is None:
            return
        endpoint.release(unicast=bool(instance.config.unicast_peers))
        if endpoint.users == 0:
            del self._endpoints[endpoint.interface]
            retry = self._reopening.pop(endpoint.interface, None)
            if retry is not None:
                retry.cancel()

    def _start_receivers(self, endpoint: InterfaceEndpoint) -> None:
        """One reader task per open socket of the endpoint (it ends when the socket closes)."""
        loop = asyncio.get_running_loop()
        for sock in endpoint.sockets():
            if sock not in self._receivers:
                task = loop.create_task(self._receive(endpoint.interface, sock))
                self._receivers[sock] = task
                task.add_done_callback(functools.partial(self._receiver_done, sock))

    def _receiver_done(self, sock: VrrpSocket, task: asyncio.Task[None]) -> None:
        if self._receivers.get(sock) is task:
            del self._receivers[sock]
        if not task.cancelled() and task.exception() is not None:
            log.error("vrrp.receive_failed", interface=sock.interface, error=str(task.exception()))

    def _transitioned(self, instance: VrrpInstance, action: Transitioned) -> None:
        if self._on_transition is not None:
            self._on_transition(instance, action)
        group = self._groups.get(self._group_of.get(instance.name, ""))
        if group is None:
            return
        for member, force in group.on_transition(instance.name, action.new):
            target = self._instances.get(member)
            if target is not None:
                target.inbox.put_nowait(force)

    async def _receive(self, interface: str, sock: VrrpSocket) -> None:
        async for packet in sock.packets():
            try:
                received = decode(packet.packet)
                instance = self._for_vrid(interface, received.advert.vrid)
                if instance is None:
                    raise PacketError(RejectReason.UNKNOWN_VRID, f"vrid {received.advert.vrid}")
                validate(received, instance.expectation)
            except PacketError as exc:
                self._rejected(interface, exc, packet.source)
                continue
            log.debug(
                "vrrp.advert_received",
                interface=interface,
                vrid=received.advert.vrid,
                src=str(received.src),
                priority=received.advert.priority,
            )
            instance.inbox.put_nowait(AdvertReceived(received.src, received.advert.priority))

    def _for_vrid(self, interface: str, vrid: int) -> VrrpInstance | None:
        for instance in self._instances.values():
            if instance.config.interface == interface and instance.config.vrid == vrid:
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

    async def _watch_links(self) -> None:
        try:
            async for link in self._link_source.watch_links():
                self._on_link(link)
        except KernelError as exc:
            log.error("vrrp.link_watch_failed", error=str(exc))

    def _on_link(self, link: LinkInfo) -> None:
        """Re-bind sockets if needed (`vrrp.relink`), then tell the instances."""
        if link.deleted:
            self._links.pop(link.index, None)
        else:
            self._links[link.index] = link
        for each in list(self._endpoints.values()):
            self._relink(each, link)
        for instance in self._instances.values():
            if link.name not in instance.interested_in:
                continue
            up = link.up and not link.deleted
            endpoint = self._endpoints.get(instance.config.interface)
            if link.name == instance.config.interface and endpoint is not None:
                if endpoint.ifindex is not None and link.index != endpoint.ifindex:
                    continue  # about an older or newer ifindex than our sockets'
                up = up and not endpoint.gone
            instance.inbox.put_nowait(LinkChanged(link.name, up))

    def _relink(self, endpoint: InterfaceEndpoint, link: LinkInfo) -> None:
        plan = plan_relink(endpoint.interface, endpoint.ifindex, link)
        if plan.close:
            endpoint.close_gone()
            for instance in self._on_interface(endpoint.interface):
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
            if endpoint.interface not in self._reopening:
                task = asyncio.get_running_loop().create_task(self._retry_reopen(endpoint))
                self._reopening[endpoint.interface] = task
            return False
        self._start_receivers(endpoint)
        for instance in self._on_interface(endpoint.interface):
            log.info(
                "vrrp.interface_back",
                instance=instance.name,
                interface=endpoint.interface,
                old_index=endpoint.last_ifindex,
                new_index=endpoint.ifindex,
            )
        return True

    async def _retry_reopen(self, endpoint: InterfaceEndpoint) -> None:
        """Retry a failed re-open with back-off while the interface is up and still ours."""
        delay = REOPEN_RETRY_S
        try:
            while endpoint.gone and self._endpoints.get(endpoint.interface) is endpoint:
                await asyncio.sleep(delay)
                delay = min(2 * delay, REOPEN_RETRY_MAX_S)
                if not endpoint.gone or not self._is_up(endpoint.interface):
                    return  # done meanwhile, or down: the next link-up event re-opens
                if self._reopen(endpoint):
                    for instance in self._on_interface(endpoint.interface):
                        instance.inbox.put_nowait(LinkChanged(endpoint.interface, True))
        finally:
            if self._reopening.get(endpoint.interface) is asyncio.current_task():
                del self._reopening[endpoint.interface]

    def _is_up(self, interface: str) -> bool:
        return any(link.up for link in self._links.values() if link.name == interface)

    def _on_interface(self, interface: str) -> list[VrrpInstance]:
        return [i for i in self._instances.values() if i.config.interface == interface]
