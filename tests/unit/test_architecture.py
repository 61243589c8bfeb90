"""Executable architecture: which parts of ipvsd may import which, and which stay pure.

Theory of operation
-------------------
The checker reads the import graph of the ``ipvsd`` package from its source
with ``ast``; nothing is imported, so a broken module cannot hide an edge. An
edge is an import that *runs*:

* ``import a.b`` is an edge to ``a.b``. ``from a import b`` is an edge to
  ``a.b`` when ``b`` is a submodule of ``a``, else to ``a``. Relative imports
  are resolved against the importing module's package.
* Imports inside functions count: they run when the function is called.
  Imports under ``if TYPE_CHECKING:`` do not: only the type checker runs them
  (the ``else:`` branch does run, and counts).
* Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so
  the purity closure follows every module to its parent package. The layer
  rules read only the imports written in a module.

Foreign libraries are leaves: the closure does not follow them (PyYAML's own
imports are not I/O of ours).

The rules, each checked on the real package (``test_real_*``, and the
pyroute2 test) and, to prove it can fail, on a fake package planted in
``tmp_path`` (``test_planted_*``):

1. **Purity** (style G1, G3, G12): a module matched by `PURE_CORES` reaches none
   of `FORBIDDEN_IN_CORES`, directly or through any chain of ipvsd imports.
2. **Placement**: every module belongs to a layer of `LAYER_OF`, so a new
   package cannot slip past the table.
3. **Layering**: a module imports only its own layer, the layers `ALLOWED` for
   its layer, and the single modules `EXCEPTIONS` grants.
4. **Wiring**: only the composition root (``root``) touches more than one
   domain. A module touches its own domain, if it is in one, and every domain
   it imports. This holds even if someone widens `ALLOWED`.
5. **pyroute2**: only ``ipvsd/netlink/`` imports it (style G5; ruff's TID251
   ban is the editor-time twin of this check).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "ipvsd"
SOURCE_ROOT = Path(__file__).resolve().parents[2]

# --- The architecture, as data ----------------------------------------------------------

#: The layer of each part of the package: a key names a module or a package (then
#: every module under it). ``"ipvsd"`` itself is only the package ``__init__``.
LAYER_OF: Mapping[str, str] = {
    # Base: value types, errors and small process helpers every layer may use.
    "ipvsd": "base",
    "ipvsd.errors": "base",
    "ipvsd.model": "base",
    "ipvsd.process": "base",
    "ipvsd.log": "base",
    "ipvsd.systemd": "base",
    "ipvsd.desired": "base",
    "ipvsd.gcpause": "base",
    "ipvsd.loopslice": "base",
    "ipvsd.steps": "base",
    "ipvsd.files": "base",
    "ipvsd.interfaces": "base",
    "ipvsd.mh": "base",
    # The configuration: YAML in, validated model out.
    "ipvsd.config": "config",
    # Importers: keepalived.conf / `ipvsadm -Sn` in, config data out (beside config).
    "ipvsd.importers": "importers",
    # The All-Active planner: a question in, a layout and configs out (beside importers).
    "ipvsd.plan": "plan",
    # The adapter: the only layer that speaks netlink (pyroute2 or hand-made).
    "ipvsd.netlink": "netlink",
    # Domains: each is one job of the daemon, unaware of the others.
    "ipvsd.vrrp": "vrrp",
    "ipvsd.health": "health",
    "ipvsd.ipvs": "ipvs",
    "ipvsd.control": "control",
    "ipvsd.metrics": "metrics",
    "ipvsd.bgp": "bgp",
    # The composition root: builds the domains and wires them together.
    "ipvsd.daemon": "root",
    "ipvsd.cli": "root",
    "ipvsd.__main__": "root",
    # Documentation made from the command line's parser: ipvsd(8), bash completion.
    "ipvsd.manpage": "docs",
}

DOMAINS = frozenset({"vrrp", "health", "ipvs", "control", "metrics", "bgp"})

#: Layer -> the other layers its modules may import (its own is always allowed).
#: Read a row as "vrrp sits on base, config and netlink".
ALLOWED: Mapping[str, frozenset[str]] = {
    "base": frozenset(),
    "config": frozenset({"base"}),
    "importers": frozenset({"base", "config"}),
    "plan": frozenset({"base", "config", "importers"}),
    "netlink": frozenset({"base"}),
    "vrrp": frozenset({"base", "config", "netlink"}),
    "health": frozenset({"base", "config", "netlink"}),
    "ipvs": frozenset({"base", "config", "netlink"}),
    "control": frozenset({"base", "config", "netlink"}),
    "metrics": frozenset({"base", "config", "netlink"}),
    "bgp": frozenset({"base", "config"}),
    "root": frozenset({"base", "config", "netlink", "importers", "plan"} | DOMAINS),
    "docs": frozenset({"base", "root"}),
}

#: Importer (a layer or one module) -> single modules it may import beyond `ALLOWED`.
EXCEPTIONS: Mapping[str, frozenset[str]] = {
    # The netlink codec encodes the planner's operations: they are plain value
    # types, and keeping them in ipvs/plan.py keeps the plan next to its types.
    "netlink": frozenset({"ipvsd.ipvs.plan"}),
    # desired.py turns the config model into the kernel table every layer uses.
    "ipvsd.desired": frozenset({"ipvsd.config.model"}),
}

#: Modules that must stay sans-IO (paths from the source root; globs allowed).
#: vrrp/relink.py is not one: its InterfaceEndpoint holds the sockets, so it
#: imports structlog, vrrp.transport (socket, asyncio) and netlink.links.
PURE_CORES = (
    "ipvsd/errors.py",
    "ipvsd/model.py",
    "ipvsd/desired.py",
    "ipvsd/config/**/*.py",
    "ipvsd/netlink/wire.py",
    "ipvsd/netlink/wire_daemon.py",
    "ipvsd/ipvs/plan.py",
    "ipvsd/health/policy.py",
    "ipvsd/health/tracker.py",
    "ipvsd/health/dns.py",
    "ipvsd/health/icmp.py",
    "ipvsd/health/smtp.py",
    "ipvsd/health/quorum.py",
    "ipvsd/health/shared.py",
    "ipvsd/health/suspend.py",
    "ipvsd/vrrp/track_services.py",
    "ipvsd/control/protocol.py",
    "ipvsd/control/status.py",
    "ipvsd/control/status_json.py",
    "ipvsd/control/render.py",
    "ipvsd/vrrp/packet.py",
    "ipvsd/vrrp/packet_v3.py",
    "ipvsd/vrrp/machine.py",
    "ipvsd/vrrp/sync_group.py",
    "ipvsd/vrrp/arp.py",
    "ipvsd/vrrp/ndisc.py",
    "ipvsd/vrrp/backoff.py",
    "ipvsd/bgp/policy.py",
    "ipvsd/bgp/birdconf.py",
    # The importers' parsers and converters; sources.py and command.py read and write files.
    "ipvsd/importers/keepalived*.py",
    "ipvsd/importers/ipvsadm.py",
    "ipvsd/importers/settle.py",
    "ipvsd/importers/emit.py",
    "ipvsd/importers/report.py",
    # The planner; command.py reads the template and writes the configs.
    "ipvsd/plan/layout.py",
    "ipvsd/plan/units.py",
    "ipvsd/plan/render.py",
    "ipvsd/plan/configs.py",
)

#: What a pure core must not reach: I/O, clocks, threads, the event loop, the
#: logger and the metrics client (cores return facts; the edges log and count).
FORBIDDEN_IN_CORES = frozenset(
    {
        "asyncio",
        "socket",
        "select",
        "selectors",
        "ssl",
        "time",
        "threading",
        "subprocess",
        "pyroute2",
        "structlog",
        "prometheus_client",
    }
)

# --- The checker ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportGraph:
    """The run-time imports of every module of one ``ipvsd`` source tree.

    Attributes:
        source_root: the directory holding the ``ipvsd`` package.
        files: every module, by dotted name, and its source file.
        imports: each module's run-time imports as written in it: ipvsd
            modules as resolved dotted names, foreign ones as written
            (``pyroute2.netlink``). ``TYPE_CHECKING`` imports are left out.
    """

    source_root: Path
    # Left out of the repr: pytest prints the fixture in every failure.
    files: Mapping[str, Path] = field(repr=False)
    imports: Mapping[str, frozenset[str]] = field(repr=False)

    def runs(self, module: str) -> frozenset[str]:
        """What importing `module` runs next: its imports, and its parent package."""
        parent = module.rpartition(".")[0]
        return self.imports.get(module, frozenset()) | ({parent} if parent else set())


def is_internal(name: str) -> bool:
    """Whether `name` is a module of the ipvsd package (or the package)."""
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def module_name(source_root: Path, path: Path) -> str:
    """The dotted name of the module in `path` (``ipvsd/vrrp/__init__.py`` -> ``ipvsd.vrrp``)."""
    parts = path.relative_to(source_root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_graph(source_root: Path) -> ImportGraph:
    """Parse every module of ``source_root/ipvsd`` into an `ImportGraph`."""
    files = {
        module_name(source_root, path): path
        for path in sorted((source_root / PACKAGE).rglob("*.py"))
    }
    imports = {
        name: frozenset(_RunTimeImports.of(name, path, files)) for name, path in files.items()
    }
    return ImportGraph(source_root, files, imports)


def _is_type_checking(test: ast.expr) -> bool:
    match test:
        case ast.Name(id="TYPE_CHECKING") | ast.Attribute(attr="TYPE_CHECKING"):
            return True
    return False


class _RunTimeImports(ast.NodeVisitor):
    """Collects the imports of one module that run (see the module docstring)."""

    def __init__(self, module: str, is_package: bool, files: Mapping[str, Path]) -> None:
        self._package = module if is_package else module.rpartition(".")[0]
        self._files = files
        self.found: set[str] = set()

    @classmethod
    def of(cls, module: str, path: Path, files: Mapping[str, Path]) -> set[str]:
        visitor = cls(module, path.name == "__init__.py", files)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        return visitor.found

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self.found.add(submodule if submodule in self._files else base)

    def _absolute(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            assert node.module is not None
            return node.module
        package = self._package
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        if not package:
            raise ValueError(f"relative import beyond the top of the package in {self._package}")
        return f"{package}.{node.module}" if node.module else package


def layer_of(module: str) -> str | None:
    """The layer `module` belongs to (`LAYER_OF`), or None if it is in none."""
    if module == PACKAGE:
        return LAYER_OF.get(PACKAGE)
    name = module
    while name != PACKAGE and name:
        if name in LAYER_OF:
            return LAYER_OF[name]
        name = name.rpartition(".")[0]
    return None


def impurities(graph: ImportGraph, core: str) -> list[str]:
    """Why `core` is not pure: the shortest import chain to each forbidden module.

    Returns:
        One ``"a -> b -> asyncio"`` chain per forbidden top-level module
        reached, sorted; empty if `core` is pure.
    """
    came_from: dict[str, str | None] = {core: None}
    queue = deque([core])
    chains: dict[str, str] = {}
    while queue:
        module = queue.popleft()
        for target in sorted(graph.runs(module)):
            if target in came_from:
                continue
            came_from[target] = module
            root = target.split(".")[0]
            if is_internal(target):
                queue.append(target)
            elif root in FORBIDDEN_IN_CORES and root not in chains:
                chains[root] = " -> ".join(_path_to(came_from, target))
    return sorted(chains.values())


def _path_to(came_from: Mapping[str, str | None], target: str) -> list[str]:
    path: list[str] = []
    step: str | None = target
    while step is not None:
        path.append(step)
        step = came_from[step]
    return path[::-1]


def core_modules(graph: ImportGraph, pattern: str) -> list[str]:
    """The modules a `PURE_CORES` entry names."""
    return sorted(
        module_name(graph.source_root, path)
        for path in graph.source_root.glob(pattern)
        if path.suffix == ".py"
    )


def unplaced(graph: ImportGraph) -> list[str]:
    """Modules that belong to no layer of `LAYER_OF`."""
    return sorted(module for module in graph.files if layer_of(module) is None)


def _internal(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if is_internal(name))


def layering_violations(graph: ImportGraph) -> list[str]:
    """Direct imports `ALLOWED` and `EXCEPTIONS` do not permit, one line each."""
    found = []
    for module, imported in sorted(graph.imports.items()):
        layer = layer_of(module)
        if layer is None:
            continue  # reported by `unplaced`
        allowed = ALLOWED[layer] | {layer}
        extra = EXCEPTIONS.get(layer, frozenset()) | EXCEPTIONS.get(module, frozenset())
        for target in _internal(imported):
            target_layer = layer_of(target)
            if target_layer in allowed or target in extra:
                continue
            found.append(f"{module} ({layer}) imports {target} ({target_layer or 'no layer'})")
    return found


def wiring_violations(graph: ImportGraph) -> list[str]:
    """Modules outside the composition root that touch more than one domain."""
    found = []
    for module, imported in sorted(graph.imports.items()):
        layer = layer_of(module)
        if layer == "root":
            continue
        touched = {layer_of(target) for target in _internal(imported)} | {layer}
        domains = sorted(name for name in touched if name in DOMAINS)
        if len(domains) > 1:
            found.append(f"{module} wires {', '.join(domains)}")
    return found


def pyroute2_importers(graph: ImportGraph) -> list[str]:
    """Modules outside ``ipvsd/netlink/`` that import pyroute2."""
    return sorted(
        module
        for module, imported in graph.imports.items()
        if layer_of(module) != "netlink"
        and any(name.split(".")[0] == "pyroute2" for name in imported)
    )


# --- The rules on the real package ------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> ImportGraph:
    return read_graph(SOURCE_ROOT)


def test_real_table_is_consistent(real: ImportGraph) -> None:
    layers = set(LAYER_OF.values())
    assert set(ALLOWED) == layers
    assert all(allowed <= layers for allowed in ALLOWED.values())
    assert layers >= DOMAINS
    # An exception names a layer or a module that exists, and grants modules
    # that exist: a renamed module must not leave a stale hole in the rules.
    assert all(key in layers or key in real.files for key in EXCEPTIONS)
    assert all(module in real.files for granted in EXCEPTIONS.values() for module in granted)


def one_per_line(found: list[str]) -> str:
    """A failure message that shows every violation (pytest's diff truncates lists)."""
    return "\n" + "\n".join(found)


@pytest.mark.parametrize("pattern", PURE_CORES)
def test_real_pure_cores_reach_no_io(real: ImportGraph, pattern: str) -> None:
    modules = core_modules(real, pattern)
    assert modules, f"{pattern} names no module: update PURE_CORES"
    found = [chain for module in modules for chain in impurities(real, module)]
    assert not found, one_per_line(found)


def test_real_every_module_has_a_layer(real: ImportGraph) -> None:
    found = unplaced(real)
    assert not found, one_per_line(found)


def test_real_layers_import_only_what_the_table_allows(real: ImportGraph) -> None:
    found = layering_violations(real)
    assert not found, one_per_line(found)


def test_real_only_the_composition_root_wires_domains(real: ImportGraph) -> None:
    found = wiring_violations(real)
    assert not found, one_per_line(found)


def test_only_the_netlink_package_imports_pyroute2(real: ImportGraph) -> None:
    found = pyroute2_importers(real)
    assert not found, one_per_line(found)


# --- Each rule can fail: fake packages planted in tmp_path ------------------------------

#: A small package shaped like ipvsd that passes every rule, including the
#: `EXCEPTIONS` (netlink.wire -> ipvs.plan, desired -> config.model) and a root
#: wiring every domain. Each planted test adds the one violation it is about.
SKELETON: Mapping[str, str] = {
    "ipvsd/__init__.py": '__version__ = "0"\n',
    "ipvsd/errors.py": "import errno\n",
    "ipvsd/model.py": "from ipvsd.errors import KernelError\n",
    "ipvsd/desired.py": "from ipvsd.config.model import Config\n",
    "ipvsd/log.py": "import structlog\n",
    "ipvsd/config/__init__.py": "from ipvsd.desired import desired_table\n",
    "ipvsd/config/model.py": "import yaml\nfrom ipvsd.model import ServiceKey\n",
    "ipvsd/netlink/wire.py": "from ipvsd.ipvs.plan import AddService\n",
    "ipvsd/netlink/ipvs.py": "import asyncio\nimport pyroute2\nfrom . import wire\n",
    "ipvsd/ipvs/plan.py": "from ipvsd.model import Table\n",
    "ipvsd/ipvs/reconciler.py": (
        "import asyncio\nfrom ipvsd.netlink.ipvs import IpvsClient\nfrom .plan import plan\n"
    ),
    "ipvsd/vrrp/machine.py": "import enum\n",
    "ipvsd/vrrp/router.py": (
        "import asyncio\nfrom ipvsd.config.model import Config\nfrom .machine import VrrpMachine\n"
    ),
    "ipvsd/health/tracker.py": "import bisect\n",
    "ipvsd/health/policy.py": "from ipvsd.config import model\nfrom . import tracker\n",
    "ipvsd/control/protocol.py": "import json\n",
    "ipvsd/metrics/labels.py": "from ipvsd.model import ServiceKey\n",
    "ipvsd/daemon/root.py": (
        "from ipvsd.vrrp.router import VrrpRouter\n"
        "from ipvsd.health.policy import has_check\n"
        "from ipvsd.ipvs.reconciler import Reconciler\n"
        "from ipvsd.metrics.labels import backend_labels\n"
        "from ipvsd.control.protocol import evaluate_request\n"
    ),
    "ipvsd/cli.py": "from ipvsd import daemon\nfrom ipvsd.control import protocol\n",
    "ipvsd/__main__.py": "from ipvsd.cli import main\n",
}


def plant(tmp_path: Path, additions: Mapping[str, str]) -> ImportGraph:
    """Write `SKELETON` plus `additions` (appended per file) under `tmp_path`; read it back."""
    sources = dict(SKELETON)
    for path, source in additions.items():
        sources[path] = sources.get(path, "") + source
    for path, source in sources.items():
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(source, encoding="utf-8")
        # Every directory on the way is a regular package, as in ipvsd.
        for directory in file.relative_to(tmp_path).parents:
            init = tmp_path / directory / "__init__.py"
            if directory != Path() and not init.exists():
                init.write_text("", encoding="utf-8")
    return read_graph(tmp_path)


def test_planted_skeleton_passes_every_rule(tmp_path: Path) -> None:
    graph = plant(tmp_path, {})
    cores = [module for pattern in PURE_CORES for module in core_modules(graph, pattern)]
    assert "ipvsd.netlink.wire" in cores
    assert [chain for core in cores for chain in impurities(graph, core)] == []
    assert unplaced(graph) == []
    assert layering_violations(graph) == []
    assert wiring_violations(graph) == []
    assert pyroute2_importers(graph) == []


def test_planted_imports_are_resolved(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "ipvsd/health/__init__.py": "LIMIT = 3\n",
            "ipvsd/health/policy.py": (
                "from ipvsd.health import LIMIT\nfrom ..vrrp import machine\nimport ipvsd.log\n"
            ),
        },
    )
    assert graph.imports["ipvsd.health.policy"] == {
        "ipvsd.config.model",  # from ipvsd.config import model: a submodule
        "ipvsd.health.tracker",  # from . import tracker
        "ipvsd.health",  # from ipvsd.health import LIMIT: a name, so the package
        "ipvsd.vrrp.machine",  # from ..vrrp import machine
        "ipvsd.log",
    }


