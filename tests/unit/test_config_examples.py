"""etc/ipvsd.yaml names every field; examples/ pass check-config and are what the lab runs.

The reference lab (lab/reference/spec.py) builds each director's config from
its layout data; examples/ holds the same configs written for operators, with
comments. The lab's data stays the one source of the layouts: these tests fail
when an example and the config the lab runs differ in anything but the
lab's own paths (control socket and state directory in its work directory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest

from ipvsd.cli import main
from ipvsd.config import Config, load_config, parse_config
from ipvsd.config.strict import Model
from ipvsd.model import Family, ForwardMethod, Protocol
from lab.reference.spec import VARIANTS, Variant, director_config_text, spec_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ETC_EXAMPLE = ROOT / "etc" / "ipvsd.yaml"

#: (lab layout, director) -> (its example, the priority of every instance if the
#: example is another director's file, as its header comment says).
LAB_EXAMPLES: dict[tuple[Variant, str], tuple[str, int | None]] = {
    ("dr", "director1"): ("dr.yaml", None),
    ("dr", "director2"): ("dr.yaml", 90),
    ("nat", "director1"): ("nat-sync-group.yaml", None),
    ("nat", "director2"): ("nat-sync-group.yaml", 90),
    ("all-active", "director1"): ("all-active/director1.yaml", None),
    ("all-active", "director2"): ("all-active/director2.yaml", None),
    ("all-active", "director3"): ("all-active/director3.yaml", None),
    ("dualstack", "director1"): ("dualstack.yaml", None),
    ("dualstack", "director2"): ("dualstack.yaml", 90),
}


def models_in(annotation: object) -> list[type[Model]]:
    """The models in a field's annotation (``tuple[RealConfig, ...]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return [annotation]
    return [model for argument in get_args(annotation) for model in models_in(argument)]


def model_fields(model: type[Model] = Config) -> set[tuple[str, str]]:
    """(model name, field name) of every field reachable from `model`."""
    found = {(model.__name__, field.alias or name) for name, field in model.model_fields.items()}
    for field in model.model_fields.values():
        for inner in models_in(field.annotation):
            found |= model_fields(inner)
    return found


def test_etc_ipvsd_yaml_names_every_field() -> None:
    """Issue 12: each field is in use or in a comment (``name:``) of the commented example."""
    named = set(re.findall(r"\b([a-z_]+):", ETC_EXAMPLE.read_text()))
    missing = sorted(f"{model}.{name}" for model, name in model_fields() if name not in named)
    assert missing == []


#: The example configs: every YAML file but the fragments (conf.d/), which are checked
#: with the file that includes them.
CONFIGS = sorted(path for path in EXAMPLES.rglob("*.yaml") if "conf.d" not in path.parts)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_each_example_passes_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_the_examples_cover_the_issue_s_layouts() -> None:
    """DR, NAT with a sync group and connection sync, All-Active x 3, IPv6, dual stack, fwmark."""
    nat = load_config(EXAMPLES / "nat-sync-group.yaml")
    assert len(nat.vrrp.sync_groups) == 1
    assert nat.ipvs.sync_daemon is not None
    assert {s.forward for s in nat.ipvs.services} == {ForwardMethod.NAT}
    assert {s.forward for s in load_config(EXAMPLES / "dr.yaml").ipvs.services} == {
        ForwardMethod.DR
    }
    assert len(list((EXAMPLES / "all-active").glob("*.yaml"))) == 3
    ipv6 = load_config(EXAMPLES / "ipv6.yaml").ipvs.services
    assert {s.address_family for s in ipv6} == {Family.INET6}
    assert [s.fwmark for s in load_config(EXAMPLES / "fwmark.yaml").ipvs.services] == [1, 2]
    dualstack = load_config(EXAMPLES / "dualstack.yaml")
    assert {s.address_family for s in dualstack.ipvs.services} == {Family.INET, Family.INET6}
    assert [i.version for i in dualstack.vrrp.instances] == [2, 3]
    assert dualstack.vrrp.sync_groups[0].instances == ("VI_1", "VI_6")


def test_the_conf_d_example_is_its_main_file_and_every_fragment() -> None:
    """Issue 13: services and an instance in conf.d, appended in file-name order."""
    config = load_config(EXAMPLES / "conf-d" / "ipvsd.yaml")
    assert config.include == ("conf.d/*.yaml",)
    assert [i.name for i in config.vrrp.instances] == ["VI_1", "VI_DNS"]
    assert [(s.port, s.protocol) for s in config.ipvs.services] == [
        (80, Protocol.TCP),
        (443, Protocol.TCP),
        (53, Protocol.UDP),
    ]
    assert config.vrrp.sync_groups[0].instances == ("VI_1", "VI_DNS")


def test_every_director_of_every_lab_layout_has_an_example() -> None:
    lab = {(variant, d.name) for variant in VARIANTS for d in spec_for(variant).directors}
    assert set(LAB_EXAMPLES) == lab


def _dump(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json")


@pytest.mark.parametrize(("variant", "director"), sorted(LAB_EXAMPLES))
def test_the_lab_runs_the_example(variant: Variant, director: str, tmp_path: Path) -> None:
    name, priority = LAB_EXAMPLES[variant, director]
    example = load_config(EXAMPLES / name)
    if priority is not None:  # the other director of a pair, as the example's header says
        instances = tuple(
            i.model_copy(update={"priority": priority}) for i in example.vrrp.instances
        )
        example = example.model_copy(
            update={
                "node_name": director,
                "vrrp": example.vrrp.model_copy(update={"instances": instances}),
            }
        )
    text = director_config_text(spec_for(variant), director, tmp_path)
    lab = parse_config(text, f"lab {variant} {director}")
    # The lab keeps its socket and state in its work directory; all else must match.
    lab = lab.model_copy(update={"control": example.control, "state_dir": example.state_dir})
    assert _dump(lab) == _dump(example), (
        f"examples/{name} is not what the lab's {variant!r} layout runs on {director} "
        "(lab/reference/spec.py): change both together"
    )
