"""Print scripts/test.sh's summary table and closing ``N passed, N failed`` line.

Input: a TSV of ``name, exit status, seconds, JUnit XML path or -``. Test counts
come from the JUnit reports. ``failed`` counts failed and errored tests, plus one
for every failed step that reported no failing test (ruff, mypy, a kernel run that
died before pytest wrote its report), so a failing run never closes on "0 failed".
Exit status: 0 when every step exited 0, else 1.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


def junit_counts(path: Path) -> Counts | None:
    """Sum the <testsuite> elements of a JUnit report; None when it is missing or broken."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest wrote it
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return Counts(tests - failed - skipped, failed, skipped)


def main(tsv: Path) -> int:
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
    total = Counts()
    ok = True
    print("=== summary")
    print(f"{'step':<24} {'result':<10} {'time':>6}  tests")
    for name, rc, seconds, junit in rows:
        status = int(rc)
        ok = ok and status == 0
        counts = junit_counts(Path(junit)) if junit != "-" else None
        result = "ok" if status == 0 else f"FAIL({status})"
        shown = str(counts) if counts else ("no report" if junit != "-" else "")
        print(f"{name:<24} {result:<10} {seconds + 's':>6}  {shown}".rstrip())
        counts = counts or Counts()
        extra = 1 if status != 0 and counts.failed == 0 else 0
        total = Counts(
            total.passed + counts.passed,
            total.failed + counts.failed + extra,
            total.skipped + counts.skipped,
        )
    print(total)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
