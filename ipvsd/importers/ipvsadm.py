"""``ipvsadm -Sn`` rules → an ipvsd config, and a report. Pure.

Theory of operation
-------------------
``ipvsadm -Sn`` (ipvsadm-save -n) prints one command per line, as
``ipvsadm -R`` reads them back (ipvsadm 1.31's print_service_entry)::

    -A -t 192.168.1.200:80 -s rr -p 300 -M 255.255.255.0 --pe sip -b sh-port
    -a -t 192.168.1.200:80 -r 192.168.1.30:80 -g -w 1
    -A -f 10 -6 -s wlc
    -a -f 10 -6 -r [2001:db8::30]:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum

Each line is parsed with ipvsadm's own option names (short and long, by
argparse) and applied in order, as ``ipvsadm -R`` would: ``-A``/``-E``/``-D``
add, edit and delete services, ``-a``/``-e``/``-d`` reals, ``-C`` clears what
came before. Hand-written rule files may also hold ``-x``/``-y`` thresholds,
``-o`` (one-packet scheduling) and ``--set TCP TCPFIN UDP`` (→
``ipvs.timeouts``); they convert too.

ipvsadm's defaults are kept: scheduler wlc, ``-p`` without a value 300 s,
``-a`` without a method ``-g`` (DR), weight 1. A service's ``forward`` is its
reals' most common method; the others set their own. What ipvsd cannot
express is reported (``FILE:LINE: option: what happens instead``): port 0
services (ipvsd's have a port), a non-contiguous ``-M`` netmask, the sync
daemon commands (ipvsd ties the sync daemon to a VRRP instance:
``ipvs.sync_daemon``), ``-Z``. A line ipvsadm would refuse, or a host or
service name (``ipvsadm -S`` without ``-n``), is a `SourceError`.

There are no health checks in IPVS: every real is always up until the
operator adds ``check:`` sections, which the header comment says.
"""

from __future__ import annotations

import argparse
import shlex
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
from typing import Any

from ipvsd.config.model import IpvsConfig, RealConfig, ServiceConfig, TimeoutsConfig, TunnelConfig
from ipvsd.config.types import SCHEDULER_FLAGS
from ipvsd.importers.report import Conversion, Notes, Outcome, Reported, SourceError, ordered
from ipvsd.importers.settle import settle
from ipvsd.model import parse_endpoint

__all__ = ["convert"]

PERSISTENCE_DEFAULT = 300  # ipvsadm's -p without a value
_PROTOCOLS = {"tcp_service": "tcp", "udp_service": "udp", "sctp_service": "sctp"}
_FORWARD = {"g": "dr", "i": "tunnel", "m": "nat"}
_CHECKSUM = {"tun_nocsum": "none", "tun_csum": "csum", "tun_remcsum": "remcsum"}


