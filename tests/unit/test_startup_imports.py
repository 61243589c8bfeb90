"""What ``ipvsd run`` imports before it removes stale VIPs (subprocess + ``sys.modules``).

`ipvsd.daemon.early` runs before anything heavy is imported: the split-brain
window after a crash lasts until it has run (issue 14: stale VIPs gone 100 ms
after exec). A fresh interpreter imports the CLI and the early step, as
``ipvsd run`` does before calling `ipvsd.daemon.early.begin`, and none of the
modules below may be loaded by then. The VRRP path's own list is checked on a
running daemon (tests/netns/test_startup_imports.py); here, that the kernel
adapters VRRP opens at its start (addresses, links, and the route and vmac
writers) open and answer without pyroute2 (~100 ms on the host).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.test_architecture import SOURCE_ROOT

#: Each costs 15-120 ms on the host (seconds in UML) and none is needed to
#: read ``vrrp`` from the config and delete addresses.
HEAVY_BEFORE_STALE_VIPS = frozenset(
    {
        "asyncio",
        "structlog",
        "pyroute2",
        "prometheus_client",
        "h11",
        "http.server",
        "ssl",
        "ipvsd.config",
        "ipvsd.model",
        "ipvsd.daemon.root",
        "ipvsd.vrrp.machine",
        "ipvsd.netlink.addresses",
        "ipvsd.netlink.wire",
    }
)


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=SOURCE_ROOT,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_cli_and_the_early_step_import_nothing_heavy() -> None:
    loaded = _modules_after(
        "from ipvsd import cli\n"
        "cli.build_parser().parse_args(['run', '--config', '/nonexistent.yaml'])\n"
        "from ipvsd.daemon import early\n"
    )
    assert "ipvsd.daemon.early" in loaded
    assert "yaml" in loaded  # the minimal read
    assert loaded & HEAVY_BEFORE_STALE_VIPS == set()


def test_the_check_fails_when_a_heavy_module_comes_in() -> None:
    loaded = _modules_after("from ipvsd.daemon import early\nimport ipvsd.daemon.root\n")
    assert {"asyncio", "ipvsd.config", "ipvsd.daemon.root"} <= loaded & HEAVY_BEFORE_STALE_VIPS


def test_nothing_loads_pydantic() -> None:
    """The config layer is ipvsd's own (`ipvsd.config.strict`): pydantic's import and
    model building touched ~2,500 pages at each start (issue 14)."""
    loaded = _modules_after(
        "import ipvsd.daemon.root, ipvsd.config.schema, ipvsd.importers.command\n"
        "from ipvsd.config import parse_config\n"
        "parse_config('node_name: a\\nipvs: {services: [{address: 10.0.0.1, port: 80}]}\\n')\n"
    )
    assert "ipvsd.config.model" in loaded
    assert {name.split(".")[0] for name in loaded} & {"pydantic", "pydantic_core"} == set()


def test_the_vrrp_adapters_open_and_answer_without_pyroute2() -> None:
    # Read-only requests in this namespace: the loopback's state and addresses.
    loaded = _modules_after(
        "import asyncio\n"
        "from ipvsd.daemon.ports import real_ports\n"
        "async def main():\n"
        "    ports = real_ports()\n"
        "    addresses, links = await ports.open_addresses(), await ports.open_links()\n"
        "    routes, vmacs = await ports.open_routes(), await ports.open_vmacs()\n"
        "    assert (await links.link('lo')).index == 1\n"
        "    await addresses.primary_ipv4('lo')\n"
        "    for each in (addresses, links, routes, vmacs):\n"
        "        each.close()\n"
        "asyncio.run(main())\n"
    )
    assert "pyroute2" not in loaded
    assert "ipvsd.netlink.rtsock" in loaded  # the harness sees the adapters' path


def test_building_the_parser_leaves_the_planner_unloaded() -> None:
    loaded = _modules_after("from ipvsd import cli\ncli.build_parser()\n")
    assert "ipvsd.plan.command" in loaded
    assert not {"ipvsd.plan.layout", "ipvsd.plan.units", "decimal"} & loaded


#: Not imported before the first reconcile pass has written the IPVS table
#: (issue 16: exec -> full table at 1,000 x 4): prometheus-client, which
#: imports http.server, urllib.request and email with its package (~0.2 s in
#: UML), comes after it (`ipvsd.daemon.root.Daemon._bind_metrics`; the events
#: before it are kept by `ipvsd.metrics.early.EarlyMetrics`); the status
#: document's modules come with the first status request (`ipvsd.daemon.view`).
NOT_BEFORE_THE_TABLE = frozenset(
    {
        "prometheus_client",
        "http.server",
        "urllib.request",
        "ipvsd.metrics.daemon",
        "ipvsd.control.status",
        "ipvsd.control.status_json",
        "ipvsd.daemon.status",
    }
)

_TABLE_WATCH = """
import asyncio
from pathlib import Path
from ipvsd.config import load_config
from ipvsd.daemon import Daemon
from tests.fakes.kernel import FakePorts

tmp = Path({tmp!r})
config = tmp / "ipvsd.yaml"
config.write_text(
    f"node_name: d1\\nstate_dir: {{tmp}}/state\\ncontrol: {{{{socket: {{tmp}}/ipvsd.sock}}}}\\n"
    "metrics: {{listen: null}}\\nipvs:\\n  services:\\n"
    "    - {{address: 192.168.1.200, port: 80, reals: [{{address: 192.168.1.30, port: 80}}]}}\\n"
)
kernel = FakePorts()
at_table = []
apply = kernel.ipvs.apply

async def watched(operations):
    result = await apply(operations)
    if not at_table and kernel.ipvs.table.services:
        at_table.append(sorted(sys.modules))
    return result

kernel.ipvs.apply = watched

async def main():
    daemon = Daemon(
        config, load_config(config), ports=kernel.ports(), handle_signals=False, runtime_dir=tmp
    )
    task = asyncio.create_task(daemon.run())
    await daemon.started.wait()
    await daemon.view.status_text()
    daemon.request_stop()
    assert await task == 0

asyncio.run(main())
print(json.dumps(at_table[0]))
print(json.dumps(sorted(sys.modules)))
"""


def test_the_daemon_writes_its_table_before_it_loads_prometheus_client(tmp_path: Path) -> None:
    script = "import json, sys\n" + _TABLE_WATCH.format(tmp=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=SOURCE_ROOT
    )
    lines = done.stdout.splitlines()
    at_table = set(json.loads(lines[-2]))
    in_the_end = set(json.loads(lines[-1]))
    assert "ipvsd.ipvs.reconciler" in at_table  # the harness sees the path
    assert at_table & NOT_BEFORE_THE_TABLE == set()
    assert in_the_end >= NOT_BEFORE_THE_TABLE  # and sees them come afterwards (a status asked)
