"""Survey: how much of keepalived's own sample configurations `ipvsd import keepalived` converts.

    python -m bench.import_survey [--git-dir PATH] [--rev REV] [FILE ...]

Reads keepalived's ``doc/samples/keepalived.conf.*`` from a local keepalived
git checkout (``--git-dir``, default ``$KEEPALIVED_GIT_DIR`` or
/work/.mirror/acassen+keepalived/repo; fetch one with ``git clone --bare
https://github.com/acassen/keepalived``), or the FILEs given, converts each
and prints two tables: per file, how many directives were converted,
reported (one report line each) and dropped with a reported block; then per
reported keyword, how often and why. keepalived's files are read in place,
never copied into this repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from ipvsd.importers.keepalived import convert
from ipvsd.importers.report import Conversion, Outcome
from ipvsd.importers.sources import read_keepalived

DEFAULT_GIT_DIR = os.environ.get("KEEPALIVED_GIT_DIR", "/work/.mirror/acassen+keepalived/repo")


def samples_from_git(git_dir: str, rev: str, into: Path) -> list[Path]:
    """Write each ``doc/samples/keepalived.conf.*`` of `rev` under `into`."""
    git = ["git", f"--git-dir={git_dir}"]
    names = subprocess.run(
        [*git, "ls-tree", "--name-only", rev, "doc/samples/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    paths = []
    for name in names:
        if not Path(name).name.startswith("keepalived.conf."):
            continue
        text = subprocess.run(
            [*git, "show", f"{rev}:{name}"], capture_output=True, text=True, check=True
        ).stdout
        path = into / Path(name).name
        path.write_text(text)
        paths.append(path)
    return paths


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def survey(paths: list[Path]) -> str:
    per_file: list[list[str]] = []
    totals: Counter[Outcome] = Counter()
    keywords: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for path in paths:
        loaded = read_keepalived(str(path))
        conversion: Conversion = convert(loaded.nodes, unmatched_includes=loaded.unmatched)
        counts = Counter(outcome for _, outcome in conversion.outcomes)
        totals.update(counts)
        per_file.append(
            [
                path.name,
                str(sum(counts.values())),
                str(counts[Outcome.CONVERTED]),
                str(counts[Outcome.REPORTED]),
                str(counts[Outcome.DROPPED]),
                str(len(conversion.reports)),
            ]
        )
        for report in conversion.reports:
            keywords[report.field] += 1
            reasons.setdefault(report.field, report.message)
    per_file.append(
        [
            "total",
            str(sum(totals.values())),
            str(totals[Outcome.CONVERTED]),
            str(totals[Outcome.REPORTED]),
            str(totals[Outcome.DROPPED]),
            str(sum(keywords.values())),
        ]
    )
    by_keyword = [
        [keyword, str(count), reasons[keyword][:90]] for keyword, count in keywords.most_common()
    ]
    return "\n\n".join(
        [
            table(
                per_file,
                ["file", "directives", "converted", "reported", "dropped", "report lines"],
            ),
            table(by_keyword, ["reported directive", "lines", "first reason"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="keepalived.conf files to survey")
    parser.add_argument("--git-dir", default=DEFAULT_GIT_DIR, help="a keepalived git checkout")
    parser.add_argument("--rev", default="HEAD", help="the revision whose doc/samples to read")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        paths = args.files or samples_from_git(args.git_dir, args.rev, Path(scratch))
        if not paths:
            print(f"no keepalived.conf.* samples found in {args.git_dir}", file=sys.stderr)
            return 1
        print(survey(sorted(paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
