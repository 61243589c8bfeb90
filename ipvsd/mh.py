"""What IPVS's Maglev scheduler (``mh``) builds a service's table from, as a
fingerprint that two directors can compare (docs/consistent-hashing.md).

The kernel fills the table by visiting the reals in its list order, each with
as many turns as its *last non-zero* weight allows (relative to the others');
reals whose last weight is 0 take no slot. The hash keys and the table size are
constants of the module build. So two directors running the same kernel build
have the same table exactly when these inputs are equal: the reals with a
non-zero last weight, in list order, with those weights.

The kernel does not report the last weight; the caller gives its best
knowledge (`known_last_weights`): the weight in the kernel when non-zero, else
the one the planner added the dest at or raised it to (the desired table's
`Service.last_weights`: for a real its configured weight, for an inhibited
sorry server 1 with ``mh-fallback``), else the configured one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ipvsd.model import Dest, DestKey, Service, dest_order

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


def service_fingerprint(dests: Iterable[Dest], last_weights: Mapping[DestKey, int]) -> str:
    """`table_fingerprint` of a service's kernel dests (in dump order: the kernel's
    list order), a dest at weight 0 counted with its entry in `last_weights` (0 if
    none), the best knowledge of its last non-zero weight (`known_last_weights`)."""
    return table_fingerprint((d.key, d.attrs.weight or last_weights.get(d.key, 0)) for d in dests)


def known_last_weights(
    configured: Mapping[DestKey, int], desired: Service | None
) -> Mapping[DestKey, int]:
    """The last non-zero weight of a service's dests at weight 0, as best known.

    The `desired` service's `Service.last_weights` first: the planner added each of
    those dests at that weight, or raised it to it, before zeroing it
    (`ipvsd.ipvs.plan`, rule 6); they alone name the inhibited sorry server's. Else
    the `configured` weight of the real, which is the planner's guess too for a dest
    it knows from a dump only (`ipvsd.ipvs.plan._kernel_last_weight`).
    """
    if desired is None or not desired.last_weights:
        return configured
    return {**configured, **desired.last_weights}