@pytest.mark.parametrize(
    ("additions", "core", "chains"),
    [
        pytest.param(
            {"ipvsd/vrrp/machine.py": "import socket\n"},
            "ipvsd.vrrp.machine",
            ["ipvsd.vrrp.machine -> socket"],
            id="direct",
        ),
        pytest.param(
            {
                "ipvsd/vrrp/machine.py": "from . import timers\n",
                "ipvsd/vrrp/timers.py": "from time import monotonic\nfrom ..log import get\n",
            },
            "ipvsd.vrrp.machine",
            [
                "ipvsd.vrrp.machine -> ipvsd.vrrp.timers -> ipvsd.log -> structlog",
                "ipvsd.vrrp.machine -> ipvsd.vrrp.timers -> time",
            ],
            id="indirect-through-a-second-module",
        ),
        pytest.param(
            {"ipvsd/vrrp/__init__.py": "from ipvsd.vrrp.router import VrrpRouter\n"},
            "ipvsd.vrrp.machine",
            ["ipvsd.vrrp.machine -> ipvsd.vrrp -> ipvsd.vrrp.router -> asyncio"],
            id="through-the-package-init",
        ),
        pytest.param(
            {"ipvsd/netlink/wire.py": "from . import ipvs\n"},
            "ipvsd.netlink.wire",
            [
                "ipvsd.netlink.wire -> ipvsd.netlink.ipvs -> asyncio",
                "ipvsd.netlink.wire -> ipvsd.netlink.ipvs -> pyroute2",
            ],
            id="pyroute2-and-asyncio-through-a-sibling",
        ),
        pytest.param(
            {
                "ipvsd/config/checks.py": "import ipvsd.metrics.labels\n",
                "ipvsd/metrics/__init__.py": "from .daemon import DaemonMetrics\n",
                "ipvsd/metrics/daemon.py": "from prometheus_client import Gauge\n",
            },
            "ipvsd.config.checks",
            [
                "ipvsd.config.checks -> ipvsd.metrics.labels -> ipvsd.metrics"
                " -> ipvsd.metrics.daemon -> prometheus_client"
            ],
            id="every-module-of-config-is-a-core",
        ),
        pytest.param(
            {"ipvsd/vrrp/machine.py": "def later():\n    import select\n"},
            "ipvsd.vrrp.machine",
            ["ipvsd.vrrp.machine -> select"],
            id="an-import-inside-a-function-runs-when-called",
        ),
        pytest.param(
            {
                "ipvsd/vrrp/machine.py": (
                    "import typing\n"
                    "from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n"
                    "    import asyncio\n"
                    "    from ipvsd.vrrp.router import VrrpRouter\n"
                    "if typing.TYPE_CHECKING:\n"
                    "    import socket\n"
                    "else:\n"
                    "    import threading\n"
                )
            },
            "ipvsd.vrrp.machine",
            ["ipvsd.vrrp.machine -> threading"],
            id="type-checking-imports-do-not-count-their-else-does",
        ),
    ],
)
def test_planted_impurity_is_reported(
    tmp_path: Path, additions: Mapping[str, str], core: str, chains: list[str]
) -> None:
    graph = plant(tmp_path, additions)
    assert any(core in core_modules(graph, pattern) for pattern in PURE_CORES)
    assert impurities(graph, core) == chains


