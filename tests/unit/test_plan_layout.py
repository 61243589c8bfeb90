"""The All-Active planner's layout: balance after every failure set, minimality, priorities."""

from __future__ import annotations

from collections import Counter
from itertools import combinations_with_replacement, permutations, product
from math import comb, lcm

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvsd.plan.layout import (
    MAX_DIRECTORS,
    MAX_VIPS,
    Layout,
    PlanError,
    balance_violations,
    failure_sets,
    minimal_vips,
    plan_layout,
)

NAMES = ("director1", "director2", "director3")


@st.composite
def questions(draw: st.DrawFn) -> tuple[tuple[str, ...], int]:
    """N <= 8 distinct director names and K < N."""
    names = draw(
        st.lists(
            st.text("abcdefghij0123456789-", min_size=1, max_size=6),
            min_size=1,
            max_size=8,
            unique=True,
        )
    )
    tolerate = draw(st.integers(0, len(names) - 1))
    return tuple(names), tolerate


@settings(max_examples=60, deadline=None)
@given(questions())
def test_every_failure_set_leaves_a_live_holder_and_equal_shares(
    question: tuple[tuple[str, ...], int],
) -> None:
    names, tolerate = question
    layout = plan_layout(names, tolerate)
    assert layout.vips == minimal_vips(len(names), tolerate)
    for failed in failure_sets(names, tolerate):
        holders = [layout.holder(vip, failed) for vip in range(layout.vips)]
        assert all(h is not None and h not in failed for h in holders)
        shares = layout.shares(failed)
        assert set(shares) == set(names) - failed
        assert max(shares.values()) - min(shares.values()) <= 1
        # Exactly equal, in fact: V / survivors each.
        assert set(shares.values()) == {layout.vips // (len(names) - len(failed))}
    assert balance_violations(layout) == []


@settings(max_examples=60, deadline=None)
@given(questions())
def test_priorities_are_unique_per_vip_and_valid(question: tuple[tuple[str, ...], int]) -> None:
    names, tolerate = question
    layout = plan_layout(names, tolerate)
    for vip in range(layout.vips):
        priorities = layout.priorities(vip)
        assert set(priorities) == set(names)
        assert len(set(priorities.values())) == len(names)
        assert all(1 <= p <= 254 for p in priorities.values())  # 255: address owner
        # The highest priority is the ranking's first: the VIP's master.
        assert max(priorities, key=priorities.__getitem__) == layout.rankings[vip][0]


@settings(max_examples=30, deadline=None)
@given(questions(), st.data())
def test_beyond_k_failures_every_vip_still_has_a_holder(
    question: tuple[tuple[str, ...], int], data: st.DataObject
) -> None:
    names, tolerate = question
    layout = plan_layout(names, tolerate)
    survivor = data.draw(st.sampled_from(names))
    failed = frozenset(data.draw(st.sets(st.sampled_from(names)))) - {survivor}
    assert sum(layout.shares(failed).values()) == layout.vips


@pytest.mark.parametrize(
    ("directors", "tolerate", "vips"),
    [(3, 1, 6), (4, 1, 12), (5, 2, 60), (3, 0, 3), (3, 2, 6), (4, 2, 12), (8, 7, 840)],
)
def test_vip_counts(directors: int, tolerate: int, vips: int) -> None:
    layout = plan_layout([f"d{n}" for n in range(directors)], tolerate)
    assert layout.vips == vips


def test_k1_each_director_masters_n_minus_1_vips_with_different_first_backups() -> None:
    layout = plan_layout(["a", "b", "c", "d"], 1)
    pairs = Counter(ranking[:2] for ranking in layout.rankings)
    assert set(pairs.values()) == {1}
    assert len(pairs) == 4 * 3


def test_5_2_heads_every_ordered_triple_once() -> None:
    layout = plan_layout("abcde", 2)
    assert sorted(ranking[:3] for ranking in layout.rankings) == sorted(permutations("abcde", 3))


def test_three_directors_give_the_reference_layout() -> None:
    """design.md's All-Active answer, as the lab had it written by hand (VI_1..VI_6)."""
    layout = plan_layout(NAMES, 1)
    assert [tuple(layout.priorities(v)[d] for d in NAMES) for v in range(6)] == [
        (100, 90, 80),
        (100, 80, 90),
        (80, 100, 90),
        (90, 100, 80),
        (90, 80, 100),
        (80, 90, 100),
    ]


def _balanced_layout_exists(n: int, tolerate: int, vips: int) -> bool:
    """Exhaustive search: any multiset of `vips` rankings balanced for `tolerate` failures?

    Only a ranking's first K+1 directors decide its holder, so the search runs
    over those prefixes; each director must master V/N of them (the empty
    failure set), which is the only pruning.
    """
    if vips % n:
        return False
    names = tuple(str(d) for d in range(n))
    per_master = [
        list(
            combinations_with_replacement(
                [p for p in permutations(names, tolerate + 1) if p[0] == master], vips // n
            )
        )
        for master in names
    ]
    for choice in product(*per_master):
        rankings = tuple(
            prefix + tuple(d for d in names if d not in prefix)
            for chosen in choice
            for prefix in chosen
        )
        if not balance_violations(Layout(names, tolerate, rankings)):
            return True
    return False


@pytest.mark.parametrize(
    ("directors", "tolerate"), [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1)]
)
def test_no_smaller_layout_exists(directors: int, tolerate: int) -> None:
    minimal = minimal_vips(directors, tolerate)
    assert _balanced_layout_exists(directors, tolerate, minimal)
    for vips in range(1, minimal):
        assert not _balanced_layout_exists(directors, tolerate, vips), vips


@pytest.mark.parametrize("directors", range(1, 9))
def test_minimal_count_is_the_divisibility_bound(directors: int) -> None:
    """Equal shares after f failures need (N - f) | V; the plan needs no more than that."""
    for tolerate in range(directors):
        vips = minimal_vips(directors, tolerate)
        assert all(vips % (directors - f) == 0 for f in range(tolerate + 1))
        assert not any(
            all(smaller % (directors - f) == 0 for f in range(tolerate + 1))
            for smaller in range(1, vips)
        )


def test_the_counting_bound_is_the_divisibility_bound() -> None:
    """lcm over s <= K of N * C(N-1, s) (whole y(S, c)) = lcm(N, ..., N-K), for every N planned."""
    for directors in range(1, MAX_DIRECTORS + 1):
        for tolerate in range(directors):
            counting = lcm(*(directors * comb(directors - 1, s) for s in range(tolerate + 1)))
            assert counting == minimal_vips(directors, tolerate), (directors, tolerate)


@pytest.mark.parametrize(
    ("names", "tolerate", "message"),
    [
        ((), 0, "no directors"),
        (("a", "a"), 0, "repeat"),
        (("a", "b"), 2, "K must be 0 to 1"),
        (("a", "b"), -1, "K must be 0 to 1"),
        (tuple(f"d{n}" for n in range(30)), 3, f"more than {MAX_VIPS}"),
        (tuple(f"d{n}" for n in range(65)), 0, "at most 64"),
    ],
)
def test_questions_without_a_plan(names: tuple[str, ...], tolerate: int, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_layout(names, tolerate)


def test_a_broken_layout_is_reported() -> None:
    layout = Layout(NAMES, 1, ((NAMES[0], NAMES[1], NAMES[2]),) * 3)
    problems = balance_violations(layout)
    assert any("unequal shares" in p for p in problems)
