"""The configuration's JSON Schema: what editors check as you type (``ipvsd schema``).

The schema is made from the models themselves (`Config` and the models it
nests), so it cannot disagree with the loader about field names, nesting,
types, defaults, ranges or choices: the field types carry their limits into
it (`ipvsd.config.types`: a `Check`'s keywords, a `Plain`'s schema) and the
attribute docstrings become descriptions (`ipvsd.config.docstrings`). Each
model is a definition under ``$defs``, named by its class, with its fields in
declaration order and unknown keys refused. Two things are adjusted, each
because the model alone would say something wrong to an editor:

- ``node_name`` is optional: the loader, not the model, defaults it to the
  host name;
- descriptions are joined into paragraphs (the docstrings' line breaks are
  only wrapping). Defaults are written as the YAML spells them (``tcp``).

The schema accepts every config the loader accepts, and rejects most of what
the loader rejects. It cannot express the rules between fields
(`ipvsd.config.checks`: fwmark or address and port, duplicates, a real's
family...), a size counted in bytes rather than characters, or the exact
address checks (it says "IPv4 address"; the loader also refuses loopback
VIPs). ``ipvsd check-config`` stays the authority.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

from ipvsd.config import model
from ipvsd.config.docstrings import attribute_docstrings
from ipvsd.config.model import Config
from ipvsd.config.strict import Check, Model, Plain, Serialize, StringOr, dump_value

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "ipvsd configuration (ipvsd.yaml)"
DESCRIPTION = (
    "Configuration of ipvsd, the IPVS load-balancer daemon (default /etc/ipvsd/ipvsd.yaml). "
    'Unknown keys are errors and types are strict ("80" is not a port); durations are '
    "seconds. `ipvsd check-config` checks the rules between fields too."
)
_NULL = {"type": "null"}
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an ipvsd configuration file.

    Returns:
        A new JSON-compatible mapping on each call.
    """
    definitions: dict[str, dict[str, Any]] = {}
    _define(Config, definitions)
    definitions = _sorted(definitions)
    _describe_fields(definitions)
    schema = definitions.pop(Config.__name__)
    schema["required"] = [name for name in schema["required"] if name != "node_name"]
    if not schema["required"]:
        del schema["required"]
    schema.update(title=TITLE, description=DESCRIPTION)
    schema = {"$schema": DIALECT, "$defs": definitions, **dict(sorted(schema.items()))}
    _join_descriptions(schema)
    return schema


def _define(cls: type[Model], definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"$ref": ...}`` to `cls`'s definition, added to `definitions` on first use."""
    ref = {"$ref": f"#/$defs/{cls.__name__}"}
    if cls.__name__ in definitions:
        return ref
    definition: dict[str, Any] = {}
    definitions[cls.__name__] = definition  # before the fields: a model may nest itself
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        prop = _schema(info.annotation, definitions)
        if info.is_required():
            required.append(key)
        elif info.default_factory is None:
            prop["default"] = dump_value(info.default, info.annotation, "json")
        properties[key] = prop
    definition.update(additionalProperties=False, properties=properties, type="object")
    if cls.__doc__:
        definition["description"] = inspect.cleandoc(cls.__doc__)
    definition["title"] = cls.__name__
    if required:
        definition["required"] = required
    if cls.__schema_extra__ is not None:
        cls.__schema_extra__(definition)
    return ref


def _schema(annotation: Any, definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of the values of `annotation`."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *rules = get_args(annotation)
        schema: dict[str, Any] | None = None
        for rule in rules:
            if isinstance(rule, Plain):
                schema = json.loads(rule.schema)
            elif isinstance(rule, Check):
                schema = schema if schema is not None else _schema(base, definitions)
                schema.update((k, list(v) if isinstance(v, tuple) else v) for k, v in rule.schema)
            elif isinstance(rule, StringOr):
                inner = schema if schema is not None else _schema(base, definitions)
                schema = {"anyOf": [json.loads(rule.string.schema), inner]}
            elif not isinstance(rule, Serialize):
                raise TypeError(f"no JSON Schema for the rule {rule!r}")
        return schema if schema is not None else _schema(base, definitions)
    if origin in (typing.Union, types.UnionType):
        options: list[dict[str, Any]] = []
        for option in get_args(annotation):
            if option is not type(None):
                schema = _schema(option, definitions)
                # {"anyOf": [...]} alone is spread into this one, as pydantic did.
                options += schema["anyOf"] if schema.keys() == {"anyOf"} else [schema]
        return {"anyOf": [*options, _NULL]}
    if origin is tuple:
        return {"items": _schema(get_args(annotation)[0], definitions), "type": "array"}
    if origin is Literal:
        values = list(get_args(annotation))
        return {"enum": values, "type": _SCALARS[type(values[0])]}
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return _define(annotation, definitions)
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    raise TypeError(f"no JSON Schema for {annotation!r}")


def _describe_fields(definitions: dict[str, dict[str, Any]]) -> None:
    """Each model's properties get their attribute docstrings (`ipvsd.config.docstrings`),
    last, where `Model.__schema_extra__` gave none."""
    docs = attribute_docstrings(model)
    for name, definition in definitions.items():
        cls = getattr(model, name)
        for field_name, info in cls.model_fields.items():
            doc = docs.get(name, {}).get(field_name)
            prop = definition["properties"][info.alias or field_name]
            if doc is not None and "description" not in prop:
                prop["description"] = doc


def _sorted(node: Any, *, keep_order: bool = False) -> Any:
    """Keys in alphabetical order, but a model's properties in field order."""
    if isinstance(node, dict):
        items = node.items() if keep_order else sorted(node.items())
        return {
            key: value
            if key in ("default", "examples", "enum")
            else _sorted(value, keep_order=key == "properties")
            for key, value in items
        }
    if isinstance(node, list):
        return [_sorted(item) for item in node]
    return node


_WRAP = re.compile(r"(?<!\n)\n(?!\n)")
_DOUBLE_TICKS = re.compile(r"``([^`]+)``")


def _join_descriptions(node: object) -> None:
    """Docstring wrapping out of every description, ``code`` as Markdown's `code`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = _DOUBLE_TICKS.sub(r"`\1`", _WRAP.sub(" ", value))
            else:
                _join_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _join_descriptions(item)
