"""The configuration reference, generated from the JSON Schema: Markdown and roff (pure).

Theory of operation
-------------------
docs/config.md and the ``ipvsd.yaml(5)`` man page are rendered from
`config_schema`, which is rendered from the model: a field added to
`ipvsd.config.model` appears in both, with the type, default, limits and
description the loader enforces, and a test fails while docs/config.md is
stale (regenerate it with ``python -m ipvsd schema --format markdown``).

`sections` walks the schema once into `Section` / `FieldDoc` values: one
section per mapping, named by its path (``vrrp.instances[]``: ``[]`` is a
list item), in the order the model declares them, depth first. A mapping
reached by two paths (``tunnel`` of a service and of a real) is a section at
each. The two renderers only format those values.

The prose around the tables (how to check a file, the rules between fields
that no schema can state) is here, next to the generator, and short.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ipvsd import __version__
from ipvsd.config.schema import config_schema


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One field of the reference.

    Attributes:
        path: dotted path from the top, ``[]`` for a list item (``vrrp.instances[].vrid``).
        type: what the value is ("integer", "list of IP address", "mapping").
        default: the default as YAML, "required", or "" (none: see the description).
        allowed: its range, length or choices ("1-255"; "`tcp`, `udp`"), or "".
        description: what it means, with `code` in Markdown's backticks.
        section: the path of the mapping this field opens, or None.
    """

    path: str
    type: str
    default: str
    allowed: str
    description: str
    section: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """A mapping of the config: its path ("" for the top), description and fields."""

    path: str
    description: str
    fields: tuple[FieldDoc, ...]

    @property
    def title(self) -> str:
        return self.path or "top level"


def sections(schema: Mapping[str, Any] | None = None) -> list[Section]:
    """Every mapping of the config, depth first in declaration order.

    Args:
        schema: a config JSON Schema; None: `config_schema()`.
    """
    schema = config_schema() if schema is None else schema
    return list(_Walker(schema["$defs"]).walk("", schema))


@dataclass(frozen=True, slots=True)
class _Walker:
    defs: Mapping[str, Any]

    def walk(self, path: str, node: Mapping[str, Any]) -> Iterator[Section]:
        required = set(node.get("required", ()))
        fields: list[FieldDoc] = []
        below: list[tuple[str, Mapping[str, Any]]] = []
        for name, prop in node["properties"].items():
            field_path = f"{path}.{name}" if path else name
            value, nullable = _non_null(prop)
            opens = self._opens(field_path, value)
            if opens is not None:
                below.append(opens)
            fields.append(
                FieldDoc(
                    path=field_path,
                    type=_type_name(value) + (", or null" if nullable else ""),
                    default=_default(prop, name in required),
                    allowed=_allowed(value),
                    description=prop.get("description", ""),
                    section=None if opens is None else opens[0],
                )
            )
        yield Section(path, node.get("description", ""), tuple(fields))
        for sub_path, sub in below:
            yield from self.walk(sub_path, sub)

    def _opens(self, path: str, value: Mapping[str, Any]) -> tuple[str, Any] | None:
        """The section a field opens: a mapping at `path`, a list of them at ``path[]``."""
        items = value.get("items", {})
        for where, node in ((path, value), (f"{path}[]", items)):
            # A string or a mapping (a VIP): the mapping's fields get a section.
            for option in (node, *node.get("anyOf", ())):
                if "$ref" in option:
                    return where, self.defs[option["$ref"].rsplit("/", 1)[-1]]
        return None


