"""Config of several checks per real (``checks``) and of the ping and smtp checks (issue 13)."""

from __future__ import annotations

import textwrap

import pytest

from ipvsd.config import parse_config
from ipvsd.config.model import Config
from ipvsd.config.types import CheckType
from ipvsd.errors import ConfigError, ConfigIssue


def _parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text).removeprefix("\n"), "t.yaml", default_node_name="n1")


def _issues(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    found: list[ConfigIssue] = list(info.value.issues)
    return [(issue.line, issue.field, issue.message) for issue in found]


def test_a_real_runs_its_check_then_its_or_the_services_checks() -> None:
    config = _parse(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 25
              check: {type: tcp, interval: 5}
              checks:
                - {type: smtp, helo_name: lb.example}
                - {type: ping}
              reals:
                - {address: 192.168.1.30}
                - {address: 192.168.1.40, checks: [{type: none}, {type: ping, timeout: 2}]}
                - {address: 192.168.1.50, check: {type: none}, checks: []}
        """
    )
    service = config.ipvs.services[0]
    first, second, third = (service.checks_for(real) for real in service.reals)
    assert [c.type for c in first] == [CheckType.TCP, CheckType.SMTP, CheckType.PING]
    assert first[1].helo_name == "lb.example"
    assert [(c.type, c.timeout) for c in second] == [(CheckType.TCP, 1.0), (CheckType.PING, 2.0)]
    assert third == ()


def test_problems_of_listed_checks_are_reported_at_their_index() -> None:
    assert _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 25
              checks:
                - {type: tcp}
                - {type: exec}
              reals:
                - address: 192.168.1.30
                  checks:
                    - {type: tcp, helo_name: lb.example}
                    - {type: ping, payload: "x"}
        """
    ) == [
        (7, "ipvs.services.0.checks.1.command", "is required for type exec"),
        (
            11,
            "ipvs.services.0.reals.0.checks.0.helo_name",
            "only for type smtp (this check is tcp)",
        ),
        (12, "ipvs.services.0.reals.0.checks.1.payload", "only for type udp (this check is ping)"),
    ]


def test_helo_name_is_only_for_smtp_and_a_host_name() -> None:
    found = _issues(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 25
              check: {type: smtp, helo_name: "bad name"}
            - address: 192.168.1.200
              port: 26
              check: {type: smtp}
              reals:
                - {address: 192.168.1.30, check: {type: tcp, helo_name: lb.example}}
        """
    )
    assert [(line, field) for line, field, _ in found] == [
        (5, "ipvs.services.0.check.helo_name"),
        (10, "ipvs.services.1.reals.0.check.helo_name"),
    ]
    assert found[0][2].startswith("'bad name' is not a host name or IP address")
    assert found[1][2] == "only for type smtp (this check is tcp)"


def test_port_checks_of_a_port_0_real_need_a_port_but_ping_does_not() -> None:
    assert _issues(
        """
        ipvs:
          services:
            - fwmark: 7
              check: {type: ping}
              checks: [{type: ping}, {type: smtp}, {type: smtp, port: 25}]
              reals:
                - {address: 192.168.1.30}
        """
    ) == [
        (7, "ipvs.services.0.reals.0.port",
         "is 0 (the packet's port), so the smtp check (checks[1]) needs its port"),
    ]  # fmt: skip