@pytest.mark.parametrize(
    ("path", "line", "expected"),
    [
        pytest.param(
            "ipvsd/config/model.py",
            "from ipvsd.netlink import ipvs\n",
            "ipvsd.config.model (config) imports ipvsd.netlink.ipvs (netlink)",
            id="config-imports-the-adapter",
        ),
        pytest.param(
            "ipvsd/config/model.py",
            "from ipvsd.vrrp.machine import VrrpState\n",
            "ipvsd.config.model (config) imports ipvsd.vrrp.machine (vrrp)",
            id="config-imports-a-domain",
        ),
        pytest.param(
            "ipvsd/vrrp/router.py",
            "from ipvsd.health.tracker import Health\n",
            "ipvsd.vrrp.router (vrrp) imports ipvsd.health.tracker (health)",
            id="vrrp-imports-health",
        ),
        pytest.param(
            "ipvsd/health/policy.py",
            "from ..vrrp import machine\n",
            "ipvsd.health.policy (health) imports ipvsd.vrrp.machine (vrrp)",
            id="health-imports-vrrp-relatively",
        ),
        pytest.param(
            "ipvsd/ipvs/reconciler.py",
            "import ipvsd.vrrp.machine\n",
            "ipvsd.ipvs.reconciler (ipvs) imports ipvsd.vrrp.machine (vrrp)",
            id="a-domain-imports-another",
        ),
        pytest.param(
            "ipvsd/netlink/ipvs.py",
            "from ipvsd.ipvs.reconciler import Reconciler\n",
            "ipvsd.netlink.ipvs (netlink) imports ipvsd.ipvs.reconciler (ipvs)",
            id="the-adapter-imports-ipvs-beyond-plan",
        ),
        pytest.param(
            "ipvsd/model.py",
            "from ipvsd.config.model import Config\n",
            "ipvsd.model (base) imports ipvsd.config.model (config)",
            id="the-desired-exception-is-for-desired-only",
        ),
        pytest.param(
            "ipvsd/metrics/labels.py",
            "from ipvsd import daemon\n",
            "ipvsd.metrics.labels (metrics) imports ipvsd.daemon (root)",
            id="a-domain-imports-the-root",
        ),
        pytest.param(
            "ipvsd/control/protocol.py",
            "from ipvsd.gadget import thing\n",
            "ipvsd.control.protocol (control) imports ipvsd.gadget (no layer)",
            id="an-import-of-no-layer",
        ),
    ],
)
def test_planted_layering_violation_is_reported(
    tmp_path: Path, path: str, line: str, expected: str
) -> None:
    assert layering_violations(plant(tmp_path, {path: line})) == [expected]


