"""Reals of a service group share one check (``ipvsd.config.groups`` Rule 3). Pure.

A service written with ``group`` is loaded as one service per member, in
member order, all members of one written service next to each other
(`ipvsd.config.expand`). Every service naming group G therefore comes as a
block of exactly as many services as G has member addresses. Within a
block, real *i* of each member is an *alias* of real *i* of the block's first
member (its *leader*): only the leader's real is watched, and the health and
check-given weight of an alias are its leader's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from ipvsd.config.groups import parse_member
from ipvsd.config.model import Config, ServiceConfig
from ipvsd.model import RealId, ServiceKey


def shared_checks(config: Config) -> dict[RealId, RealId]:
    """Every alias real of `config`, mapped to the real whose check it shares."""
    sizes = {
        group.name: sum(len(list(parse_member(m).endpoints())) for m in group.members)
        for group in config.ipvs.service_groups
    }
    aliases: dict[RealId, RealId] = {}
    seen: dict[str, int] = defaultdict(int)
    leader: dict[str, ServiceConfig] = {}
    for service in config.ipvs.services:
        group = service.group
        if group is None:
            continue
        position = seen[group] % sizes[group]
        seen[group] += 1
        if position == 0:
            leader[group] = service
            continue
        first = leader[group]
        first_key, key = first.key, service.key
        for mine, theirs in zip(service.reals, first.reals, strict=True):
            aliases[(key, service.dest_key(mine))] = (first_key, first.dest_key(theirs))
    return aliases


def followers(aliases: Mapping[RealId, RealId]) -> frozenset[ServiceKey]:
    """The member services that are not their block's first (their reals are aliases)."""
    return frozenset(alias[0] for alias in aliases)


def sharers(aliases: Mapping[RealId, RealId]) -> dict[RealId, list[RealId]]:
    """Each leader real → its aliases (the reals whose health follows it)."""
    found: dict[RealId, list[RealId]] = defaultdict(list)
    for alias, leader in aliases.items():
        found[leader].append(alias)
    return dict(found)
