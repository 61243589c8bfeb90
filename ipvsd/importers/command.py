"""``ipvsd import keepalived|ipvsadm``: the command line of the importers.

`add_parser` registers the subcommand (ipvsd.cli calls it); `run` reads the
source, converts it, prints one report line per directive not carried over
on stderr and writes the YAML. The converters are imported when the command
runs, so that other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ipvsd.importers.report import Conversion

DESCRIPTION = """\
Convert an existing load-balancer configuration into an ipvsd config.

`ipvsd import keepalived FILE` reads a keepalived.conf and every file it
includes (globs; relative paths are relative to the including file, as in
keepalived) and converts global_defs, vrrp_instance, vrrp_sync_group,
virtual_server (IP PORT, fwmark, group), virtual_server_group, real_server
with TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK (SMTP_CHECK as a TCP check),
sorry_server, lvs_sync_daemon and lvs_timeouts. keepalived's behaviour is
kept where ipvsd can express it, defaults included, and written out:
on_failure: remove unless inhibit_on_failure, keepalived's check timing
(delay_loop 60 s, connect_timeout 5 s, rise 1, fall = retry + 1,
retry_interval = delay_before_retry), cleanup_on_exit: true.

`ipvsd import ipvsadm [FILE]` reads the rules `ipvsadm -Sn` (ipvsadm-save -n)
prints, from FILE or standard input, and converts the services and reals.

The YAML goes to standard output (or -o FILE) and always passes
`ipvsd check-config`. Every directive that ipvsd does not support, or whose
meaning changes, is reported on standard error, one line each:

  FILE:LINE: directive: what happens instead

and listed in the YAML's header comment. Nothing is dropped silently: an
unknown keyword is reported too.
"""

EPILOG = """\
examples:
  ipvsd import keepalived /etc/keepalived/keepalived.conf -o /etc/ipvsd/ipvsd.yaml
  ipvsd import keepalived keepalived.conf --strict > ipvsd.yaml  # fail on any report
  ipvsadm -Sn | ipvsd import ipvsadm > ipvsd.yaml
  ipvsd import ipvsadm /etc/ipvsadm.rules -o ipvsd.yaml

exit status:
  0 converted (with or without reports)
  1 the source cannot be read or parsed (FILE:LINE: message), or --strict and
    something was reported; nothing is written then
  2 usage error
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import`` and its two sources on `commands`."""
    parser = commands.add_parser(
        "import",
        help="convert a keepalived.conf or `ipvsadm -Sn` rules into an ipvsd config",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    keepalived = sources.add_parser(
        "keepalived",
        help="a keepalived.conf, with its includes",
        description="Convert a keepalived.conf (and the files it includes) into an ipvsd "
        "config. See `ipvsd import --help`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keepalived.add_argument("file", metavar="FILE", help="the keepalived.conf to convert")
    ipvsadm = sources.add_parser(
        "ipvsadm",
        help="rules as `ipvsadm -Sn` prints them",
        description="Convert IPVS rules as `ipvsadm -Sn` (ipvsadm-save -n) prints them into "
        "an ipvsd config. See `ipvsd import --help`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ipvsadm.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default="-",
        help="the rules file; - or none: standard input",
    )
    for sub in (keepalived, ipvsadm):
        sub.add_argument(
            "-o",
            "--output",
            metavar="OUT",
            help="write the YAML to OUT (replaced atomically) instead of standard output",
        )
        sub.add_argument(
            "--strict",
            action="store_true",
            help="exit 1, writing nothing, if any directive was reported",
        )


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``ipvsd import``; returns the exit status."""
    from ipvsd.config import parse_config
    from ipvsd.errors import ConfigError
    from ipvsd.files import write_atomically
    from ipvsd.importers import ipvsadm, keepalived
    from ipvsd.importers.emit import to_yaml
    from ipvsd.importers.report import SourceError
    from ipvsd.importers.sources import read_keepalived, read_text

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.source == "keepalived":
            loaded = read_keepalived(args.file)
            conversion = keepalived.convert(loaded.nodes, unmatched_includes=loaded.unmatched)
            files = loaded.files
        else:
            name = "<stdin>" if args.file == "-" else args.file
            conversion = ipvsadm.convert(read_text(args.file), name)
            files = [name]
    except SourceError as exc:
        print(exc, file=err)
        return 1
    for report in conversion.reports:
        print(report, file=err)
    if args.strict and conversion.reports:
        print(
            f"ipvsd import: {len(conversion.reports)} directive(s) reported; --strict: "
            "nothing written",
            file=err,
        )
        return 1
    text = to_yaml(
        conversion.data, header=header(args.source, files, conversion), comments=conversion.comments
    )
    try:
        parse_config(text, args.output or "<output>", default_node_name="import")
    except ConfigError as exc:  # settle() makes this impossible: a bug if it happens
        print("ipvsd import: internal error: the converted config does not validate:", file=err)
        for issue in exc.issues:
            print(f"  {issue}", file=err)
        return 1
    if args.output:
        write_atomically(Path(args.output), text)  # a replaced config keeps its mode
    else:
        out.write(text)
    return 0


def header(source: str, files: list[str], conversion: Conversion) -> list[str]:
    """The YAML's opening comment: where it came from, and what was reported."""
    converted = sum(1 for _, outcome in conversion.outcomes if outcome.value == "converted")
    lines = [
        f"ipvsd configuration converted by `ipvsd import {source}` from {files[0]}",
    ]
    if len(files) > 1:
        lines.append(f"and the files it includes: {', '.join(files[1:])}")
    lines.append(
        f"{converted} directive(s) converted, {len(conversion.reports)} reported "
        "(not supported by ipvsd, or changed meaning)."
    )
    lines.append("Check it with `ipvsd check-config --config FILE` after editing.")
    if conversion.reports:
        lines += ["", "Reported (FILE:LINE: directive: what happens instead):"]
        lines += [f"  {report}" for report in conversion.reports]
    return lines
