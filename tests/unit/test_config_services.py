"""Per-service fields of issue 13: quorum, hysteresis, quorum hooks, sorry server inhibit and
forward, alpha, omega, ha_suspend, service groups; each problem at its PATH:LINE."""

from __future__ import annotations

import pytest

from ipvsd.model import ForwardMethod
from tests.unit.test_config import _only, _parse


def test_quorum_fields_are_read() -> None:
    config = _parse(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              quorum: 3
              hysteresis: 1
              quorum_up: [/usr/local/bin/up, web]
              quorum_down: [/usr/local/bin/down]
              sorry_server: {address: 192.168.1.99, inhibit: true, forward: dr}
              reals: [{address: 192.168.1.30}]
        """
    )
    service = config.ipvs.services[0]
    assert (service.quorum, service.hysteresis) == (3, 1)
    assert service.quorum_up == ("/usr/local/bin/up", "web")
    assert service.quorum_down == ("/usr/local/bin/down",)
    assert service.sorry_server is not None
    assert service.sorry_server.inhibit
    assert service.sorry_server.forward is ForwardMethod.DR


def test_defaults_keep_the_behaviour_before_quorum() -> None:
    service = _parse("ipvs:\n  services:\n    - {address: 192.168.1.200, port: 80}\n")
    only = service.ipvs.services[0]
    assert (only.quorum, only.hysteresis, only.quorum_up, only.quorum_down) == (None, 0, None, None)


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ("quorum: 0", "quorum", "must be between 1 and 4294967295"),
        ("quorum: 2, hysteresis: -1", "hysteresis", "must be between 0 and 4294967295"),
        ("quorum_down: []", "quorum_down", "must not be empty"),
        ("quorum_up: ['']", "quorum_up.0", "must not be empty"),
    ],
)
def test_quorum_ranges(fields: str, field: str, fragment: str) -> None:
    text = f"ipvs:\n  services:\n    - {{address: 192.168.1.200, port: 80, {fields}}}\n"
    _only(text, 3, f"ipvs.services.0.{field}", fragment)


def test_hysteresis_needs_quorum() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              hysteresis: 2
        """,
        5,
        "ipvs.services.0.hysteresis",
        "only with quorum",
    )


def test_sorry_server_forward_is_a_forward_method() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server:
                address: 192.168.1.99
                forward: masq
        """,
        7,
        "ipvs.services.0.sorry_server.forward",
        "unknown forward method 'masq'",
    )


def test_sorry_server_forward_dr_cannot_change_the_port() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server: {address: 192.168.1.99, port: 8080, forward: dr}
        """,
        5,
        "ipvs.services.0.sorry_server.port",
        "forward dr cannot change the port",
    )


def test_sorry_server_cannot_be_a_real() -> None:
    _only(
        """
        ipvs:
          services:
            - address: 192.168.1.200
              port: 80
              sorry_server: {address: 192.168.1.30}
              reals: [{address: 192.168.1.30}]
        """,
        5,
        "ipvs.services.0.sorry_server",
        "is also a real of the service",
    )
