"""``ipvsd plan``: the command line of the All-Active planner.

`add_parser` registers the subcommand (ipvsd.cli calls it); `run` plans,
prints, and with ``--out`` writes the configs. The rest of the package is
pure; this module reads the template and writes the files. It imports them
when the command runs, so that other commands (`status --check` runs often)
do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TextIO

DESCRIPTION = """\
Plan an All-Active VRRP layout: N directors share the traffic of several VIPs
of equal weight (published together by DNS round robin), each VIP a VRRP
instance mastered by one director with the others as ordered backups. The
planner answers the reference scenario's question for any N and K. It says
whether the demand fits the directors' links after any K of them fail, and by
what margin; the fewest VIPs for which every survivor carries exactly an equal
share after any failure set of at most K directors, lcm(N, N-1, ..., N-K) (6
for 3 directors and 1 failure, 12 for 4 and 1, 60 for 5 and 2); each VIP's VRRP
priorities (master 100, backups 90, 80...; unique per VIP, and the VIP goes to
the highest-priority live director); and the load of each director in normal
operation and after each failure set, counted over every failure set, not
estimated.

With --out and --template it writes one ipvsd config per director
(DIR/NAME.yaml) from a template config: the template's services and checks,
its vrrp section replaced by the plan's instances (VRIDs counting up from the
template's, this director's priorities, VIPs from --vip-pool, the template's
interface). Each file passes `ipvsd check-config`. docs/plan.md explains the
model and the construction.
"""

EPILOG = """\
rates:
  bits per second: a number with an optional k, M, G or T (decimal, 10^3...),
  optionally followed by bps or bit/s: 800M, 1.5G, 1.5Gbps, 10G, 100k; a
  plain number is bit/s. Bytes (GB), binary prefixes (Gi) and m (milli) are
  refused.

examples:
  ipvsd plan --directors 3 --tolerate 1 --demand 1.5G --link 1G
      the reference scenario: 6 VIPs, 750 Mbit/s per survivor after a failure
  ipvsd plan --directors lb1,lb2,lb3,lb4,lb5 --tolerate 2 --demand 2.5G --link 1G --json
  ipvsd plan --directors 3 --tolerate 1 --demand 1.5G --link 1G --json \\
      | jq '.assignments[] | {vip, priorities}'
  ipvsd plan --directors director1,director2,director3 --tolerate 1 --demand 1.5G \\
      --link 1G --vip-pool 192.168.1.201/24 --out /tmp/plan --template examples/dr.yaml
      then copy /tmp/plan/director1.yaml to director1's /etc/ipvsd/ipvsd.yaml, ...
  ipvsd plan --directors lb1=10.0.0.11,lb2=10.0.0.12,lb3=10.0.0.13 --tolerate 1 \\
      --demand 1.5G --link 1G --vip-pool 10.0.0.201/24 --out out --template unicast.yaml
      with unicast_peers in the template: each instance's peers are the other two

exit status:
  0 the demand fits after any K failures (configs written with --out)
  1 it does not fit (the plan is printed, and the configs written, all the
    same), or the template is not a valid config (PATH:LINE: field: message)
  2 usage error: a rate, name or number that makes no sense, K >= N, a pool
    too small for the plan
"""

_DIRECTOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``plan`` on `commands`."""
    parser = commands.add_parser(
        "plan",
        help="plan an All-Active VRRP layout: VIP count, priorities, loads after failures",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--directors",
        "-n",
        required=True,
        metavar="N|NAMES",
        type=directors_argument,
        help="how many directors (named director1, director2...), or their names, "
        "comma-separated (lb1,lb2,lb3), each optionally with its address (lb1=10.0.0.1,...): "
        "--out then gives the instances the other directors as unicast_peers when the "
        "template's instance has unicast_peers",
    )
    parser.add_argument(
        "--tolerate",
        "-k",
        required=True,
        metavar="K",
        type=_count,
        help="how many directors may fail with the survivors still sharing the load equally",
    )
    parser.add_argument(
        "--demand",
        required=True,
        metavar="RATE",
        type=_rate,
        help="the traffic of all VIPs together, e.g. 1.5G",
    )
    parser.add_argument(
        "--link",
        required=True,
        metavar="RATE",
        type=_rate,
        help="each director's link capacity, e.g. 1G",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--vip-pool",
        metavar="CIDR",
        help="take the VIPs from ADDRESS/PREFIX, in order from ADDRESS (from the first host "
        "when ADDRESS is the network's): 192.168.1.201/24 gives .201/24, .202/24...; "
        "without it the VIPs are named vip1, vip2...",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write DIR/NAME.yaml for each director (needs --template and --vip-pool)",
    )
    parser.add_argument(
        "--template",
        metavar="FILE",
        help="the ipvsd config the directors' configs are made from (with --out)",
    )


