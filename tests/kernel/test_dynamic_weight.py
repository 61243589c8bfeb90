"""exec checks with ``dynamic_weight`` on real IPVS (issue 13, keepalived's ``misc_dynamic``).

The NAT reference scenario; each real's check runs a program that exits
with the code written in a file per real: 0 is up at the configured weight,
1 down, 2-255 up at weight code - 2. The kernel's weights follow the codes,
and the traffic follows the weights.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from ipvsd.model import Family, Protocol, ServiceKey
from lab.daemon import kernel_table
from lab.scenario import VIP, Scenario, wait_until
from tests.kernel.one_director import Lab, one_director

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address(VIP), 80)
REALS = ("192.168.2.30", "192.168.2.40")


def code_file(watched: Path, real: str) -> Path:
    return watched.with_name(f"code-{real}")


def config(watched: Path) -> str:
    for real in REALS:
        code_file(watched, real).write_text("0\n")
    # The program reads its real's code file: IPVSD_REAL_ADDRESS names the real.
    program = f"exit $(cat {watched.parent}/code-$IPVSD_REAL_ADDRESS)"
    return textwrap.dedent(
        f"""\
        metrics: {{listen: null}}
        ipvs:
          services:
            - address: {VIP}
              port: 80
              scheduler: wrr
              check:
                type: exec
                command: [/bin/sh, -c, '{program}']
                dynamic_weight: true
                interval: 0.3
                timeout: 2
                rise: 1
                fall: 1
              reals:
                - {{address: {REALS[0]}, port: 80, weight: 5}}
                - {{address: {REALS[1]}, port: 80, weight: 5}}
        """
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with one_director(tmp_path_factory.mktemp("dynamic"), config) as started:
        yield started


def weights(scenario: Scenario) -> dict[str, int]:
    service = kernel_table(scenario.director).services[WEB]
    return {str(k.address): d.attrs.weight for k, d in service.dests.items()}


def set_code(watched: Path, real: str, code: int) -> None:
    code_file(watched, real).write_text(f"{code}\n")


def test_exit_codes_set_the_kernel_weights_and_the_traffic_follows(lab: Lab) -> None:
    scenario, _, watched = lab
    wait_until(lambda: weights(scenario) == {REALS[0]: 5, REALS[1]: 5}, 10)
    set_code(watched, REALS[0], 2 + 3)  # up, weight 3
    set_code(watched, REALS[1], 2 + 1)  # up, weight 1
    wait_until(lambda: weights(scenario) == {REALS[0]: 3, REALS[1]: 1}, 10)
    bodies = [body for status, body in scenario.requests(16) if status == 200]
    assert sorted(set(bodies)) == sorted(REALS)
    # wrr at 3 to 1 (12 and 4 over whole rounds; the round may start anywhere).
    assert bodies.count(REALS[0]) >= 2 * bodies.count(REALS[1])


def test_code_1_takes_a_real_out_and_code_0_restores_its_configured_weight(lab: Lab) -> None:
    scenario, _, watched = lab
    set_code(watched, REALS[1], 1)
    wait_until(lambda: weights(scenario).get(REALS[1]) == 0, 10)  # drained (on_failure)
    assert {body for _, body in scenario.requests(4)} == {REALS[0]}
    set_code(watched, REALS[0], 0)
    set_code(watched, REALS[1], 0)
    wait_until(lambda: weights(scenario) == {REALS[0]: 5, REALS[1]: 5}, 10)
