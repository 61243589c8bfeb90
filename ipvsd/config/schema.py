"""The configuration's JSON Schema: what editors check as you type (``ipvsd schema``).

The schema is the pydantic model's (`Config`), so it cannot disagree with the
loader about field names, nesting, types, defaults, ranges or choices: the
field types carry their limits into it (`ipvsd.config.types`, ``_Rule`` and
``_Plain``) and the attribute docstrings become descriptions (`ipvsd.config.docstrings`,
read here rather than while the models are built). Three things
are adjusted here, each because the model alone would say something wrong
to an editor:

- ``node_name`` is optional: the loader, not the model, defaults it to the
  host name;
- a default is written as the YAML spells it (``tcp``, not the enum's 6):
  pydantic serialises defaults by the Python type, not by the field's
  serializer, in validation mode;
- descriptions are joined into paragraphs (the docstrings' line breaks are
  only wrapping), and fields get no generated titles ("Verify Tls").

The schema accepts every config the loader accepts, and rejects most of what
the loader rejects. It cannot express the rules between fields
(`ipvsd.config.checks`: fwmark or address and port, duplicates, a real's
family...), a size counted in bytes rather than characters, or the exact
address checks (it says "IPv4 address"; the loader also refuses loopback
VIPs). ``ipvsd check-config`` stays the authority.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, SchemaError, SchemaSerializer, core_schema

from ipvsd.config import model
from ipvsd.config.docstrings import attribute_docstrings
from ipvsd.config.model import Config

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "ipvsd configuration (ipvsd.yaml)"
DESCRIPTION = (
    "Configuration of ipvsd, the IPVS load-balancer daemon (default /etc/ipvsd/ipvsd.yaml). "
    'Unknown keys are errors and types are strict ("80" is not a port); durations are '
    "seconds. `ipvsd check-config` checks the rules between fields too."
)


class _Generator(GenerateJsonSchema):
    """pydantic's generator with YAML defaults and without generated field titles."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if "default" in json_schema and "default" in schema:
            inner: CoreSchema = schema["schema"]
            try:
                serializer = SchemaSerializer(inner)
            except SchemaError:  # a reference to a model's definition (``checks: ()``)
                return json_schema  # pydantic's own rendering of the default then
            json_schema["default"] = serializer.to_python(
                schema["default"], mode="json", warnings=False
            )
        return json_schema


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an ipvsd configuration file.

    Returns:
        A new JSON-compatible mapping on each call.
    """
    schema = Config.model_json_schema(schema_generator=_Generator)
    _describe_fields(schema)
    schema["required"] = [name for name in schema["required"] if name != "node_name"]
    if not schema["required"]:
        del schema["required"]
    schema.update(title=TITLE, description=DESCRIPTION)
    _join_descriptions(schema)
    return {"$schema": DIALECT, **schema}


def _describe_fields(schema: dict[str, Any]) -> None:
    """Each model's properties get their attribute docstrings (`ipvsd.config.docstrings`)."""
    docs = attribute_docstrings(model)
    for name, definition in [(Config.__name__, schema), *schema.get("$defs", {}).items()]:
        cls = getattr(model, name, None)
        properties = definition.get("properties")
        if cls is None or properties is None:
            continue
        for field_name, info in cls.model_fields.items():
            doc = docs.get(name, {}).get(field_name)
            key = info.alias or field_name
            prop = properties.get(key)
            if doc is not None and prop is not None and "description" not in prop:
                prop["description"] = doc


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
