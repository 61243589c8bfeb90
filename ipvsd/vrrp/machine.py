"""The VRRP state machine (RFC 3768 §6; RFC 5798 §6 for VRRPv3), sans-IO.

Theory of operation
-------------------
`VrrpMachine.handle(event, now)` takes one `Event` and the monotonic time in
seconds and returns the `Action` list the runner must carry out, in order.
`next_deadline()` says when the runner must next deliver `TimerFired()`. The
machine owns its timers; the runner only asks (aioquic's ``get_timer()``).
There is no I/O, clock or logging here: transitions come back as
`Transitioned` facts for the runner to log and count.

Rules:

1. States are RFC 3768 §6.4 Initialize (`INIT`), Backup and Master, plus
   keepalived's FAULT: the instance's own interface (unless
   ``dont_track_primary``), or a tracked interface of weight 0, is down; a
   tracked script of weight 0 is failing or has not reported yet (keepalived
   holds such an instance out of BACKUP until the script's first result); a
   tracked file of weight 0 holds a non-zero value, or one of another weight
   a value whose product with it is -254 or less (keepalived
   ``process_update_vrrp_track_file_status``); or the interface has no IPv4
   address to send adverts from (§5.2.1 needs the primary address;
   keepalived goes to FAULT too); or the runner failed (`Failed`, sticky
   until a new machine). A machine in FAULT neither sends nor listens; it
   leaves FAULT for Backup (the owner: Master) as soon as the last cause is
   gone.
2. Timers (§6.1, §6.2) use the *effective* priority:
   Skew_Time = (256 - priority) / 256 s, not scaled by the advert interval in
   v2, and Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time.
   VRRPv3 (RFC 5798 §6.1) scales both by Master_Adver_Interval:
   Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256 and
   Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, where
   Master_Adver_Interval is the Max Adver Int of the last advert a Backup
   accepted (§6.4.2; the Master it steps down for, §6.4.3) and the
   configured Advertisement_Interval at Startup, as Master and after FAULT
   (§6.4.1; keepalived resets it the same way). An advert that is
   discarded (a lower priority we preempt) teaches nothing. v3 intervals are
   whole centiseconds (Max Adver Int's unit, §5.2.5); the times stay float
   seconds. keepalived computes the same skew in integer microseconds
   (``VRRP_TIMER_SKEW``), so the two differ by less than 1 µs.
3. Every handled timer re-checks ``now >= deadline``: a spurious or early
   `TimerFired` does nothing, a late one acts as if on time.
4. Going to Master: the advert goes out *before* the VIPs are added and the
   GARP burst is sent, so the old master steps down first (keepalived
   ``vrrp_state_master_tx``). A second GARP burst follows ``garp_delay`` s
   later if still Master (keepalived ``vrrp_garp_master_delay``). With
   ``garp_refresh`` a Master also sends one GARP per VIP every
   ``garp_refresh`` s while it stays Master (keepalived
   ``garp_master_refresh``, with its default repeat of 1), so that switches
   and neighbours whose entries expired learn the VIPs again.
5. Leaving Master for FAULT or INIT sends a priority-0 advert first (§6.4.3
   Shutdown; keepalived ``vrrp_state_leave_master``), then removes the VIPs.
6. Every transition emits `Transitioned(old, new, reason)` then
   `Notify(new, effective_priority)`, after the wire and VIP actions.
7. A config change (`ConfigChanged`) applies in place and never leaves the
   state by itself: RFC 3768 §6.4.3 has a Master step down only on a
   higher-priority advert, so a Master with a new priority just advertises
   it from its next advert. A running Master_Down_Timer moves by the change
   in Master_Down_Interval (as for a tracked interface), Adver_Timer never
   runs later than the new interval, and preempt and preempt_delay rule the
   next advert received. Only a change of the fault causes (tracked
   interfaces) moves to or from FAULT. The VRID and the interface are the
   identity of a virtual router: they never change in place.
8. `master_address` says who is master, as far as this router knows: itself
   when Master; when Backup, the source of the last advert that reset
   Master_Down_Timer (§6.4.2: a priority at least its own, or any with
   preempt off, or a lower one spared by preempt_delay), or of the advert
   that made it step down (§6.4.3); None before such an advert, after a
   priority-0 one (the master resigned), and in INIT and FAULT.
9. ``initial_state`` MASTER (keepalived's ``state MASTER``) for a non-owner:
   §6.4.1 still starts it in Backup, but the Master_Down_Timer that Startup
   arms is Advertisement_Interval + Skew_Time computed as for priority 255,
   1/256 s (keepalived ``vrrp_init_state``, ``VRRP_TIMER_SKEW_MIN``), not
   Master_Down_Interval: alone on the segment it takes over after ~1
   interval instead of ~3. Only that first timer: an advert that resets it
   (§6.4.2), leaving Master, or FAULT -> Backup (keepalived
   ``try_up_instance``) arm the usual interval; a priority change does not
   move it (its length does not depend on the priority; keepalived's
   ``vrrp_set_effective_priority`` would stretch it by Master_Down_Interval
   minus its length, an artefact of moving the timer by the change of
   ``ms_down_timer``). A Startup that goes to FAULT (e.g. a tracked script
   of weight 0 that has not reported yet, keepalived's ``num_script_init``)
   never arms it. The owner starts as Master anyway, so it
   changes nothing there; a `ConfigChanged` changing it matters at the next
   Startup only.
10. keepalived behaviour beyond the RFC (vrrp-notes §2, §3): a master answers
   a lower-priority advert with an advert and a GARP burst (plus a delayed
   one); tracked-interface and tracked-script weights; ``preempt_delay``; VIPs are removed at
   start-up in case a crash left them behind (vrrp-notes §1.7).

Link state is assumed up until a `LinkChanged` says otherwise; the runner
sends `LinkChanged` for down links before `Startup`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType
from typing import Literal, assert_never

OWNER_PRIORITY = 255
"""RFC 3768 §5.3.4: the router that owns the VIPs as interface addresses."""
RESIGN_PRIORITY = 0
"""RFC 3768 §5.3.4: the master is leaving; backups take over after Skew_Time."""
MAX_BACKUP_PRIORITY = 254
MAX_TRACK_WEIGHT = 254
VRRP_V3 = 3
_CENTISECOND_SLACK = 1e-6


def _whole_centiseconds(seconds: float) -> bool:
    return abs(seconds * 100 - round(seconds * 100)) <= _CENTISECOND_SLACK


class VrrpState(enum.Enum):
    #: RFC 3768 §6.4.1 Initialize: not started, or shut down.
    INIT = "INIT"
    #: §6.4.2: monitoring the master, Master_Down_Timer running.
    BACKUP = "BACKUP"
    #: §6.4.3: owns the VIPs and advertises every Advertisement_Interval.
    MASTER = "MASTER"
    #: keepalived: a required link is down; no adverts, no VIPs.
    FAULT = "FAULT"


TransitionReason = Literal[
    "startup",
    "startup_owner",
    "master_down_timer",
    "preempt",
    "higher_priority_advert",
    "equal_priority_higher_ip",
    "link_down",
    "track_interface",
    "track_script",
    "track_file",
    "link_up",
    "shutdown",
    "sync_group",
    "no_address",
    "address_up",
    "instance_failed",
    "config_changed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineConfig:
    """One virtual router's settings. Durations are seconds.

    Raises:
        ValueError: a value outside its RFC or keepalived range.
    """

    name: str
    interface: str
    """The instance's own interface; its link down means FAULT."""
    vrid: int
    """Virtual Router ID, 1-255 (RFC 3768 §5.3.3)."""
    priority: int
    """1-254 backup, 255 address owner (RFC 3768 §5.3.4)."""
    advert_int: float
    """Advertisement_Interval in seconds (RFC 3768 §5.3.7; v3: whole centiseconds,
    RFC 5798 §5.2.5)."""
    primary_ip: IPv4Address | IPv6Address | None
    """Our advert source address; decides equal-priority ties (§6.4.3).
    None: the interface has no IPv4 address yet (FAULT until `SourceChanged`)."""
    preempt: bool = True
    """Preempt_Mode (§6.1). The owner always preempts."""
    preempt_delay: float = 0.0
    """Seconds after `Startup` before a lower-priority master is preempted."""
    track_interfaces: Mapping[str, int] = field(default_factory=dict)
    """Interface → weight. 0: down means FAULT. > 0: added while up.
    < 0: added (subtracted) while down. Ignored for the owner (keepalived)."""
    garp_delay: float = 5.0
    """Seconds from becoming master to the second GARP burst; 0: none."""
    garp_refresh: float = 0.0
    """Seconds between a Master's refresh GARPs (rule 4); 0: none."""
    dont_track_primary: bool = False
    """keepalived's dont_track_primary: the own interface's link state is not a fault
    cause (rule 1); ``track_interfaces`` naming it still count."""
    track_scripts: Mapping[str, int] = field(default_factory=dict)
    """Script name → weight, as for interfaces with "succeeding" for "up", except
    that a script that has not reported yet adds nothing and, with weight 0,
    means FAULT (keepalived ``process_script_update_priority``)."""
    track_files: Mapping[str, int] = field(default_factory=dict)
    """Path → weight. 0: a non-zero value means FAULT. Else value * weight, clamped
    to -254..253, is added; -254 means FAULT (keepalived's track_file)."""
    initial_state: VrrpState = VrrpState.BACKUP
    """BACKUP (RFC 3768) or MASTER: the first Master_Down_Timer after `Startup` is
    Advertisement_Interval + 1/256 s (rule 9, keepalived's ``state MASTER``)."""
    version: int = 2
    """2 (RFC 3768) or 3 (RFC 5798: timers scaled by Master_Adver_Interval, rule 2)."""

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"{self.name}: VRRP version {self.version} is not 2 or 3")
        if self.version == VRRP_V3 and not _whole_centiseconds(self.advert_int):
            raise ValueError(f"{self.name}: a VRRPv3 advert_int is whole centiseconds")
        if not 1 <= self.vrid <= OWNER_PRIORITY:
            raise ValueError(f"{self.name}: vrid {self.vrid} is not in 1..255")
        if not 1 <= self.priority <= OWNER_PRIORITY:
            raise ValueError(f"{self.name}: priority {self.priority} is not in 1..255")
        if self.advert_int <= 0:
            raise ValueError(f"{self.name}: advert_int must be positive")
        if self.initial_state not in (VrrpState.BACKUP, VrrpState.MASTER):
            raise ValueError(f"{self.name}: initial_state must be BACKUP or MASTER")
        if min(self.preempt_delay, self.garp_delay, self.garp_refresh) < 0:
            raise ValueError(f"{self.name}: preempt_delay and the GARP delays must be >= 0")
        for iface, weight in self.track_interfaces.items():
            if abs(weight) > MAX_TRACK_WEIGHT:
                raise ValueError(f"{self.name}: weight {weight} of {iface} is not in -254..254")
        for tracked, weight in [*self.track_scripts.items(), *self.track_files.items()]:
            if abs(weight) > MAX_TRACK_WEIGHT:
                raise ValueError(f"{self.name}: weight {weight} of {tracked} is not in -254..254")
        object.__setattr__(self, "track_interfaces", MappingProxyType(dict(self.track_interfaces)))
        object.__setattr__(self, "track_scripts", MappingProxyType(dict(self.track_scripts)))
        object.__setattr__(self, "track_files", MappingProxyType(dict(self.track_files)))


