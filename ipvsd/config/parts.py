"""What the cross-checks look at: the whole config, or what can be salvaged of it.

`ipvsd.config.checks` relates fields and objects to each other. When the
whole `Config` validated, it checks that. When validation rejected something,
it still checks every list item that validates on its own (a service with
its valid reals, an instance, a sync group), so one typo hides no other
problem: `parts` salvages them from the raw data.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ipvsd.config.checks import Parts, ServicePart
from ipvsd.config.model import (
    BgpConfig,
    Config,
    RealConfig,
    ServiceConfig,
    ServiceGroupConfig,
    SyncDaemonConfig,
    SyncGroupConfig,
    VrrpInstanceConfig,
    VrrpScriptConfig,
)
from ipvsd.config.strict import Model, ValidationError

M = TypeVar("M", bound=Model)


def parts(config: Config | None, data: dict[str, Any]) -> Parts:
    """The parts to check: those of `config`, else those of `data` that validate on their own."""
    raw_instances = _raw(data, "vrrp", "instances")
    names: dict[str, int] = {}
    for index, item in enumerate(_items(raw_instances)):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.setdefault(item["name"], index)
    raw_scripts = _raw(data, "vrrp", "scripts")
    script_names: dict[str, int] = {}
    for index, item in enumerate(_items(raw_scripts)):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            script_names.setdefault(item["name"], index)
    raw_groups = _raw(data, "ipvs", "service_groups")
    group_names: dict[str, int] = {}
    for index, item in enumerate(_items(raw_groups)):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            group_names.setdefault(item["name"], index)
    if config is not None:
        return Parts(
            instances=list(enumerate(config.vrrp.instances)),
            instance_names=names,
            sync_groups=list(enumerate(config.vrrp.sync_groups)),
            services=[ServicePart.whole(*item) for item in enumerate(config.ipvs.services)],
            sync_daemon=config.ipvs.sync_daemon,
            scripts=list(enumerate(config.vrrp.scripts)),
            script_names=script_names,
            service_groups=list(enumerate(config.ipvs.service_groups)),
            group_names=group_names,
            bgp=config.bgp,
        )
    instances = [
        (i, _salvage(VrrpInstanceConfig, item)) for i, item in enumerate(_items(raw_instances))
    ]
    groups = [
        (i, _salvage(SyncGroupConfig, item))
        for i, item in enumerate(_items(_raw(data, "vrrp", "sync_groups")))
    ]
    services = [
        _salvage_service(i, item) for i, item in enumerate(_items(_raw(data, "ipvs", "services")))
    ]
    return Parts(
        instances=[(i, instance) for i, instance in instances if instance is not None],
        instance_names=names,
        sync_groups=[(i, group) for i, group in groups if group is not None],
        services=[part for part in services if part is not None],
        sync_daemon=_salvage(SyncDaemonConfig, _raw(data, "ipvs", "sync_daemon")),
        scripts=[
            (i, script)
            for i, item in enumerate(_items(raw_scripts))
            if (script := _salvage(VrrpScriptConfig, item)) is not None
        ],
        script_names=script_names,
        service_groups=[
            (i, group)
            for i, item in enumerate(_items(raw_groups))
            if (group := _salvage(ServiceGroupConfig, item)) is not None
        ],
        group_names=group_names,
        bgp=_salvage(BgpConfig, _raw(data, "bgp")),
    )


def _raw(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _items(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else ()


# Fields whose invalid value cannot be replaced by its default without
# inventing problems (a dropped `forward` would make a tunnel real look wrong).
_SERVICE_KEEP = frozenset(
    {"address", "port", "fwmark", "family", "protocol", "forward", "check", "group"}
)
_REAL_KEEP = frozenset({"address", "port", "forward"})


def _salvage(model: type[M], item: object, keep: frozenset[str] = frozenset()) -> M | None:
    """Validate `item`; failing that, retry without its invalid optional fields.

    Returns None when a required field or one of `keep` is invalid. The
    problems themselves were already reported by validating the whole config.
    """
    if not isinstance(item, dict):
        return None
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    fields = model.model_fields
    if bad & keep or any(name in fields and fields[name].is_required() for name in bad):
        return None
    try:
        return model.model_validate({k: v for k, v in item.items() if k not in bad})
    except ValidationError:
        return None


def _salvage_service(index: int, item: object) -> ServicePart | None:
    """A service with its valid reals, so one bad real hides no other problem."""
    if not isinstance(item, dict):
        return None
    reals = [
        (i, _salvage(RealConfig, real, _REAL_KEEP))
        for i, real in enumerate(_items(item.get("reals")))
    ]
    good = [(i, real) for i, real in reals if real is not None]
    if "reals" in item and isinstance(item["reals"], tuple):
        item = {**item, "reals": tuple(real for _, real in good)}
    service = _salvage(ServiceConfig, item, _SERVICE_KEEP)
    if service is None:
        return None
    return ServicePart(index, service, [i for i, _ in good])
