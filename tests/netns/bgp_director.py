"""``ipvsd run`` over a fake IPVS table, for BGP tests on a kernel without IPVS.

This host's kernel has no IPVS, and BGP mode does not need it: what is
announced follows the health checks (real TCP checks here), the drains and
the daemon's life. So a director of the BGP tests is the real `Daemon` with
real checks, real control socket, real BIRD child and real signals, whose
IPVS table alone is `tests.fakes.ipvs.FakeIpvs`.

    python -m tests.netns.bgp_director CONFIG      (inside the director's namespace)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ipvsd import log
from ipvsd.config import load_config
from ipvsd.daemon.lock import HostLock
from ipvsd.daemon.root import Daemon
from tests.fakes.kernel import FakePorts


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    log.configure(level="info", json=True)
    config = load_config(path)
    ports = FakePorts(interfaces={"lo", "eth0"}).ports()
    lock = HostLock(Path(config.state_dir) / "run")
    return asyncio.run(Daemon(path, config, ports=ports, host_lock=lock).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