@dataclass(frozen=True, slots=True)
class Startup:
    """The instance starts (RFC 3768 §6.4.1 Startup event)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The instance stops (§6.4.2, §6.4.3 Shutdown event)."""


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A valid advert for our VRID (the codec has applied every §7.1 check)."""

    src: IPv4Address | IPv6Address
    priority: int
    advert_int: float | None = None
    """A VRRPv3 advert's Max Adver Int in seconds (RFC 5798 §5.2.5); None for VRRPv2,
    whose interval must equal ours (RFC 3768 §7.1, checked by the codec)."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    """`next_deadline()` has (probably) passed; the machine re-checks."""


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """The link of `interface` (ours, tracked, or neither) went up or down."""

    interface: str
    up: bool


@dataclass(frozen=True, slots=True)
class ScriptChanged:
    """A tracked script's rise/fall state (`ipvsd.vrrp.tracking`) changed.

    ok: True succeeding, False failing, None not known yet (a new script).
    """

    script: str
    ok: bool | None


@dataclass(frozen=True, slots=True)
class FileChanged:
    """A tracked file's value (`ipvsd.vrrp.tracking.FileWatcher`) changed; 0 when the
    file is missing, empty or unreadable (keepalived)."""

    path: str
    value: int


@dataclass(frozen=True, slots=True)
class SyncForce:
    """A sync group moves this instance with another member (`SyncGroup`)."""

    state: VrrpState

    def __post_init__(self) -> None:
        if self.state is VrrpState.INIT:
            raise ValueError("a sync group forces BACKUP, MASTER or FAULT, never INIT")


@dataclass(frozen=True, slots=True)
class SourceChanged:
    """The interface's primary IPv4 address (our advert source) is now `primary_ip`.

    None: it has none, and adverts cannot be sent (RFC 3768 §5.2.1): FAULT.
    """

    primary_ip: IPv4Address | IPv6Address | None


@dataclass(frozen=True, slots=True)
class Failed:
    """The runner failed (an unexpected error): resign, release the VIPs, FAULT.

    Sticky: the runner restarts with a new machine.
    """


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """A reload changed this virtual router's settings (rule 7).

    `config` has the same name, interface and VRID; its ``primary_ip`` is
    ignored (`SourceChanged` moves the source).
    """

    config: MachineConfig


Event = (
    Startup
    | Shutdown
    | AdvertReceived
    | TimerFired
    | LinkChanged
    | ScriptChanged
    | FileChanged
    | SyncForce
    | SourceChanged
    | Failed
    | ConfigChanged
)


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Send one advert; priority 0 resigns (RFC 3768 §5.3.4)."""

    priority: int
    periodic: bool = False
    """Adver_Timer fired: a pacer already repeating this advert has sent it
    (`vrrp.pacer`); every other advert is news and goes out now."""


