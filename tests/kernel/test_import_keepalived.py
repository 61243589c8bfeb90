"""Proof of `ipvsd import keepalived`: keepalived and ipvsd program the same IPVS table.

keepalived runs on tests/data/keepalived/kernel_table.conf in one director
namespace, ipvsd on that file's import in another; both reach the same real
servers (10.7.0.11 and .12 in a third namespace: HTTP on 80, echo on 9000)
over one bridge, and health-check them. Once every real is up on both sides,
``ipvsadm -Sn`` (services, schedulers, flags, persistence, reals, forwarding
methods, weights), ``ipvsadm -Ln --thresholds`` and ``ipvsadm -L --timeout``
must print the same lines in both namespaces (each namespace has its own IPVS
table). NAT, DR, TUN, a fwmark with scheduler flags, UDP with one-packet
scheduling, a weight-0 real, thresholds, persistence granularity, a
virtual_server_group, and TCP_CHECK / HTTP_GET / MISC_CHECK are covered.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
import time
from pathlib import Path

from ipvsd.cli import main
from lab.daemon import DaemonProcess
from lab.netns import Topology, ns_exec
from lab.scenario import REAL_SERVER

DATA = Path(__file__).resolve().parents[1] / "data" / "keepalived"
CONF = DATA / "kernel_table.conf"
REALS = ("10.7.0.11", "10.7.0.12")
EXPECTED_REALS = 12  # 6 services (the group's 2 included) x 2 reals


def ipvsadm(ns: str, *args: str) -> list[str]:
    """``ipvsadm ARGS`` in `ns`, its lines sorted (the kernel's order is a hash order)."""
    out = ns_exec(ns, ["ipvsadm", *args]).stdout
    return sorted(line.rstrip() for line in out.splitlines() if line.strip())


def table(ns: str) -> dict[str, list[str]]:
    return {
        "ipvsadm -Sn": ipvsadm(ns, "-Sn"),
        "ipvsadm -Ln --thresholds": ipvsadm(ns, "-Ln", "--thresholds"),
        "ipvsadm -L --timeout": ipvsadm(ns, "-L", "--timeout"),
    }


def reals_in(ns: str) -> int:
    return sum(1 for line in ipvsadm(ns, "-Sn") if line.startswith("-a "))


def wait_for_reals(namespaces: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(reals_in(ns) == EXPECTED_REALS for ns in namespaces.values()):
            return
        time.sleep(0.5)
    found = {who: ipvsadm(ns, "-Sn") for who, ns in namespaces.items()}
    raise AssertionError(f"not every real came up within {timeout} s: {found}")


def keepalived(topo: Topology, ns: str, workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "keepalived.log").open("ab")
    proc = topo.popen(
        ns,
        [
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "-f",
            str(CONF),
            "-p",
            str(workdir / "keepalived.pid"),
            "-c",
            str(workdir / "checkers.pid"),
            "-r",
            str(workdir / "vrrp.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def test_keepalived_and_ipvsd_on_its_import_program_the_same_table(tmp_path: Path) -> None:
    imported = tmp_path / "ipvsd.yaml"
    assert main(["import", "keepalived", str(CONF), "-o", str(imported)]) == 0
    with imported.open("a") as config:  # the daemon's own files go under tmp_path
        config.write(
            f"control: {{socket: {tmp_path / 'ipvsd.sock'}}}\n"
            "metrics: {listen: null}\n"
            f"state_dir: {tmp_path / 'state'}\n"
        )
    with Topology() as topo:
        segment = topo.netns("seg")
        topo.bridge("br0", ns=segment)
        directors = {"keepalived": topo.netns("ka"), "ipvsd": topo.netns("ipd")}
        for index, ns in enumerate(directors.values(), start=1):
            topo.veth(ns, "eth1", bridge="br0", bridge_ns=segment, address=f"10.7.0.{index}/24")
        real = topo.netns("real")
        topo.veth(real, "eth0", bridge="br0", bridge_ns=segment, address=[f"{a}/24" for a in REALS])
        script = tmp_path / "real_server.py"
        script.write_text(REAL_SERVER)
        server = topo.popen(real, [sys.executable, str(script), "real"], stdout=subprocess.PIPE)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"

        keepalived(topo, directors["keepalived"], tmp_path)
        daemon = DaemonProcess(topo, directors["ipvsd"], imported, tmp_path / "ipvsd.log")
        daemon.start()
        try:
            wait_for_reals(directors, timeout=60)
            time.sleep(2)  # a few more check rounds: nothing may flap out
            mine, theirs = table(directors["ipvsd"]), table(directors["keepalived"])
        except AssertionError:
            print((tmp_path / "keepalived.log").read_text(errors="replace")[-4000:])
            raise
        for command, lines in theirs.items():
            diff = "\n".join(difflib.unified_diff(lines, mine[command], "keepalived", "ipvsd"))
            assert mine[command] == lines, f"{command} differs:\n{diff}"
        print("\n".join(theirs["ipvsadm -Sn"]))
        # The import sets cleanup_on_exit (keepalived deletes its services on stop), so a
        # graceful stop deletes this table: fwmark and address services together.
        code = daemon.stop()
        assert code == 0, f"the tables matched, but ipvsd exited {code} on SIGTERM: {tmp_path}"
