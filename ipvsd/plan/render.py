"""A plan's verdict and loads, as text for people and as the ``--json`` document (pure).

The loads are counted, not derived: for each failure set (the empty one is
normal operation) `Plan.failures` asks the layout who holds each VIP, and a
director's load is its VIP count times the demand over V. ``fits`` holds when
the busiest survivor of every failure set of at most K directors stays within
its link; the margin is what that busiest survivor has to spare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ipvsd.plan.layout import Layout, failure_sets
from ipvsd.plan.units import format_rate

MAX_TEXT_FAILURE_SETS = 40
"""Failure sets listed in the text (``--json`` has them all)."""


@dataclass(frozen=True)
class Scenario:
    """Who holds how many VIPs while `failed` are down."""

    failed: tuple[str, ...]
    shares: dict[str, int]
    """Survivor -> VIPs held."""


@dataclass(frozen=True)
class Plan:
    """A layout with the traffic it carries.

    Attributes:
        layout: the VIPs and their rankings.
        demand_bps: the traffic of all VIPs together, bits per second.
        link_bps: each director's link capacity, bits per second.
        vip_names: one per VIP: its address (from ``--vip-pool``) or ``vipN``.
        addresses: director -> its own address, when given (``NAME=ADDRESS``).
    """

    layout: Layout
    demand_bps: int
    link_bps: int
    vip_names: tuple[str, ...]
    addresses: Mapping[str, str] = field(default_factory=dict)

    @property
    def vip_bps(self) -> float:
        """The traffic of one VIP."""
        return self.demand_bps / self.layout.vips

    @cached_property
    def failures(self) -> list[Scenario]:
        """Every failure set of at most K directors, the empty one (normal operation) first."""
        directors = self.layout.directors
        return [
            Scenario(tuple(d for d in directors if d in failed), self.layout.shares(failed))
            for failed in failure_sets(directors, self.layout.tolerate)
        ]

    def worst_load_bps(self) -> float:
        """The busiest survivor's load over every failure set of at most K directors."""
        return max(max(s.shares.values()) for s in self.failures) * self.vip_bps

    @property
    def fits(self) -> bool:
        """Whether every survivor stays within its link after any K failures."""
        return self.worst_load_bps() <= self.link_bps

    def margin_bps(self) -> float:
        """What the busiest survivor has left of its link (negative: overloaded)."""
        return self.link_bps - self.worst_load_bps()


def default_vip_names(count: int) -> tuple[str, ...]:
    """``vip1``, ``vip2``... when no VIP pool is given."""
    return tuple(f"vip{n}" for n in range(1, count + 1))


def to_json(plan: Plan) -> dict[str, Any]:
    """The ``--json`` document (see docs/plan.md for each field)."""
    layout = plan.layout
    return {
        "fits": plan.fits,
        "vips": layout.vips,
        "directors": list(layout.directors),
        **({"addresses": dict(plan.addresses)} if plan.addresses else {}),
        "tolerate": layout.tolerate,
        "demand_bps": plan.demand_bps,
        "link_bps": plan.link_bps,
        "vip_bps": _bps(plan.vip_bps),
        "worst_load_bps": _bps(plan.worst_load_bps()),
        "margin_bps": _bps(plan.margin_bps()),
        "margin_percent": round(100 * plan.margin_bps() / plan.link_bps, 2),
        "assignments": [
            {
                "vip": name,
                "master": layout.rankings[n][0],
                "backups": list(layout.rankings[n][1:]),
                "priorities": layout.priorities(n),
            }
            for n, name in enumerate(plan.vip_names)
        ],
        "failures": [
            {
                "failed": list(s.failed),
                "vips": s.shares,
                "load_bps": {d: _bps(n * plan.vip_bps) for d, n in s.shares.items()},
            }
            for s in plan.failures
        ],
    }


def _bps(value: float) -> int:
    return round(value)


def to_text(plan: Plan) -> str:
    """The plan for people: verdict, VIP count, priorities, loads."""
    layout = plan.layout
    n = len(layout.directors)
    return (
        "\n".join(
            [
                f"All-Active plan: {n} director{'' if n == 1 else 's'} "
                f"({', '.join(_named(plan, d) for d in layout.directors)}), "
                f"tolerating {_failures(layout.tolerate)}",
                f"demand {format_rate(plan.demand_bps)}, link {format_rate(plan.link_bps)} "
                "per director",
                "",
                *_verdict(plan),
                "",
                "VRRP priorities (the VIP goes to the highest-priority live director):",
                *_priorities(plan),
                "",
                "Load per director (VIPs held, traffic) in normal operation and after each "
                "failure set:",
                *_loads(plan),
            ]
        )
        + "\n"
    )


def _named(plan: Plan, director: str) -> str:
    address = plan.addresses.get(director)
    return director if address is None else f"{director} {address}"


def _failures(count: int) -> str:
    return f"{count} failure{'' if count == 1 else 's'}"


def _verdict(plan: Plan) -> list[str]:
    n, k = len(plan.layout.directors), plan.layout.tolerate
    margin = plan.margin_bps()
    after = "in normal operation" if k == 0 else f"after any {_failures(k)}"
    if plan.fits:
        share = 100 * margin / plan.link_bps
        verdict = f"fits: yes, {format_rate(margin)} ({share:.3g}% of a link) to spare {after}"
    else:
        verdict = f"fits: NO, {format_rate(-margin)} over a link {after}"
    divisors = ", ".join(str(n - f) for f in range(k + 1))
    evenly = "in normal operation" if k == 0 else f"after any 0 to {_failures(k)}"
    return [
        verdict,
        f"  the busiest director then carries {format_rate(plan.worst_load_bps())}",
        f"VIPs: {plan.layout.vips} of {format_rate(plan.vip_bps)} each, published together "
        "(DNS round robin)",
        f"  the fewest that split exactly evenly {evenly}: lcm({divisors})",
    ]


def _priorities(plan: Plan) -> list[str]:
    layout = plan.layout
    rows = []
    for vip, name in enumerate(plan.vip_names):
        priorities = layout.priorities(vip)
        rows.append(
            [
                name,
                *(str(priorities[d]) for d in layout.directors),
                " > ".join(layout.rankings[vip]),
            ]
        )
    return _table(["VIP", *layout.directors, "master > backups"], rows)


def _loads(plan: Plan) -> list[str]:
    directors = plan.layout.directors
    scenarios = plan.failures
    rows = [
        [
            ", ".join(s.failed) or "(none)",
            *(
                f"{s.shares[d]} = {format_rate(s.shares[d] * plan.vip_bps)}"
                if d in s.shares
                else "down"
                for d in directors
            ),
        ]
        for s in scenarios[:MAX_TEXT_FAILURE_SETS]
    ]
    lines = _table(["down", *directors], rows)
    if len(scenarios) > MAX_TEXT_FAILURE_SETS:
        lines.append(
            f"  ... and {len(scenarios) - MAX_TEXT_FAILURE_SETS} more failure sets "
            "(--json lists them all); in each, every survivor holds V / survivors VIPs."
        )
    return lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
