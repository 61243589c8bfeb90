"""Benchmark: VRRP failover times, ipvsd and keepalived side by side, on the host kernel.

For each implementation (an ipvsd pair, a keepalived pair) and each failure
of the master (priority 100) — SIGKILL, link down, graceful stop — an
observer on the segment timestamps every advert, and the backup (priority 90)
is polled for the VIP. Measured:

- advert gap: the master's last advert (or its priority-0 advert on a
  graceful stop) to the backup's first advert as master;
- VIP: the failure to the VIP appearing on the backup (20 ms polling).

RFC 3768 bounds for priority 90, advert_int 1: Master_Down_Interval =
3.648 s after the last advert; Skew_Time = 0.648 s after a priority-0 advert.

    python -m bench.vrrp_failover [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from bench.report import Row, print_table
from lab.listener import Listener
from lab.netns import Topology, in_netns
from lab.scenario import wait_until
from lab.vrrp_pair import ROUTERS, VrrpLab, build, holds_vip

MDI_90 = 3 + (256 - 90) / 256
SKEW_90 = (256 - 90) / 256


@dataclass(frozen=True)
class Seen:
    at: float
    src: str
    priority: int


class AdvertLog(Listener):
    """Timestamps every VRRP advert the observer hears."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
            index = socket.if_nametoindex("eth0")
            mreq = struct.pack("=4s4si", IPv4Address("224.0.0.18").packed, bytes(4), index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.seen: list[Seen] = []
        super().__init__(sock, 256)

    def received(self, data: bytes, source: object, at: float) -> None:
        assert isinstance(source, tuple)
        ihl = (data[0] & 0xF) * 4
        self.seen.append(Seen(at, source[0], data[ihl + 2]))


def one_round(implementation: str, failure: str, workdir: Path) -> tuple[float, float]:
    with Topology() as topo:
        lab = build(topo, workdir)
        adverts = AdvertLog(lab.observer)
        try:
            master, backup = _start(lab, implementation)
            wait_until(lambda: lab.holder() == ["d1"], timeout=10, interval=0.05)
            time.sleep(2.2)
            failed_at = time.monotonic()
            _fail(lab, master, failure)
            vip_s = wait_until(lambda: holds_vip(topo, lab.routers["d2"]), 10, 0.02)
            time.sleep(0.2)
        finally:
            adverts.close()
        del backup
        d1, d2 = ROUTERS["d1"], ROUTERS["d2"]
        first_new = next(s for s in adverts.seen if s.src == d2 and s.at > failed_at - 0.001)
        if failure == "graceful stop":
            last_old = next(s for s in adverts.seen if s.src == d1 and s.priority == 0)
        else:
            last_old = [s for s in adverts.seen if s.src == d1 and s.at <= failed_at][-1]
        return first_new.at - last_old.at, vip_s


class Router(Protocol):
    def start(self) -> None: ...
    def kill(self) -> None: ...
    def terminate(self) -> None: ...


def _start(lab: VrrpLab, implementation: str) -> tuple[Router, Router]:
    routers: tuple[Router, Router]
    if implementation == "ipvsd":
        routers = lab.daemon("d1", 100), lab.daemon("d2", 90)
    else:
        routers = lab.keepalived("d1", 100), lab.keepalived("d2", 90)
    for router in routers:
        router.start()
    return routers


def _fail(lab: VrrpLab, master: Router, failure: str) -> None:
    if failure == "SIGKILL":
        master.kill()
    elif failure == "link down":
        lab.topo.exec(lab.routers["d1"], ["ip", "link", "set", "eth1", "down"])
    else:
        master.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ipvsd-failover-") as tmp:
        for failure, bound in (
            ("SIGKILL", MDI_90),
            ("link down", MDI_90),
            ("graceful stop", SKEW_90),
        ):
            medians = {}
            for implementation in ("keepalived", "ipvsd"):
                gaps, vips = [], []
                for index in range(args.rounds):
                    workdir = Path(tmp) / f"{implementation}-{failure}-{index}".replace(" ", "_")
                    workdir.mkdir()
                    gap, vip = one_round(implementation, failure, workdir)
                    gaps.append(gap)
                    vips.append(vip)
                medians[implementation] = statistics.median(gaps)
                rows.append(
                    Row(
                        failure,
                        implementation,
                        medians[implementation],
                        f"advert gap (median of {args.rounds}; RFC bound {bound:.3f} s, "
                        f"{(medians[implementation] - bound) * 1000:+.0f} ms); VIP moved after "
                        f"{statistics.median(vips):.3f} s",
                        None
                        if implementation == "keepalived"
                        else medians["keepalived"] / medians[implementation],
                    )
                )
    print_table(
        "VRRP failover, priority 100 -> 90, advert_int 1 "
        "(ratio = keepalived / ipvsd; 1.00x = same)",
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
