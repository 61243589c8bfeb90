"""Health and admin drains → weights, exclusions and sorry servers in the desired table."""

from __future__ import annotations

import textwrap
from ipaddress import ip_address

import pytest

from ipvsd.config import parse_config
from ipvsd.config.model import Config
from ipvsd.desired import desired_table
from ipvsd.health.policy import overrides
from ipvsd.health.tracker import Health
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey, Table

CONFIG = parse_config(
    textwrap.dedent(
        """\
        ipvs:
          services:
            - address: 10.0.0.1
              port: 80
              check: {type: tcp}
              sorry_server: {address: 10.0.9.9}
              reals:
                - {address: 10.0.1.1, weight: 3}
                - {address: 10.0.1.2, weight: 2}
            - address: 10.0.0.2
              port: 80
              on_failure: remove
              check: {type: tcp}
              reals:
                - {address: 10.0.2.1}
                - {address: 10.0.2.2, check: {type: none}}
            - address: 10.0.0.3
              port: 80
              reals: [{address: 10.0.3.1}]
        """
    ),
    "t.yaml",
)
S1 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.1"), 80)
S2 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.2"), 80)
S3 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.3"), 80)
R11 = (S1, DestKey(ip_address("10.0.1.1"), 80))
R12 = (S1, DestKey(ip_address("10.0.1.2"), 80))
R21 = (S2, DestKey(ip_address("10.0.2.1"), 80))
R22 = (S2, DestKey(ip_address("10.0.2.2"), 80))
SORRY = DestKey(ip_address("10.0.9.9"), 80)


def table(
    states: dict[RealId, Health],
    drained: frozenset[RealId] = frozenset(),
    held: frozenset[RealId] = frozenset(),
) -> Table:
    o = overrides(CONFIG, states, drained, held)
    return desired_table(CONFIG, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)


def weights(t: Table, service: ServiceKey) -> dict[DestKey, int]:
    return {k: d.attrs.weight for k, d in t.services[service].dests.items()}


def test_fresh_start_unknown_reals_stay_out_and_the_sorry_server_answers() -> None:
    t = table({})
    assert weights(t, S1) == {SORRY: 1}
    assert weights(t, S2) == {R22[1]: 1}  # type none: always up
    assert weights(t, S3) == {DestKey(ip_address("10.0.3.1"), 80): 1}  # no check: always up


def test_up_reals_have_their_weights_and_no_sorry_server() -> None:
    t = table({R11: Health.UP, R12: Health.UP, R21: Health.UP})
    assert weights(t, S1) == {R11[1]: 3, R12[1]: 2}
    assert weights(t, S2) == {R21[1]: 1, R22[1]: 1}


def test_down_drains_or_removes() -> None:
    t = table({R11: Health.DOWN, R12: Health.UP, R21: Health.DOWN})
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 2}
    assert weights(t, S2) == {R22[1]: 1}


def test_all_down_brings_the_sorry_server_in() -> None:
    t = table({R11: Health.DOWN, R12: Health.DOWN})
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 0, SORRY: 1}


def test_admin_drain_wins_over_health() -> None:
    t = table({R11: Health.UP, R12: Health.UP}, frozenset({R11}))
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 2}


def test_an_up_real_takes_its_dynamic_weight_and_a_drain_still_wins() -> None:
    up = {R11: Health.UP, R12: Health.UP}
    o = overrides(CONFIG, up, dynamic={R11: 7, R12: 2})
    t = desired_table(CONFIG, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)
    assert weights(t, S1) == {R11[1]: 7, R12[1]: 2}
    o = overrides(CONFIG, up, frozenset({R11}), dynamic={R11: 7})
    t = desired_table(CONFIG, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 2}, "the operator's drain wins"
    o = overrides(CONFIG, {R11: Health.DOWN, R12: Health.UP}, dynamic={R11: 7})
    t = desired_table(CONFIG, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 2}, "down: drained, whatever its last weight"


def test_a_real_adopted_at_weight_0_is_held_in_at_0_even_where_down_means_remove() -> None:
    held = frozenset({R11, R21})
    t = table({R11: Health.DOWN, R12: Health.UP, R21: Health.DOWN}, held=held)
    assert weights(t, S1) == {R11[1]: 0, R12[1]: 2}
    assert weights(t, S2) == {R21[1]: 0, R22[1]: 1}, "on_failure: remove, yet still in"
    t = table({R11: Health.UP, R12: Health.UP, R21: Health.UP}, held=held)
    assert weights(t, S1) == {R11[1]: 3, R12[1]: 2}, "UP: holding changes nothing"
    assert weights(t, S2) == {R21[1]: 1, R22[1]: 1}


def test_overrides_cannot_be_changed_by_their_reader() -> None:
    o = overrides(CONFIG, {R11: Health.DOWN}, frozenset({R21}))
    assert o.weights == {R11: 0, R21: 0}
    with pytest.raises(TypeError):
        o.weights[R11] = 3  # type: ignore[index]
    assert isinstance(o.excluded, frozenset)
    assert isinstance(o.sorry, frozenset)


MH_YAML = """\
ipvs:
  services:
    - address: 10.0.0.5
      port: 80
      scheduler: mh
      scheduler_flags: [mh-fallback]
      on_failure: remove
      check: {type: tcp}
      sorry_server: {address: 10.0.9.9, inhibit: true}
      reals:
        - {address: 10.0.5.2, weight: 3}
        - {address: 10.0.5.1, weight: 2}
        - {address: 10.0.5.3, weight: 0}
"""
MH_CONFIG = parse_config(MH_YAML, "mh.yaml")
S5 = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.5"), 80)
M1, M2, M3 = (DestKey(ip_address(f"10.0.5.{i}"), 80) for i in (1, 2, 3))


def mh_table(states: dict[RealId, Health], config: Config = MH_CONFIG) -> Table:
    o = overrides(config, states)
    return desired_table(config, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)


def test_mh_unknown_and_removed_reals_stay_in_at_0_with_their_configured_last_weights() -> None:
    # docs/consistent-hashing.md: the table must not depend on health history.
    fresh = mh_table({})
    service = fresh.services[S5]
    assert weights(fresh, S5) == {SORRY: 1, M3: 0, M2: 0, M1: 0}  # no real left out
    assert list(service.dests) == [SORRY, M3, M2, M1]  # the kernel's list order, planned
    assert service.last_weights == {M3: 0, M2: 3, M1: 2}  # the config's: 0 for M3
    down = mh_table({(S5, M1): Health.DOWN, (S5, M2): Health.UP, (S5, M3): Health.UP})
    assert weights(down, S5) == {SORRY: 0, M3: 0, M2: 3, M1: 0}  # remove: drained for mh
    assert down.services[S5].last_weights == {M3: 0, M1: 2, SORRY: 1}


def test_mh_inhibited_sorry_server_gets_slots_only_with_mh_fallback() -> None:
    # Without mh-fallback the kernel refuses the connections that hash to a slot at
    # weight 0: an inhibited sorry server keeps last weight 0 (no slots) there.
    strict = parse_config(MH_YAML.replace("scheduler_flags: [mh-fallback]", ""), "strict.yaml")
    t = mh_table({(S5, M1): Health.UP, (S5, M2): Health.UP}, strict)
    assert weights(t, S5) == {SORRY: 0, M3: 0, M2: 3, M1: 2}
    assert t.services[S5].last_weights == {SORRY: 0, M3: 0}
