"""Kernel tier: tests that need IPVS in the running kernel.

Run through ``python -m lab.uml -- .venv/bin/python -m pytest tests/kernel`` (``make
test`` does): that boots User-Mode Linux when this kernel has no IPVS. Without IPVS
every test here *fails* (errors at setup); none is skipped or passes silently.
``test_no_accept.py`` also runs under ``python -m lab.qemu`` (a Debian kernel with
IPVS and nf_tables inet; ``make test`` does that too), where it must see both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.netns import Topology

HERE = Path(__file__).parent
IPVS_PROC = Path("/proc/net/ip_vs")
NO_IPVS = (
    "kernel tier needs IPVS: run it through `python -m lab.uml -- ...` (make test does); "
    f"{IPVS_PROC} is missing on kernel {os.uname().release}"
)
_ANNOUNCED = pytest.StashKey[bool]()


def in_uml() -> bool:
    """Whether we run inside the User-Mode Linux kernel that lab.uml boots."""
    return os.environ.get("IPVSD_UML") == "1"


def in_qemu() -> bool:
    """Whether we run inside the Debian kernel that lab.qemu boots (IPVS and nf_tables inet)."""
    return os.environ.get("IPVSD_GUEST") == "qemu"


def where() -> str:
    """One line saying which kernel this tier runs on, for the test output."""
    release = os.uname().release
    if in_uml():
        kind = "User-Mode Linux (IPVSD_UML=1)"
    elif in_qemu():
        kind = "a Debian kernel under qemu (IPVSD_GUEST=qemu)"
    else:
        kind = "the native kernel"
    if IPVS_PROC.exists():
        version = IPVS_PROC.read_text().splitlines()[0]
        ipvs = f"IPVS present ({version})"
    else:
        ipvs = "IPVS MISSING"
    return f"kernel tier: running in {kind}, uname -r {release}, {ipvs}"


def pytest_report_header(config: pytest.Config) -> str:
    config.stash[_ANNOUNCED] = True
    return where()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="session", autouse=True)
def ipvs_kernel(
    request: pytest.FixtureRequest, record_testsuite_property: Callable[[str, object], None]
) -> None:
    """Announce where the tier runs (once) and fail every test when IPVS is absent."""
    line = where()
    record_testsuite_property("kernel_tier", line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not request.config.stash.get(_ANNOUNCED, False):
        request.config.stash[_ANNOUNCED] = True
        reporter.write_line(line)
    if not IPVS_PROC.exists():
        pytest.fail(NO_IPVS, pytrace=False)


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A :class:`lab.netns.Topology` torn down after the test."""
    with Topology() as topo:
        yield topo