@dataclass(frozen=True, slots=True)
class AddVips:
    """Add every configured VIP (idempotent)."""


@dataclass(frozen=True, slots=True)
class RemoveVips:
    """Remove every configured VIP (idempotent)."""


@dataclass(frozen=True, slots=True)
class SendGarp:
    """One gratuitous-ARP burst for every VIP; the transport knows the count."""

    refresh: bool = False
    """A ``garp_refresh`` GARP: one per VIP, not a burst (keepalived's
    garp_master_refresh_repeat defaults to 1)."""


@dataclass(frozen=True, slots=True)
class Notify:
    """Run the notify hook (TYPE NAME STATE PRIORITY)."""

    state: VrrpState
    priority: int


@dataclass(frozen=True, slots=True)
class Transitioned:
    """A fact for the runner to log and count; it asks for nothing."""

    old: VrrpState
    new: VrrpState
    reason: TransitionReason


Action = SendAdvert | AddVips | RemoveVips | SendGarp | Notify | Transitioned


class VrrpMachine:
    """One virtual router: `handle(event, now) -> actions`, `next_deadline()`."""

    def __init__(self, config: MachineConfig) -> None:
        self._cfg = config
        self._state = VrrpState.INIT
        self._links: dict[str, bool] = {}
        self._scripts: dict[str, bool | None] = {}  # absent: not reported yet
        self._files: dict[str, int] = {}  # absent: 0
        self._sync_fault = False
        self._reason: TransitionReason | None = None
        self._adver_at: float | None = None  # Adver_Timer (Master)
        self._master_down_at: float | None = None  # Master_Down_Timer (Backup)
        self._fast_start = False  # Master_Down_Timer is rule 9's shortened first one
        self._garp_at: list[float] = []  # delayed GARP bursts (Master)
        self._refresh_at: float | None = None  # the next refresh GARP (Master, rule 4)
        self._preempt_after = 0.0  # Startup + preempt_delay
        self._held_master: int | None = None  # lower master spared by preempt_delay
        self._preempting = False  # the last advert came from a lower master we discarded
        self._started_at = 0.0
        self._failed = False
        self._master: IPv4Address | IPv6Address | None = None  # a Backup's master (rule 8)
        self._learned_int: float | None = None  # v3 Master_Adver_Interval from adverts

    @property
    def config(self) -> MachineConfig:
        return self._cfg

    @property
    def state(self) -> VrrpState:
        return self._state

    @property
    def last_transition_reason(self) -> TransitionReason | None:
        return self._reason

    @property
    def master_address(self) -> IPv4Address | IPv6Address | None:
        """Who is master as far as we know (rule 8); None when not known."""
        if self._state is VrrpState.MASTER:
            return self._cfg.primary_ip
        return self._master if self._state is VrrpState.BACKUP else None

    @property
    def effective_priority(self) -> int:
        """The configured priority moved by tracked-interface and script weights.

        keepalived ``vrrp_set_effective_priority``: clamped to 1..254; the
        owner keeps 255 whatever its tracked objects do. A script that has not
        reported yet adds neither weight (keepalived's SCRIPT_INIT_STATE_INIT).
        """
        base = self._cfg.priority
        if base == OWNER_PRIORITY:
            return OWNER_PRIORITY
        total = base
        for iface, weight in self._cfg.track_interfaces.items():
            up = self._link_up(iface)
            if (weight > 0 and up) or (weight < 0 and not up):
                total += weight
        for script, weight in self._cfg.track_scripts.items():
            ok = self._scripts.get(script)
            if (weight > 0 and ok is True) or (weight < 0 and ok is False):
                total += weight
        for path, weight in self._cfg.track_files.items():
            status = self._file_status(path, weight)
            if weight and status > -MAX_TRACK_WEIGHT:
                total += status
        return max(1, min(MAX_BACKUP_PRIORITY, total))

    @property
    def master_adver_int(self) -> float:
        """RFC 5798 §6.1 Master_Adver_Interval, seconds: the interval of the master a
        v3 Backup follows (rule 2), else (and always in v2) our Advertisement_Interval."""
        return self._cfg.advert_int if self._learned_int is None else self._learned_int

    @property
    def skew_time(self) -> float:
        """RFC 3768 §6.1: (256 - Priority) / 256 seconds (v2: not scaled); RFC 5798
        §6.1: ((256 - Priority) * Master_Adver_Interval) / 256 (v3)."""
        return self._skew(256 - self.effective_priority)

    @property
    def master_down_interval(self) -> float:
        """3 * Master_Adver_Interval (v2: Advertisement_Interval) + Skew_Time, seconds."""
        return 3 * self.master_adver_int + self.skew_time

    def _skew(self, share: int) -> float:
        """`share`/256 of a second (v2) or of Master_Adver_Interval (v3)."""
        if self._cfg.version == VRRP_V3:
            return share * self.master_adver_int / 256
        return share / 256

    @property
    def _down_interval(self) -> float:
        """The length of the running Master_Down_Timer: rule 9's shortened first one
        (Advertisement_Interval + the skew of priority 255), else Master_Down_Interval."""
        if self._fast_start:
            return self._cfg.advert_int + self._skew(256 - OWNER_PRIORITY)
        return self.master_down_interval

    def next_deadline(self) -> float | None:
        """The earliest pending timer (monotonic seconds), or None.

        Adver_Timer and the delayed GARPs when Master; Master_Down_Timer and
        the preempt-delay deadline when Backup.
        """
        deadlines = [*self._garp_at]
        for at in (self._adver_at, self._master_down_at, self._refresh_at):
            if at is not None:
                deadlines.append(at)
        if self._held_master is not None:
            deadlines.append(self._preempt_after)
        return min(deadlines, default=None)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event at monotonic time `now` (seconds).

        Returns:
            The actions to carry out, in order.
        """
        match event:
            case Startup():
                return self._on_startup(now)
            case Shutdown():
                return self._on_shutdown()
            case AdvertReceived():
                return self._on_advert(event, now)
            case TimerFired():
                return self._on_timer(now)
            case LinkChanged():
                return self._on_link(event, now)
            case ScriptChanged():
                return self._on_script(event, now)
            case FileChanged():
                return self._on_file(event, now)
            case SyncForce():
                return self._on_sync(event.state, now)
            case SourceChanged():
                return self._on_source(event.primary_ip, now)
            case Failed():
                return self._on_failed()
            case ConfigChanged():
                return self._on_config(event.config, now)
            case _:
                assert_never(event)

    def _on_startup(self, now: float) -> list[Action]:
        if self._state is not VrrpState.INIT:
            return []
        self._sync_fault = False
        self._learned_int = None  # RFC 5798 §6.4.1: Master_Adver_Interval = ours
        self._started_at = now
        self._preempt_after = now + self._cfg.preempt_delay
        # vrrp-notes §1.7: keepalived removes configured VIPs at start, in case
        # a crash left them; skipped only when we take them at once.
        if self._faulty():
            return [RemoveVips(), *self._become_fault(self._fault_reason())]
        if self._cfg.priority == OWNER_PRIORITY:
            # RFC 3768 §6.4.1: the owner sends an advert, GARPs, becomes Master.
            return self._become_master(now, "startup_owner")
        # §6.4.1: anyone else starts as Backup with Master_Down_Timer running;
        # rule 9: shortened with initial_state MASTER.
        actions: list[Action] = [RemoveVips(), *self._become_backup(now, "startup")]
        if self._cfg.initial_state is VrrpState.MASTER:
            self._fast_start = True
            self._master_down_at = now + self._down_interval
        return actions

    def _on_shutdown(self) -> list[Action]:
        if self._state is VrrpState.INIT:
            return []
        # §6.4.3 Shutdown: a Master resigns with priority 0 (keepalived: then
        # removes the VIPs). §6.4.2: a Backup just stops its timer.
        actions = self._leave_master()
        self._clear_timers()
        return [*actions, *self._transition(VrrpState.INIT, "shutdown")]

    def _on_advert(self, adv: AdvertReceived, now: float) -> list[Action]:
        if self._state is VrrpState.BACKUP:
            return self._backup_advert(adv, now)
        if self._state is VrrpState.MASTER:
            return self._master_advert(adv, now)
        return []  # INIT and FAULT do not listen

    def _backup_advert(self, adv: AdvertReceived, now: float) -> list[Action]:
        prio = self.effective_priority
        self._preempting = False
        if adv.priority == RESIGN_PRIORITY:
            # RFC 3768 §6.4.2: the master resigned; take over after Skew_Time.
            self._held_master = self._master = None
            self._fast_start = False
            self._master_down_at = now + self.skew_time
        elif not self._preempts() or adv.priority >= prio:
            # §6.4.2: a master we do not preempt is alive; reset the timer
            # (RFC 5798 §6.4.2: with the advert's interval, rule 2).
            self._held_master = None
            self._master = adv.src
            self._fast_start = False
            self._learn_interval(adv)
            self._master_down_at = now + self.master_down_interval
        elif now < self._preempt_after:
            # keepalived preempt_delay: spare the lower master until
            # Startup + preempt_delay, then preempt it (see _on_timer).
            self._held_master = adv.priority
            self._master = adv.src
            self._fast_start = False
            self._learn_interval(adv)
            self._master_down_at = now + self.master_down_interval
        else:
            # §6.4.2: discard; Master_Down_Timer keeps running and we preempt.
            self._preempting = True
        return []

    def _master_advert(self, adv: AdvertReceived, now: float) -> list[Action]:
        prio = self.effective_priority
        if self._cfg.priority == OWNER_PRIORITY:
            # RFC 3768 §7.1: the owner discards adverts for its VRID.
            return []
        if adv.priority == RESIGN_PRIORITY:
            # §6.4.3: answer a priority-0 advert at once, reset Adver_Timer.
            self._adver_at = now + self._cfg.advert_int
            return [SendAdvert(prio)]
        ours, theirs = int(self._cfg.primary_ip or 0), int(adv.src)
        if adv.priority > prio:
            # §6.4.3: a higher priority wins.
            return self._become_backup(now, "higher_priority_advert", master=adv)
        if adv.priority == prio and theirs > ours:
            # §6.4.3: equal priority -> the higher primary IP (unsigned) wins.
            return self._become_backup(now, "equal_priority_higher_ip", master=adv)
        if theirs == ours:
            return []  # our own advert looped back
        # The RFC discards a lower-priority advert. keepalived
        # (vrrp_lower_prio_no_advert off, vrrp_garp_lower_prio_repeat/_delay)
        # answers at once and re-GARPs now and after garp_delay, so ARP
        # caches converge after a split brain (vrrp-notes §2).
        self._schedule_garp(now)
        return [SendAdvert(prio), SendGarp()]

    def _on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._adver_at is not None and now >= self._adver_at:
            # RFC 3768 §6.4.3: Adver_Timer fired: advertise and re-arm.
            self._adver_at = now + self._cfg.advert_int
            actions.append(SendAdvert(self.effective_priority, periodic=True))
        if any(at <= now for at in self._garp_at):
            # Only armed while Master; cleared on leaving (keepalived skips the
            # burst unless the VIPs are still set, vrrp-notes §2).
            self._garp_at = [at for at in self._garp_at if at > now]
            actions.append(SendGarp())
        if self._refresh_at is not None and now >= self._refresh_at:
            # Rule 4: keepalived re-arms from now, so a late timer does not bunch them.
            self._refresh_at = now + self._cfg.garp_refresh
            actions.append(SendGarp(refresh=True))
        if self._master_down_at is not None and now >= self._master_down_at:
            # §6.4.2: Master_Down_Timer fired.
            reason: TransitionReason = "preempt" if self._preempting else "master_down_timer"
            return self._become_master(now, reason)
        if self._held_master is not None and now >= self._preempt_after:
            if self._held_master < self.effective_priority:
                return self._become_master(now, "preempt")
            self._held_master = None
        return actions

    def _on_link(self, change: LinkChanged, now: float) -> list[Action]:
        old_mdi = self._down_interval
        self._links[change.interface] = change.up
        return self._reevaluate(now, old_mdi, "link_up")

    def _on_script(self, change: ScriptChanged, now: float) -> list[Action]:
        old_mdi = self._down_interval
        self._scripts[change.script] = change.ok
        return self._reevaluate(now, old_mdi, "track_script")

    def _on_file(self, change: FileChanged, now: float) -> list[Action]:
        old_mdi = self._down_interval
        self._files[change.path] = change.value
        return self._reevaluate(now, old_mdi, "track_file")

    def _on_source(self, address: IPv4Address | IPv6Address | None, now: float) -> list[Action]:
        # Only the fault test and the equal-priority tie-break (§6.4.3) read it.
        self._cfg = replace(self._cfg, primary_ip=address)
        return self._reevaluate(now, self._down_interval, "address_up")

    def _on_failed(self) -> list[Action]:
        # Like FAULT (rule 5): resign if Master, and release the VIPs whatever
        # the state, since the failure may have come half-way through adding them.
        actions: list[Action] = [*self._leave_master()]
        if not any(isinstance(a, RemoveVips) for a in actions):
            actions.append(RemoveVips())
        self._failed = True
        self._clear_timers()
        if self._state is VrrpState.FAULT:
            self._reason = "instance_failed"
            return actions
        return [*actions, *self._transition(VrrpState.FAULT, "instance_failed")]

    def _on_config(self, config: MachineConfig, now: float) -> list[Action]:
        old = self._cfg
        if (config.interface, config.vrid) != (old.interface, old.vrid):
            raise ValueError(f"{old.name}: a new interface or VRID is a new virtual router")
        old_mdi, old_int = self._down_interval, old.advert_int
        self._cfg = replace(config, primary_ip=old.primary_ip)
        if self._state is VrrpState.INIT:
            return []
        self._preempt_after = self._started_at + config.preempt_delay
        if self._adver_at is not None and config.advert_int < old_int:
            # §6.4.3 Adver_Timer: never wait longer than the new interval.
            self._adver_at = min(self._adver_at, now + config.advert_int)
        if self._state is VrrpState.MASTER and config.garp_refresh != old.garp_refresh:
            self._arm_refresh(now)
        return self._reevaluate(now, old_mdi, "config_changed")

    def _reevaluate(self, now: float, old_mdi: float, back: TransitionReason) -> list[Action]:
        """After a fault cause, a priority or an interval changed: FAULT in or out,
        or a running Master_Down_Timer moved."""
        if self._state is VrrpState.INIT:
            return []  # recorded for Startup
        if self._faulty():
            if self._state is VrrpState.FAULT:
                if not self._failed:
                    self._reason = self._fault_reason()  # the cause that remains
                return []
            return self._become_fault(self._fault_reason())
        if self._state is VrrpState.FAULT:
            if self._sync_fault:
                return []  # the sync group holds us in FAULT
            if self._cfg.priority == OWNER_PRIORITY:
                # As at §6.4.1 Startup: the owner takes over at once.
                return self._become_master(now, back)
            # keepalived: FAULT -> BACKUP, preempting after Master_Down_Interval.
            return self._become_backup(now, back)
        if self._state is VrrpState.BACKUP and self._master_down_at is not None:
            # keepalived vrrp_set_effective_priority: a new priority moves the
            # running Master_Down_Timer by the change in Master_Down_Interval.
            # A Master just advertises the new priority from its next advert
            # (§6.4.3: it steps down only on a higher-priority advert). Rule 9's
            # first timer moves only with the advert interval.
            self._master_down_at += self._down_interval - old_mdi
        return []

    def _on_sync(self, target: VrrpState, now: float) -> list[Action]:
        if self._state is VrrpState.INIT:
            return []
        if target is VrrpState.FAULT:
            self._sync_fault = True
            if self._state is VrrpState.FAULT:
                return []
            return self._become_fault("sync_group")
        self._sync_fault = False
        if self._state is target or self._faulty():
            return []  # nothing to do, or our own link keeps us in FAULT
        if target is VrrpState.MASTER:
            # As if Master_Down_Timer had fired (§6.4.2).
            return self._become_master(now, "sync_group")
        # As if a higher-priority advert had arrived (§6.4.3).
        return self._become_backup(now, "sync_group")

    def _become_master(self, now: float, reason: TransitionReason) -> list[Action]:
        # RFC 3768 §6.4.1 / §6.4.2: send an advert, broadcast gratuitous ARP,
        # start Adver_Timer, go to Master. Advert first (keepalived).
        self._clear_timers()  # RFC 5798 §6.4.3: a Master times its own interval
        self._adver_at = now + self._cfg.advert_int
        self._schedule_garp(now)
        self._arm_refresh(now)
        actions: list[Action] = [SendAdvert(self.effective_priority), AddVips(), SendGarp()]
        return [*actions, *self._transition(VrrpState.MASTER, reason)]

    def _become_backup(
        self, now: float, reason: TransitionReason, *, master: AdvertReceived | None = None
    ) -> list[Action]:
        # RFC 3768 §6.4.3: Master -> Backup sets Master_Down_Timer; the VIPs go.
        # RFC 5798 §6.4.3: with the new master's interval (rule 2).
        actions = [RemoveVips()] if self._state is VrrpState.MASTER else []
        self._clear_timers()
        self._master = None  # rule 8: the advert's source, else not known yet
        if master is not None:
            self._master = master.src
            self._learn_interval(master)
        self._master_down_at = now + self.master_down_interval
        return [*actions, *self._transition(VrrpState.BACKUP, reason)]

    def _become_fault(self, reason: TransitionReason) -> list[Action]:
        # keepalived vrrp_state_leave_master: FAULT resigns with priority 0
        # (sent even on a dead link), then removes the VIPs (vrrp-notes §2.4).
        actions = self._leave_master()
        self._clear_timers()
        return [*actions, *self._transition(VrrpState.FAULT, reason)]

    def _leave_master(self) -> list[Action]:
        if self._state is not VrrpState.MASTER:
            return []
        return [SendAdvert(RESIGN_PRIORITY), RemoveVips()]

    def _transition(self, new: VrrpState, reason: TransitionReason) -> list[Action]:
        old, self._state, self._reason = self._state, new, reason
        return [Transitioned(old, new, reason), Notify(new, self.effective_priority)]

    def _clear_timers(self) -> None:
        self._adver_at = self._master_down_at = self._held_master = None
        self._learned_int = None  # Master_Adver_Interval back to ours (rule 2)
        self._fast_start = False
        self._garp_at = []
        self._refresh_at = None
        self._preempting = False

    def _learn_interval(self, adv: AdvertReceived) -> None:
        """RFC 5798 §6.4.2: Master_Adver_Interval = the advert's Max Adver Int (v3)."""
        if self._cfg.version == VRRP_V3 and adv.advert_int is not None:
            self._learned_int = adv.advert_int

    def _schedule_garp(self, now: float) -> None:
        if self._cfg.garp_delay > 0:
            self._garp_at.append(now + self._cfg.garp_delay)

    def _arm_refresh(self, now: float) -> None:
        refresh = self._cfg.garp_refresh
        self._refresh_at = now + refresh if refresh > 0 else None

    def _preempts(self) -> bool:
        # RFC 3768 §6.1: the owner always preempts, whatever Preempt_Mode says.
        return self._cfg.preempt or self._cfg.priority == OWNER_PRIORITY

    def _link_up(self, interface: str) -> bool:
        return self._links.get(interface, True)

    def _faulty(self) -> bool:
        if self._failed or self._cfg.primary_ip is None:
            return True
        if self._primary_down():
            return True
        return self._interface_fault() or self._script_fault() or self._file_fault()

    def _primary_down(self) -> bool:
        return not self._cfg.dont_track_primary and not self._link_up(self._cfg.interface)

    def _interface_fault(self) -> bool:
        tracked = self._cfg.track_interfaces.items()
        return any(weight == 0 and not self._link_up(iface) for iface, weight in tracked)

    def _script_fault(self) -> bool:
        tracked = self._cfg.track_scripts.items()
        return any(weight == 0 and self._scripts.get(s) is not True for s, weight in tracked)

    def _file_status(self, path: str, weight: int) -> int:
        """keepalived: value * weight clamped to -254..253; weight 0: -254 (FAULT) for
        any non-zero value, else 0."""
        value = self._files.get(path, 0)
        if weight == 0:
            return -MAX_TRACK_WEIGHT if value else 0
        return max(-MAX_TRACK_WEIGHT, min(MAX_TRACK_WEIGHT - 1, value * weight))

    def _file_fault(self) -> bool:
        tracked = self._cfg.track_files.items()
        return any(self._file_status(p, w) <= -MAX_TRACK_WEIGHT for p, w in tracked)

    def _fault_reason(self) -> TransitionReason:
        if self._failed:
            return "instance_failed"
        if self._primary_down():
            return "link_down"
        if self._cfg.primary_ip is None:
            return "no_address"
        if self._interface_fault():
            return "track_interface"
        return "track_script" if self._script_fault() else "track_file"
