"""``ipvsd import keepalived``: the per-service keywords of issue 13 convert to native fields."""

from __future__ import annotations

from ipvsd.config import parse_config
from ipvsd.importers.emit import to_yaml
from tests.unit.test_import_keepalived import convert_text, reports, service

QUORUM_SERVER = """\
virtual_server 192.0.2.1 80 {{
    lb_kind NAT
{service}
    real_server 10.0.0.1 80 {{
        weight 2
        TCP_CHECK {{
        }}
    }}
}}
"""


def convert(service_lines: str) -> tuple[dict[str, object], list[str]]:
    conversion = convert_text(QUORUM_SERVER.format(service=service_lines))
    parse_config(to_yaml(conversion.data), "out.yaml", default_node_name="n1")  # loads as is
    return service(conversion), reports(conversion)


def test_quorum_hysteresis_hooks_and_omega_convert() -> None:
    svc, lines = convert(
        """\
    quorum 3
    hysteresis 1
    quorum_up "/usr/local/bin/quorum up web"
    quorum_down /usr/local/bin/quorum-down
    omega
    alpha
"""
    )
    assert lines == []
    assert (svc["quorum"], svc["hysteresis"]) == (3, 1)
    assert svc["quorum_up"] == ["/usr/local/bin/quorum", "up", "web"]
    assert svc["quorum_down"] == ["/usr/local/bin/quorum-down"]
    assert svc["omega"] is True
    assert "alpha" not in svc  # ipvsd's default


def test_hysteresis_alone_takes_keepalived_s_default_quorum_1() -> None:
    svc, lines = convert("    hysteresis 2\n")
    assert lines == []
    assert (svc["quorum"], svc["hysteresis"]) == (1, 2)


def test_without_alpha_checked_reals_start_up_as_in_keepalived() -> None:
    svc, lines = convert("")
    assert svc["alpha"] is False
    assert not any("alpha" in line for line in lines), lines


def test_sorry_server_inhibit_and_its_own_method_convert() -> None:
    svc, lines = convert(
        """\
    sorry_server_inhibit
    sorry_server_lvs_method DR
    sorry_server 192.0.2.250 80
"""
    )
    assert lines == []
    assert svc["sorry_server"] == {
        "address": "192.0.2.250",
        "port": 80,
        "inhibit": True,
        "forward": "dr",
    }


def test_sorry_server_keywords_without_a_sorry_server_are_reported() -> None:
    svc, lines = convert("    sorry_server_inhibit\n    sorry_server_lvs_method DR\n")
    assert "sorry_server" not in svc
    assert lines == [
        "k.conf:3: sorry_server_inhibit: the virtual_server has no sorry_server: ignored",
        "k.conf:4: sorry_server_lvs_method: the virtual_server has no sorry_server: ignored",
    ]


def test_ha_suspend_converts_for_a_vip_and_is_reported_otherwise() -> None:
    instance = (
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n"
        " virtual_ipaddress {\n  192.0.2.1\n }\n}\n"
    )
    conversion = convert_text(instance + QUORUM_SERVER.format(service="    ha_suspend\n"))
    assert service(conversion)["ha_suspend"] is True
    assert reports(conversion) == []
    svc, lines = convert("    ha_suspend\n")
    assert "ha_suspend" not in svc
    assert lines == [
        "k.conf:1: virtual_server: ha_suspend: the address is no VIP of a converted "
        "vrrp_instance: ignored (the reals are checked all the time, as keepalived then does)"
    ]
