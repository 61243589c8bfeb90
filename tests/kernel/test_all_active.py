"""All-Active: three directors, six VIPs, each director MASTER for two (design.md).

When a director fails, its two VIPs must fall to two *different* survivors
(each then carries half of the lost load) and every VIP keeps answering.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from lab.reference import ADVERT_INT, ALL_ACTIVE_VIPS, ReferenceLab
from tests.kernel.narrate import say

FAILING = "director1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceLab]:
    with ReferenceLab("all-active", tmp_path_factory.mktemp("all-active")) as lab:
        lab.start()
        yield lab


def vips_of(lab: ReferenceLab, director: str) -> list[str]:
    """The VIPs `director` is configured to master."""
    return [vip for inst in lab.spec.instances if inst.master == director for vip in inst.addresses]


def test_layout_sends_each_directors_vips_to_two_different_survivors(lab: ReferenceLab) -> None:
    for director in lab.directors:
        vips = vips_of(lab, director)
        assert len(vips) == 2
        heirs = {lab.spec.instance_of(vip).failover_order()[1] for vip in vips}
        assert len(heirs) == 2, (director, heirs)


def test_each_director_masters_two_vips_and_all_six_answer(lab: ReferenceLab) -> None:
    holders = lab.holders()
    assert Counter(holders.values()) == {"director1": 2, "director2": 2, "director3": 2}, holders
    for director in lab.directors:
        assert {holders[vip] for vip in vips_of(lab, director)} == {director}
    replies = lab.curl(4, ALL_ACTIVE_VIPS)
    assert all(r.ok for r in replies), replies
    assert Counter(r.vip for r in replies) == dict.fromkeys(ALL_ACTIVE_VIPS, 4)
    assert {r.real for r in replies} == {"real1", "real2"}


def test_failed_director_vips_go_to_two_different_survivors(
    lab: ReferenceLab, request: pytest.FixtureRequest
) -> None:
    lost = vips_of(lab, FAILING)
    others = {vip: lab.holders()[vip] for vip in ALL_ACTIVE_VIPS if vip not in lost}
    report = lab.failover_gap(lambda: lab.link_down(FAILING), vips=lost)
    say(request, f"all-active failover (eth1 down on {FAILING}):")
    for line in report.summary().splitlines():
        say(request, "  " + line)
    holders = lab.holders()
    heirs = [holders[vip] for vip in lost]
    assert None not in heirs, holders
    assert FAILING not in heirs, holders
    assert len(set(heirs)) == 2, holders  # one VIP each
    assert heirs == [lab.spec.instance_of(vip).failover_order()[1] for vip in lost]
    assert {vip: holders[vip] for vip in others} == others  # nothing else moved
    for vip, heir in zip(lost, heirs, strict=True):
        assert heir is not None
        bound = 3 * ADVERT_INT + lab.spec.instance_of(vip).skew_time(heir) + 1
        assert report.recovered_after(f"{vip}:80") <= bound, report.summary()
    replies = lab.curl(4, ALL_ACTIVE_VIPS)
    assert all(r.ok for r in replies), replies
    assert Counter(r.vip for r in replies) == dict.fromkeys(ALL_ACTIVE_VIPS, 4)
