"""The `ipvsd` command line (also `python -m ipvsd`)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from ipvsd import __version__
from ipvsd.control.client import DEFAULT_SOCKET, DaemonNotRunning, request
from ipvsd.errors import ConfigError, IpvsdError, IpvsUnavailable
from ipvsd.importers import command as import_command
from ipvsd.plan import command as plan_command

DEFAULT_CONFIG = "/etc/ipvsd/ipvsd.yaml"

DESCRIPTION = """\
ipvsd runs a Linux load-balancer director: it programs the kernel's IPVS
table over generic netlink (the job of ipvsadm); it owns the virtual IPs with
VRRPv2 (interoperating with keepalived), health-checks the real servers and
drains them, and switches the kernel's connection-sync daemon with the VRRP
state so established connections survive a failover (the job of keepalived).
"""

STATUS_EPILOG = """\
examples:
  ipvsd status                         # human tables
  ipvsd status --json                  # the status JSON (node, version, vrrp, services)
  ipvsd status --check master          # e.g. in a cron job that only the master runs
  ipvsd status --check ready           # e.g. ExecStartPost= / a deployment gate

The tables: the daemon's version and node name; VRRP instances with their
configured and effective priority and Master (the master's address as this
director sees it: its own when MASTER, the source of the master's adverts
when BACKUP, "-" when not known); then per service (as ipvsadm -Ln) each
real's Forward method, Weight (in the kernel now), CfgWeight (configured),
Health (up, down or unknown; ",drained" when an operator drained it),
ActiveConn, InActConn (TIME_WAIT/FIN connections kept by IPVS) and
PersistConn (persistence templates). Under a real that is not up, a line says
since when (local time, and how long ago) and why (the latest check's reason,
e.g. "connection refused", "HTTP 503 (expected 200)"); --json has them as
health_since and health_reason.

With --check, a daemon that is not running means exit 1, silently; with no
VRRP instance configured, neither master nor backup holds.
"""

CONTROL_EPILOG = """
Anyone who can connect to the socket may ask for status; reload, drain and
undrain need root. The socket is 0600 (root only), or 0660 when control.group
names a group.

exit status:
  0 success
  1 the daemon is not running, refused the request, or is unreachable
    (one line on stderr)
  2 usage error
"""

EPILOG = """\
commands:
  run            run the daemon in the foreground (what systemd starts)
  check-config   validate a config file; print PATH:LINE: field: message per error
                 (and per warning: exit status 0)
  list           print the kernel's IPVS table like `ipvsadm -Ln`, read over netlink
  status         ask the running daemon: VRRP instances, services, reals, health, counters
  reload         make the running daemon re-read its config (same as SIGHUP)
  drain          set one real's weight to 0 until `undrain` (connections finish)
  undrain        give a drained real its configured weight back
  import         convert a keepalived.conf or `ipvsadm -Sn` rules into an ipvsd config
  schema         print the config's JSON Schema for editors, or its reference
  plan           plan an All-Active layout: VIP count, VRRP priorities, loads after failures

  `ipvsd COMMAND --help` describes each command.

examples:
  ipvsd check-config --config /etc/ipvsd/ipvsd.yaml
  ipvsd status                          # VRRP table, then services like ipvsadm -Ln
  ipvsd status --json | jq '.vrrp[].state'
  ipvsd status --check master && echo "this director holds the VIPs"
  ipvsd drain 192.168.1.200:80 192.168.1.30:80
  ipvsd reload

signals (to `ipvsd run`):
  SIGHUP         re-read the config; a bad config is refused and the running one kept
  SIGTERM/INT    stop; the IPVS table is left in place (unless ipvs.cleanup_on_exit)

exit status:
  0 success; for `status --check`, the condition holds
  1 invalid config, runtime error, daemon not running, request or reload refused
    (one line per problem on stderr); for `status --check`, the condition does not hold
  2 usage error

