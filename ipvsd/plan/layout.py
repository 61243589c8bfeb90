"""The All-Active VRRP layout: how many VIPs, and which director masters each (pure).

Theory of operation
-------------------
N directors share the traffic of V virtual addresses of equal weight (DNS round
robin spreads the clients evenly over the VIPs). Each VIP is one VRRP instance
whose priorities rank the N directors; the VIP is held by the highest-ranked
director that is alive (RFC 3768 §6.4.3 and RFC 5798 §6.4.3: the higher
priority wins). A *failure set* F is the directors that are down.

**Balanced.** A layout is balanced for K tolerated failures when, for every
failure set with ``|F| = f <= K`` (the empty one too), every survivor holds
exactly ``V / (N - f)`` VIPs, so the demand D is split exactly evenly:
``D / (N - f)`` per survivor. "± one VIP" is not a usable definition on its
own: one VIP on one director already has every share within one VIP of the
others; the planner asks for exact shares, which is what the reference
scenario's answer (6 VIPs for N = 3, K = 1) means.

**Lower bound.** Equal shares after f failures need ``(N - f) | V``, so
``V >= lcm(N, N-1, ..., N-K)``. That number also equals
``lcm_{s<=K} N * C(N-1, s)``, the bound the counting below gives (checked
for every N <= 200 and every K; tests/unit/test_plan_layout.py holds it for
N <= MAX_DIRECTORS).

**Only the first K+1 ranks matter.** With at most K directors down, one of a
VIP's first K+1 directors is alive, so its holder is decided by that prefix.
For a set S of directors (``|S| = s <= K``) and a director c outside it, let
``y(S, c)`` be the number of VIPs whose first s ranks are S, in any order,
followed by c. When S' is down, c holds ``sum over S ⊆ S' of y(S, c)`` VIPs;
asking that to be ``V / (N - |S'|)`` for every S' and inverting the sum
(Möbius inversion over subsets) fixes every ``y(S, c)``:
``y(S, c) = V / (N * C(N-1, s))``.

**Construction.** Build the prefixes level by level. Level 1: each director
masters ``V / N`` VIPs. From level s to s+1, for each set S of size s, the
VIPs whose first s ranks are S (in their various orders) choose their next
rank among the ``N - s`` others so that each other director c gets exactly
``y(S, c)`` of them: a transportation problem with integer supplies and equal
integer demands, always solvable. The planner deals the VIPs out one at a
time, cycling over the candidates, so every order of S spreads its VIPs
evenly over them. The levels do not interact, so ``V = lcm(N, ..., N-K)``
always works: the lower bound is the minimum. Past rank K+1 the ranking
continues cyclically (it only matters beyond K failures).

For K = 1 this is the familiar layout: each director masters N-1 VIPs, each
with a different first backup (N(N-1) VIPs). For N = 3: 6 VIPs, 0.75 Gbit/s
per survivor of 1.5 Gbit/s; N = 4: 12; N = 5, K = 2: 60, where every ordered
triple of directors heads exactly one VIP's ranking.

`plan_layout` builds the layout and `balance_violations` (a brute-force check
of every failure set) confirms it before it is returned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import lcm

MAX_DIRECTORS = 64
"""The most directors a plan has (priorities step down from 100 by at least 1)."""
MAX_VIPS = 4096
"""The largest plan the planner computes (VRRP has 255 VRIDs per interface anyway)."""
TOP_PRIORITY = 100
"""The master's priority; the backups' priorities step down from it."""
MIN_PRIORITY = 1


class PlanError(ValueError):
    """The question has no plan: K >= N, names repeated, or an impractical VIP count."""


@dataclass(frozen=True)
class Layout:
    """The VIPs of an All-Active layout and each one's ranking of the directors.

    Attributes:
        directors: the directors' names, in the order given.
        tolerate: K, the failures after which the shares stay exactly equal.
        rankings: one per VIP: every director, highest priority first.
    """

    directors: tuple[str, ...]
    tolerate: int
    rankings: tuple[tuple[str, ...], ...]

    @property
    def vips(self) -> int:
        """V, the number of VIPs."""
        return len(self.rankings)

    def priorities(self, vip: int) -> dict[str, int]:
        """Director -> VRRP priority for VIP number `vip` (unique per VIP)."""
        step = priority_step(len(self.directors))
        return {name: TOP_PRIORITY - rank * step for rank, name in enumerate(self.rankings[vip])}

    def holder(self, vip: int, failed: frozenset[str]) -> str | None:
        """Who holds VIP number `vip` while `failed` are down (None: nobody is left)."""
        return holder(self.rankings[vip], failed)

    def shares(self, failed: frozenset[str]) -> dict[str, int]:
        """Survivor -> number of VIPs it holds while `failed` are down."""
        return shares(self.directors, self.rankings, failed)


def priority_step(directors: int) -> int:
    """The gap between consecutive priorities: 10 (100, 90, 80...) while that fits."""
    if directors <= 1:
        return 10
    return min(10, (TOP_PRIORITY - MIN_PRIORITY) // (directors - 1))


def minimal_vips(directors: int, tolerate: int) -> int:
    """The fewest equal-weight VIPs that split evenly after any `tolerate` failures.

    That is ``lcm(N, N-1, ..., N-K)`` (see the module docstring).
    """
    return lcm(*(directors - failed for failed in range(tolerate + 1)))


def holder(ranking: Sequence[str], failed: frozenset[str]) -> str | None:
    """The first director of `ranking` that is not in `failed`."""
    return next((name for name in ranking if name not in failed), None)


def shares(
    directors: Sequence[str], rankings: Sequence[Sequence[str]], failed: frozenset[str]
) -> dict[str, int]:
    """Survivor -> VIPs it holds while `failed` are down (survivors in `directors` order)."""
    counts = dict.fromkeys((d for d in directors if d not in failed), 0)
    for ranking in rankings:
        owner = holder(ranking, failed)
        if owner is not None:
            counts[owner] += 1
    return counts


def failure_sets(directors: Sequence[str], tolerate: int) -> Iterator[frozenset[str]]:
    """Every set of at most `tolerate` failed directors, the empty one first, by size."""
    for size in range(tolerate + 1):
        for failed in combinations(directors, size):
            yield frozenset(failed)


def balance_violations(layout: Layout) -> list[str]:
    """What is wrong with `layout`, checked over every failure set; empty if balanced.

    Checked: each ranking names every director once; after each failure set of
    at most K directors every VIP has a live holder and every survivor holds
    exactly ``V / (N - f)`` VIPs.
    """
    problems = [
        f"VIP {vip}: ranking {ranking} is not a permutation of the directors"
        for vip, ranking in enumerate(layout.rankings)
        if sorted(ranking) != sorted(layout.directors)
    ]
    for failed in failure_sets(layout.directors, layout.tolerate):
        counts = layout.shares(failed)
        survivors = len(layout.directors) - len(failed)
        if sum(counts.values()) != layout.vips:
            problems.append(f"down {sorted(failed)}: a VIP has no live holder")
        if survivors and any(n * survivors != layout.vips for n in counts.values()):
            problems.append(f"down {sorted(failed)}: unequal shares {counts}")
    return problems


def plan_layout(directors: Sequence[str], tolerate: int) -> Layout:
    """The minimal balanced layout of `directors` for `tolerate` failures.

    Args:
        directors: distinct names, at least one.
        tolerate: K, from 0 to ``len(directors) - 1``.

    Returns:
        The layout with ``minimal_vips(N, K)`` VIPs, ordered by master, checked
        against every failure set.

    Raises:
        PlanError: K out of range, repeated names, or more than MAX_VIPS VIPs.
    """
    names = tuple(directors)
    n = len(names)
    if n == 0:
        raise PlanError("no directors")
    if n > MAX_DIRECTORS:
        raise PlanError(f"{n} directors: at most {MAX_DIRECTORS}")
    if len(set(names)) != n:
        raise PlanError(f"director names repeat: {', '.join(names)}")
    if not 0 <= tolerate < n:
        raise PlanError(
            f"cannot tolerate {tolerate} failure(s) with {n} director(s): K must be 0 to {n - 1}"
        )
    vips = minimal_vips(n, tolerate)
    if vips > MAX_VIPS:
        raise PlanError(
            f"{n} directors tolerating {tolerate} failures need {vips} VIPs for exactly equal "
            f"shares, more than {MAX_VIPS}; tolerate fewer failures"
        )
    prefixes = _prefixes(n, tolerate, vips)
    rankings = sorted(
        (_complete(prefix, n) for prefix in prefixes),
        key=lambda ranking: (ranking[0], *((d - ranking[0]) % n for d in ranking)),
    )
    layout = Layout(names, tolerate, tuple(tuple(names[d] for d in r) for r in rankings))
    problems = balance_violations(layout)
    if problems:  # the construction is proven; this would be our bug
        raise AssertionError(f"unbalanced plan for N={n}, K={tolerate}: {problems[:3]}")
    return layout


def _prefixes(n: int, tolerate: int, vips: int) -> list[tuple[int, ...]]:
    """One ``K+1``-long prefix (director indexes) per VIP; the level-by-level deal."""
    level: Mapping[tuple[int, ...], int] = {(d,): vips // n for d in range(n)}
    for _ in range(tolerate):
        by_set: dict[tuple[int, ...], list[tuple[int, ...]]] = defaultdict(list)
        for prefix in sorted(level):
            by_set[tuple(sorted(prefix))].append(prefix)
        following: dict[tuple[int, ...], int] = defaultdict(int)
        for members, orders in sorted(by_set.items()):
            # The others, cyclically after the set's first member: S = {a} gives a+1, a+2...
            candidates = [(members[0] + i) % n for i in range(1, n)]
            candidates = [c for c in candidates if c not in members]
            dealt = 0
            for prefix in orders:
                for _ in range(level[prefix]):
                    following[(*prefix, candidates[dealt % len(candidates)])] += 1
                    dealt += 1
        level = following
    return [prefix for prefix in sorted(level) for _ in range(level[prefix])]


def _complete(prefix: tuple[int, ...], n: int) -> tuple[int, ...]:
    """`prefix` followed by the other directors, cyclically after its last one."""
    rest = [(prefix[-1] + i) % n for i in range(1, n)]
    return prefix + tuple(d for d in rest if d not in prefix)
