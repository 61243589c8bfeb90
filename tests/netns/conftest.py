"""netns tier: the host kernel, in network namespaces that the tests create.

Needs root. Without root the tier is skipped on a developer machine, but fails
under CI (``CI=true``), where a skipped tier would hide that nothing ran.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.netns import Topology
from lab.vrrp_pair import VrrpLab, build

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="session", autouse=True)
def netns_capable() -> None:
    """Fail (CI) or skip (elsewhere) when we cannot make network namespaces."""
    problem = None
    if os.geteuid() != 0:
        problem = "netns tier needs root (network namespaces, veth, bridges)"
    elif shutil.which("ip") is None:
        problem = "netns tier needs iproute2's `ip` (apt-get install iproute2)"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A :class:`lab.netns.Topology` torn down after the test."""
    with Topology() as topo:
        yield topo


@pytest.fixture
def vrrp_lab(tmp_path: Path) -> Iterator[VrrpLab]:
    """lab.vrrp_pair's two routers and observer on one bridge, torn down after the test."""
    with Topology() as topo:
        yield build(topo, tmp_path)