files:
  /etc/ipvsd/ipvsd.yaml   default configuration (see etc/ipvsd.yaml in the sources)
  /etc/ipvsd/conf.d/      fragments, read when the configuration's include names them
  /run/ipvsd/ipvsd.sock   control socket of the running daemon (control.socket)
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
        "error as PATH:LINE: dotted.field.path: message and exits 1; exits 0 if valid. "
        "A valid config may draw warnings (PATH:LINE: field: warning: ...; in BGP mode, "
        "what breaks consistent hashing across directors): printed, exit status 0.",
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
    _add_control_commands(commands)
    import_command.add_parser(commands)
    _add_schema_command(commands)
    plan_command.add_parser(commands)
    return parser


SCHEMA_EPILOG = """\
examples:
  ipvsd schema > /etc/ipvsd/ipvsd.schema.json
      then begin ipvsd.yaml with the line
      # yaml-language-server: $schema=/etc/ipvsd/ipvsd.schema.json
  ipvsd schema --format markdown > docs/config.md     # how the sources' copy is made
  ipvsd schema --format roff > ipvsd.yaml.5 && man -l ipvsd.yaml.5

The schema accepts every config that check-config accepts. It cannot state the
rules between fields (address and port or fwmark, duplicates, a real's address
family...): check-config applies those too, and stays the authority.
"""


