"""Service groups on real IPVS (issue 13): one kernel service per member, one check per real.

The NAT reference scenario with one service written with ``group: web``,
whose members are the VIP on ports 80 and 8080, and two reals on port 80.
The kernel holds two services with both reals each; each real is checked by
one exec check (which logs every run), not one per member.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from ipvsd.model import Family, Protocol, ServiceKey
from lab.daemon import kernel_table
from lab.scenario import VIP, Scenario, wait_until
from tests.kernel.one_director import Lab, one_director

MEMBERS = [ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), port) for port in (80, 8080)]
INTERVAL = 1.0


def config(runs: Path) -> str:
    command = f"[/bin/sh, -c, 'echo $IPVSD_REAL_ADDRESS >> {runs}']"
    return textwrap.dedent(
        f"""\
        metrics: {{listen: null}}
        ipvs:
          resync_interval: 30
          service_groups:
            - name: web
              members: ["{VIP}:80", "{VIP}:8080"]
          services:
            - group: web
              scheduler: rr
              check: {{type: exec, command: {command}, interval: {INTERVAL}, timeout: 5,
                       rise: 1, fall: 1}}
              reals:
                - {{address: 192.168.2.30, port: 80}}
                - {{address: 192.168.2.40, port: 80}}
        """
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with one_director(tmp_path_factory.mktemp("groups"), config) as started:
        yield started


def weights(scenario: Scenario) -> dict[int, dict[str, int]]:
    services = kernel_table(scenario.director).services
    return {
        key.port: {str(k.address): d.attrs.weight for k, d in services[key].dests.items()}
        for key in MEMBERS
        if key in services
    }


def test_one_kernel_service_per_member_with_every_real(lab: Lab) -> None:
    scenario, _, _ = lab
    both = {"192.168.2.30": 1, "192.168.2.40": 1}
    wait_until(lambda: weights(scenario) == {80: both, 8080: both}, timeout=15)
    assert set(kernel_table(scenario.director).services) == set(MEMBERS)
    served = Counter(body for status, body in scenario.requests(6) if status == 200)
    assert served == Counter({"192.168.2.30": 3, "192.168.2.40": 3}), served


def test_each_real_is_checked_once_for_the_whole_group(lab: Lab) -> None:
    _, _, runs = lab
    wait_until(lambda: runs.exists(), timeout=10)
    before = Counter(runs.read_text().split())
    window = 4.0
    time.sleep(window)
    after = Counter(runs.read_text().split())
    for real in ("192.168.2.30", "192.168.2.40"):
        checks = after[real] - before[real]
        # One check per interval (plus one at the window's edge); per member would be twice.
        assert 1 <= checks <= window / INTERVAL + 1, (real, checks)
