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

IPv6 (VRRPv3, RFC 5798): the advert source is the interface's link-local
address (§5.1.2.1, `VipWriter.link_local_ipv6`: one that has finished DAD),
the adverts go to ff02::12 or the unicast peers, and each IPv6 VIP is
announced with an unsolicited Neighbor Advertisement with the Override flag
(§8.2.2, `vrrp.ndisc.unsolicited_na`; Router as the interface's
``forwarding`` sysctl says) wherever an IPv4 VIP gets a gratuitous ARP: the
same bursts, ``garp_repeat``, ``garp_delay`` and ``garp_refresh``. IPv6 VIPs
are added without DAD (`AddressManager.add`, ``nodad``).

Supervision (issue #11, item 4): `run` restarts the runner when it fails
with an unexpected error (a kernel refusal is logged and retried by the next
transition; anything else is a failure). The failed machine gets `Failed`:
a Master resigns with priority 0, the VIPs are released, the state is FAULT
with `InstanceStatus.fault_reason` saying why, `on_failure(name, reason)` is
called for the metric, and a new machine starts after a back-off
(`vrrp.backoff`). A missing interface or one without an address to send from
(IPv4: a primary address; IPv6: a link-local one past DAD) is not a failure:
the machine waits in FAULT and leaves it when the link and the address appear
(`SourceChanged`, from rtnetlink address events of both families).

A reload that keeps the VRID and the interface reconfigures the running
machine (`reconfigure`): the VIP difference is applied (added ones GARPed
when Master) and `ConfigChanged` keeps the state (machine rule 7).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import TypeVar, assert_never, cast

import structlog

from ipvsd.config.model import VirtualAddress, VrrpInstanceConfig
from ipvsd.errors import KernelError
from ipvsd.netlink.addresses import vip_label
from ipvsd.netlink.links import LinkInfo
from ipvsd.vrrp.accept import AcceptGuard
from ipvsd.vrrp.arp import gratuitous_arp
from ipvsd.vrrp.backoff import Backoff, RestartPolicy
from ipvsd.vrrp.machine import (
    OWNER_PRIORITY,
    Action,
    AddVips,
    ConfigChanged,
    Event,
    Failed,
    FileChanged,
    LinkChanged,
    MachineConfig,
    Notify,
    RemoveVips,
    ScriptChanged,
    SendAdvert,
    SendGarp,
    Shutdown,
    SourceChanged,
    Startup,
    TimerFired,
    Transitioned,
    TransitionReason,
    VrrpMachine,
    VrrpState,
)
from ipvsd.vrrp.ndisc import unsolicited_na
from ipvsd.vrrp.notify import NotifyQueue, notify_state
from ipvsd.vrrp.pacer import AdvertBurst, AdvertPacer, AdvertSender, DirectPacer
from ipvsd.vrrp.packet import (
    VRRP_GROUP,
    Advertisement,
    AuthType,
    Expectation,
    encode,
    password_auth_data,
    vmac,
)
from ipvsd.vrrp.packet_v3 import VRRP_GROUP_V6, VRRP_VERSION_3, AdvertisementV3, encode_message
from ipvsd.vrrp.ports import LinkSource, RouteWriter, VipWriter
from ipvsd.vrrp.relink import AnySocket, InterfaceEndpoint
from ipvsd.vrrp.transport6 import forwards_ipv6

log = structlog.get_logger("ipvsd.vrrp")

TransitionHook = Callable[["VrrpInstance", Transitioned], None]
FailureHook = Callable[[str, str], None]
"""Called with (instance name, reason) each time an instance's runner fails."""
#: Seconds a shutdown waits for queued notify calls (the last is STOP).
NOTIFY_DRAIN_S = 15.0
#: Tells apart a re-created instance from the one it replaces (same name) at the pacer.
_serials = itertools.count(1)


@dataclass(slots=True)
class InstanceStatus:
    """What `ipvsd status` shows of one instance (kept current by the runner)."""

    state: VrrpState = VrrpState.INIT
    effective_priority: int = 0
    since: float = field(default_factory=time.time)
    reason: str = ""
    """Why the last transition happened (a `TransitionReason`)."""
    scripts: dict[str, bool | None] = field(default_factory=dict)
    """Tracked script → True succeeding, False failing, None not reported yet."""
    files: dict[str, int] = field(default_factory=dict)
    """Tracked file → its value."""
    primary_ip: IPv4Address | IPv6Address | None = None
    fault_reason: str | None = None
    """While FAULT: why, for people ("interface eth1 has no IPv4 address ...",
    "... no link-local IPv6 address ...");
    None in any other state."""
    failures: int = 0
    """How many times the runner failed and was restarted."""
    route_errors: int = 0
    """``virtual_routes`` / ``virtual_rules`` the kernel refused to add or remove."""
    master_address: IPv4Address | IPv6Address | None = None
    """Who is master as far as this instance knows (machine rule 8): our own
    address when MASTER, the followed master's when BACKUP, else None."""
    master_adver_int: float | None = None
    """RFC 5798 Master_Adver_Interval, seconds: VRRPv3's interval of the master a
    BACKUP follows (else ours); None for VRRPv2 and before the machine starts."""
    accept_mode_error: str | None = None
    """Why ``accept_mode: false`` is not enforced now (the kernel refused the
    nf_tables drop rules, `ipvsd.vrrp.accept`); None when it is, or not asked for."""


@dataclass(frozen=True, slots=True)
class AddressesChanged:
    """Inbox item: an address of the interface changed; re-read the source."""


@dataclass(frozen=True, slots=True)
class Reconfigured:
    """Inbox item: `VrrpInstance.reconfigure` took a new config; apply it."""

    config: VrrpInstanceConfig


InboxItem = Event | AddressesChanged | Reconfigured


_A = TypeVar("_A", IPv4Address, IPv6Address)
_AnyIP = IPv4Address | IPv6Address


def of_family(kind: type[_A], value: object) -> _A:
    """`value`, which the instance's config guarantees to be of its family (`kind`).

    Raises:
        ValueError: it is not (a bug: config checks keep one family per instance).
    """
    if not isinstance(value, kind):
        raise ValueError(f"{value}: not an {kind.__name__}, the instance's family")
    return value


def _v3_burst(
    sock: AdvertSender[_A], source: _A, destinations: tuple[_A, ...], advert: AdvertisementV3
) -> AdvertBurst[_A]:
    """One VRRPv3 payload per destination: the checksum covers it (RFC 5798 §5.2.8)."""
    payloads = tuple(encode_message(advert, source, dst) for dst in destinations)
    return AdvertBurst(sock, payloads[0], source, destinations, payloads)


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
        on_failure: FailureHook | None = None,
        restart: RestartPolicy | None = None,
        pacer: AdvertPacer | None = None,
        script_weights: Mapping[str, int] | None = None,
        routes: RouteWriter | None = None,
        on_route_error: FailureHook | None = None,
        accept_guard: AcceptGuard | None = None,
        listening_since: float | None = None,
    ) -> None:
        self.inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
        # The first Startup counts from when the socket began to listen, if that
        # was before the runtime ran (`ipvsd.vrrp.prelisten`); restarts from now.
        self._listening_since = listening_since
        self._started_at = 0.0  # the loop time the machine's Startup was handled at
        self.status = InstanceStatus(effective_priority=config.priority)
        self._addresses = addresses
        self._routes = routes
        self._on_route_error = on_route_error
        self._accept_guard = accept_guard
        self._links = links
        self._endpoint = endpoint
        self._on_transition = on_transition
        self._on_failure = on_failure
        self._restart = restart or RestartPolicy()
        self._pacer = pacer or DirectPacer()
        self._pacer_key = f"{config.name}#{next(_serials)}"
        self._machine: VrrpMachine | None = None
        self._mac = ""
        self._noarp = False
        self._missing = False  # our interface does not exist
        self._failure = ""
        self._address_refresh = False  # an AddressesChanged is queued
        self._source: _AnyIP | None = None
        self.notifier = NotifyQueue(config.name)
        self.vips: tuple[IPv4Interface | IPv6Interface, ...] = ()
        #: Every address the instance adds as MASTER: advertised, then excluded.
        self.owned: tuple[VirtualAddress, ...] = ()
        self._own(config)
        #: The config whose routes and rules are in the kernel while MASTER (the
        #: runner's; `config` is ahead of it between `reconfigure` and `_apply`).
        self.config_applied: VrrpInstanceConfig = config
        #: Tracked script → weight, resolved by the router (``vrrp.scripts``).
        self.script_weights: Mapping[str, int] = dict(script_weights or {})
        self._take(config)

    def _take(self, config: VrrpInstanceConfig) -> None:
        """The config and what the receive path checks adverts against."""
        self.config = config
        self._unicast = bool(config.unicast_peers)
        self._log = log.bind(instance=config.name, interface=config.interface, vrid=config.vrid)
        auth_type = AuthType.SIMPLE if config.auth_pass else AuthType.NONE
        self._auth = (auth_type, password_auth_data(config.auth_pass or ""))
        v3 = config.version == VRRP_VERSION_3
        self.expectation = Expectation(
            vrid=config.vrid,
            advert_int=config.advert_int_cs if v3 else round(config.advert_int),
            addresses=frozenset(vip.address.ip for vip in config.virtual_ipaddresses),
            auth_type=auth_type,
            password=config.auth_pass,
            owner=config.priority == OWNER_PRIORITY,
            unicast_peers=frozenset(config.unicast_peers),
            version=config.version,
            group=VRRP_GROUP_V6 if config.family == "ipv6" else VRRP_GROUP,
        )

    def _own(self, config: VrrpInstanceConfig) -> None:
        """The addresses `config` owns: `vips` (advertised, for status) and `owned`."""
        self.vips = tuple(vip.address for vip in config.virtual_ipaddresses)
        self.owned = (*config.virtual_ipaddresses, *config.virtual_ipaddresses_excluded)

    @property
    def owned_ips(self) -> frozenset[IPv4Address | IPv6Address]:
        """Addresses of every owned VIP: never the advert source, and their own
        rtnetlink events are no reason to re-read it."""
        return frozenset(vip.ip for vip in self.owned)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> int:
        """The VRRP version the instance speaks (its codec, `vrrp.receive`)."""
        return self.config.version

    @property
    def interested_in(self) -> frozenset[str]:
        """Interfaces whose link state this instance follows."""
        return frozenset(
            {self.config.interface, *(t.interface for t in self.config.track_interfaces)}
        )

    def script_changed(self, script: str, ok: bool | None) -> None:
        """A tracked script's state (`ScriptRunner` listener); kept for a restarted machine."""
        self.status.scripts[script] = ok
        self.inbox.put_nowait(ScriptChanged(script, ok))

    def file_changed(self, path: str, value: int) -> None:
        """A tracked file's value (`FileWatcher` listener); kept for a restarted machine."""
        self.status.files[path] = value
        self.inbox.put_nowait(FileChanged(path, value))

    def reconfigure(
        self, config: VrrpInstanceConfig, script_weights: Mapping[str, int] | None = None
    ) -> None:
        """Take a reloaded config with the same name, interface and VRID, in place.

        Adverts are checked against it from now on; the runner applies the
        rest (VIPs, priority, timers) in inbox order.

        Raises:
            ValueError: another interface or VRID (that is a new instance).
        """
        old = self.config
        if (config.interface, config.vrid, config.advert_interface, config.family) != (
            old.interface,
            old.vrid,
            old.advert_interface,
            old.family,
        ):
            raise ValueError(
                f"{config.name}: a new interface, VRID, vmac or family is a new instance"
            )
        self._take(config)
        self.script_weights = dict(script_weights or {})
        self.inbox.put_nowait(Reconfigured(config))

    def addresses_changed(self) -> None:
        """An address of the interface changed (coalesced until handled)."""
        if not self._address_refresh:
            self._address_refresh = True
            self.inbox.put_nowait(AddressesChanged())

    async def run(self) -> None:
        """Run until `Shutdown`, restarting after a failure (see the module doc)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._restart)
        try:
            while True:
                started = loop.time()
                try:
                    await self._run_once()
                    return
                except Exception as exc:
                    await self._fail(exc)
                delay = backoff.after_failure(loop.time() - started)
                self._log.warning("vrrp.instance_restart_pending", delay_s=delay)
                if await self._wait_out(delay):
                    return
        finally:
            # However the runner ends (cancelled included), its adverts end with it.
            self._pacer.stop(self._pacer_key)

    async def _run_once(self) -> None:
        """Start (stale VIPs removed, BACKUP or owner MASTER) and run until `Shutdown`."""
        loop = asyncio.get_running_loop()
        self._machine = None
        self._own(self.config)
        self.config_applied = self.config
        machine = self._machine = VrrpMachine(self._machine_config(self.config.unicast_src))
        if self.config.unicast_src is not None:  # the source of every advert, from the start
            self.status.primary_ip = self._source = self.config.unicast_src
        since, self._listening_since = self._listening_since, None
        # What holds now held since then (the machine is in INIT: no timer runs).
        at = loop.time() if since is None else min(since, loop.time())
        for interface in sorted(self.interested_in):
            machine.handle(await self._link_event(interface), at)
        source = await self._source_event()
        if source is not None:
            machine.handle(source, at)
        for script, ok in sorted(self.status.scripts.items()):  # known before a restart
            machine.handle(ScriptChanged(script, ok), at)
        for path, value in sorted(self.status.files.items()):
            machine.handle(FileChanged(path, value), at)
        self._started_at = at
        await self._execute(machine.handle(Startup(), at))
        self._sync_status()
        while True:
            try:
                async with asyncio.timeout_at(machine.next_deadline()):
                    item = await self.inbox.get()
            except TimeoutError:
                # After a long stall the deadline and the master's advert come
                # due in the same loop turn; an advert already here is older than
                # the expiry we would act on, so it goes first (a backup must not
                # take over from a master whose advert it holds).
                item = TimerFired() if self.inbox.empty() else self.inbox.get_nowait()
            match item:
                case AddressesChanged():
                    self._address_refresh = False
                    source = await self._source_event()
                    if source is not None and source.primary_ip is None and self._missing:
                        # The addresses went with the interface (RTM_DELADDR comes
                        # before RTM_DELLINK): say so, not "no address".
                        await self._handle(LinkChanged(self.config.interface, False))
                    await self._handle(source)
                case Reconfigured(config=config):
                    await self._apply(config)
                case LinkChanged(interface=interface) if interface == self.config.interface:
                    # Up: the source first, so the machine leaves FAULT with it.
                    # Down: the link first, the cause people need to see.
                    await self._refresh_interface()
                    if not item.up:
                        await self._handle(item)
                    await self._handle(await self._source_event())
                    if item.up:
                        await self._handle(item)
                case _:
                    await self._handle(item)
            if isinstance(item, Shutdown):
                return

    async def _handle(self, event: Event | None) -> None:
        if event is None or self._machine is None:
            return
        await self._execute(self._machine.handle(event, asyncio.get_running_loop().time()))
        self._sync_status()

    def _machine_config(self, primary: IPv4Address | IPv6Address | None) -> MachineConfig:
        config = self.config
        return MachineConfig(
            name=config.name,
            interface=config.interface,
            vrid=config.vrid,
            priority=config.priority,
            advert_int=float(config.advert_int),
            primary_ip=primary,
            preempt=config.preempt,
            preempt_delay=float(config.preempt_delay),
            track_interfaces={t.interface: t.weight for t in config.track_interfaces},
            track_scripts=self.script_weights,
            track_files={t.path: t.weight for t in config.track_files},
            garp_delay=float(config.garp_delay),
            garp_refresh=float(config.garp_refresh),
            dont_track_primary=config.dont_track_primary,
            initial_state=VrrpState.MASTER
            if config.initial_state == "master"
            else VrrpState.BACKUP,
            version=config.version,
        )

    async def _link_event(self, interface: str) -> LinkChanged:
        """The link's state now; a missing interface is down."""
        try:
            link = await self._links.link(interface)
        except KernelError:
            if interface == self.config.interface:
                self._missing = True
            return LinkChanged(interface, False)
        if interface == self.config.interface:
            self._missing = False
            self._interface_is(link)
        return LinkChanged(interface, link.up)

    async def _refresh_interface(self) -> None:
        # Gone: FAULT, and the MAC is read again when it is back.
        try:
            self._interface_is(await self._links.link(self.config.interface))
            self._missing = False
        except KernelError:
            self._missing = True

    async def _source_event(self) -> SourceChanged | None:
        """The advert source if it changed: the interface's primary IPv4 address
        (RFC 3768 §5.2.1) or its link-local IPv6 address past DAD (RFC 5798
        §5.1.2.1), None when it has none; never for ``unicast_src``."""
        if self.config.unicast_src is not None or self._machine is None:
            return None
        interface = self.config.interface
        primary: _AnyIP | None
        try:
            if self.config.family == "ipv6":
                primary = await self._addresses.link_local_ipv6(interface)
            else:
                exclude = {ip for ip in self.owned_ips if isinstance(ip, IPv4Address)}
                primary = await self._addresses.primary_ipv4(interface, exclude=exclude)
        except KernelError as exc:
            primary = None  # no interface: no address either
            self._missing = exc.errno == errno.ENODEV
        if primary == self._machine.config.primary_ip:
            return None
        if primary is not None:
            if self._source is not None and primary != self._source:
                self._log.warning("vrrp.source_changed", old=str(self._source), new=str(primary))
            self.status.primary_ip = self._source = primary
        return SourceChanged(primary)

    def _interface_is(self, link: LinkInfo) -> None:
        # With a vmac the GARPs leave from it, with its MAC (RFC 3768 §7.3).
        self._mac = vmac(self.config.vrid) if self.config.vmac else link.mac
        self._noarp = link.noarp

    async def _apply(self, config: VrrpInstanceConfig) -> None:
        """A reloaded config (`reconfigure`), in place: machine rule 7."""
        machine = self._machine
        assert machine is not None
        now = asyncio.get_running_loop().time
        old_config, old_owned = self.config_applied, self.owned
        self._own(config)
        added = [vip for vip in self.owned if vip not in old_owned]
        removed = [vip for vip in old_owned if vip not in self.owned]
        self._log.info(
            "vrrp.reconfigured",
            priority=config.priority,
            vips_added=[str(v.address) for v in added],
            vips_removed=[str(v.address) for v in removed],
        )
        master = machine.state is VrrpState.MASTER
        if master:
            await self._routing(old_config, add=False, keep=config)
        await self._vips(removed, add=False)
        if master and added:
            await self._vips(added, add=True)
            await self._send_garp(added, count=config.garp_repeat)
        if master:
            await self._routing(config, add=True)
        self.config_applied = config
        if master:
            self._guard(True)
        tracked = set(self.script_weights)  # scripts and services (`track_services`)
        for script in set(self.status.scripts) - tracked:
            del self.status.scripts[script]
        for path in set(self.status.files) - {t.path for t in config.track_files}:
            del self.status.files[path]
        for interface in sorted(self.interested_in - set(machine.config.track_interfaces)):
            if interface != config.interface:  # newly tracked: its state before it counts
                machine.handle(await self._link_event(interface), now())
        if config.unicast_src is not None:
            self.status.primary_ip = self._source = config.unicast_src
            await self._handle(SourceChanged(self._source))
        else:
            await self._handle(await self._source_event())
        await self._handle(ConfigChanged(self._machine_config(machine.config.primary_ip)))

    async def _fail(self, exc: Exception) -> None:
        """The runner failed: resign and release (machine `Failed`), FAULT, tell."""
        self._failure = f"{type(exc).__name__}: {exc}"
        self.status.failures += 1
        self._log.error("vrrp.instance_failed", error=self._failure, exc_info=exc)
        machine = self._machine or VrrpMachine(self._machine_config(self._source))
        self._machine = machine
        await self._execute(machine.handle(Failed(), asyncio.get_running_loop().time()), safe=True)
        self.status.state = VrrpState.FAULT
        self._sync_status()
        if self._on_failure is not None:
            self._on_failure(self.name, self._failure)

    async def _wait_out(self, delay: float) -> bool:
        """Sit in FAULT for `delay` s; True if `Shutdown` came meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self.inbox.get()
            except TimeoutError:
                return False
            if isinstance(item, AddressesChanged):
                self._address_refresh = False
            if isinstance(item, Shutdown) and self._machine is not None:
                await self._execute(self._machine.handle(item, loop.time()), safe=True)
                self._sync_status()
                return True
            # Anything else is stale: the restart reads links, addresses and config again.

    def _sync_status(self) -> None:
        machine = self._machine
        if machine is None:
            return
        self.status.effective_priority = machine.effective_priority
        self.status.master_address = machine.master_address
        v3 = machine.config.version == VRRP_VERSION_3
        self.status.master_adver_int = machine.master_adver_int if v3 else None
        reason = machine.last_transition_reason
        if machine.state is VrrpState.FAULT and reason is not None:
            self.status.fault_reason = self._fault_text(reason)
        else:
            self.status.fault_reason = None

    def _fault_text(self, reason: TransitionReason) -> str:
        interface = self.config.interface
        match reason:
            case "instance_failed":
                return f"instance failed ({self._failure}); restarting"
            case "link_down" if self._missing:
                return f"interface {interface} does not exist"
            case "link_down":
                return f"link {interface} is down"
            case "no_address" if self.config.family == "ipv6":
                return (
                    f"interface {interface} has no link-local IPv6 address to send adverts"
                    " from (duplicate address detection running, or the link is down)"
                )
            case "no_address":
                return f"interface {interface} has no IPv4 address to send adverts from"
            case "track_interface":
                return "a tracked interface of weight 0 is down"
            case "track_script":
                return "a tracked script of weight 0 is failing or has not reported yet"
            case "track_file":
                return "a tracked file's value means FAULT (non-zero with weight 0, or -254)"
            case "sync_group":
                return "its sync group is in FAULT"
            case _:
                return reason

    async def _execute(self, actions: list[Action], *, safe: bool = False) -> None:
        """Carry out the actions in order; `safe`: log each failure and go on."""
        for action in actions:
            if not safe:
                await self._do(action)
                continue
            try:
                await self._do(action)
            except Exception as exc:
                self._log.error("vrrp.cleanup_failed", action=repr(action), error=repr(exc))

    async def _do(self, action: Action) -> None:
        match action:
            case SendAdvert(priority=priority, periodic=periodic):
                self._send_advert(priority, periodic=periodic)
            case AddVips():
                self._guard(True)  # before the VIPs: no moment they accept for us
                await self._vips(self.owned, add=True)
                await self._routing(self.config_applied, add=True)
            case RemoveVips():
                await self._routing(self.config_applied, add=False)
                await self._vips(self.owned, add=False)
                self._guard(False)
            case SendGarp(refresh=refresh):
                await self._send_garp(self.owned, count=1 if refresh else self.config.garp_repeat)
            case Notify(state=state, priority=priority):
                self._notify(state, priority)
            case Transitioned():
                self._transitioned(action)
            case _:
                assert_never(action)

    def _send_advert(self, priority: int, *, periodic: bool) -> None:
        """Hand the advert to the pacer: now, and repeated while we are MASTER.

        A periodic advert (Adver_Timer) that the pacer already repeats went out
        on time from there; the machine's timer firing late does not matter.
        """
        key = self._pacer_key
        sock = self._endpoint.advert(self._unicast)
        if sock is None:
            self._pacer.stop(key)
            self._log.debug("vrrp.advert_skipped", reason="interface_gone", priority=priority)
            return
        burst = self._burst(sock, priority)
        if burst is None:
            self._pacer.stop(key)
            self._log.debug("vrrp.advert_skipped", reason="no_source", priority=priority)
            return
        interval = float(self.config.advert_int)
        if periodic and self._pacer.repeating(key) == (burst, interval):
            self._pacer.touch(key)
            return
        master = self._machine is not None and self._machine.state is VrrpState.MASTER
        repeat = interval if master and priority > 0 else None
        self._pacer.send(key, burst, repeat)

    def _burst(
        self, sock: AnySocket, priority: int
    ) -> AdvertBurst[IPv4Address] | AdvertBurst[IPv6Address] | None:
        """The advert of our version to each destination; None for a VRRPv3 one while
        the source is not known (its checksum covers the source, RFC 5798 §5.2.8)."""
        config = self.config
        source = self._source
        peers = config.unicast_peers
        if config.family == "ipv6":  # VRRPv3 only
            if source is None:
                return None
            # The endpoint of an IPv6 instance is an IPv6 one (`InterfaceEndpoint.key`).
            sock6 = cast("AdvertSender[IPv6Address]", sock)
            v6 = functools.partial(of_family, IPv6Address)
            destinations6 = tuple(map(v6, peers or (VRRP_GROUP_V6,)))
            return _v3_burst(sock6, v6(source), destinations6, self._advert_v3(priority))
        sock4 = cast("AdvertSender[IPv4Address]", sock)
        v4 = functools.partial(of_family, IPv4Address)
        destinations = tuple(map(v4, peers or (VRRP_GROUP,)))
        if config.version != VRRP_VERSION_3:
            advert = Advertisement(
                vrid=config.vrid,
                priority=priority,
                advert_int=round(config.advert_int),
                addresses=tuple(v4(vip.ip) for vip in self.vips),
                auth_type=self._auth[0],
                auth_data=self._auth[1],
            )
            return AdvertBurst(
                sock4, encode(advert), None if source is None else v4(source), destinations
            )
        if source is None:
            return None
        return _v3_burst(sock4, v4(source), destinations, self._advert_v3(priority))

    def _advert_v3(self, priority: int) -> AdvertisementV3:
        config = self.config
        return AdvertisementV3(
            config.vrid, priority, config.advert_int_cs, tuple(vip.ip for vip in self.vips)
        )

    async def _vips(self, vips: Iterable[VirtualAddress], *, add: bool) -> None:
        for vip in vips:
            interface = vip.dev or self.config.advert_interface
            try:
                if add:
                    label = vip.label or vip_label(interface, self.config.vrid)
                    await self._addresses.add(
                        interface,
                        vip.address,
                        label,
                        scope=vip.scope,
                        broadcast=vip.broadcast,
                    )
                else:
                    await self._addresses.remove(interface, vip.address)
            except KernelError as exc:
                if not add and exc.errno == errno.ENODEV:
                    # The interface is gone, and its addresses with it.
                    self._log.debug("vrrp.vip_gone", vip=str(vip.address))
                    continue
                self._log.error(
                    "vrrp.vip_error",
                    vip=str(vip.address),
                    dev=interface,
                    add=add,
                    error=str(exc),
                )

    def _guard(self, master: bool) -> None:
        """RFC 5798 §6.1: a non-owner MASTER with ``accept_mode: false`` drops what is
        addressed to its VIPs (IPVS's traffic excepted, `ipvsd.netlink.nftables`).

        A refusal is logged and shown (`InstanceStatus.accept_mode_error`); the
        machine goes on, as it does when an address cannot be added.
        """
        guard = self._accept_guard
        config = self.config_applied
        if guard is None:
            return
        drop = master and not config.accept_mode and config.priority != OWNER_PRIORITY
        addresses = frozenset(vip.ip for vip in self.owned) if drop else frozenset()
        try:
            guard.hold(self.name, addresses)
        except KernelError as exc:
            self.status.accept_mode_error = str(exc)
            self._log.error(
                "vrrp.accept_mode_error", drop=sorted(map(str, addresses)), error=str(exc)
            )
            return
        self.status.accept_mode_error = None

    async def _routing(
        self, config: VrrpInstanceConfig, *, add: bool, keep: VrrpInstanceConfig | None = None
    ) -> None:
        """Add (after the VIPs) or remove (before them) ``virtual_routes`` and ``virtual_rules``.

        Rules go in after the routes they point at and out before them. A refusal
        is logged and counted (`InstanceStatus.route_errors`); the instance goes on,
        as keepalived's does. `keep`: a reloaded config whose entries stay.
        """
        routes = [r for r in config.virtual_routes if keep is None or r not in keep.virtual_routes]
        rules = [r for r in config.virtual_rules if keep is None or r not in keep.virtual_rules]
        if not routes and not rules:
            return
        if self._routes is None:
            self._log.error("vrrp.routes_unsupported", reason="no route writer")
            return
        writer = self._routes
        calls: list[Awaitable[bool]]
        if add:
            calls = [*map(writer.add_route, routes), *map(writer.add_rule, rules)]
        else:
            calls = [*map(writer.remove_rule, rules), *map(writer.remove_route, routes)]
        for call in calls:
            try:
                await call
            except KernelError as exc:
                self.status.route_errors += 1
                self._log.error("vrrp.route_error", add=add, error=str(exc))
                if self._on_route_error is not None:
                    self._on_route_error(self.name, str(exc))

    async def _send_garp(self, vips: Iterable[VirtualAddress], *, count: int) -> None:
        """`count` rounds of one GARP per IPv4 VIP, one unsolicited NA per IPv6 VIP
        (a burst, or 1 for a ``garp_refresh``)."""
        vips = list(vips)
        here = self.config.advert_interface
        elsewhere = [vip for vip in vips if vip.dev not in (None, here)]
        await self._garp_elsewhere(elsewhere, count)
        garp = self._endpoint.garp
        if not self._mac or garp is None:
            return
        if self._noarp:
            self._log.debug("vrrp.garp_skipped", reason="noarp")
            return
        ours = [vip for vip in vips if vip.dev in (None, here)]
        frames = [_announcement(self._mac, vip.ip, here) for vip in ours]
        if frames:
            garp.send_burst(frames, count)

    async def _garp_elsewhere(self, vips: list[VirtualAddress], count: int) -> None:
        """GARPs for VIPs on another ``dev``: from that interface, with its MAC, as
        keepalived sends each VIP's on the VIP's own interface."""
        for dev in sorted({vip.dev for vip in vips if vip.dev is not None}):
            try:
                link = await self._links.link(dev)
                if not link.mac or link.noarp:
                    continue
                sender = self._endpoint.open_garp_on(dev)
            except KernelError as exc:
                self._log.warning("vrrp.garp_skipped", dev=dev, reason=str(exc))
                continue
            try:
                frames = [_announcement(link.mac, vip.ip, dev) for vip in vips if vip.dev == dev]
                sender.send_burst(frames, count)
            finally:
                sender.close()

    def _notify(self, state: VrrpState, priority: int) -> None:
        # keepalived: leaving for good (shutdown, removal) is STOP, not INIT.
        self.notifier.put(self.config, notify_state(state), priority)

    def _transitioned(self, action: Transitioned) -> None:
        assert self._machine is not None
        if action.new is not VrrpState.MASTER:
            self._pacer.stop(self._pacer_key)
        self.status.state = action.new
        self.status.effective_priority = self._machine.effective_priority
        # Startup's state holds since the socket began to listen (`ipvsd.vrrp.prelisten`).
        listening = 0.0
        if action.old is VrrpState.INIT:
            listening = max(0.0, asyncio.get_running_loop().time() - self._started_at)
        self.status.since = time.time() - listening
        self.status.reason = action.reason
        self._sync_status()
        master = self.status.master_address
        self._log.info(
            "vrrp.transition",
            old=action.old.value,
            new=action.new.value,
            reason=action.reason,
            priority=self._machine.effective_priority,
            fault=self.status.fault_reason,
            # Who is master now, when known: ours, or the advert's that made us BACKUP.
            **({"master": str(master)} if master is not None else {}),
            **({"listening_s": round(listening, 3)} if listening >= 0.001 else {}),
        )
        self._on_transition(self, action)


def _announcement(mac: str, ip: _AnyIP, interface: str) -> bytes:
    """The frame that moves `ip` to `mac` in the neighbours' caches: a gratuitous ARP
    (RFC 5227), or an unsolicited NA with Override (RFC 5798 §8.2.2, RFC 4861
    §7.2.6) whose Router flag says whether `interface` forwards IPv6, as keepalived's."""
    if isinstance(ip, IPv6Address):
        return unsolicited_na(mac, ip, router=forwards_ipv6(interface))
    return gratuitous_arp(mac, ip)