def _add_schema_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser(
        "schema",
        help="print the config's JSON Schema (or its reference)",
        description=textwrap.fill(
            "Print the JSON Schema (draft 2020-12) of the configuration file on stdout: "
            "every field with its description, type, default, range or choices, as the "
            "loader checks them. Editors use it to complete and check ipvsd.yaml as you "
            "type (yaml-language-server: VS Code, Neovim, Helix...). --format prints the "
            "same reference for people instead: Markdown, or the ipvsd.yaml(5) man page.",
            79,
        ),
        epilog=SCHEMA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument(
        "--format",
        # ipvsd.config.reference.FORMATS, not imported: building the parser must not load
        # the config models (`status --check` runs often).
        choices=("json", "markdown", "roff"),
        default="json",
        help="json: the JSON Schema (default); markdown: the reference (docs/config.md); "
        "roff: the man page ipvsd.yaml(5)",
    )


def _add_control_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """status / reload / drain / undrain: thin clients of the daemon's control socket."""
    status = _control_parser(
        commands,
        "status",
        summary="ask the running daemon for its state",
        description="Ask the running daemon for its state: the VRRP instances (state, "
        "priority, VIPs), then each service and its reals like `ipvsadm -Ln`, with the "
        "configured weight, the health verdict and the kernel's connection counters read "
        "at this moment.",
        epilog=STATUS_EPILOG,
        # The answer reads the whole kernel table, as `ipvsadm -Ln` does: at 10,000
        # services x 4 reals that took 13 s under User-Mode Linux.
        answer_within=60.0,
    )
    output = status.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print the status JSON (indented at a terminal, one line into a pipe)",
    )
    output.add_argument(
        "--check",
        choices=["master", "backup", "ready"],
        help="print nothing; exit 0 if every VRRP instance is MASTER (master), every one is "
        "BACKUP (backup), or the daemon is ready (ready: first reconcile done, no instance "
        "in INIT or FAULT); else exit 1",
    )
    reload = _control_parser(
        commands,
        "reload",
        summary="make the running daemon re-read its config",
        description="Make the running daemon re-read its config file, as SIGHUP does, and "
        "wait for the verdict. The reload is all or nothing: a bad config is refused and "
        "the running one kept, and a failure while applying it (e.g. an interface that "
        "vanished) restores the running config. Refusals are printed one per line on "
        "stderr (PATH:LINE: field: message for config errors) and the exit status is 1, "
        "so `systemctl reload ipvsd` fails too. Two guards refuse configs that look "
        "truncated: one that removes every VRRP instance, and one whose plan deletes more "
        "kernel objects than ipvs.max_deletes; --force applies those anyway (SIGHUP never "
        "does). Needs root.",
        epilog="examples:\n  ipvsd check-config -c /etc/ipvsd/ipvsd.yaml && ipvsd reload\n"
        "  ipvsd reload --force     # after reading what the guard refused\n",
        # The verdict comes once the new table is applied; systemd gives ExecReload 90 s.
        answer_within=60.0,
    )
    reload.add_argument(
        "--force",
        action="store_true",
        help="apply a config the guards refuse (every VRRP instance removed, more deletions "
        "than ipvs.max_deletes); config errors are never forced",
    )
    this_director = (
        " It applies to this director only: run it on each director that balances "
        "the service (the backups too, or the real is back in rotation after a "
        "failover)."
    )
    for name, does in (
        (
            "drain",
            "Drain one real server: its kernel weight becomes 0, so it gets no new "
            "connections while the existing ones finish. It stays drained (across reloads, "
            "restarts and health changes) until `ipvsd undrain`." + this_director + " Do not "
            "use `ipvsadm -e` instead: the daemon repairs drift and puts the weight back "
            "within ipvs.resync_interval seconds. Needs root.",
        ),
        (
            "undrain",
            "Give a drained real server its configured weight back (while its health check "
            "says it is up)." + this_director + " Not `ipvsadm -e` either: drift repair "
            "(ipvs.resync_interval) keeps the weight the daemon wants. Needs root.",
        ),
    ):
        parser = _control_parser(
            commands,
            name,
            summary=f"{name} one real server of a service",
            description=does,
            epilog=f"examples:\n  ipvsd {name} 192.168.1.200:80 192.168.1.30:80\n"
            f"  ipvsd {name} udp/[2001:db8::200]:53 [2001:db8::30]:53\n"
            f"  ipvsd {name} fwmark:10 192.168.1.30:80\n"
            f"  ipvsd {name} --all\n",
        )
        parser.add_argument(
            "service",
            metavar="SERVICE",
            nargs="?",
            type=_service_argument,
            help="ADDRESS:PORT (tcp), udp/ADDRESS:PORT, sctp/ADDRESS:PORT or fwmark:N; "
            "IPv6 addresses in brackets",
        )
        parser.add_argument(
            "real", metavar="REAL", nargs="?", type=_real_argument, help="the real's ADDRESS:PORT"
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="the whole director instead of one real (BGP mode): "
            + (
                "withdraw every VIP's BGP announcement, so that the routers send new flows "
                "to the other directors; kept across restarts until `ipvsd undrain --all`"
                if name == "drain"
                else "announce the VIPs again (those whose services are healthy)"
            ),
        )


