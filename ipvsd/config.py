"""Load and validate ipvsd's YAML configuration; every error points at its line.

Theory of operation
-------------------
A configuration goes through four steps. Each step collects problems instead
of stopping at the first, so ``ipvsd check-config`` lists them all, one line
each: ``PATH:LINE: dotted.field.path: message`` (`ConfigIssue`).

1. **Compose** (`ipvsd.yaml_lines`). ``yaml.compose`` with the SafeLoader
   gives the node tree with a source mark on every node. One walk turns it
   into plain data (dicts, tuples, scalars) and a `LineMap` from *field path*
   (``("ipvs", "services", 0, "port")``) to the line of that key or list
   item. YAML syntax errors stop here, with the line of the YAML mark;
   duplicate keys are recorded and the walk goes on.
2. **Validate fields** (`ipvsd.config_model`, pydantic v2, strict, unknown
   keys forbidden). A pydantic error's ``loc`` has the same shape as a field
   path, so its line is a look-up in the `LineMap`; a path that is not written
   in the file (a missing required key) takes the line of its nearest written
   parent. Messages are rewritten short ("must be an integer, not a string",
   "unknown key 'prority' (did you mean 'priority'?)").
3. **Cross-check** (`ipvsd.config_checks`): rules between fields and objects
   (fwmark vs address/port, duplicate services and reals, a real's family,
   sync groups naming instances, ...). They run on every list item that
   validated on its own, so they are reported even when step 2 failed
   somewhere else.
4. Any problem → `ConfigError` with all issues sorted by line. Otherwise the
   frozen `Config`.

`desired_table` (in `ipvsd.desired`, re-exported here) turns a `Config` into
the IPVS `Table` the reconciler converges the kernel to.

This module is pure apart from reading the file in `load_config` (and
reading the host name there, through ``os.uname``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ipvsd.config_checks import Parts, ServicePart, check_parts
from ipvsd.config_model import (
    CheckConfig,
    CheckOverride,
    Config,
    ControlConfig,
    IpvsConfig,
    MetricsConfig,
    RealConfig,
    ServiceConfig,
    SorryServerConfig,
    SyncDaemonConfig,
    SyncGroupConfig,
    TimeoutsConfig,
    TrackInterface,
    VrrpConfig,
    VrrpInstanceConfig,
    merge_check,
)
from ipvsd.config_types import SCHEDULER_FLAGS, SCHEDULERS, CheckType, OnFailure
from ipvsd.desired import desired_table
from ipvsd.errors import ConfigError, ConfigIssue
from ipvsd.yaml_lines import ROOT_FIELD, YAML_FIELD, FieldPath, LineMap, compose_document, dotted

__all__ = [
    "SCHEDULERS",
    "SCHEDULER_FLAGS",
    "CheckConfig",
    "CheckOverride",
    "CheckType",
    "Config",
    "ControlConfig",
    "IpvsConfig",
    "MetricsConfig",
    "OnFailure",
    "RealConfig",
    "ServiceConfig",
    "SorryServerConfig",
    "SyncDaemonConfig",
    "SyncGroupConfig",
    "TimeoutsConfig",
    "TrackInterface",
    "VrrpConfig",
    "VrrpInstanceConfig",
    "desired_table",
    "load_config",
    "merge_check",
    "parse_config",
    "validation_issues",
]

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path) -> Config:
    """Read and validate a configuration file.

    ``node_name`` defaults to the host name (``os.uname().nodename``, which
    is what ``socket.gethostname()`` returns on Linux).

    Args:
        path: the YAML file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is not valid UTF-8, not valid YAML, or not a
            valid configuration; `ConfigError.issues` lists every problem.
        OSError: the file cannot be read.
    """
    name = str(path)
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigIssue(name, line, YAML_FIELD, "not valid UTF-8")]) from None
    return parse_config(text, name, default_node_name=os.uname().nodename)


def parse_config(
    text: str, path: str = "<config>", *, default_node_name: str | None = None
) -> Config:
    """Validate a configuration given as YAML text.

    Args:
        text: the YAML source.
        path: the file name used in issues.
        default_node_name: ``node_name`` when the text has none; None means
            the host name (``os.uname().nodename``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: with every problem found, sorted by line.
    """
    document = compose_document(text, path)
    issues = list(document.issues)
    data = document.data
    if not isinstance(data, dict):
        what = "an empty file" if data is None else _describe(data)
        message = f"the configuration must be a mapping of settings, not {what}"
        issues.append(ConfigIssue(path, document.lines.line(()), ROOT_FIELD, message))
        raise ConfigError(issues)
    if "node_name" not in data:
        data = {**data, "node_name": default_node_name or os.uname().nodename}
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues.extend(validation_issues(exc, path, document.lines))
    issues.extend(check_parts(_parts(config, data), path, document.lines))
    if issues:
        raise ConfigError(sorted(issues, key=lambda issue: issue.line))
    assert config is not None
    return config


def validation_issues(exc: ValidationError, path: str, lines: LineMap) -> list[ConfigIssue]:
    """Turn a pydantic error from validating `Config` into line-numbered issues.

    Args:
        exc: the error ``Config.model_validate`` raised.
        path: the file name used in issues.
        lines: where each field is written.

    Returns:
        One issue per pydantic error, in pydantic's order.
    """
    issues = []
    for error in exc.errors(include_url=False):
        loc: FieldPath = tuple(error["loc"])
        issues.append(ConfigIssue(path, lines.line(loc), dotted(loc), _message(error)))
    return issues


_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "model_type": "a mapping",
    "dict_type": "a mapping",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'{_suggestion(loc)}"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_describe(error['input'])}"
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _describe(value: object) -> str:
    """How a YAML value reads in a message: ``null``, ``1.5``, ``the string '80'``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f"the string '{value}'" if len(value) <= 40 else "a string"
    if isinstance(value, tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _suggestion(loc: Sequence[str | int]) -> str:
    """`` (did you mean 'priority'?)`` for a misspelt key, else ``""``."""
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `path`, found through the annotations."""
    annotation: object = Config
    for part in path:
        if isinstance(part, int):
            continue  # a list index: the item type is inside the same annotation
        model = _find_model(annotation)
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
    return _find_model(annotation)


def _find_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _find_model(argument)
        if found is not None:
            return found
    return None


def _parts(config: Config | None, data: dict[str, Any]) -> Parts:
    """What the cross-checks look at: the whole config, or what can be salvaged of it."""
    raw_instances = _raw(data, "vrrp", "instances")
    names: dict[str, int] = {}
    for index, item in enumerate(_items(raw_instances)):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.setdefault(item["name"], index)
    if config is not None:
        return Parts(
            instances=list(enumerate(config.vrrp.instances)),
            instance_names=names,
            sync_groups=list(enumerate(config.vrrp.sync_groups)),
            services=[ServicePart.whole(*item) for item in enumerate(config.ipvs.services)],
            sync_daemon=config.ipvs.sync_daemon,
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
_SERVICE_KEEP = frozenset({"address", "port", "fwmark", "family", "protocol", "forward", "check"})
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
