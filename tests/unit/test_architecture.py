"""Executable style rules: pure cores import no I/O, only ipvsd/netlink talks to pyroute2."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ipvsd"

PURE_MODULES = [
    "ipvs/plan.py",
    "netlink/wire.py",
    "model.py",
    "desired.py",
    "health/policy.py",
    "health/tracker.py",
    "config/__init__.py",
    "config/model.py",
    "config/types.py",
    "config/checks.py",
    "config/yaml_lines.py",
    "config/events.py",
    "config/parts.py",
    "control/protocol.py",
    "control/render.py",
    "vrrp/packet.py",
    "vrrp/machine.py",
    "vrrp/sync_group.py",
    "vrrp/arp.py",
]
IO_MODULES = {"asyncio", "socket", "time", "pyroute2", "structlog", "subprocess", "threading"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module: str) -> None:
    assert not imported_roots(PACKAGE / module) & IO_MODULES


def test_only_the_netlink_package_imports_pyroute2() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "pyroute2" in imported_roots(path) and path.parent.name != "netlink"
    ]
    assert offenders == []
