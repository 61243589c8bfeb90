"""``ipvsd plan``: text, --json, usage errors, and --out configs that pass check-config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipvsd.cli import main
from ipvsd.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REFERENCE = ["--tolerate", "1", "--demand", "1.5G", "--link", "1G"]


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["plan", *argv, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_reference_scenario_json(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _json(capsys, "--directors", "3", *REFERENCE)
    assert plan["fits"] is True
    assert plan["vips"] == 6
    assert plan["directors"] == ["director1", "director2", "director3"]
    assert plan["demand_bps"] == 1_500_000_000
    assert plan["link_bps"] == 1_000_000_000
    assert plan["worst_load_bps"] == 750_000_000
    assert plan["margin_bps"] == 250_000_000
    assert len(plan["assignments"]) == 6
    # Anyone can recompute the loads from the assignments alone.
    for failure in plan["failures"]:
        held: dict[str, int] = {}
        for assignment in plan["assignments"]:
            live = {d: p for d, p in assignment["priorities"].items() if d not in failure["failed"]}
            owner = max(live, key=live.__getitem__)
            held[owner] = held.get(owner, 0) + 1
        assert held == failure["vips"]
        expected = 500_000_000 if not failure["failed"] else 750_000_000
        assert set(failure["load_bps"].values()) == {expected}


def test_reference_scenario_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--directors", "3", *REFERENCE]) == 0
    out = capsys.readouterr().out
    assert "fits: yes, 250 Mbit/s (25% of a link) to spare after any 1 failure\n" in out
    assert "the busiest director then carries 750 Mbit/s\n" in out
    assert "VIPs: 6 of 250 Mbit/s each" in out
    assert "  director1  down            3 = 750 Mbit/s  3 = 750 Mbit/s" in out


def test_four_directors_need_twelve(capsys: pytest.CaptureFixture[str]) -> None:
    assert _json(capsys, "--directors", "4", *REFERENCE)["vips"] == 12


def test_names_and_the_5_2_answer(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _json(capsys, "-n", "a,b,c,d,e", "-k", "2", "--demand", "2.5G", "--link", "1G")
    assert plan["directors"] == ["a", "b", "c", "d", "e"]
    assert plan["vips"] == 60
    assert plan["worst_load_bps"] == round(2.5e9 / 3)
    assert len(plan["failures"]) == 1 + 5 + 10


def test_not_fitting_exits_1_with_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--directors", "3", "-k", "1", "--demand", "2.5G", "--link", "1G"]) == 1
    out = capsys.readouterr().out
    assert "fits: NO, 250 Mbit/s over a link after any 1 failure\n" in out
    assert "the busiest director then carries 1.25 Gbit/s\n" in out


def test_vip_pool_names_the_vips(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _json(capsys, "--directors", "3", *REFERENCE, "--vip-pool", "192.168.1.201/24")
    assert [a["vip"] for a in plan["assignments"]] == [f"192.168.1.{n}" for n in range(201, 207)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--directors", "3", "-k", "1", "--demand", "1.5GB", "--link", "1G"], "bytes"),
        (["--directors", "3", "-k", "1", "--demand", "1.5G", "--link", "x"], "not a rate"),
        (["--directors", "3", "-k", "3", "--demand", "1G", "--link", "1G"], "K must be 0 to 2"),
        (["--directors", "0", "-k", "0", "--demand", "1G", "--link", "1G"], "from 1 to 64"),
        (["--directors", "a,a", "-k", "1", "--demand", "1G", "--link", "1G"], "repeat"),
        (["--directors", "a,../b", "-k", "1", "--demand", "1G", "--link", "1G"], "not a director"),
        (["--directors", "3", "-k", "-1", "--demand", "1G", "--link", "1G"], "whole number"),
        (["--directors", "a=10.0.0.1,b", "-k", "1", "--demand", "1G", "--link", "1G"], "or none"),
        (
            ["--directors", "a=10.0.0.x,b=1", "-k", "1", "--demand", "1G", "--link", "1G"],
            "not an IP",
        ),
        (["--directors", "3", *REFERENCE, "--out", "x"], "go together"),
        (["--directors", "3", *REFERENCE, "--out", "x", "--template", "y"], "needs --vip-pool"),
        (["--directors", "3", *REFERENCE, "--vip-pool", "10.0.0.1/30"], "needs 6 VIPs"),
        (["--directors", "3", *REFERENCE, "--vip-pool", "10.0.0.300/24"], "not ADDRESS/PREFIX"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["plan", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_out_writes_configs_that_pass_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan"
    argv = ["plan", "--directors", "director1,director2,director3", *REFERENCE]
    argv += ["--vip-pool", "192.168.1.201/24", "--out", str(out)]
    assert main([*argv, "--template", str(EXAMPLES / "dr.yaml")]) == 0
    err = capsys.readouterr().err
    assert "ipvs.sync_daemon dropped" in err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["director1.yaml", "director2.yaml", "director3.yaml"]
    expected = {  # the reference layout: design.md's All-Active, VI_1..VI_6
        "director1": [100, 100, 80, 90, 90, 80],
        "director2": [90, 80, 100, 100, 80, 90],
        "director3": [80, 90, 90, 80, 100, 100],
    }
    for path in files:
        assert main(["check-config", "--config", str(path)]) == 0
        config = load_config(path)
        assert config.node_name == path.stem
        instances = config.vrrp.instances
        assert [i.priority for i in instances] == expected[path.stem]
        assert [i.vrid for i in instances] == list(range(51, 57))
        assert {i.interface for i in instances} == {"eth1"}
        assert [str(i.virtual_ipaddresses[0].address) for i in instances] == [
            f"192.168.1.{n}/24" for n in range(201, 207)
        ]
        # dr.yaml's two services on its VIP (80, 9000), repeated on each of the six.
        assert len(config.ipvs.services) == 12
        assert config.ipvs.sync_daemon is None
    assert capsys.readouterr().out == ""


def test_out_with_an_ipv6_pool_makes_vrrpv3(tmp_path: Path) -> None:
    argv = ["plan", "-n", "2", "-k", "1", "--demand", "1G", "--link", "1G"]
    argv += ["--vip-pool", "fd00:1::201/64", "--out", str(tmp_path)]
    assert main([*argv, "--template", str(EXAMPLES / "dualstack.yaml")]) == 0
    config = load_config(tmp_path / "director1.yaml")
    assert {i.version for i in config.vrrp.instances} == {3}
    addresses = [str(s.address) for s in config.ipvs.services]
    # The IPv6 service is on both new VIPs; the IPv4 ones stay as they were.
    assert addresses.count("fd00:1::201") == addresses.count("fd00:1::202") == 1
    assert "192.168.1.200" in addresses


def test_a_pool_of_the_other_family_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "-n", "3", *REFERENCE, "--vip-pool", "fd00:1::200/64"]
    argv += ["--out", str(tmp_path), "--template", str(EXAMPLES / "dr.yaml")]
    assert main(argv) == 1
    assert "IPv6 pool, IPv4 template" in capsys.readouterr().err


def test_a_template_without_vrrp_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump({"node_name": "x"}))
    argv = ["plan", "-n", "3", *REFERENCE, "--vip-pool", "10.0.0.0/24"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--template", str(template)]) == 1
    assert "has no vrrp.instances" in capsys.readouterr().err


def test_an_invalid_template_reports_check_config_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("vrrp:\n  instances:\n    - name: VI_1\n      vrid: 999\n")
    argv = ["plan", "-n", "3", *REFERENCE, "--vip-pool", "10.0.0.0/24"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--template", str(template)]) == 1
    assert f"{template}:4:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_docs_show_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/plan.md's example is this version's output, word for word."""
    docs = (EXAMPLES.parent / "docs" / "plan.md").read_text()
    example = docs.split("\n$ ipvsd plan ", 1)[1].split("```", 1)[0]
    arguments, _, shown = example.partition("\n")
    assert main(["plan", *arguments.split()]) == 0
    assert capsys.readouterr().out == shown


