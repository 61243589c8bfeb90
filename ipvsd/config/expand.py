"""Expand services written with ``group`` into one service per member; BGP mode's
defaults. Pure.

See `ipvsd.config.groups` for the rules of groups, docs/bgp.md for BGP mode.
Run on a config that passed the cross-checks (`ipvsd.config.checks`): the
group exists and its members are valid.
"""

from __future__ import annotations

from ipvsd.config.groups import parse_member
from ipvsd.config.model import Config, ServiceConfig
from ipvsd.mh import MH
from ipvsd.model import Protocol


def members_of(service: ServiceConfig, members: tuple[str, ...]) -> list[ServiceConfig]:
    """The services `service` (written with ``group``) stands for, given its group's members."""
    expanded: list[ServiceConfig] = []
    for text in members:
        member = parse_member(text)
        for address, port, fwmark in member.endpoints():
            if fwmark is not None:
                # The mark selects the packets: a fwmark service is keyed with tcp.
                update: dict[str, object] = {
                    "fwmark": fwmark,
                    "family": member.family,
                    "protocol": Protocol.TCP,
                }
            else:
                update = {"address": address, "port": port}
            expanded.append(service.model_copy(update=update))
    return expanded


def expand_groups(config: Config) -> Config:
    """`config` with every ``group`` service replaced by its member services."""
    if not any(service.group is not None for service in config.ipvs.services):
        return config
    groups = {group.name: group.members for group in config.ipvs.service_groups}
    services: list[ServiceConfig] = []
    for service in config.ipvs.services:
        if service.group is None or service.address is not None or service.fwmark is not None:
            services.append(service)  # plain, or already expanded
        else:
            services.extend(members_of(service, groups[service.group]))
    ipvs = config.ipvs.model_copy(update={"services": tuple(services)})
    return config.model_copy(update={"ipvs": ipvs})


BGP_SCHEDULER = MH
BGP_SCHEDULER_FLAG = "mh-fallback"
"""The scheduler of a service that names none, in BGP mode (``bgp:`` set)."""


def bgp_defaults(config: Config) -> Config:
    """In BGP mode, services that name no scheduler use ``mh`` (Maglev hashing)
    with ``mh-fallback``.

    The routers spread a client's packets over the directors by ECMP, and a
    flow moves to another director when one leaves. With ``mh`` every
    director computes the same table from the same reals (same order, same
    weights), so the flow reaches the same real there
    (docs/consistent-hashing.md). ``mh-fallback`` because without it the
    kernel refuses the new connections that hash to a real at weight 0: a
    drained real would black-hole its share of the clients. A service that
    names its scheduler is left as written, flags included.
    """
    if config.bgp is None:
        return config
    services = tuple(
        service
        if "scheduler" in service.model_fields_set
        else service.model_copy(
            update={"scheduler": BGP_SCHEDULER, "scheduler_flags": _with_fallback(service)}
        )
        for service in config.ipvs.services
    )
    if all(new is old for new, old in zip(services, config.ipvs.services, strict=True)):
        return config
    ipvs = config.ipvs.model_copy(update={"services": services})
    return config.model_copy(update={"ipvs": ipvs})


def _with_fallback(service: ServiceConfig) -> tuple[str, ...]:
    flags = service.scheduler_flags
    return flags if BGP_SCHEDULER_FLAG in flags else (*flags, BGP_SCHEDULER_FLAG)
