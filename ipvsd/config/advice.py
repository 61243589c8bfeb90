"""Advice on a valid configuration: what works, but not the way a director in
BGP mode needs it to. Pure.

A warning never refuses a config (`ipvsd.config.checks` does that): ``ipvsd
check-config`` prints each piece of advice as ``PATH:LINE: field: warning:
...`` and exits 0, and the daemon logs it (``config.advice``) at start and on
every reload.

The rules are about consistent hashing across directors (issue 15 part 3,
docs/consistent-hashing.md). Behind ECMP a router moves a flow to another
director when one leaves; the flow survives only if that director sends it to
the same real, which IPVS's ``mh`` does when every director built the same
table. In BGP mode (``bgp:``), for each service:

1. A scheduler other than ``mh``: a moved flow reaches whatever real the other
   director picks; its TCP connection breaks.
2. ``mh`` without ``mh-fallback``: the kernel refuses new connections that hash
   to a real at weight 0, so a drained or failed real black-holes its share.
3. ``mh`` with ``on_failure: remove``: removing a failed real would rebuild
   this director's table alone, so ipvsd drains it instead (an ``mh`` real
   never leaves the kernel for health, ``ipvsd.health.policy``); the advice
   says so, so that the config says what happens (``drain``).

BGP mode's own defaults (``mh`` with ``mh-fallback``) satisfy all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ipvsd.config.model import ServiceConfig
from ipvsd.config.types import OnFailure
from ipvsd.mh import MH

MH_FALLBACK = "mh-fallback"
SEE = "(docs/consistent-hashing.md)"


@dataclass(frozen=True, slots=True)
class Advice:
    """One piece of advice about ``services[index].field``."""

    index: int
    field: str
    message: str


def consistent_hashing_advice(services: Sequence[ServiceConfig]) -> list[Advice]:
    """Advice for the services of a BGP-mode config, with BGP mode's defaults applied
    (`ipvsd.config.expand.bgp_defaults`), in service order."""
    advice: list[Advice] = []
    for index, service in enumerate(services):
        if service.scheduler != MH:
            advice.append(
                Advice(
                    index,
                    "scheduler",
                    f"{service.scheduler} in BGP mode: a flow that ECMP moves to another"
                    " director reaches another real there and its connection breaks;"
                    f" use mh, as BGP mode does when no scheduler is named {SEE}",
                )
            )
            continue
        if MH_FALLBACK not in service.scheduler_flags:
            advice.append(
                Advice(
                    index,
                    "scheduler_flags",
                    "mh without mh-fallback: new connections that hash to a real at"
                    " weight 0 (failed or drained) are refused instead of going to another"
                    f" real; add mh-fallback {SEE}",
                )
            )
        if service.on_failure is OnFailure.REMOVE:
            advice.append(
                Advice(
                    index,
                    "on_failure",
                    "remove with mh is treated as drain: a failed real's removal would"
                    " rebuild this director's mh table alone, so flows moved here from"
                    " another director could reach other reals; an mh real stays in the"
                    f" kernel at weight 0 instead; say drain {SEE}",
                )
            )
    return advice
