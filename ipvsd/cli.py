"""The `ipvsd` command line (also `python -m ipvsd`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ipvsd import __version__
from ipvsd.errors import ConfigError, IpvsdError, IpvsUnavailable

DEFAULT_CONFIG = "/etc/ipvsd/ipvsd.yaml"

DESCRIPTION = """\
ipvsd runs a Linux load-balancer director: it programs the kernel's IPVS
table over generic netlink (the job of ipvsadm), and will own the virtual IPs
with VRRPv2 and health-check the real servers (the job of keepalived).
"""

EPILOG = """\
commands:
  run            run the daemon in the foreground (what systemd starts)
  check-config   validate a config file; print PATH:LINE: field: message per error
  list           print the kernel's IPVS table like `ipvsadm -Ln`, read over netlink

signals (to `ipvsd run`):
  SIGHUP         re-read the config; a bad config is refused and the running one kept
  SIGTERM/INT    stop; the IPVS table is left in place (unless ipvs.cleanup_on_exit)

exit status:
  0 success, 1 invalid config or runtime error (one line on stderr), 2 usage error

files:
  /etc/ipvsd/ipvsd.yaml   default configuration (see etc/ipvsd.yaml in the sources)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipvsd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ipvsd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Load the config, adopt and reconcile the IPVS table, and keep it in "
        "sync (on SIGHUP and every ipvs.resync_interval seconds) until SIGTERM.",
    )
    run.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="minimum level of logged events (default: info)",
    )
    run.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="log rendering (default: json unless stderr is a terminal)",
    )

    check = commands.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file without touching the kernel. Prints every "
        "error as PATH:LINE: dotted.field.path: message and exits 1; exits 0 if valid.",
    )
    check.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )

    listing = commands.add_parser(
        "list",
        help="print the kernel's IPVS table",
        description="Read the kernel's IPVS table over netlink and print it like "
        "`ipvsadm -Ln` (no daemon needed).",
    )
    listing.add_argument(
        "--stats",
        action="store_true",
        help="show connection, packet and byte counters (ipvsadm --stats)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(Path(args.config))
        if args.command == "run":
            return _run(args)
        if args.command == "list":
            return asyncio.run(_list(stats=args.stats, as_json=args.json))
    except IpvsdError as exc:
        print(f"ipvsd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _check_config(path: Path) -> int:
    from ipvsd.config import load_config

    try:
        load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue)
        return 1
    except OSError as exc:
        print(f"{path}:0: (file): {exc.strerror}")
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from ipvsd import daemon, log

    json_logs = None if args.log_format is None else args.log_format == "json"
    log.configure(level=args.log_level, json=json_logs)
    path = Path(args.config)
    try:
        return asyncio.run(daemon.run(path))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ipvsd: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except IpvsUnavailable as exc:
        print(f"ipvsd: {exc}; services are configured in {path}", file=sys.stderr)
        return 1


async def _list(*, stats: bool, as_json: bool) -> int:
    from ipvsd.netlink.ipvs import IpvsClient
    from ipvsd.render import ipvsadm_table, table_json

    async with await IpvsClient.open() as client:
        table = await client.dump()
        info = await client.info()
    if as_json:
        print(json.dumps(table_json(table), indent=2))
    else:
        print(f"IP Virtual Server version {info.version} (size={info.conn_tab_size})")
        print(ipvsadm_table(table, stats=stats))
    return 0
