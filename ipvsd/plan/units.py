"""Link rates as people write them: ``1.5G``, ``800M``, ``10G`` (pure).

A rate is in bits per second: a decimal number, then an optional SI prefix
``k`` (10^3), ``M`` (10^6), ``G`` (10^9) or ``T`` (10^12), then an optional
``bps`` or ``bit/s``: ``1.5G``, ``1.5Gbps``, ``1.5 Gbit/s`` are the same. A
plain number is bits per second (``1500000``). Prefixes may be written in
either case (``1.5g``, ``100K``) except ``m``, which is milli in SI and
never a link rate: it is refused, not read as mega. Link rates are decimal,
so binary prefixes (``Gi``) are refused, as are bytes (``GB``), zero,
negatives and fractions of a bit, each with a message that says why.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_PREFIXES = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "g": 10**9,
    "T": 10**12,
    "t": 10**12,
}
_RATE = re.compile(r"(?P<number>[0-9]*\.?[0-9]+)\s*(?P<prefix>[a-zA-Z]?)(?P<unit>bps|bit/s)?")
_NAMES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))


class RateError(ValueError):
    """Not a rate ``parse_rate`` accepts; the message says why."""


def parse_rate(text: str) -> int:
    """Bits per second written as `text` (``1.5G`` -> 1_500_000_000).

    Raises:
        RateError: not a positive whole number of bits per second in the
            accepted notation (see the module docstring).
    """
    written = text.strip()
    match = _RATE.fullmatch(written)
    if match is None:
        raise RateError(_why_not(text))
    prefix = match["prefix"]
    if prefix not in _PREFIXES:
        raise RateError(_why_not(text))
    try:
        value = Decimal(match["number"]) * _PREFIXES[prefix]
    except InvalidOperation:  # the pattern admits only plain decimals; kept for safety
        raise RateError(f"{text!r} is not a number") from None
    if value != value.to_integral_value():
        raise RateError(f"{text!r} is not a whole number of bits per second")
    if value <= 0:
        raise RateError(f"{text!r}: a rate must be more than 0")
    return int(value)


def _why_not(text: str) -> str:
    usage = "expected bits per second such as 800M, 1.5G, 10G, 100k or 1500000"
    if re.search(r"[0-9.]\s*[kKMGT]?(B|[Bb]yte)", text):
        return f"{text!r} looks like bytes; {usage}"
    if re.search(r"[0-9.]\s*[kKMGTm]i", text):
        return f"{text!r}: binary prefixes are not used for link rates; {usage}"
    if re.search(r"[0-9.]\s*m", text):
        return f"{text!r}: m is milli; write M for mega ({usage})"
    if text.strip().startswith("-"):
        return f"{text!r}: a rate must be more than 0"
    return f"{text!r} is not a rate; {usage}"


def format_rate(bps: float) -> str:
    """`bps` for people: ``1.5 Gbit/s``, ``750 Mbit/s``, ``-250 Mbit/s``, ``12 bit/s``."""
    magnitude = abs(bps)
    for scale, name in _NAMES:
        if magnitude >= scale:
            return f"{bps / scale:.4g} {name}bit/s"
    return f"{bps:.4g} bit/s"
