"""Plain-text result tables for the benchmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    method: str
    seconds: float
    detail: str
    ratio: float | None = None


def print_table(title: str, rows: list[Row], *, unit: str = "s") -> None:
    """Print rows as an aligned table (also valid Markdown); `unit` is "s" or "us";
    a NaN `seconds` (a case not run) shows as "-"."""
    scale, column = (1e6, "us") if unit == "us" else (1.0, "seconds")
    header = ("case", "method", column, "ratio", "detail")
    cells = [
        (
            r.case,
            r.method,
            "-"
            if math.isnan(r.seconds)
            else f"{r.seconds * scale:.3f}"
            if scale == 1
            else f"{r.seconds * scale:.1f}",
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.detail,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
    print(flush=True)
