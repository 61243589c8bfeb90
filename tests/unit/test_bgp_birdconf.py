"""BIRD's config generated from the bgp: section (ipvsd/bgp/birdconf.py), as golden text."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_network
from pathlib import Path

import pytest

from ipvsd.bgp.birdconf import peer_protocol, render, vip_protocol
from ipvsd.config.model import BgpConfig, BgpNeighbor

GOLDEN = Path(__file__).parents[1] / "data" / "bgp" / "golden.conf"

CONFIG = BgpConfig.model_validate(
    {
        "local_as": 65001,
        "router_id": "192.0.2.11",
        "bfd": True,
        "bfd_interval": 0.05,
        "next_hop": "192.0.2.11",
        "neighbors": (
            {"address": "192.0.2.1", "remote_as": 65000, "password": "s3cret"},
            {
                "address": "192.0.2.2",
                "remote_as": 65001,
                "multihop": 2,
                "local_address": "192.0.2.11",
            },
            {"address": "2001:db8::1", "remote_as": 65000},
        ),
    },
)
PREFIXES = [
    ip_network("2001:db8:100::1/128"),
    ip_network("198.51.100.20/32"),
    ip_network("198.51.100.10/32"),
]
ANNOUNCED = {ip_network("198.51.100.10/32"), ip_network("2001:db8:100::1/128")}


def test_golden_text() -> None:
    text = render(CONFIG, PREFIXES, ANNOUNCED, source="/etc/ipvsd/ipvsd.yaml")
    assert text == GOLDEN.read_text()


def test_minimal_config_has_no_bfd_and_announces_next_hop_self() -> None:
    config = BgpConfig.model_validate(
        {"local_as": 65001, "neighbors": ({"address": "10.0.0.1", "remote_as": 65000},)},
    )
    text = render(config, [], set(), source="x.yaml")
    assert "bfd" not in text
    assert "router id" not in text
    assert "next hop self;" in text
    assert "hold time 9;\n  keepalive time 3;" in text


def test_protocol_names_are_bird_symbols_and_unique_per_family() -> None:
    assert vip_protocol(ip_network("10.0.0.1/32")) == "vip4_10_0_0_1"
    assert vip_protocol(ip_network("::a/128")) == "vip6___a"
    neighbor = BgpNeighbor.model_validate({"address": "fe80::1", "remote_as": 1})
    assert peer_protocol(neighbor) == "peer6_fe80__1"


@pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (bird2)")
def test_bird_accepts_the_golden_config() -> None:
    done = subprocess.run(
        ["bird", "-p", "-c", str(GOLDEN)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
