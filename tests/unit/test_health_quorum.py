"""Quorum, hysteresis and the sorry server (``ipvsd.health.quorum``, ``health.policy``)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from ipaddress import ip_address

import pytest
from structlog.testing import capture_logs

from ipvsd.config import parse_config
from ipvsd.desired import desired_table
from ipvsd.health.policy import overrides
from ipvsd.health.quorum import QuorumBook, QuorumState, has_quorum
from ipvsd.health.quorum_hooks import QuorumHooks
from ipvsd.health.table import DesiredTable
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey, Family, ForwardMethod, Protocol, RealId, ServiceKey, Table
from ipvsd.process import ProcessOutcome
from tests.unit.test_health_table import finish

CONFIG = parse_config(
    textwrap.dedent(
        """\
        ipvs:
          services:
            - address: 10.0.0.1
              port: 80
              check: {type: tcp}
              quorum: 4
              hysteresis: 1
              quorum_down: [/bin/true]
              sorry_server: {address: 10.0.9.9, inhibit: true, forward: dr}
              reals:
                - {address: 10.0.1.1, weight: 2}
                - {address: 10.0.1.2, weight: 2}
                - {address: 10.0.1.3, weight: 1}
            - address: 10.0.0.2
              port: 80
              check: {type: tcp}
              on_failure: remove
              quorum: 2
              sorry_server: {address: 10.0.9.9}
              reals:
                - {address: 10.0.2.1}
                - {address: 10.0.2.2}
        """
    ),
    "t.yaml",
)
WEB, API = (ServiceKey(Family.INET, Protocol.TCP, ip_address(f"10.0.0.{n}"), 80) for n in (1, 2))
SORRY = DestKey(ip_address("10.0.9.9"), 80)


def real(service: ServiceKey, address: str) -> RealId:
    return (service, DestKey(ip_address(address), 80))


R1, R2, R3 = (real(WEB, f"10.0.1.{n}") for n in (1, 2, 3))
A1, A2 = (real(API, f"10.0.2.{n}") for n in (1, 2))
ALL_UP = {r: Health.UP for r in (R1, R2, R3, A1, A2)}


def table(states: dict[RealId, Health], was: dict[ServiceKey, bool] | None = None) -> Table:
    o = overrides(CONFIG, states, quorum_was=was)
    return desired_table(CONFIG, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)


def weights(t: Table, key: ServiceKey) -> dict[DestKey, int]:
    return {k: d.attrs.weight for k, d in t.services[key].dests.items()}


@pytest.mark.parametrize(
    ("live", "was_up", "up"),
    [
        (5, True, True),
        (3, True, True),  # 4 - 1: still up (hysteresis)
        (2, True, False),  # below 4 - 1: lost
        (4, False, False),  # below 4 + 1: still lost
        (5, False, True),  # regained at 4 + 1
        (0, True, False),
    ],
)
def test_hysteresis_around_the_quorum(live: int, was_up: bool, up: bool) -> None:
    assert has_quorum(CONFIG.ipvs.services[0], live, live > 0, was_up) is up


def test_live_weight_zero_loses_quorum_even_within_the_hysteresis() -> None:
    service = CONFIG.ipvs.services[0].model_copy(update={"quorum": 1, "hysteresis": 3})
    assert has_quorum(service, 1, True, True)
    assert not has_quorum(service, 0, True, True)


def test_with_quorum_the_reals_serve_and_the_inhibited_sorry_server_waits_at_weight_0() -> None:
    t = table(ALL_UP)
    assert weights(t, WEB) == {R1[1]: 2, R2[1]: 2, R3[1]: 1, SORRY: 0}
    assert t.services[WEB].dests[SORRY].attrs.forward is ForwardMethod.DR
    assert SORRY not in t.services[API].dests  # not inhibited: absent while not in use


def test_losing_quorum_hands_the_traffic_to_the_sorry_server() -> None:
    states = {**ALL_UP, R1: Health.DOWN, R2: Health.DOWN, A2: Health.DOWN}  # WEB 1, API 1
    t = table(states)
    assert weights(t, WEB) == {R1[1]: 0, R2[1]: 0, R3[1]: 0, SORRY: 1}
    # on_failure: remove takes the live real out as well, as keepalived does.
    assert weights(t, API) == {SORRY: 1}
    o = overrides(CONFIG, states)
    assert o.quorum[WEB] == QuorumState(False, 1)
    assert o.quorum[API] == QuorumState(False, 1)


def test_drained_reals_do_not_count_as_live_weight() -> None:
    o = overrides(CONFIG, ALL_UP, drained=frozenset({R1, R3}))
    assert o.quorum[WEB] == QuorumState(False, 2)
    assert WEB in o.sorry


def test_within_the_hysteresis_the_previous_state_holds() -> None:
    states = {**ALL_UP, R2: Health.DOWN, R3: Health.DOWN}  # WEB: live weight 2
    assert overrides(CONFIG, states, quorum_was={WEB: True}).quorum[WEB].up is False  # 2 < 3
    states[R3] = Health.UP  # live 3
    assert overrides(CONFIG, states, quorum_was={WEB: True}).quorum[WEB].up
    assert not overrides(CONFIG, states, quorum_was={WEB: False}).quorum[WEB].up


def test_without_quorum_the_sorry_server_answers_while_no_real_is_up() -> None:
    cfg = parse_config(
        "ipvs:\n  services:\n    - {address: 10.0.0.3, port: 80, check: {type: tcp},"
        " sorry_server: {address: 10.0.9.9}, reals: [{address: 10.0.3.1, weight: 0}]}\n",
        "t.yaml",
    )
    key = cfg.ipvs.services[0].key
    up = (key, DestKey(ip_address("10.0.3.1"), 80))
    assert not overrides(cfg, {up: Health.UP}).sorry  # weight 0 but up: as before quorum
    assert overrides(cfg, {up: Health.DOWN}).sorry == frozenset({key})


def test_the_book_reports_each_transition_once_and_starts_with_quorum() -> None:
    seen: list[tuple[ServiceKey, bool]] = []
    book = QuorumBook(lambda key, service, state, changed: seen.append((key, state.up)))
    health = dict(ALL_UP)
    desired = DesiredTable(lambda r: health.get(r, Health.UNKNOWN), quorum=book)
    desired.install(finish(desired.build_steps(CONFIG, set(), set(), lambda r: Health.UNKNOWN)))
    assert seen == [(WEB, False), (API, False)]  # nothing up yet: quorum lost at start
    desired.mark(WEB)
    desired.mark(API)
    desired.table(set(), set())
    assert sorted(seen[2:], key=str) == [(WEB, True), (API, True)]
    desired.mark(WEB)
    desired.table(set(), set())
    assert len(seen) == 4  # no change, no report
    assert book.state(WEB) == QuorumState(True, 5)


async def test_quorum_commands_run_in_order_however_long_each_takes() -> None:
    ran: list[tuple[str, ...]] = []

    async def runner(argv: Sequence[str]) -> ProcessOutcome:
        await asyncio.sleep(0.05 if argv[0] == "slow" else 0)
        ran.append(tuple(argv))
        return ProcessOutcome(0, b"", 0.0)

    hooks = QuorumHooks(runner)
    web = CONFIG.ipvs.services[0]
    with capture_logs() as logs:
        hooks.changed(WEB, web, QuorumState(False, 1), True)  # quorum_down: [/bin/true]
        hooks.changed(WEB, web, QuorumState(True, 5), False)  # a first computation: nothing
        hooks.run(WEB, "down", ("slow",))
        hooks.run(WEB, "up", ("fast",))
        await hooks.close()
    assert ran == [("/bin/true",), ("slow",), ("fast",)]
    assert [e["event"] for e in logs if e["event"] == "ipvs.quorum"] == ["ipvs.quorum"]
    assert sum(e["event"] == "ipvs.quorum_command" for e in logs) == 3
