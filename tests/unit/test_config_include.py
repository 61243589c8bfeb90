"""Top-level ``include``: fragments merged into the main config, every error at its own
file and line, duplicates across files with both places (issue 13 item 6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import ipvsd.config as config_module
from ipvsd.config import load_config, parse_config
from ipvsd.config.include import filesystem
from ipvsd.errors import ConfigError
from tests.unit.test_daemon import REAL_30, config_text, running

MAIN = """\
node_name: director1
include: [conf.d/*.yaml]
vrrp:
  instances:
    - {name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200/24]}
"""
WEB = """\
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      reals: [{address: 192.168.1.30}]
"""
DNS_VRRP = """\
vrrp:
  scripts:
    - {name: chk, command: [/bin/true]}
  instances:
    - name: VI_2
      interface: eth1
      vrid: 52
      virtual_ipaddresses: [192.168.1.201/24]
      track_scripts: [{script: chk}]
  sync_groups:
    - {name: G, instances: [VI_1, VI_2]}
ipvs:
  services:
    - {address: 192.168.1.201, port: 53, protocol: udp, reals: [{address: 192.168.1.30}]}
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory / "ipvsd.yaml"


def issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_fragments_add_their_items_in_sorted_order(tmp_path: Path) -> None:
    main = write(
        tmp_path, {"ipvsd.yaml": MAIN, "conf.d/20-dns.yaml": DNS_VRRP, "conf.d/10-web.yaml": WEB}
    )
    config = load_config(main)
    assert [i.name for i in config.vrrp.instances] == ["VI_1", "VI_2"]
    assert [s.port for s in config.ipvs.services] == [80, 53]  # 10-web before 20-dns
    assert [s.name for s in config.vrrp.scripts] == ["chk"]
    assert config.vrrp.sync_groups[0].instances == ("VI_1", "VI_2")
    # The exact reader (with lines) reads the same config as the fast one.
    text, resolve = main.read_text(), filesystem(tmp_path)
    assert config_module._parse_with_lines(text, str(main), None, resolve) == config


def test_an_error_in_a_fragment_is_at_its_file_line_and_own_field(tmp_path: Path) -> None:
    broken = DNS_VRRP.replace("vrid: 52", "vrid: 300")
    main = write(
        tmp_path, {"ipvsd.yaml": MAIN, "conf.d/10-web.yaml": WEB, "conf.d/dns.yaml": broken}
    )
    fragment = tmp_path / "conf.d" / "dns.yaml"
    assert issues(main) == [
        f"{fragment}:7: vrrp.instances.0.vrid: must be between 1 and 255",
    ]


def test_a_duplicate_across_files_names_both_places(tmp_path: Path) -> None:
    twice = DNS_VRRP.replace("name: VI_2", "name: VI_1").replace("[VI_1, VI_2]", "[VI_1]")
    twice = twice.replace("192.168.1.201/24", "192.168.1.200/24")
    main = write(tmp_path, {"ipvsd.yaml": MAIN, "conf.d/dns.yaml": twice})
    fragment = tmp_path / "conf.d" / "dns.yaml"
    assert issues(main) == [
        f"{fragment}:5: vrrp.instances.0.name: duplicate instance name 'VI_1' (first on {main}:5)",
        f"{fragment}:8: vrrp.instances.0.virtual_ipaddresses.0: 192.168.1.200 is already a VIP "
        f"of instance 'VI_1' ({main}:5)",
    ]


def test_a_fragment_holds_list_items_only_and_includes_nothing(tmp_path: Path) -> None:
    bad = "node_name: other\ninclude: [more/*.yaml]\nvrrp:\n  sync_groups: []\n  extra: 1\n"
    main = write(tmp_path, {"ipvsd.yaml": MAIN, "conf.d/bad.yaml": bad})
    fragment = tmp_path / "conf.d" / "bad.yaml"
    found = issues(main)
    assert found[0].startswith(f"{fragment}:1: node_name: not allowed in an included file")
    assert found[1] == (
        f"{fragment}:2: include: an included file cannot include further (list every pattern "
        "in the main file)"
    )
    assert found[2].startswith(f"{fragment}:5: vrrp.extra: not allowed in an included file")
    assert len(found) == 3


def test_a_missing_file_is_an_error_an_empty_glob_is_not(tmp_path: Path) -> None:
    main = write(tmp_path, {"ipvsd.yaml": MAIN.replace("[conf.d/*.yaml]", "[nothing/*.yaml]")})
    assert [i.name for i in load_config(main).vrrp.instances] == ["VI_1"]
    main.write_text(MAIN.replace("[conf.d/*.yaml]", "[conf.d/*.yaml, web.yaml]"))
    assert issues(main) == [
        f"{main}:2: include.1: cannot read {tmp_path / 'web.yaml'}: No such file or directory"
    ]


def test_yaml_errors_in_a_fragment_are_its_own(tmp_path: Path) -> None:
    main = write(tmp_path, {"ipvsd.yaml": MAIN, "conf.d/a.yaml": "ipvs:\n  services: [\n"})
    [issue] = issues(main)
    assert issue.startswith(f"{tmp_path / 'conf.d' / 'a.yaml'}:3: (yaml): YAML syntax")


def test_without_a_file_include_cannot_be_read() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MAIN, "text.yaml")
    assert [str(i) for i in caught.value.issues] == [
        "text.yaml:2: include: fragments are read next to a config file only (--config FILE)"
    ]


async def test_a_reload_reads_the_fragments_again(tmp_path: Path) -> None:
    sock = tmp_path / "ipvsd.sock"
    fragment = tmp_path / "conf.d" / "web.yaml"
    fragment.parent.mkdir()
    fragment.write_text(WEB)
    text = config_text(sock, services=False) + "include: [conf.d/*.yaml]\n"
    async with running(tmp_path, text) as h:
        await h.settle()
        assert h.weights() == {REAL_30: 1}
        fragment.write_text(
            WEB.replace("{address: 192.168.1.30}", "{address: 192.168.1.30, weight: 5}")
        )
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights() == {REAL_30: 5}
        fragment.write_text(WEB.replace("port: 80", "port: 0"))  # refused: the old one stays
        [error] = await h.daemon.reload()
        assert error.startswith(f"{fragment}:4: ipvs.services.0.port: ")
        await h.settle()
        assert h.weights() == {REAL_30: 5}