def _control_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
    answer_within: float = 10.0,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 79),
        epilog=epilog + CONTROL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--socket",
        "-s",
        metavar="PATH",
        help=f"the daemon's control socket (default: control.socket of --config, "
        f"else {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="read the socket path (control.socket) from this config file",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=answer_within,
        help=f"how long to wait for the daemon's answer (default: {answer_within:g})",
    )
    return parser


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def _service_argument(text: str) -> str:
    from ipvsd.model import parse_service_spec

    try:
        parse_service_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _real_argument(text: str) -> str:
    from ipvsd.model import parse_endpoint

    try:
        parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(Path(args.config))
        if args.command == "run":
            return _run(args)
        if args.command == "list":
            import asyncio

            return asyncio.run(_list(stats=args.stats, as_json=args.json))
        if args.command == "status":
            return _status(args)
        if args.command == "reload":
            return _reload(args)
        if args.command in ("drain", "undrain"):
            return _drain(args)
        if args.command == "import":
            return import_command.run(args)
        if args.command == "schema":
            return _schema(args.format)
        if args.command == "plan":
            return plan_command.run(args, parser)
    except DaemonNotRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except IpvsdError as exc:
        print(f"ipvsd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _check_config(path: Path) -> int:
    from ipvsd.config import config_advice, load_config
    from ipvsd.log import is_journal

    # Run from a unit (an operator's ExecStartPre= or ExecReload=): in the journal,
    # errors at priority 3, warnings at 4 (sd-daemon(3)).
    journal = is_journal(sys.stdout)
    prefix = "<3>" if journal else ""
    try:
        config = load_config(path)
        warnings = config_advice(path, config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{prefix}{issue}")
        return 1
    except OSError as exc:
        print(f"{prefix}{path}:0: (file): {exc.strerror}")
        return 1
    for warning in warnings:  # a valid config all the same: exit status 0
        print(f"{'<4>' if journal else ''}{warning}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """``ipvsd run``; a fatal error ends it as one logged event (journald files it by level).

    Stale VIPs go first, before the daemon's modules are imported (`ipvsd.daemon.early`).
    """
    from ipvsd.daemon import early

    path = Path(args.config)
    start = early.begin(path)

    import asyncio

    import structlog

    from ipvsd import daemon, log

    json_logs = None if args.log_format is None else args.log_format == "json"
    log.configure(level=args.log_level, json=json_logs)
    logger = structlog.get_logger("ipvsd.cli")
    from ipvsd.vrrp.prelisten import adopt_early

    # The advert sockets `early` opened: its Backups listen while the daemon loads.
    listening = adopt_early(start.listening)
    try:
        if start.error is not None:
            raise start.error
        for vip in start.removed:
            logger.warning(
                "vrrp.stale_vip_removed",
                instance=vip.instance,
                interface=vip.interface,
                vip=str(vip.address),
                after_s=round(start.elapsed_s, 4),
            )
        if start.skipped:
            logger.info("vrrp.stale_vips_deferred", reason=start.skipped)
        return asyncio.run(daemon.run(path, host_lock=start.lock, listening=listening))
    except ConfigError as exc:
        issues = [str(issue) for issue in exc.issues]
        count = f"{len(issues)} error{'' if len(issues) == 1 else 's'}"
        logger.error("daemon.failed", error=f"invalid config {path}: {count}", issues=issues)
    except IpvsUnavailable as exc:
        logger.error("daemon.failed", error=f"{exc}; services are configured in {path}")
    except IpvsdError as exc:  # another daemon holds the lock, ...
        logger.error("daemon.failed", error=str(exc))
    except OSError as exc:
        logger.error("daemon.failed", error=_os_error_text(exc, path))
    except Exception:
        # Our bug (style G9: it propagates, the daemon ends non-zero and systemd
        # restarts it): its traceback in one event, not one journal line per frame.
        logger.critical("daemon.crashed", exc_info=True)
    finally:
        listening.close()  # what VRRP did not adopt, e.g. when the config was refused
        start.lock.release()  # also when the config was refused before the daemon ran
    return 1


def _os_error_text(exc: OSError, config: Path) -> str:
    if exc.filename is None:
        return exc.strerror or str(exc)
    if str(exc.filename) == str(config):
        return f"cannot read {config}: {exc.strerror}"
    return f"{exc.filename}: {exc.strerror}"


async def _list(*, stats: bool, as_json: bool) -> int:
    from ipvsd.control.render import ipvsadm_table
    from ipvsd.control.status import services_from_table
    from ipvsd.control.status_json import services_to_json
    from ipvsd.netlink.ipvs import IpvsClient

    async with await IpvsClient.open() as client:
        table = await client.dump()
        info = await client.info()
    services = services_from_table(table)  # the status contract's services, without health
    if as_json:
        _print_json(services_to_json(services))
    else:
        print(f"IP Virtual Server version {info.version} (size={info.conn_tab_size})")
        print(ipvsadm_table(services, stats=stats))
    return 0


def _socket_path(args: argparse.Namespace) -> str:
    """--socket, else control.socket of --config, else the default."""
    if args.socket:
        return str(args.socket)
    if args.config:
        from ipvsd.config import load_config

        try:
            return load_config(args.config).control.socket
        except OSError as exc:
            raise IpvsdError(f"cannot read {args.config}: {exc.strerror}") from None
    return DEFAULT_SOCKET


def _ask(path: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The result of a request the daemon accepted.

    Raises:
        IpvsdError: the daemon is unreachable or refused the request.
    """
    answer = request(path, payload, timeout)
    if not answer["ok"]:
        raise IpvsdError(str(answer.get("error", "request refused")))
    result: dict[str, Any] = answer.get("result") or {}
    return result


def _status(args: argparse.Namespace) -> int:
    from datetime import datetime

    from ipvsd.control.render import status_text
    from ipvsd.control.status_json import from_json

    path = _socket_path(args)
    if args.check:
        return 0 if _check(path, args.check, args.timeout) else 1
    status = _ask(path, {"command": "status"}, args.timeout)
    if args.json:
        _print_json(status)  # as the daemon sent it: fields this CLI does not know included
    else:
        # Local time, as journalctl shows the log. A malformed document: MalformedStatus, exit 1.
        print(status_text(from_json(status), now=datetime.now().astimezone()))
    return 0


def _print_json(document: object) -> None:
    # Indented for a person at a terminal; one line for a pipe (jq, a script),
    # where indenting 10k x 4 reals would cost more than the request itself.
    # Encoded at once, written once: json.dump writes token by token (5.7 million
    # writes, 24 s on a host and 333 s in UML, for 10k x 4 into a pipe).
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(document, indent=indent) + "\n")


def _check(path: str, condition: str, timeout: float) -> bool:
    """`status --check`: whether the condition holds; any failure to ask means no."""
    try:
        if condition == "ready":
            return _ask(path, {"command": "ready"}, timeout).get("ready") is True
        # Only the VRRP states: no services (an older daemon sends them all the same).
        instances = _ask(path, {"command": "status", "services": False}, timeout).get("vrrp") or []
    except IpvsdError:
        return False
    wanted = condition.upper()
    return bool(instances) and all(instance.get("state") == wanted for instance in instances)


def _reload(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"command": "reload"}
    if args.force:
        payload["force"] = True
    answer = request(_socket_path(args), payload, args.timeout)
    if answer["ok"]:
        return 0
    if "errors" not in answer:  # not a refused config: e.g. not root
        raise IpvsdError(str(answer.get("error", "reload refused")))
    for error in answer["errors"]:
        print(error, file=sys.stderr)
    return 1


def _schema(form: str) -> int:
    from ipvsd.config.reference import render

    sys.stdout.write(render(form))
    return 0


def _drain(args: argparse.Namespace) -> int:
    if args.all or args.real is None:
        if args.all and args.service is None:
            return _drain_director(args)
        wrong = "--all takes no SERVICE or REAL" if args.all else "SERVICE and REAL are required"
        print(f"ipvsd {args.command}: {wrong} (or --all alone)", file=sys.stderr)
        return 2  # a usage error, as argparse's
    answer = _ask(
        _socket_path(args),
        {"command": args.command, "service": args.service, "real": args.real},
        args.timeout,
    )
    node = answer.get("node")  # an older daemon does not say
    where = f"this director ({node})" if isinstance(node, str) else "this director"
    print(
        f"{answer.get('real', args.real)} of {answer.get('service', args.service)} "
        f"{args.command}ed on {where} only; run the same command on the other directors"
    )
    return 0


def _drain_director(args: argparse.Namespace) -> int:
    answer = _ask(_socket_path(args), {"command": args.command, "all": True}, args.timeout)
    node = answer.get("node")
    where = f"this director ({node})" if isinstance(node, str) else "this director"
    if args.command == "drain":
        print(f"{where} drained: its VIPs are withdrawn from BGP until `ipvsd undrain --all`")
    else:
        print(f"{where} undrained: its healthy VIPs are announced over BGP again")
    return 0