class _Refused(Exception):
    """A line ipvsadm would refuse (argparse's error, raised instead of exiting)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit
        raise _Refused(message)


def _parser() -> _Parser:
    parser = _Parser(prog="ipvsadm", add_help=False, allow_abbrev=False)
    commands = parser.add_mutually_exclusive_group(required=True)
    for short, long, command in (
        ("-A", "--add-service", "-A"),
        ("-E", "--edit-service", "-E"),
        ("-D", "--delete-service", "-D"),
        ("-a", "--add-server", "-a"),
        ("-e", "--edit-server", "-e"),
        ("-d", "--delete-server", "-d"),
        ("-C", "--clear", "-C"),
        ("-Z", "--zero", "-Z"),
    ):
        commands.add_argument(short, long, dest="command", action="store_const", const=command)
    commands.add_argument("--set", nargs=3, metavar=("TCP", "TCPFIN", "UDP"))
    commands.add_argument("--start-daemon", metavar="STATE")
    commands.add_argument("--stop-daemon", metavar="STATE")
    service = parser.add_mutually_exclusive_group()
    service.add_argument("-t", "--tcp-service")
    service.add_argument("-u", "--udp-service")
    service.add_argument("--sctp-service")
    service.add_argument("-f", "--fwmark-service")
    parser.add_argument("-6", "--ipv6", action="store_true")
    parser.add_argument("-s", "--scheduler")
    parser.add_argument("-p", "--persistent", nargs="?", const=str(PERSISTENCE_DEFAULT))
    parser.add_argument("-M", "--netmask")
    parser.add_argument("--pe")
    parser.add_argument("-b", "--sched-flags")
    parser.add_argument("-o", "--ops", action="store_true")
    parser.add_argument("-r", "--real-server")
    forward = parser.add_mutually_exclusive_group()
    for letter, long in (("g", "--gatewaying"), ("i", "--ipip"), ("m", "--masquerading")):
        forward.add_argument(f"-{letter}", long, dest="forward", action="store_const", const=letter)
    parser.add_argument("-w", "--weight")
    parser.add_argument("-x", "--u-threshold")
    parser.add_argument("-y", "--l-threshold")
    parser.add_argument("--tun-type", choices=("ipip", "gue", "gre"))
    parser.add_argument("--tun-port")
    checksum = parser.add_mutually_exclusive_group()
    for name in _CHECKSUM:
        checksum.add_argument(
            f"--{name.replace('_', '-')}",
            dest="checksum",
            action="store_const",
            const=_CHECKSUM[name],
        )
    for name in (
        "--mcast-interface",
        "--syncid",
        "--sync-maxlen",
        "--mcast-group",
        "--mcast-port",
        "--mcast-ttl",
    ):
        parser.add_argument(name)
    parser.add_argument("-n", "--numeric", action="store_true")
    return parser


@dataclass(slots=True)
class _Service:
    line: int
    data: dict[str, Any]
    reals: dict[tuple[str, int], tuple[int, dict[str, Any]]] = field(default_factory=dict)


@dataclass(slots=True)
class _State:
    file: str
    services: dict[tuple[Any, ...], _Service] = field(default_factory=dict)
    timeouts: tuple[int, dict[str, int]] | None = None
    reports: list[Reported] = field(default_factory=list)
    outcomes: dict[int, tuple[str, Outcome]] = field(default_factory=dict)

    def report(self, line: int, directive: str, message: str) -> None:
        self.reports.append(Reported(self.file, line, directive, message))
        command = self.outcomes[line][0] if line in self.outcomes else directive
        self.outcomes[line] = (command, Outcome.REPORTED)


def convert(text: str, file: str) -> Conversion:
    """Convert ``ipvsadm -Sn`` output.

    Args:
        text: the rules, one command per line (blank lines and ``#`` comments skipped;
            a leading ``ipvsadm`` word is allowed).
        file: its name, for the report and errors.

    Raises:
        SourceError: a line ipvsadm would refuse, or one with names instead of numbers.
    """
    state = _State(file)
    parser = _parser()
    for number, raw in enumerate(text.splitlines(), start=1):
        words = _words(raw, file, number)
        if not words:
            continue
        try:
            args = parser.parse_args(words)
        except _Refused as exc:
            raise SourceError(file, number, f"ipvsadm would refuse this line: {exc}") from None
        command = _command(args)
        state.outcomes[number] = (command, Outcome.CONVERTED)
        _apply(state, args, command, number)
    return _finish(state)


def _words(raw: str, file: str, line: int) -> list[str]:
    text = raw.strip()
    if not text or text.startswith("#"):
        return []
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SourceError(file, line, str(exc)) from None
    return words[1:] if words[:1] == ["ipvsadm"] else words


def _command(args: argparse.Namespace) -> str:
    if args.command is not None:
        return str(args.command)
    for name in ("set", "start_daemon", "stop_daemon"):
        if getattr(args, name) is not None:
            return "--" + name.replace("_", "-")
    raise AssertionError("argparse requires a command")


def _apply(state: _State, args: argparse.Namespace, command: str, line: int) -> None:
    match command:
        case "-A" | "-E":
            _service(state, args, command, line)
        case "-D":
            if state.services.pop(_key(state, args, line), None) is None:
                raise SourceError(state.file, line, "-D: no such service above this line")
        case "-a" | "-e" | "-d":
            _real(state, args, command, line)
        case "-C":
            state.services.clear()
            state.report(
                line,
                "-C",
                "ipvsd never clears the IPVS table (it manages only the services of its "
                "config); the services above this line are left out, as -C removes them",
            )
        case "--set":
            _timeouts(state, args.set, line)
        case "--start-daemon" | "--stop-daemon":
            state.report(
                line,
                command,
                "ipvsd runs the sync daemon as master or backup with a VRRP instance's state "
                "(ipvs.sync_daemon): not converted",
            )
        case "-Z":
            state.report(line, "-Z", "zeroes counters; nothing to convert")


def _key(state: _State, args: argparse.Namespace, line: int) -> tuple[Any, ...]:
    """A service's identity and its ipvsd key fields, from -t/-u/--sctp-service/-f."""
    if args.fwmark_service is not None:
        if not args.fwmark_service.isdigit() or not 1 <= int(args.fwmark_service) < 2**32:
            raise SourceError(state.file, line, f"-f {args.fwmark_service}: not a firewall mark")
        return ("fwmark", int(args.fwmark_service), "ipv6" if args.ipv6 else "ipv4")
    for name, protocol in _PROTOCOLS.items():
        text = getattr(args, name)
        if text is not None:
            address, port = _endpoint(state, text, line)
            return (protocol, address, port)
    raise SourceError(state.file, line, "no service (-t, -u, --sctp-service or -f)")