def _non_null(prop: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The schema of the value without its ``null`` alternative, and whether it had one."""
    options = prop.get("anyOf")
    if options is None or {"type": "null"} not in options:
        return prop, False
    rest = [option for option in options if option != {"type": "null"}]
    return (rest[0] if len(rest) == 1 else {"anyOf": rest}), True


_FORMATS = {"ipv4": "IPv4 address", "regex": "regular expression"}


def _type_name(node: Mapping[str, Any]) -> str:
    if "$ref" in node:
        return "mapping"
    kind = node.get("type")
    if kind == "array":
        item = _type_name(node.get("items", {}))
        return f"list of {item}{'es' if item.endswith('s') else 's'}"
    options = node.get("anyOf", ())
    formats = {option.get("format") for option in options}
    if formats == {"ipv4", "ipv6"}:
        return "IP address"
    if options and any("$ref" in option for option in options):
        return " or ".join(_type_name(option) for option in options)
    if node.get("format") in _FORMATS:
        return _FORMATS[node["format"]]
    return str(kind or "any")


def _yaml(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if not isinstance(value, str) else value


def _default(prop: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    return _yaml(prop["default"]) if "default" in prop else ""


def _span(low: object, high: object, unit: str = "") -> str:
    """``1..255``, ``>= 0.1``, ``not empty``: a range as the contract's YAML comments write it."""
    if low is not None and high is not None:
        return f"{_yaml(low)}..{_yaml(high)}{unit}"
    if low == 1 and unit:
        return "not empty"
    if low is not None:
        return f">= {_yaml(low)}{unit}"
    return f"<= {_yaml(high)}{unit}" if high is not None else ""


_SHORT_PATTERN = 40
"""Longer patterns are left to the description: a reference is read, not parsed."""


def _allowed(node: Mapping[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(", ".join(f"`{choice}`" for choice in node["enum"]))
    parts.append(_span(node.get("minimum"), node.get("maximum")))
    parts.append(_span(node.get("minLength"), node.get("maxLength"), " characters"))
    parts.append(_span(node.get("minItems"), node.get("maxItems"), " items"))
    pattern = node.get("pattern", "")
    if pattern and len(pattern) <= _SHORT_PATTERN and "format" not in node:
        parts.append(f"matches `{pattern}`")
    items = _allowed(node["items"]) if "items" in node and "$ref" not in node["items"] else ""
    if items:
        parts.append(f"each {items}")
    if "examples" in node:
        parts.append("e.g. " + ", ".join(f"`{example}`" for example in node["examples"]))
    return "; ".join(part for part in parts if part)


# --- the prose around the tables ---------------------------------------------------------

INTRO = (
    "ipvsd reads one YAML file, `/etc/ipvsd/ipvsd.yaml` unless `--config` names another. "
    "`ipvsd check-config --config PATH` validates it without touching the kernel and prints "
    "every problem as `PATH:LINE: dotted.field.path: message` (list items numbered from 0: "
    "`ipvs.services.0.port`).",
    'Unknown keys are errors, and types are strict: `"80"` is not a port and `1` is not '
    "`true`. Durations are in seconds. A field left out takes its default; `null` is a value "
    'only where the type says "or null".',
    "Editors that speak JSON Schema (yaml-language-server: VS Code, Neovim, Helix...) check "
    "the file as you type: `ipvsd schema > ipvsd.schema.json`, then start the file with "
    "`# yaml-language-server: $schema=ipvsd.schema.json`. The schema has every field below; "
    "`check-config` also applies the rules between fields.",
    "Example configurations: `etc/ipvsd.yaml` (commented; it names every field) and "
    "`examples/` in the sources: DR, two-armed NAT with a sync group, All-Active with three "
    "directors, IPv6, fwmark, a service group with quorum.",
)

RULES = (
    "A service has `address` and `port`, or `fwmark` (then `family` may say ipv6, and "
    "`protocol` stays tcp), or `group`: the name of an `ipvs.service_groups` entry, whose "
    "members it stands for (one service each, the reals checked once for all of them).",
    "Service group names are unique, a group has at least one member, and an address appears "
    "once among a group's members.",
    "Services are unique by address, port and protocol (or fwmark and family); reals by "
    "address and port within their service.",
    "A real (and the sorry server) has its service's address family unless it is forwarded "
    "by `tunnel`; DR and tunnel reals keep the service's port (0 or the same).",
    "A real's `lower_threshold` is not above its `upper_threshold`.",
    "The sorry server is not one of the service's reals; `hysteresis` needs `quorum`.",
    "`ha_suspend` is for a service whose address is a VIP of a VRRP instance, which may not "
    "track that service with weight 0.",
    "An instance's `track_services` name services of `ipvs.services` (a group member by its "
    "own address), each once.",
    "`persistence_netmask` is 1-32 for an IPv4 service, 1-128 for an IPv6 one.",
    "`tunnel` settings are for `forward: tunnel`; `gue` needs a `port`, `ipip` takes no "
    "`checksum`.",
    "A real's merged check has a `type`, an exec check has a `command`, and a tcp/http/https "
    "check of a real with port 0 has a `port`.",
    "VRRP instance names are unique, one `interface` + `vrid` + address family is one "
    "instance (an IPv4 and an IPv6 instance may share a VRID), and a VIP belongs to one "
    "instance.",
    "Sync groups and `ipvs.sync_daemon.vrrp_instance` name existing instances; an instance is "
    "in at most one sync group; `ipvs.sync_daemon.group` is a multicast address.",
)

_GENERATED = "Generated from ipvsd/config/model.py by `python -m ipvsd schema --format {}`"


FORMATS = ("json", "markdown", "roff")
"""What `render` writes: the JSON Schema, docs/config.md, or the ipvsd.yaml(5) man page."""


def render(form: str) -> str:
    """`config_schema` as indented JSON, `reference_markdown` or `reference_roff`.

    Args:
        form: one of `FORMATS`.
    """
    if form == "json":
        return json.dumps(config_schema(), indent=2) + "\n"
    if form == "markdown":
        return reference_markdown()
    if form == "roff":
        return reference_roff()
    raise ValueError(f"unknown format {form!r} (one of: {', '.join(FORMATS)})")


# --- Markdown ----------------------------------------------------------------------------


def reference_markdown(schema: Mapping[str, Any] | None = None) -> str:
    """docs/config.md: the whole reference in Markdown (GitHub tables)."""
    found = sections(schema)
    out = [
        f"<!-- {_GENERATED.format('markdown')} > docs/config.md; do not edit. -->",
        "",
        "# ipvsd.yaml: configuration reference",
        "",
    ]
    for paragraph in INTRO:
        out += [paragraph, ""]
    out += ["## Contents", ""]
    out += [f"- [{_md_title(s)}](#{_anchor(s.title)})" for s in found]
    out += ["- [Rules between fields](#rules-between-fields)", ""]
    for section in found:
        out += [f"## {_md_title(section)}", ""]
        if section.path and section.description:  # the top's is the intro, for editors
            out += [section.description, ""]
        out += ["| Field | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
        out += [_md_row(field) for field in section.fields]
        out.append("")
    out += ["## Rules between fields", ""]
    out += ["These are checked by the loader (`ipvsd check-config`), not by the schema:", ""]
    out += [f"- {rule}" for rule in RULES]
    return "\n".join(out) + "\n"


def _md_title(section: Section) -> str:
    return f"`{section.path}`" if section.path else "Top level"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _md_row(field: FieldDoc) -> str:
    kind = field.type
    if field.section is not None:
        kind = f"[{kind}](#{_anchor(field.section)})"
    default = f"`{field.default}`" if field.default not in ("", "required") else field.default
    cells = (f"`{field.path}`", kind, default, field.allowed, field.description)
    return "| " + " | ".join(_md_cell(cell) for cell in cells) + " |"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n\n", "<br><br>").replace("\n", " ")


# --- roff (man page ipvsd.yaml(5)) -------------------------------------------------------


def reference_roff(schema: Mapping[str, Any] | None = None) -> str:
    """The ipvsd.yaml(5) man page: the same reference as `reference_markdown`, in roff."""
    out = [
        f'.\\" {_GENERATED.format("roff")}; do not edit.',
        f'.TH IPVSD.YAML 5 "" "ipvsd {__version__}" "File Formats Manual"',
        ".SH NAME",
        "ipvsd.yaml \\- configuration file of ipvsd, the IPVS load\\-balancer daemon",
        ".SH SYNOPSIS",
        ".I /etc/ipvsd/ipvsd.yaml",
        ".SH DESCRIPTION",
    ]
    for paragraph in INTRO:
        out += [".PP", _roff(paragraph)]
    out.append(".SH FIELDS")
    for section in sections(schema):
        out.append(f".SS {_roff(section.title)}")
        if section.path and section.description:
            out += [_roff(section.description), ".PP"]
        for field in section.fields:
            facts = [field.type, field.default and f"default {field.default}", field.allowed]
            out += [
                ".TP",
                f".B {_roff(field.path)}",
                _roff("; ".join(fact for fact in facts if fact) + "."),
                ".br",
                _roff(field.description),
            ]
    out.append(".SH RULES BETWEEN FIELDS")
    for rule in RULES:
        out += [".IP \\(bu 2", _roff(rule)]
    out += [".SH SEE ALSO", ".BR ipvsd (8),", ".BR ipvsadm (8),", ".BR keepalived.conf (5)"]
    return "\n".join(out) + "\n"


_CODE = re.compile(r"`([^`]+)`")


def _roff(text: str) -> str:
    """`text` as one roff text line: escapes, `code` in bold, no leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = _CODE.sub(r"\\fB\1\\fR", text).replace("\n\n", "\n.PP\n").replace("\n", " ")
    return "\\&" + text if text.startswith((".", "'")) else text
