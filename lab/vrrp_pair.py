"""Two VRRP routers and an observer on one bridge, for tests, the benchmark and the demo.

Addresses follow design.md: routers 192.168.1.10 and .20 on ``eth1``, the VIP
192.168.1.200, the observer .50. A router runs ipvsd (`DaemonProcess`) or
keepalived (`KeepalivedProcess`) with the same instance settings.

``build(..., ipv6=True)`` gives every host a global IPv6 address too
(2001:db8::10, ::20, observer ::50, no DAD, link-local addresses usable at
once) and makes `VrrpLab.vip` the IPv6 VIP 2001:db8::200, for VRRPv3 over
IPv6 (issue 14): pass ``vips=(f"{VIP6}/64",)`` and ``version=3`` to the
routers' configs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.daemon import DaemonProcess
from lab.netns import Topology, ip
from lab.scenario import wait_until

VIP = "192.168.1.200"
ROUTERS = {"d1": "192.168.1.10", "d2": "192.168.1.20"}
OBSERVER = "192.168.1.50"
VIP6 = "2001:db8::200"
ROUTERS6 = {"d1": "2001:db8::10", "d2": "2001:db8::20"}
OBSERVER6 = "2001:db8::50"


def ipvsd_config(
    name: str,
    priority: int,
    workdir: Path,
    *,
    preempt: bool = True,
    unicast_peers: tuple[str, ...] = (),
    unicast_src: str | None = None,
    vips: tuple[str, ...] = (f"{VIP}/24",),
    track_script: tuple[str, ...] = (),
    script_weight: int = 0,
    initial_state: str = "backup",
    version: int = 2,
    advert_int: float = 1,
    metrics: str | None = None,
    accept_mode: bool = True,
) -> str:
    """`track_script`: VI_1 tracks that command (``vrrp.scripts`` entry ``chk``, run
    every 0.2 s) with `script_weight`. `initial_state`, `version`, `advert_int`: VI_1's.
    `metrics`: the /metrics listen address (inside the router's namespace); None: off."""
    peers = ", ".join(unicast_peers)
    scripts = tracked = "[]"
    if track_script:
        argv = ", ".join(f'"{arg}"' for arg in track_script)
        scripts = f"[{{name: chk, command: [{argv}], interval: 0.2}}]"
        tracked = f"[{{script: chk, weight: {script_weight}}}]"
    return textwrap.dedent(
        f"""\
        node_name: {name}
        metrics: {{listen: {f'"{metrics}"' if metrics else "null"}}}
        control: {{socket: {workdir / (name + ".sock")}}}
        state_dir: {workdir / (name + ".state")}
        vrrp:
          scripts: {scripts}
          instances:
            - name: VI_1
              interface: eth1
              vrid: 51
              priority: {priority}
              version: {version}
              advert_int: {advert_int}
              preempt: {str(preempt).lower()}
              initial_state: {initial_state}
              accept_mode: {str(accept_mode).lower()}
              unicast_peers: [{peers}]
              unicast_src: {unicast_src or "null"}
              virtual_ipaddresses: [{", ".join(vips)}]
              track_scripts: {tracked}
        ipvs: {{services: []}}
        """
    )


def keepalived_config(
    name: str,
    priority: int,
    *,
    unicast_src: str | None = None,
    vips: tuple[str, ...] = (f"{VIP}/24",),
    version: int = 2,
    advert_int: float = 1,
    unicast_peers: tuple[str, ...] = (),
    preempt: bool = True,
) -> str:
    addresses = "\n".join(f"    {vip}" for vip in vips)
    # keepalived >= 2.2.4 takes even an empty unicast_peer block as unicast mode.
    peers = "".join(f"    {peer}\n" for peer in unicast_peers)
    unicast = f"unicast_peer {{\n{peers}  }}" if unicast_peers else ""
    if unicast_src is not None:
        unicast = f"unicast_src_ip {unicast_src}\n  {unicast}"
    return textwrap.dedent(
        f"""\
        global_defs {{
          router_id {name}
          vrrp_version {version}
        }}
        vrrp_instance VI_1 {{
          state BACKUP
          interface eth1
          virtual_router_id 51
          priority {priority}
          advert_int {advert_int}
          {"" if preempt else "nopreempt"}
          virtual_ipaddress {{
        {addresses}
          }}
          {unicast}
        }}
        """
    )


class KeepalivedProcess:
    """keepalived (VRRP only) in a namespace, logging to a file."""

    def __init__(self, topo: Topology, ns: str, config: Path, log: Path) -> None:
        self.topo, self.ns, self.config, self.log = topo, ns, config, log
        self.proc: subprocess.Popen[Any] | None = None
        self._killed_child = ""

    def start(self) -> None:
        run = self.config.parent
        if child := self._killed_child:
            wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout=5, interval=0.01)
            self._killed_child = ""
        for pid_file in (run / f"{self.ns}.pid", run / f"{self.ns}.vrrp.pid"):
            # A killed keepalived leaves them, and its VRRP child may linger as a
            # zombie: keepalived would say "daemon is already running" and exit.
            pid_file.unlink(missing_ok=True)
        out = self.log.open("ab")
        self.proc = self.topo.popen(
            self.ns,
            [
                "keepalived",
                "--vrrp",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "-f",
                str(self.config),
                "-p",
                str(run / f"{self.ns}.pid"),
                "-r",
                str(run / f"{self.ns}.vrrp.pid"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def stop(self, sig: int = signal.SIGTERM, *, wait: bool = True) -> None:
        """Signal keepalived's whole process group (parent and VRRP child)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        if wait:
            self.proc.wait(15)

    def wait(self) -> None:
        assert self.proc is not None
        self.proc.wait(15)

    def kill(self) -> None:
        """A crash of the whole process group (SIGKILL to the parent alone lets
        the VRRP child shut down gracefully, vrrp-notes §2.4).

        Only the parent is ours to reap: the VRRP child goes later, so the next
        `start` waits for it (a keepalived started meanwhile would find it running
        and exit), and this returns at once, as a crash does.
        """
        pid_file = self.config.parent / f"{self.ns}.vrrp.pid"
        self._killed_child = pid_file.read_text().split()[0] if pid_file.exists() else ""
        self.stop(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM without waiting: keepalived sends priority 0 and exits."""
        self.stop(signal.SIGTERM, wait=False)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def holds_vip(topo: Topology, ns: str, vip: str = VIP) -> bool:
    """Whether `ns` has `vip` (IPv4 or IPv6) on eth1 (``ip -n``: no mount namespace,
    cheap to poll)."""
    family = "-6" if ":" in vip else "-4"
    out = ip("-o", family, "addr", "show", "dev", "eth1", ns=ns, check=False).stdout
    return f" {vip}/" in out


@dataclass
class OwnershipMonitor:
    """Samples which routers hold the VIP every `interval` s; records dual ownership.

    `probe(topo, ns)` says whether `ns` holds the VIP (default `holds_vip`, one ``ip``
    process per router and sample; pass a netlink probe to sample every 10 ms)."""

    topo: Topology
    routers: list[str]
    interval: float = 0.02
    probe: Callable[[Topology, str], bool] = holds_vip
    samples: list[tuple[float, tuple[bool, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> OwnershipMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            state = tuple(self.probe(self.topo, ns) for ns in self.routers)
            self.samples.append((time.monotonic(), state))
            time.sleep(self.interval)

    def longest_dual_ownership(self) -> float:
        longest, since = 0.0, None
        for at, state in self.samples:
            if all(state):
                since = at if since is None else since
                longest = max(longest, at - since)
            else:
                since = None
        return longest


@dataclass
class VrrpLab:
    topo: Topology
    workdir: Path
    routers: dict[str, str]  # short name -> namespace
    observer: str
    vip: str = VIP

    def daemon(self, short: str, priority: int, **kwargs: Any) -> DaemonProcess:
        config = self.workdir / f"{short}.yaml"
        config.write_text(ipvsd_config(short, priority, self.workdir, **kwargs))
        return DaemonProcess(self.topo, self.routers[short], config, self.workdir / f"{short}.log")

    def keepalived(self, short: str, priority: int, **kwargs: Any) -> KeepalivedProcess:
        config = self.workdir / f"{short}.keepalived.conf"
        config.write_text(keepalived_config(short, priority, **kwargs))
        return KeepalivedProcess(
            self.topo, self.routers[short], config, self.workdir / f"{short}.keepalived.log"
        )

    def holder(self) -> list[str]:
        return [short for short, ns in self.routers.items() if holds_vip(self.topo, ns, self.vip)]

    def mac(self, short: str) -> str:
        out = self.topo.exec(self.routers[short], ["cat", "/sys/class/net/eth1/address"])
        return out.stdout.strip()

    def observer_neighbour(self) -> str:
        out = self.topo.exec(
            self.observer, ["ip", "neigh", "show", self.vip, "dev", "eth0"], check=False
        )
        parts = out.stdout.split()
        return parts[parts.index("lladdr") + 1] if "lladdr" in parts else ""


def build(topo: Topology, workdir: Path, *, ipv6: bool = False) -> VrrpLab:
    """The two routers and the observer; `ipv6`: IPv6 addresses too, and the IPv6 VIP."""
    segment = topo.netns("seg")
    topo.bridge("br0", ns=segment)

    def host(short: str, dev: str, v4: str, v6: str) -> str:
        ns = topo.netns(short)
        addresses = [f"{v4}/24"]
        if ipv6:  # usable at once: no DAD on the new link (nor on the VIPs, nodad)
            topo.sysctl(ns, "net/ipv6/conf/default/accept_dad", 0)
            addresses.append(f"{v6}/64")
        topo.veth(ns, dev, bridge="br0", bridge_ns=segment, address=addresses)
        return ns

    routers = {short: host(short, "eth1", v4, ROUTERS6[short]) for short, v4 in ROUTERS.items()}
    observer = host("obs", "eth0", OBSERVER, OBSERVER6)
    return VrrpLab(topo, workdir, routers, observer, VIP6 if ipv6 else VIP)
