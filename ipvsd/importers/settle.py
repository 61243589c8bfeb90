"""Make an importer's output a config that ipvsd accepts, dropping what it refuses. Pure.

An importer converts directive by directive; some results are still refused
by ipvsd's rules as a whole (a loopback real, two services with one key, a
DR real on another port, a sync group naming an instance that was not
converted). `settle` runs the very validation ``ipvsd check-config`` runs
(the config model and `ipvsd.config.checks`) on the plain data, and for
each problem removes the smallest object that holds it and has a source
(a real rather than its service), reporting why through the importer's
`drop` callback, until nothing is refused. The output of an importer
therefore always passes ``ipvsd check-config``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ipvsd.config import validation_issues
from ipvsd.config.checks import check_parts
from ipvsd.config.model import Config
from ipvsd.config.parts import parts
from ipvsd.config.strict import ValidationError
from ipvsd.config.yaml_lines import LineTree
from ipvsd.errors import ConfigIssue

T = TypeVar("T")

_NO_LINES = LineTree(0, None)
_LINE_ZERO = re.compile(r" \((?:first on )?line 0\)")
_PLACEHOLDER_NODE = "importer"  # node_name defaults to the host name at run time


def issues(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """What ``ipvsd check-config`` would say about `data` (lines are 0)."""
    frozen = _frozen(data)
    assert isinstance(frozen, dict)
    frozen.setdefault("node_name", _PLACEHOLDER_NODE)
    config: Config | None = None
    found: list[ConfigIssue] = []
    try:
        config = Config.model_validate(frozen)
    except ValidationError as exc:
        found.extend(validation_issues(exc, "", _NO_LINES))
    found.extend(check_parts(parts(config, frozen), "", _NO_LINES))
    return found


def settle(
    data: dict[str, Any], origins: Mapping[int, T], drop: Callable[[T, str], None]
) -> dict[str, Any]:
    """Remove from `data`, in place, every object ipvsd refuses.

    Args:
        data: an importer's plain config data.
        origins: ``id(obj)`` → source of each object that may be dropped
            (an instance, a service, a real: dicts inside `data`).
        drop: called once per dropped object with its source and the
            problem, ``dotted.field: message`` relative to the object.

    Returns:
        `data`, now valid.

    Raises:
        AssertionError: a problem that no object with a source holds (an
            importer bug: it wrote something invalid outside its objects).
    """
    while True:
        found = issues(data)
        if not found:
            return data
        culprits: dict[int, tuple[Any, list[Any] | dict[str, Any], str | int]] = {}
        for issue in found:
            path = [int(part) if part.isdigit() else part for part in issue.field.split(".")]
            culprit = _culprit(data, path, origins)
            assert culprit is not None, f"importer wrote an invalid value: {issue}"
            obj, parent, key, depth = culprit
            if id(obj) not in culprits:
                where = ".".join(str(part) for part in path[depth:])
                message = _LINE_ZERO.sub("", issue.message)  # no lines here: say nothing of them
                drop(origins[id(obj)], f"{where}: {message}" if where else message)
                culprits[id(obj)] = (obj, parent, key)
        for _obj, parent, key in sorted(
            culprits.values(), key=lambda c: c[2] if isinstance(c[2], int) else -1, reverse=True
        ):
            del parent[key]  # type: ignore[arg-type]  # int keys index lists, str keys dicts


def _culprit(
    data: dict[str, Any], path: list[str | int], origins: Mapping[int, Any]
) -> tuple[Any, Any, str | int, int] | None:
    """The deepest object on `path` that has an origin: (obj, parent, key, depth)."""
    found = None
    node: Any = data
    for depth, part in enumerate(path, start=1):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            break
        parent, node = node, node[part]
        if id(node) in origins:
            found = (node, parent, part, depth)
    return found


def _frozen(value: Any) -> Any:
    """Lists as tuples, as the YAML reader gives them (the model is strict about it)."""
    if isinstance(value, dict):
        return {key: _frozen(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value