def directors_argument(text: str) -> tuple[tuple[str, str | None], ...]:
    """``--directors``: a count (names director1...) or comma-separated NAME[=ADDRESS]."""
    import ipaddress

    from ipvsd.plan.layout import MAX_DIRECTORS

    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= MAX_DIRECTORS:
            raise argparse.ArgumentTypeError(f"{text}: from 1 to {MAX_DIRECTORS} directors")
        return tuple((f"director{n}", None) for n in range(1, count + 1))
    directors: list[tuple[str, str | None]] = []
    for item in text.split(","):
        name, _, address = (part.strip() for part in item.partition("="))
        if not _DIRECTOR_NAME.fullmatch(name):
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a director name (letters, digits, '.', '_', '-'; "
                "it names a config file)"
            )
        if "=" in item:
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{item.strip()!r}: {address!r} is not an IP address"
                ) from None
        directors.append((name, address or None))
    names = [name for name, _ in directors]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"director names repeat: {', '.join(repeated)}")
    if len(directors) > MAX_DIRECTORS:
        raise argparse.ArgumentTypeError(f"{len(directors)} directors: at most {MAX_DIRECTORS}")
    if len({address is None for _, address in directors}) > 1:
        raise argparse.ArgumentTypeError("give every director an address (NAME=ADDRESS), or none")
    return tuple(directors)


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of directors")
    return int(text)


def _rate(text: str) -> int:
    from ipvsd.plan.units import RateError, parse_rate

    try:
        return parse_rate(text)
    except RateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``ipvsd plan``; returns the exit status (usage errors exit through `parser`)."""
    from ipvsd.errors import ConfigError
    from ipvsd.files import write_atomically
    from ipvsd.plan.configs import director_configs, vip_pool
    from ipvsd.plan.layout import PlanError, plan_layout
    from ipvsd.plan.render import Plan, default_vip_names, to_json, to_text

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if (args.out is None) != (args.template is None):
        parser.error("--out and --template go together")
    if args.out is not None and args.vip_pool is None:
        parser.error("--out needs --vip-pool: the configs need the VIPs' addresses")
    try:
        layout = plan_layout([name for name, _ in args.directors], args.tolerate)
        pool = None if args.vip_pool is None else vip_pool(args.vip_pool, layout.vips)
    except PlanError as exc:
        parser.error(str(exc))
    names = default_vip_names(layout.vips) if pool is None else tuple(v.split("/")[0] for v in pool)
    addresses = {name: address for name, address in args.directors if address is not None}
    plan = Plan(layout, args.demand, args.link, names, addresses)
    if args.json:
        json.dump(to_json(plan), out, indent=2)
        out.write("\n")
    else:
        out.write(to_text(plan))
    if args.out is not None and pool is not None:
        template = Path(args.template)
        try:
            configs = director_configs(plan, pool, template.read_text(), str(template))
        except OSError as exc:
            print(f"ipvsd plan: cannot read {template}: {exc.strerror}", file=err)
            return 1
        except ConfigError as exc:
            for issue in exc.issues:
                print(issue, file=err)
            return 1
        except PlanError as exc:
            print(f"ipvsd plan: {exc}", file=err)
            return 1
        directory = Path(args.out)
        directory.mkdir(parents=True, exist_ok=True)
        for note in configs[0].notes:
            print(note, file=err)
        for config in configs:
            path = directory / f"{config.director}.yaml"
            write_atomically(path, config.text)
            print(f"wrote {path}", file=err)
    return 0 if plan.fits else 1
