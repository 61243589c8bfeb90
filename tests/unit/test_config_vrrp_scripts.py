"""``vrrp.scripts`` and an instance's ``track_scripts``: defaults and PATH:LINE errors."""

from __future__ import annotations

import pytest

from tests.unit.test_config import _issues, _only, _parse

INSTANCE = "{name: VI_1, interface: eth1, vrid: 51, virtual_ipaddresses: [192.168.1.200]"


def test_keepalived_defaults_and_track_scripts() -> None:
    config = _parse(
        f"""
        vrrp:
          scripts:
            - {{name: chk, command: [/bin/true]}}
          instances:
            - {INSTANCE}, track_scripts: [{{script: chk, weight: -20}}, ]}}
        """
    )
    script = config.vrrp.scripts[0]
    assert (script.interval, script.timeout, script.rise, script.fall) == (1.0, None, 1, 1)
    assert (script.weight, script.user, script.command) == (0, None, ("/bin/true",))
    track = config.vrrp.instances[0].track_scripts[0]
    assert (track.script, track.weight) == ("chk", -20)


def test_unknown_and_repeated_scripts_are_reported_at_their_lines() -> None:
    found = _issues(
        f"""
        vrrp:
          scripts:
            - {{name: chk, command: [/bin/true]}}
            - {{name: chk, command: [/bin/false]}}
          instances:
            - {INSTANCE},
               track_scripts: [{{script: nope}}, {{script: chk}}, {{script: chk}}]}}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (4, "vrrp.scripts.1.name", "duplicate script name 'chk' (first on line 3)"),
        (7, "vrrp.instances.0.track_scripts.0.script", "unknown script 'nope' (chk)"),
        (7, "vrrp.instances.0.track_scripts.2.script", "script 'chk' is already tracked (line 7)"),
    ]


def test_a_script_user_must_exist() -> None:
    _only(
        """
        vrrp:
          scripts:
            - {name: chk, command: [/bin/true], user: no-such-user-ipvsd}
        """,
        3,
        "vrrp.scripts.0.user",
        "no user 'no-such-user-ipvsd' on this host",
    )


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("weight", "255", "between -254 and 254"),
        ("interval", "0", "at least"),
        ("timeout", "0", "at least"),
        ("rise", "0", "between 1 and 1000"),
    ],
)
def test_script_fields_are_range_checked(field: str, value: str, fragment: str) -> None:
    _only(
        f"""
        vrrp:
          scripts:
            - {{name: chk, command: [/bin/true], {field}: {value}}}
        """,
        3,
        f"vrrp.scripts.0.{field}",
        fragment,
    )


def test_a_command_is_a_non_empty_argv() -> None:
    _only(
        """
        vrrp:
          scripts:
            - {name: chk, command: []}
        """,
        3,
        "vrrp.scripts.0.command",
        "must not be empty",
    )


def test_a_script_with_an_invalid_field_is_still_a_known_name() -> None:
    _only(
        f"""
        vrrp:
          scripts:
            - {{name: chk, command: [/bin/true], fall: 0}}
          instances:
            - {INSTANCE}, track_scripts: [{{script: chk}}]}}
        """,
        3,
        "vrrp.scripts.0.fall",
        "between 1 and 1000",
    )


def test_track_files_default_to_keepalived_weight_1() -> None:
    config = _parse(f"vrrp:\n  instances:\n    - {INSTANCE}, track_files: [{{path: /run/p}}]}}\n")
    track = config.vrrp.instances[0].track_files[0]
    assert (track.path, track.weight) == ("/run/p", 1)


def test_track_files_are_absolute_and_each_once() -> None:
    found = _issues(
        f"""
        vrrp:
          instances:
            - {INSTANCE},
               track_files: [{{path: run/p}}, {{path: /run/p}}, {{path: /run/p, weight: 0}}]}}
        """
    )
    assert [(i.line, i.field, i.message) for i in found] == [
        (4, "vrrp.instances.0.track_files.0.path", "'run/p' is not an absolute path"),
        (4, "vrrp.instances.0.track_files.2.path", "'/run/p' is already tracked (line 4)"),
    ]
