"""What IPVS's Maglev scheduler (``mh``) builds a service's table from, as a
fingerprint that two directors can compare (docs/consistent-hashing.md).

The kernel fills the table by visiting the reals in its list order, each with
as many turns as its *last non-zero* weight allows (relative to the others');
reals whose last weight is 0 take no slot. The hash keys and the table size are
constants of the module build. So two directors running the same kernel build
have the same table exactly when these inputs are equal: the reals with a
non-zero last weight, in list order, with those weights.

The kernel does not report the last weight; the caller gives its best
knowledge (the weight in the kernel when non-zero, else the configured one of
a real drained or failed after it was up).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ipvsd.model import Dest, DestKey, dest_order

MH = "mh"
"""The scheduler's name, as the kernel and the config spell it."""


def mh_order(dests: Iterable[Dest]) -> list[Dest]:
    """`dests` in the kernel's list order that ipvsd builds for an ``mh`` service:
    descending `dest_order`, the planner adding them in ascending order at the list's
    head (`ipvsd.ipvs.plan`, rule 6)."""
    return sorted(dests, key=lambda dest: dest_order(dest.key), reverse=True)


def table_fingerprint(reals: Iterable[tuple[DestKey, int]]) -> str:
    """16 hex digits naming the table built from `reals`: (key, last weight) in the
    kernel's list order. Reals of last weight 0 are left out, as the kernel does."""
    digest = hashlib.blake2b(digest_size=8)
    for key, weight in reals:
        if weight > 0:
            digest.update(f"{key.address} {key.port} {weight}\n".encode())
    return digest.hexdigest()


def service_fingerprint(dests: Iterable[Dest], configured: Mapping[DestKey, int]) -> str:
    """`table_fingerprint` of a service's kernel dests (in dump order: the kernel's
    list order), a dest at weight 0 counted with its `configured` weight: drained or
    failed after it was up, its last non-zero weight was that one (0 if unknown)."""
    return table_fingerprint((d.key, d.attrs.weight or configured.get(d.key, 0)) for d in dests)
