"""The config's JSON Schema (`ipvsd schema`): complete, valid, and in step with the loader."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from ipvsd.cli import main
from ipvsd.config import parse_config
from ipvsd.config.reference import FORMATS, render
from ipvsd.config.schema import config_schema
from ipvsd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [
        ROOT / "etc" / "ipvsd.yaml",
        ROOT / "tests" / "data" / "config" / "full.yaml",
        *(ROOT / "examples").rglob("*.yaml"),
    ]
)
NULL = {"type": "null"}


def properties(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(Model.field, schema) of every field, the top level's included."""
    for name, prop in schema["properties"].items():
        yield f"Config.{name}", prop
    for model, definition in schema["$defs"].items():
        for name, prop in definition["properties"].items():
            yield f"{model}.{name}", prop


def unconstrained(node: Mapping[str, Any]) -> bool:
    """Whether `node`, or an alternative or item type in it, accepts any value at all."""
    if not node:
        return True
    options = [option for option in node.get("anyOf", ()) if option != NULL]
    if options and "type" not in node and any(unconstrained(option) for option in options):
        return True
    return "items" in node and unconstrained(node["items"])


def validator() -> Draft202012Validator:
    return Draft202012Validator(config_schema(), format_checker=FormatChecker())


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = config_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_field_has_a_description() -> None:
    missing = [name for name, prop in properties(config_schema()) if not prop.get("description")]
    assert missing == []


def test_every_field_has_a_type_or_choices() -> None:
    """A validator that hides its type behind a function leaves ``{}``: anything goes."""
    loose = [name for name, prop in properties(config_schema()) if unconstrained(prop)]
    assert loose == []


def test_ranges_and_choices_are_in_the_schema() -> None:
    defs = config_schema()["$defs"]
    service = defs["ServiceConfig"]["properties"]
    assert service["protocol"]["enum"] == ["tcp", "udp", "sctp"]
    assert "twos" in service["scheduler"]["enum"]
    assert service["forward"]["enum"] == ["nat", "dr", "tunnel"]
    assert service["on_failure"]["enum"] == ["drain", "remove"]
    assert service["scheduler_flags"]["items"]["enum"][-1] == "one-packet"
    assert defs["CheckConfig"]["properties"]["type"]["enum"] == [
        "tcp",
        "http",
        "https",
        "exec",
        "udp",
        "dns",
        "ping",
        "smtp",
        "none",
    ]
    instance = defs["VrrpInstanceConfig"]["properties"]
    assert (instance["vrid"]["minimum"], instance["vrid"]["maximum"]) == (1, 255)
    assert instance["auth_pass"]["anyOf"][0]["maxLength"] == 8
    assert defs["CheckConfig"]["properties"]["command"]["anyOf"][0]["minItems"] == 1


def test_defaults_are_written_as_in_yaml() -> None:
    """An enum default is written as the YAML spells it (protocol: tcp, not 6)."""
    defs = config_schema()["$defs"]
    service = defs["ServiceConfig"]["properties"]
    assert (service["protocol"]["default"], service["forward"]["default"]) == ("tcp", "nat")
    assert service["on_failure"]["default"] == "drain"
    tunnel = defs["TunnelConfig"]["properties"]
    assert (tunnel["type"]["default"], tunnel["checksum"]["default"]) == ("ipip", "none")
    assert defs["CheckConfig"]["properties"]["expected_status"]["default"] == [200]


def test_node_name_is_optional_as_in_the_loader() -> None:
    assert "required" not in config_schema()
    assert list(validator().iter_errors({})) == []
    assert parse_config("{}", default_node_name="lb1").node_name == "lb1"


def test_a_real_check_override_describes_the_field_it_replaces() -> None:
    override = config_schema()["$defs"]["CheckOverride"]["properties"]
    assert override["interval"]["description"].startswith(
        "This real's `interval`; null: the service check's. Seconds between"
    )


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_schema_accepts_every_shipped_config(path: Path) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator().iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


BASE = """\
vrrp:
  instances:
    - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      check: {type: exec, command: [/bin/true]}
      reals: [{address: 192.168.1.30}]
"""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("vrid: 51", "vrid: 0"),
        ("vrid: 51", "vrid: 256"),
        ("vrid: 51", "vrid: '51'"),
        ("vrid: 51", "vrid: 51, prority: 90"),
        ("eth1", "eth1/a"),
        ("192.168.1.200/24]", "vip.example.test]"),
        ("port: 80", "port: 65536"),
        ("port: 80", "port: 80\n      protocol: icmp"),
        ("port: 80", "port: 80\n      scheduler: fastest"),
        ("[/bin/true]", "[]"),
        ("type: exec", "type: icmp"),
        ("{address: 192.168.1.30}", "{address: 192.168.1.300}"),
        ("{address: 192.168.1.30}", "{address: 192.168.1.30, weight: -1}"),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(old: str, new: str) -> None:
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ConfigError):
        parse_config(text, default_node_name="lb1")
    assert list(validator().iter_errors(yaml.safe_load(text))) != []


def test_the_base_of_those_cases_is_valid() -> None:
    parse_config(BASE, default_node_name="lb1")
    assert list(validator().iter_errors(yaml.safe_load(BASE))) == []


def test_ipvsd_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()


@pytest.mark.parametrize("form", FORMATS)
def test_ipvsd_schema_prints_each_format(form: str, capsys: pytest.CaptureFixture[str]) -> None:
    """cli.py spells the formats out (building its parser must not load the config models)."""
    assert main(["schema", "--format", form]) == 0
    assert capsys.readouterr().out == render(form)
