"""The asyncio runner of one VRRP instance: inbox → machine.handle(…, loop.time()) → I/O.

The machine (`vrrp.machine`) decides; this module only performs its actions,
in the order given: keepalived sends the first master advert *before* adding
the VIPs and sending gratuitous ARPs, so the old master steps down first, and
the machine emits them in that order. Time is the loop's monotonic clock;
the runner sleeps until `machine.next_deadline()` or the next event, whichever
comes first (aioquic's adapter loop).

Received adverts reach the inbox already decoded and validated by the
`VrrpRouter` that owns the interface socket; link changes come from the
runtime's rtnetlink watcher. A kernel error while adding or removing a VIP is
logged and counted and never stops the protocol: the next transition retries.

The sockets belong to the interface's `InterfaceEndpoint`, which the runtime
closes while the interface is gone and re-opens on its successor
(`vrrp.relink`); sends in between are skipped (the instance is in FAULT
then). No gratuitous ARP goes out on an IFF_NOARP interface: the link says
it does no ARP (the kernel's ``arp_send`` skips such devices too).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import assert_never

import structlog

from ipvsd.config.model import VrrpInstanceConfig
from ipvsd.errors import KernelError
from ipvsd.netlink.addresses import vip_label
from ipvsd.netlink.links import LinkInfo
from ipvsd.vrrp.arp import gratuitous_arp
from ipvsd.vrrp.machine import (
    OWNER_PRIORITY,
    Action,
    AddVips,
    Event,
    LinkChanged,
    MachineConfig,
    Notify,
    RemoveVips,
    SendAdvert,
    SendGarp,
    Shutdown,
    Startup,
    TimerFired,
    Transitioned,
    VrrpMachine,
    VrrpState,
)
from ipvsd.vrrp.notify import run_notify
from ipvsd.vrrp.packet import (
    VRRP_GROUP,
    Advertisement,
    AuthType,
    Expectation,
    encode,
    password_auth_data,
)
from ipvsd.vrrp.ports import LinkSource, VipWriter
from ipvsd.vrrp.relink import InterfaceEndpoint

log = structlog.get_logger("ipvsd.vrrp")

TransitionHook = Callable[["VrrpInstance", Transitioned], None]


@dataclass(slots=True)
class InstanceStatus:
    """What `ipvsd status` shows of one instance (kept current by the runner)."""

    state: VrrpState = VrrpState.INIT
    effective_priority: int = 0
    since: float = field(default_factory=time.time)
    reason: str = ""
    primary_ip: IPv4Address | None = None


class VrrpInstance:
    """One virtual router: a VrrpMachine plus its sockets, addresses and hooks."""

    def __init__(
        self,
        config: VrrpInstanceConfig,
        *,
        addresses: VipWriter,
        links: LinkSource,
        endpoint: InterfaceEndpoint,
        on_transition: TransitionHook,
    ) -> None:
        self.config = config
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.status = InstanceStatus(effective_priority=config.priority)
        self._addresses = addresses
        self._links = links
        self._endpoint = endpoint
        self._unicast = bool(config.unicast_peers)
        self._on_transition = on_transition
        self._machine: VrrpMachine | None = None
        self._mac = ""
        self._noarp = False
        self._source: IPv4Address | None = None
        self._notifies: set[asyncio.Task[object]] = set()
        self._log = log.bind(instance=config.name, interface=config.interface, vrid=config.vrid)
        auth_type = AuthType.SIMPLE if config.auth_pass else AuthType.NONE
        self._auth = (auth_type, password_auth_data(config.auth_pass or ""))
        self.vips = tuple(config.virtual_ipaddresses)
        self.expectation = Expectation(
            vrid=config.vrid,
            advert_int=config.advert_int,
            addresses=frozenset(vip.ip for vip in self.vips),
            auth_type=auth_type,
            password=config.auth_pass,
            owner=config.priority == OWNER_PRIORITY,
            unicast_peers=frozenset(config.unicast_peers),
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def interested_in(self) -> frozenset[str]:
        """Interfaces whose link state this instance follows."""
        return frozenset(
            {self.config.interface, *(t.interface for t in self.config.track_interfaces)}
        )

    async def run(self) -> None:
        """Start (stale VIPs removed, BACKUP or owner MASTER) and run until `Shutdown`."""
        loop = asyncio.get_running_loop()
        machine = await self._build_machine()
        for interface in sorted(self.interested_in):
            try:
                link = await self._links.link(interface)
            except KernelError:
                machine.handle(LinkChanged(interface, False), loop.time())
                continue
            if interface == self.config.interface:
                self._interface_is(link)
            machine.handle(LinkChanged(interface, link.up), loop.time())
        await self._execute(machine.handle(Startup(), loop.time()))
        while True:
            try:
                async with asyncio.timeout_at(machine.next_deadline()):
                    event = await self.inbox.get()
            except TimeoutError:
                event = TimerFired()
            if isinstance(event, LinkChanged) and event.interface == self.config.interface:
                await self._refresh_interface()
            await self._execute(machine.handle(event, loop.time()))
            self.status.effective_priority = machine.effective_priority
            if isinstance(event, Shutdown):
                break
        await self._wait_notifies()

    async def _build_machine(self) -> VrrpMachine:
        config = self.config
        primary = config.unicast_src or await self._addresses.primary_ipv4(
            config.interface, exclude=[vip.ip for vip in self.vips]
        )
        if primary is None:
            raise KernelError(
                f"VRRP instance {config.name}: interface {config.interface!r} has no IPv4 "
                "address to send adverts from (RFC 3768 §5.2.1 needs its primary address)"
            )
        self.status.primary_ip = self._source = primary
        self._machine = VrrpMachine(
            MachineConfig(
                name=config.name,
                interface=config.interface,
                vrid=config.vrid,
                priority=config.priority,
                advert_int=float(config.advert_int),
                primary_ip=primary,
                preempt=config.preempt,
                preempt_delay=float(config.preempt_delay),
                track_interfaces={t.interface: t.weight for t in config.track_interfaces},
                garp_delay=float(config.garp_delay),
            )
        )
        return self._machine

    async def _refresh_interface(self) -> None:
        # Gone: FAULT, and the MAC is read again when it is back.
        with contextlib.suppress(KernelError):
            self._interface_is(await self._links.link(self.config.interface))
            await self._refresh_source()

    async def _refresh_source(self) -> None:
        """A re-created interface may carry another primary address: send from it."""
        if self.config.unicast_src is not None or self._machine is None:
            return
        primary = await self._addresses.primary_ipv4(
            self.config.interface, exclude=[vip.ip for vip in self.vips]
        )
        if primary is None or primary == self._source:
            return  # no address yet (keep the old one) or unchanged
        self._log.warning("vrrp.source_changed", old=str(self._source), new=str(primary))
        self.status.primary_ip = self._source = primary
        self._machine.set_primary_ip(primary)

    def _interface_is(self, link: LinkInfo) -> None:
        self._mac, self._noarp = link.mac, link.noarp

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendAdvert(priority=priority):
                    self._send_advert(priority)
                case AddVips():
                    await self._vips(add=True)
                case RemoveVips():
                    await self._vips(add=False)
                case SendGarp():
                    self._send_garp()
                case Notify(state=state, priority=priority):
                    self._notify(state.value, priority)
                case Transitioned():
                    self._transitioned(action)
                case _:
                    assert_never(action)

    def _send_advert(self, priority: int) -> None:
        advert = Advertisement(
            vrid=self.config.vrid,
            priority=priority,
            advert_int=self.config.advert_int,
            addresses=tuple(vip.ip for vip in self.vips),
            auth_type=self._auth[0],
            auth_data=self._auth[1],
        )
        sock = self._endpoint.advert(self._unicast)
        if sock is None:
            self._log.debug("vrrp.advert_skipped", reason="interface_gone", priority=priority)
            return
        # Per send: instances sharing the socket may have different sources.
        sock.bind_source(self._source)
        payload = encode(advert)
        for destination in self.config.unicast_peers or (VRRP_GROUP,):
            sock.send(payload, destination)

    async def _vips(self, *, add: bool) -> None:
        label = vip_label(self.config.interface, self.config.vrid)
        for vip in self.vips:
            try:
                if add:
                    await self._addresses.add(self.config.interface, vip, label)
                else:
                    await self._addresses.remove(self.config.interface, vip)
            except KernelError as exc:
                if not add and exc.errno == errno.ENODEV:
                    # The interface is gone, and its addresses with it.
                    self._log.debug("vrrp.vip_gone", vip=str(vip))
                    continue
                self._log.error("vrrp.vip_error", vip=str(vip), add=add, error=str(exc))

    def _send_garp(self) -> None:
        garp = self._endpoint.garp
        if not self._mac or garp is None:
            return
        if self._noarp:
            self._log.debug("vrrp.garp_skipped", reason="noarp")
            return
        frames = [gratuitous_arp(self._mac, vip.ip) for vip in self.vips]
        garp.send_burst(frames, self.config.garp_repeat)

    def _notify(self, state: str, priority: int) -> None:
        if self.config.notify is None:
            return
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            run_notify(self.config.notify, self.config.name, state, priority)
        )
        self._notifies.add(task)
        task.add_done_callback(self._notifies.discard)

    def _transitioned(self, action: Transitioned) -> None:
        assert self._machine is not None
        self.status.state = action.new
        self.status.effective_priority = self._machine.effective_priority
        self.status.since = time.time()
        self.status.reason = action.reason
        self._log.info(
            "vrrp.transition",
            old=action.old.value,
            new=action.new.value,
            reason=action.reason,
            priority=self._machine.effective_priority,
        )
        self._on_transition(self, action)

    async def _wait_notifies(self) -> None:
        if self._notifies:
            await asyncio.wait(self._notifies, timeout=15)