def _endpoint(state: _State, text: str, line: int) -> tuple[str, int]:
    """``ADDRESS[:PORT]``, IPv6 in brackets; a name is refused (save with -n)."""
    try:
        if text.startswith("[") and not text.endswith("]"):
            address, port = parse_endpoint(text)
        elif text.startswith("["):
            address, port = ip_address(text[1:-1]), 0
        elif text.count(":") == 1:
            address, port = parse_endpoint(text)
        else:
            address, port = ip_address(text), 0
    except ValueError:
        raise SourceError(
            state.file,
            line,
            f"'{text}' is not a numeric ADDRESS:PORT (save the rules with `ipvsadm -Sn`)",
        ) from None
    return str(address), port


def _service(state: _State, args: argparse.Namespace, command: str, line: int) -> None:
    key = _key(state, args, line)
    existing = state.services.get(key)
    if command == "-A" and existing is not None:
        raise SourceError(state.file, line, "-A: the service exists already (use -E)")
    if command == "-E" and existing is None:
        raise SourceError(state.file, line, "-E: no such service above this line")
    data: dict[str, Any]
    if key[0] == "fwmark":
        data = {"fwmark": key[1]}
        if key[2] == "ipv6":
            data["family"] = "ipv6"
    else:
        data = {"address": key[1], "port": key[2], "protocol": key[0]}
        if key[2] == 0:
            state.report(
                line,
                command,
                "port 0 (every port of a persistent service): ipvsd services have a port; "
                "use a fwmark service for several ports: not converted",
            )
            return
    data["scheduler"] = args.scheduler or "wlc"
    flags = _flags(state, args, line)
    if flags:
        data["scheduler_flags"] = flags
    if args.persistent is not None:
        if not args.persistent.isdigit():
            raise SourceError(state.file, line, f"-p {args.persistent}: not a number of seconds")
        data["persistence_timeout"] = int(args.persistent)
        netmask = _netmask(state, args.netmask, line) if args.netmask else None
        if netmask is not None:
            data["persistence_netmask"] = netmask
    if args.pe:
        data["persistence_engine"] = args.pe
    if existing is not None:
        existing.data = data
    else:
        state.services[key] = _Service(line, data)


def _flags(state: _State, args: argparse.Namespace, line: int) -> list[str]:
    flags = [name for name in (args.sched_flags or "").split(",") if name]
    for name in flags:
        if name not in SCHEDULER_FLAGS:
            raise SourceError(state.file, line, f"-b {name}: not a scheduler flag")
    if args.ops and "one-packet" not in flags:
        flags.append("one-packet")
    return flags


def _netmask(state: _State, text: str, line: int) -> int | None:
    """-M as a prefix length: a dotted IPv4 mask of leading ones, or IPv6's prefix length."""
    if text.isdigit():
        return int(text)
    try:
        mask = int(IPv4Address(text))
    except ValueError:
        raise SourceError(state.file, line, f"-M {text}: not a netmask") from None
    inverted = ~mask & 0xFFFFFFFF
    if inverted & (inverted + 1) == 0:
        return 32 - inverted.bit_length()
    state.report(line, "-M", f"{text} is not leading ones then zeros: ipvsd uses /32 (per client)")
    return None


