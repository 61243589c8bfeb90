"""Load and validate ipvsd's YAML configuration; every error points at its line.

Theory of operation
-------------------
A configuration goes through four steps. Each step collects problems instead
of stopping at the first, so ``ipvsd check-config`` lists them all, one line
each: ``PATH:LINE: dotted.field.path: message`` (`ConfigIssue`).

1. **Read** the YAML into plain data (dicts, tuples, scalars) and the line
   of every *field path* (``("ipvs", "services", 0, "port")``): the line of
   that key or list item. `ipvsd.config.events` builds both from the parser's
   events; for what only a walk over the node tree reports exactly (YAML
   syntax errors, with the line of the YAML mark; aliases to themselves; bad
   tags; ...), `ipvsd.config.yaml_lines` composes the tree and walks it. Duplicate
   keys are recorded and reading goes on.
   A top-level ``include`` adds the list items of fragment files
   (`ipvsd.config.include`); each fragment is read the same way, and its
   fields keep their own file, line and field path (`SourcedLines`), so an
   issue in a fragment points into the fragment.
2. **Validate fields** (`ipvsd.config.model` on `ipvsd.config.strict`: strict,
   unknown keys forbidden). An error's ``loc`` has the same shape as a field
   path, so its line is a look-up (`ipvsd.config.yaml_lines.Lines`); a path that is
   not written in the file (a missing required key) takes the line of its
   nearest written parent. Messages are rewritten short ("must be an integer, not a string",
   "unknown key 'prority' (did you mean 'priority'?)").
3. **Cross-check** (`ipvsd.config.checks`): rules between fields and objects
   (fwmark vs address/port, duplicate services and reals, a real's family,
   sync groups naming instances, ...). They run on every list item that
   validated on its own (`ipvsd.config.parts`), so they are reported even
   when step 2 failed somewhere else.
4. Any problem → `ConfigError` with all issues sorted by line. Otherwise the
   frozen `Config`, its ``group`` services expanded into one service per
   member (`ipvsd.config.expand`).

Most configurations are valid, and tracking lines is what makes reading a
big one slow (10,000 services: 180,000 field paths). So `parse_config`
first takes a fast path: steps 1-3 without lines, the YAML read from events
with libyaml's C parser, each service validated as soon as it is read (so
the plain data of all services never exists at once), and the cyclic
garbage collector paused. Only if that finds a problem, or YAML the fast
reader leaves to the exact one, does it start again with lines, as above.

`desired_table` (in `ipvsd.desired`, re-exported here) turns a `Config` into
the IPVS `Table` the reconciler converges the kernel to.

This module is pure apart from reading the file and its fragments in
`load_config` (and reading the host name there, through ``os.uname``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipvsd.config.checks import check_parts
from ipvsd.config.events import ItemHook, Unusual, read
from ipvsd.config.expand import bgp_defaults, expand_groups
from ipvsd.config.include import Part, Resolver, SourcedLines, expand, filesystem, merge
from ipvsd.config.model import (
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
from ipvsd.config.parts import parts
from ipvsd.config.strict import Model, ValidationError, models_in
from ipvsd.config.types import SCHEDULER_FLAGS, SCHEDULERS, CheckType, OnFailure
from ipvsd.config.yaml_lines import (
    ROOT_FIELD,
    YAML_FIELD,
    Document,
    FieldPath,
    Lines,
    LineTree,
    compose_document,
    dotted,
    locate,
)
from ipvsd.desired import desired_table
from ipvsd.errors import ConfigError, ConfigIssue
from ipvsd.gcpause import gc_paused

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
    return parse_config(
        text,
        name,
        default_node_name=os.uname().nodename,
        resolve=filesystem(Path(path).parent),
    )


def parse_config(
    text: str,
    path: str = "<config>",
    *,
    default_node_name: str | None = None,
    resolve: Resolver | None = None,
) -> Config:
    """Validate a configuration given as YAML text.

    Args:
        text: the YAML source.
        path: the file name used in issues.
        default_node_name: ``node_name`` when the text has none; None means
            the host name (``os.uname().nodename``).
        resolve: reads the fragments an ``include`` names (`ipvsd.config.include`);
            None: a config with ``include`` is refused (there is no file to read
            them next to).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: with every problem found, sorted by line.
    """
    # Parsing makes ~10 objects per field and no cycles (`ipvsd.gcpause`).
    with gc_paused():
        config = _parse_fast(text, default_node_name, resolve)
        if config is not None:
            return config
        return _parse_with_lines(text, path, default_node_name, resolve)


def _parse_with_lines(
    text: str, path: str, default_node_name: str | None, resolve: Resolver | None = None
) -> Config:
    """`parse_config` with line tracking: it finds every problem and says where it is."""
    document = _read_with_lines(text, path)
    issues = list(document.issues)
    data = document.data
    lines = document.lines
    if not isinstance(data, dict):
        what = "an empty file" if data is None else _describe(data)
        message = f"the configuration must be a mapping of settings, not {what}"
        issues.append(ConfigIssue(path, document.lines.line(()), ROOT_FIELD, message))
        raise ConfigError(issues)
    if "include" in data:
        data, lines = _included(data, lines, path, resolve, issues)
    data = _with_node_name(data, default_node_name)
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues.extend(validation_issues(exc, path, lines))
    issues.extend(check_parts(parts(config, data), path, lines))
    if issues:
        # The main file first, then each fragment; by line within a file.
        raise ConfigError(sorted(issues, key=lambda i: (i.path != path, i.path, i.line)))
    assert config is not None
    return bgp_defaults(expand_groups(config))


def _included(
    data: dict[str, Any],
    lines: Lines,
    path: str,
    resolve: Resolver | None,
    issues: list[ConfigIssue],
) -> tuple[dict[str, Any], Lines]:
    """`data` with the fragments of its ``include`` merged, and their lines; problems
    reading them go to `issues` (a malformed ``include`` is left to the model)."""
    patterns = data["include"]
    if not isinstance(patterns, tuple) or not all(isinstance(p, str) for p in patterns):
        return data, lines
    if not patterns:
        return data, lines
    if resolve is None:
        message = "fragments are read next to a config file only (--config FILE)"
        issues.append(ConfigIssue(path, lines.line(("include",)), "include", message))
        return data, lines
    fragments: list[Part] = []
    for index, fragment in expand(patterns, resolve):
        if fragment.text is None:
            where = lines.line(("include", index))
            issues.append(ConfigIssue(path, where, f"include.{index}", str(fragment.error)))
            continue
        try:
            document = _read_with_lines(fragment.text, fragment.name)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        issues.extend(document.issues)
        fragments.append(Part(fragment.name, document.data, document.lines))
    sourced = SourcedLines(lines)
    return merge(data, fragments, issues, sourced), sourced


_NO_LINES = LineTree(0, None)

# Validated while the YAML is read, so the plain data of all services never exists at once.
_HOOKS: dict[FieldPath, ItemHook] = {("ipvs", "services"): ServiceConfig.model_validate}


def config_advice(path: str | Path, config: Config) -> list[ConfigIssue]:
    """Warnings about `config`, loaded from `path` (`ipvsd.config.advice`), each at its
    line, as ``warning: ...`` issues; [] at once when no rule can apply.

    Reads the file again, with lines (only for a config in BGP mode).
    """
    if config.bgp is None:
        return []
    from ipvsd.config.advice import consistent_hashing_advice  # BGP configs only

    name = str(path)
    document = _read_with_lines(Path(path).read_text("utf-8"), name)
    data, lines = document.data, document.lines
    if not isinstance(data, dict):  # changed since `config` was loaded
        return []
    if "include" in data:
        data, lines = _included(data, lines, name, filesystem(Path(path).parent), [])
    try:
        unexpanded = Config.model_validate(_with_node_name(data, config.node_name))
    except ValidationError:  # changed since `config` was loaded
        return []
    # Before group expansion, so that each index is the one written in the file.
    services = bgp_defaults(unexpanded).ipvs.services
    return [
        ConfigIssue(
            *locate(lines, ("ipvs", "services", a.index, a.field), name), f"warning: {a.message}"
        )
        for a in consistent_hashing_advice(services)
    ]


def _parse_fast(
    text: str, default_node_name: str | None, resolve: Resolver | None = None
) -> Config | None:
    """The configuration if it is valid, else None; no line is tracked."""
    try:
        data = read(text, hooks=_HOOKS).data
    except Unusual:  # also when a service is invalid
        return None
    if not isinstance(data, dict):
        return None
    if "include" in data:
        data = _included_fast(data, resolve)
        if data is None:
            return None
    data = _with_node_name(data, default_node_name)
    try:
        config = Config.model_validate(data)
    except ValidationError:
        return None
    if check_parts(parts(config, data), "", _NO_LINES):
        return None
    return bgp_defaults(expand_groups(config))


def _included_fast(data: dict[str, Any], resolve: Resolver | None) -> dict[str, Any] | None:
    """`data` with its fragments merged, or None at the first problem (the exact path
    then reports it)."""
    patterns = data["include"]
    if patterns == ():
        return data
    if resolve is None or not isinstance(patterns, tuple):
        return None
    if not all(isinstance(pattern, str) for pattern in patterns):
        return None
    fragments: list[Part] = []
    for _, fragment in expand(patterns, resolve):
        if fragment.text is None:
            return None
        try:
            fragments.append(Part(fragment.name, read(fragment.text, hooks=_HOOKS).data, None))
        except Unusual:
            return None
    problems: list[ConfigIssue] = []
    merged = merge(data, fragments, problems)
    return None if problems else merged


def _read_with_lines(text: str, path: str) -> Document:
    """The document with the line of every field: from events, else from the node tree."""
    try:
        got = read(text, lines=True)
    except Unusual:
        return compose_document(text, path)
    assert got.lines is not None
    issues = tuple(ConfigIssue(path, line, dotted(field), msg) for field, line, msg in got.issues)
    return Document(got.data, got.lines, issues)


def _with_node_name(data: dict[str, Any], default_node_name: str | None) -> dict[str, Any]:
    if "node_name" in data:
        return data
    return {**data, "node_name": default_node_name or os.uname().nodename}


def validation_issues(exc: ValidationError, path: str, lines: Lines) -> list[ConfigIssue]:
    """Turn the error of validating `Config` into line-numbered issues.

    Args:
        exc: the error ``Config.model_validate`` raised.
        path: the file name used in issues.
        lines: where each field is written.

    Returns:
        One issue per problem, in the order they were found.
    """
    issues = []
    for error in exc.errors(include_url=False):
        loc: FieldPath = tuple(error["loc"])
        file, line, field = locate(lines, loc, path)
        issues.append(ConfigIssue(file, line, field, _message(error)))
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


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'{_suggestion(loc)}"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_describe(error['input'])}"
    message: str = error["msg"]
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
    import difflib  # only for a misspelt key

    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_at(path: Sequence[str | int]) -> type[Model] | None:
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


def _find_model(annotation: object) -> type[Model] | None:
    return next(models_in(annotation), None)