def test_addresses_become_unicast_peers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((EXAMPLES / "dr.yaml").read_text())
    data["vrrp"]["instances"][0]["unicast_peers"] = ["192.168.1.20"]
    data["vrrp"]["instances"][0]["unicast_src"] = "192.168.1.10"
    template = tmp_path / "unicast.yaml"
    template.write_text(yaml.safe_dump(data))
    directors = "lb1=192.168.1.10,lb2=192.168.1.20,lb3=192.168.1.25"
    argv = ["plan", "--directors", directors, *REFERENCE, "--vip-pool", "192.168.1.201/24"]
    assert main([*argv, "--json", "--out", str(tmp_path / "o"), "--template", str(template)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["directors"] == ["lb1", "lb2", "lb3"]
    assert plan["addresses"] == {
        "lb1": "192.168.1.10",
        "lb2": "192.168.1.20",
        "lb3": "192.168.1.25",
    }
    config = load_config(tmp_path / "o" / "lb3.yaml")
    for instance in config.vrrp.instances:
        assert [str(a) for a in instance.unicast_peers] == ["192.168.1.10", "192.168.1.20"]
        assert str(instance.unicast_src) == "192.168.1.25"
    v6 = directors.replace("192.168.1.", "fd00::")
    argv = ["plan", "--directors", v6, *REFERENCE, "--vip-pool", "192.168.1.201/24"]
    assert main([*argv, "--out", str(tmp_path / "o6"), "--template", str(template)]) == 1
    assert "unicast peers are of the instance's family" in capsys.readouterr().err


def test_addresses_show_in_the_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "plan",
                "--directors",
                "a=10.0.0.1,b=10.0.0.2",
                "-k",
                "1",
                "--demand",
                "1G",
                "--link",
                "1G",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(
        "All-Active plan: 2 directors (a 10.0.0.1, b 10.0.0.2), tolerating 1 failure\n"
    )