def _real(state: _State, args: argparse.Namespace, command: str, line: int) -> None:
    key = _key(state, args, line)
    service = state.services.get(key)
    if service is None:
        if key[0] != "fwmark" and key[2] == 0:
            state.report(line, command, "its service (port 0) is not converted: not converted")
            return
        raise SourceError(state.file, line, f"{command}: no such service above this line")
    if args.real_server is None:
        raise SourceError(state.file, line, f"{command} needs -r")
    address, port = _endpoint(state, args.real_server, line)
    dest = (address, port)
    if command == "-d":
        if service.reals.pop(dest, None) is None:
            raise SourceError(state.file, line, "-d: no such real above this line")
        return
    if command == "-a" and dest in service.reals:
        raise SourceError(state.file, line, "-a: the real exists already (use -e)")
    if command == "-e" and dest not in service.reals:
        raise SourceError(state.file, line, "-e: no such real above this line")
    data: dict[str, Any] = {"address": address, "port": port}
    data["weight"] = _number(state, args.weight, "-w", line, default=1)
    data["forward"] = _FORWARD[args.forward or "g"]
    for option, name, value in (
        ("-x", "upper_threshold", args.u_threshold),
        ("-y", "lower_threshold", args.l_threshold),
    ):
        if value is not None:
            data[name] = _number(state, value, option, line, default=0)
    tunnel = _tunnel(state, args, line)
    if tunnel:
        data["tunnel"] = tunnel
    service.reals[dest] = (line, ordered(data, RealConfig))


def _number(state: _State, text: str | None, option: str, line: int, *, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit():
        raise SourceError(state.file, line, f"{option} {text}: not a number")
    return int(text)


def _tunnel(state: _State, args: argparse.Namespace, line: int) -> dict[str, Any]:
    tunnel: dict[str, Any] = {}
    if args.tun_type is not None:
        tunnel["type"] = args.tun_type
    if args.tun_port is not None:
        tunnel["port"] = _number(state, args.tun_port, "--tun-port", line, default=0)
    if args.checksum is not None and args.checksum != "none":
        tunnel["checksum"] = args.checksum
    if tunnel.get("type") == "ipip" and len(tunnel) == 1:
        return {}  # ipip is the default
    return ordered(tunnel, TunnelConfig) if tunnel else {}


def _timeouts(state: _State, values: list[str], line: int) -> None:
    if not all(value.isdigit() for value in values):
        raise SourceError(state.file, line, "--set needs three numbers of seconds")
    timeouts = dict(zip(("tcp", "tcpfin", "udp"), map(int, values), strict=True))
    state.timeouts = (line, ordered(timeouts, TimeoutsConfig))


def _finish(state: _State) -> Conversion:
    origins: dict[int, tuple[int, str]] = {}
    services = []
    for service in state.services.values():
        data: dict[str, Any] = dict(service.data)
        reals = [real for _line, real in service.reals.values()]
        if reals:
            data["forward"] = Counter(real["forward"] for real in reals).most_common(1)[0][0]
            for real in reals:
                if real["forward"] == data["forward"]:
                    del real["forward"]
        data["reals"] = reals
        data = ordered(data, ServiceConfig)
        services.append(data)
        origins[id(data)] = (service.line, "-A")
        for line, real in service.reals.values():
            origins[id(real)] = (line, "-a")
    ipvs: dict[str, Any] = {"services": services}
    if state.timeouts is not None:
        line, ipvs["timeouts"] = state.timeouts
        origins[id(ipvs["timeouts"])] = (line, "--set")
    config: dict[str, Any] = {"vrrp": {"instances": []}, "ipvs": ordered(ipvs, IpvsConfig)}
    notes = Notes()
    notes.add(config, "vrrp", "ipvsadm has no VRRP: add instances to own the VIPs")
    notes.add(
        config["ipvs"],
        "services",
        "ipvsadm has no health checks: every real is always up until a check: is added",
    )
    settle(
        config, origins, lambda where, message: state.report(*where, f"{message}: not converted")
    )
    reports = sorted(state.reports, key=lambda report: report.line)
    outcomes = tuple(state.outcomes[line] for line in sorted(state.outcomes))
    return Conversion(config, notes.paths(config), tuple(reports), outcomes)
