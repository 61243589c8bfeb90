"""The config reference (docs/config.md, ipvsd.yaml(5)): generated, current, complete."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ipvsd.config.reference import reference_markdown, reference_roff, sections
from tests.unit.test_config_examples import model_fields

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "config.md"
REGENERATE = ".venv/bin/python -m ipvsd schema --format markdown > docs/config.md"


def field_paths() -> list[str]:
    return [field.path for section in sections() for field in section.fields]


def test_docs_config_md_is_generated_from_the_model() -> None:
    assert DOCS.read_text() == reference_markdown(), (
        f"docs/config.md is stale: regenerate it with `{REGENERATE}`"
    )


def test_the_reference_has_every_field_of_the_model() -> None:
    paths = field_paths()
    assert len(paths) == len(set(paths))
    assert {path.rsplit(".", 1)[-1] for path in paths} == {name for _, name in model_fields()}
    assert "ipvs.services[].reals[].check.expected_status" in paths
    assert "ipvs.services[].reals[].tunnel.checksum" in paths


def test_every_field_path_has_a_row_and_a_man_page_entry() -> None:
    markdown, roff = reference_markdown(), reference_roff()
    for path in field_paths():
        assert f"| `{path}` |" in markdown
        assert f"\n.B {path}\n" in roff


def test_a_row_says_type_default_range_and_description() -> None:
    rows = {line.split(" | ")[0]: line for line in reference_markdown().splitlines()}
    assert rows["| `vrrp.instances[].priority`"] == (
        "| `vrrp.instances[].priority` | integer | `100` | 1..255 | "
        "1-254 backup, 255 address owner (RFC 3768 §5.3.4). |"
    )
    protocol = rows["| `ipvs.services[].protocol`"]
    assert "| string | `tcp` | `tcp`, `udp`, `sctp` |" in protocol
    assert "| required |" in rows["| `vrrp.instances[].vrid`"]


def test_sections_follow_the_model_depth_first() -> None:
    titles = [section.title for section in sections()]
    assert titles[:5] == ["top level", "control", "metrics", "vrrp", "vrrp.instances[]"]
    assert titles.index("ipvs.services[]") < titles.index("ipvs.services[].reals[].check")
    assert "ipvs.services[].tunnel" in titles
    assert "ipvs.services[].reals[].tunnel" in titles


def test_the_man_page_is_roff_that_groff_reads_without_warnings() -> None:
    roff = reference_roff()
    assert roff.splitlines()[1].startswith(".TH IPVSD.YAML 5 ")
    text_lines = [line for line in roff.splitlines() if not line.startswith(".")]
    assert not [line for line in text_lines if line.startswith("'")]
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        [groff, "-ww", "-man", "-Tutf8", "-z"], input=roff, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")
