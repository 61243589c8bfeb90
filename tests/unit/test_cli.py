"""The command line: check-config output and exit codes, help text."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvsd.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(REPO / "etc" / "ipvsd.yaml")]) == 0
    assert capsys.readouterr().out == ""


def test_check_config_prints_path_line_field_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "ipvs:\n"
        "  services:\n"
        "    - address: 192.168.1.200\n"
        "      port: 80\n"
        "      reals:\n"
        "        - {address: 192.168.1.30, port: 80, weight: 70000}\n"
        "        - {address: 192.168.1.300, port: 80}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{config}:6: ipvs.services.0.reals.0.weight: ")
    assert lines[1].startswith(f"{config}:7: ipvs.services.0.reals.1.address: ")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "No such file" in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "check-config", "list", "SIGHUP", "exit status"):
        assert word in out
