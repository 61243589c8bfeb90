"""Link rates for ``ipvsd plan``: what is accepted, and what is refused with which reason."""

from __future__ import annotations

import pytest

from ipvsd.plan.units import RateError, format_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("1.5G", 1_500_000_000),
        ("800M", 800_000_000),
        ("10G", 10_000_000_000),
        ("100k", 100_000),
        ("100K", 100_000),
        ("1.5g", 1_500_000_000),
        ("2T", 2_000_000_000_000),
        ("1500000", 1_500_000),
        ("1.5Gbps", 1_500_000_000),
        ("1.5 Gbit/s", 1_500_000_000),
        ("100bps", 100),
        (".5G", 500_000_000),
        (" 1G ", 1_000_000_000),
    ],
)
def test_accepted(text: str, bps: int) -> None:
    assert parse_rate(text) == bps


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.5GB", "bytes"),
        ("1GB/s", "bytes"),
        ("1Gi", "binary prefixes"),
        ("800m", "m is milli"),
        ("0", "more than 0"),
        ("0G", "more than 0"),
        ("-1G", "more than 0"),
        ("1.5", "whole number"),
        ("abc", "not a rate"),
        ("", "not a rate"),
        ("nan", "not a rate"),
        ("inf", "not a rate"),
        ("1e9", "not a rate"),
        ("1X", "not a rate"),
        ("1,5G", "not a rate"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(RateError, match=reason):
        parse_rate(text)


@pytest.mark.parametrize(
    ("bps", "text"),
    [
        (750_000_000, "750 Mbit/s"),
        (1_500_000_000, "1.5 Gbit/s"),
        (-250_000_000, "-250 Mbit/s"),
        (12, "12 bit/s"),
        (2_500_000_000 / 3, "833.3 Mbit/s"),
    ],
)
def test_format(bps: float, text: str) -> None:
    assert format_rate(bps) == text
