"""`DesiredTable`: the desired table rebuilt service by service (``ipvsd.health.table``).

Every table it gives must equal the whole-table build (`desired_table` over
`overrides`) for the same config, health, drains and holds; what it saves is
work, counted here as calls of the health function (one per checked real of
each service it builds).
"""

from __future__ import annotations

from collections.abc import Generator, Set
from ipaddress import ip_address

from ipvsd.config import Config, parse_config
from ipvsd.desired import desired_table
from ipvsd.health.policy import overrides
from ipvsd.health.table import BuiltTable, DesiredTable
from ipvsd.health.tracker import Health
from ipvsd.loopslice import LoopSlice
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey, Table
from ipvsd.steps import run_steps

SERVICES = 20
REALS = 4


def config(services: int = SERVICES, weight: int = 1) -> Config:
    """`services` services of `REALS` tcp-checked reals, sorry servers, half on_failure: remove."""
    lines = ["ipvs:", "  services:"]
    for s in range(services):
        reals = ", ".join(f"{{address: 10.1.{s}.{r + 1}, weight: {weight}}}" for r in range(REALS))
        on_failure = "remove" if s % 2 else "drain"
        lines.append(
            f"    - {{address: 10.0.0.{s + 1}, port: 80, check: {{type: tcp}},"
            f" on_failure: {on_failure}, sorry_server: {{address: 10.9.9.9}}, reals: [{reals}]}}"
        )
    return parse_config("\n".join(lines) + "\n", "t.yaml")


def service(s: int) -> ServiceKey:
    return ServiceKey(Family.INET, Protocol.TCP, ip_address(f"10.0.0.{s + 1}"), 80)


def real(s: int, r: int) -> RealId:
    return (service(s), DestKey(ip_address(f"10.1.{s}.{r + 1}"), 80))


class Health_:
    """The health function: a dict (absent: UNKNOWN) that counts its calls."""

    def __init__(self) -> None:
        self.states: dict[RealId, Health] = {}
        self.calls = 0

    def __call__(self, real_id: RealId) -> Health:
        self.calls += 1
        return self.states.get(real_id, Health.UNKNOWN)


def whole(cfg: Config, health: Health_, drained: Set[RealId], held: Set[RealId]) -> Table:
    o = overrides(cfg, health.states, drained, held)
    return desired_table(cfg, weight_overrides=o.weights, excluded=o.excluded, sorry=o.sorry)


def finish(steps: Generator[None, None, BuiltTable]) -> BuiltTable:
    """Run a build to its end."""
    return run_steps(steps)


def install(table: DesiredTable, cfg: Config, health: Health_, drained: Set[RealId] = frozenset(),
            held: Set[RealId] = frozenset()) -> None:  # fmt: skip
    table.install(finish(table.build_steps(cfg, drained, held, health)))


def test_each_table_equals_the_whole_table_build() -> None:
    health = Health_()
    cfg = config()
    health.states = {real(s, r): Health.UP for s in range(SERVICES) for r in range(REALS)}
    health.states.update({real(1, 0): Health.DOWN, real(2, 1): Health.DOWN})
    for r in range(REALS):
        health.states[real(3, r)] = Health.DOWN  # no real up: the sorry server
    drained: set[RealId] = {real(4, 2)}
    held: set[RealId] = {real(5, 3)}
    health.states.pop(real(5, 3))  # adopted at weight 0, not checked yet
    table = DesiredTable(health)
    install(table, cfg, health, drained, held)
    assert table.table(drained, held) == whole(cfg, health, drained, held)

    for change in (real(1, 0), real(6, 0), real(7, 3)):
        health.states[change] = Health.DOWN if health.states.get(change) is Health.UP else Health.UP
        table.mark(change[0])
    drained.add(real(8, 1))
    drained.discard(real(4, 2))
    held.clear()
    assert table.table(drained, held) == whole(cfg, health, drained, held)


def test_a_health_change_rebuilds_only_its_service() -> None:
    health = Health_()
    table = DesiredTable(health)
    install(table, config(), health)
    assert health.calls == SERVICES * REALS
    health.calls = 0
    health.states[real(7, 2)] = Health.UP
    table.mark(service(7))
    assert table.table(set(), set()).services[service(7)].dests.keys() == {real(7, 2)[1]}
    assert health.calls == REALS
    health.calls = 0
    assert table.table(set(), set()) == whole(config(), health, set(), set())
    assert health.calls == 0, "nothing changed since: nothing rebuilt"


def test_a_drain_or_a_hold_rebuilds_only_its_service() -> None:
    health = Health_()
    health.states = {real(s, r): Health.UP for s in range(SERVICES) for r in range(REALS)}
    table = DesiredTable(health)
    install(table, config(), health)
    health.calls = 0
    drained = {real(3, 1)}
    got = table.table(drained, set())
    assert got.services[service(3)].dests[real(3, 1)[1]].attrs.weight == 0
    assert health.calls == REALS
    health.calls = 0
    got = table.table(set(), {real(9, 0)})  # undrained, and one real held
    assert got.services[service(3)].dests[real(3, 1)[1]].attrs.weight == 1
    assert health.calls == 2 * REALS
    health.calls = 0
    table.table(set(), {real(9, 0)})
    assert health.calls == 0


def test_until_a_build_is_installed_the_table_follows_the_config_in_force() -> None:
    health = Health_()
    table = DesiredTable(health)
    old, new = config(services=2), config(weight=3)
    install(table, old, health)
    steps = table.build_steps(new, set(), set(), health)
    for _ in range(SERVICES // 2):
        next(steps)
    # Service 0 was built while its reals were UNKNOWN (left out); now one is UP.
    health.states[real(0, 0)] = Health.UP
    table.mark(service(0))
    drained = {real(1, 1)}  # and an operator drains a real meanwhile
    assert table.table(drained, set()) == whole(old, health, drained, set())
    table.install(finish(steps))
    assert table.table(drained, set()) == whole(new, health, drained, set())


def test_an_abandoned_build_changes_nothing() -> None:
    health = Health_()
    table = DesiredTable(health)
    install(table, config(services=2), health)
    before = table.table(set(), set())
    steps = table.build_steps(config(), set(), set(), health)
    next(steps)
    steps.close()
    table.mark(service(1))
    assert table.table(set(), set()) == before


async def test_the_loop_slice_drains_a_build() -> None:
    health = Health_()
    table = DesiredTable(health)
    table.install(await LoopSlice().drain(table.build_steps(config(), set(), set(), health)))
    assert table.table(set(), set()) == whole(config(), health, set(), set())