@pytest.mark.parametrize(
    ("path", "line", "expected"),
    [
        pytest.param(
            "ipvsd/ipvs/reconciler.py",
            "from ipvsd.health.policy import has_check\n",
            "ipvsd.ipvs.reconciler wires health, ipvs",
            id="a-domain-module",
        ),
        pytest.param(
            "ipvsd/netlink/wire.py",
            "from ipvsd.vrrp.machine import VrrpState\n",
            "ipvsd.netlink.wire wires ipvs, vrrp",
            id="the-adapter",
        ),
        pytest.param(
            "ipvsd/desired.py",
            "import ipvsd.metrics.labels\nimport ipvsd.control.protocol\n",
            "ipvsd.desired wires control, metrics",
            id="a-base-module",
        ),
    ],
)
def test_planted_wiring_outside_the_root_is_reported(
    tmp_path: Path, path: str, line: str, expected: str
) -> None:
    assert wiring_violations(plant(tmp_path, {path: line})) == [expected]


def test_planted_module_without_a_layer_is_reported(tmp_path: Path) -> None:
    graph = plant(tmp_path, {"ipvsd/gadget.py": "", "ipvsd/extra/thing.py": ""})
    assert unplaced(graph) == ["ipvsd.extra", "ipvsd.extra.thing", "ipvsd.gadget"]


def test_planted_pyroute2_outside_netlink_is_reported(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "ipvsd/vrrp/router.py": "from pyroute2 import IPRoute\n",
            "ipvsd/ipvs/reconciler.py": "def later():\n    import pyroute2.netlink\n",
        },
    )
    assert pyroute2_importers(graph) == ["ipvsd.ipvs.reconciler", "ipvsd.vrrp.router"]
