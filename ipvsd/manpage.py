"""The ipvsd(8) man page and the bash completion, generated from the argument parser.

`python -m ipvsd.manpage` prints the man page (roff), `python -m ipvsd.manpage
--completion` the bash completion script; the Debian package (scripts/deb.sh)
installs both. Neither is written by hand, so neither can drift from `ipvsd
--help`: every command of `ipvsd.cli.build_parser()` (nested ones such as
``import keepalived`` included) appears with its synopsis, description,
options and epilog, and the main parser's epilog becomes the page's EXAMPLES,
SIGNALS, EXIT STATUS and FILES sections. The configuration file has its own
page, ipvsd.yaml(5), generated from the config model (`ipvsd schema --format
roff`).

Theory of operation
-------------------
The help texts are plain text (most use RawDescriptionHelpFormatter) with
three conventions the page keeps:

* a lower-case line at the left margin that opens a paragraph and ends in ``:``
  (``examples:``, ``exit status:``) is a heading: a section of its own in the
  main parser's epilog, a bold line in a command's;
* indented lines are preformatted (examples, tables): kept line for line;
* `code` in backquotes is set in bold.

Everything else is filled text. The main epilog's ``commands:`` list is
left out: the COMMANDS section, built from the subparsers, says the same.

The completion is one static function, so pressing Tab costs no Python start:
for the command path typed so far it offers the subcommands, the options, an
option's choices, and file names where an option or argument takes a path
(metavar PATH, FILE, OUT or DIR).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ipvsd import __version__

#: Metavars whose values are file names (completed with bash-completion's _filedir).
FILE_METAVARS = frozenset({"PATH", "FILE", "OUT", "DIR", "TEMPLATE"})

SEE_ALSO = ("ipvsd.yaml (5)", "ipvsadm (8)", "keepalived (8)", "systemctl (1)", "journalctl (1)")


@dataclass(frozen=True)
class Command:
    """One subcommand of the parser tree.

    Attributes:
        path: the words that name it after ``ipvsd`` (``("import", "keepalived")``).
        summary: its one-line help in the parent's command list.
        parser: its own parser.
    """

    path: tuple[str, ...]
    summary: str
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join(("ipvsd", *self.path))


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every subcommand under `parser`, depth first, in the order they were added."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias
                continue
            seen.add(id(sub))
            command = Command((*path, name), summaries.get(name, ""), sub)
            yield command
            yield from commands(sub, command.path)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positional arguments of `parser`, without -h and subcommands."""
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]


def subcommand_names(parser: argparse.ArgumentParser) -> list[str]:
    """The names of `parser`'s direct subcommands (aliases included)."""
    return [
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    ]


def metavar(action: argparse.Action) -> str | None:
    """What follows the option on the command line (``PATH``, ``{json,console}``), if anything."""
    if action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def takes_file(action: argparse.Action) -> bool:
    """Whether the value of `action` is a file name."""
    return action.choices is None and metavar(action) in FILE_METAVARS


# --- roff -------------------------------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")


def _escape(text: str) -> str:
    """`text` with roff's special characters escaped and `code` in bold."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return _CODE.sub(r"\\fB\1\\fR", text)


def _line(text: str) -> str:
    """`text` as one roff text line: never read as a request."""
    return "\\&" + text if text.startswith((".", "'")) else text


def _is_heading(lines: Sequence[str], index: int) -> bool:
    line = lines[index]
    opens = index == 0 or not lines[index - 1].strip()
    return opens and line[:1].islower() and line.endswith(":") and len(line) < 50


@dataclass(frozen=True)
class _Block:
    heading: str | None
    roff: list[str]


def _blocks(text: str) -> list[_Block]:
    """`text` (a description or epilog) cut at its headings, each part in roff."""
    lines = text.strip("\n").splitlines()
    blocks = [_Block(None, [])]
    paragraph: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        out = blocks[-1].roff
        if paragraph:
            out += [".PP", _line(_escape(" ".join(paragraph)))]
            paragraph.clear()
        if literal:
            indent = min(len(line) - len(line.lstrip()) for line in literal if line.strip())
            out += [".PP", ".RS 4", ".nf"]
            out += [_line(_escape(line[indent:].rstrip())) for line in literal]
            out += [".fi", ".RE"]
            literal.clear()

    for index, line in enumerate(lines):
        if not line.strip():
            flush()
        elif _is_heading(lines, index):
            flush()
            blocks.append(_Block(line[:-1], []))
        elif line[0].isspace():
            if paragraph:
                flush()
            literal.append(line)
        else:
            if literal:
                flush()
            paragraph.append(line.strip())
    flush()
    return [block for block in blocks if block.heading is not None or block.roff]


def _option_label(action: argparse.Action) -> str:
    """``\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIPATH\\fR`` for one option or argument."""
    value = metavar(action)
    if not action.option_strings:
        return f"\\fI{_escape(value or action.dest)}\\fR"
    flags = ", ".join(f"\\fB{_escape(flag)}\\fR" for flag in action.option_strings)
    return flags + (f" \\fI{_escape(value)}\\fR" if value else "")


def _synopsis_item(action: argparse.Action) -> str:
    """One option as in a synopsis: its longest flag and its value."""
    value = metavar(action)
    if not action.option_strings:
        return f"\\fI{_escape(value or action.dest)}\\fR"
    flag = max(action.option_strings, key=len)
    return f"\\fB{_escape(flag)}\\fR" + (f"\\ \\fI{_escape(value)}\\fR" if value else "")


def synopsis(command: Command) -> str:
    """The command's synopsis line in roff: ``ipvsd status [--json | --check ...]``."""
    parser = command.parser
    grouped: dict[int, argparse._MutuallyExclusiveGroup] = {}
    for group in parser._mutually_exclusive_groups:
        for action in group._group_actions:
            grouped[id(action)] = group
    words = [f"\\fB{_escape(command.name)}\\fR"]
    done: set[int] = set()
    for action in options(parser):
        if not action.option_strings:
            continue
        member_of = grouped.get(id(action))
        if member_of is None:
            item = _synopsis_item(action)
            words.append(item if action.required else f"[{item}]")
        elif id(member_of) not in done:
            done.add(id(member_of))
            items = " | ".join(_synopsis_item(member) for member in member_of._group_actions)
            words.append(f"({items})" if member_of.required else f"[{items}]")
    for action in options(parser):
        if not action.option_strings:
            item = _synopsis_item(action)
            words.append(f"[{item}]" if action.nargs in ("?", "*") else item)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words += [f"\\fI{_escape(metavar(action) or 'COMMAND')}\\fR", "..."]
    return " ".join(words)


def _unbroken(line: str) -> list[str]:
    """A synopsis: ragged right and no hyphenation, so that options stay readable."""
    return [".nh", ".ad l", _line(line), ".ad b", ".hy"]


def _option_list(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    out: list[str] = []
    for action in options(parser):
        if action.help == argparse.SUPPRESS:
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        out += [".TP", _line(_option_label(action)), _line(_escape(help_text))]
    return out


def _command_section(command: Command, parent_epilog: str | None) -> list[str]:
    parser = command.parser
    out = [f'.SS "{_escape(command.name)}"', ".PP", *_unbroken(synopsis(command))]
    for block in _blocks(parser.description or command.summary):
        out += _command_block(block)
    out += _option_list(parser)
    if parser.epilog and parser.epilog != parent_epilog:
        for block in _blocks(parser.epilog):
            out += _command_block(block)
    return out


def _command_block(block: _Block) -> list[str]:
    heading = [".PP", f".B {_escape(block.heading)}:"] if block.heading else []
    return heading + block.roff


def render_man(parser: argparse.ArgumentParser) -> str:
    """The ipvsd(8) man page of `parser` (``ipvsd.cli.build_parser()``), in roff."""
    everything = list(commands(parser))
    out = [
        '.\\" Generated from ipvsd/cli.py by `python -m ipvsd.manpage`; do not edit.',
        f'.TH IPVSD 8 "" "ipvsd {__version__}" "System Manager\\(aqs Manual"',
        ".SH NAME",
        "ipvsd \\- IPVS load\\-balancer director: IPVS over netlink, VRRP, health checks",
        ".SH SYNOPSIS",
    ]
    for command in everything:
        if not subcommand_names(command.parser):
            out += [".PP", *_unbroken(synopsis(command))]
    out += [".PP", "\\fBipvsd\\fR \\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR"]
    out += [".SH DESCRIPTION"]
    for block in _blocks(parser.description or ""):
        out += _command_block(block)
    out += [".SH OPTIONS", *_option_list(parser)]
    out += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "print the help of ipvsd or of one command"]
    out += [".SH COMMANDS"]
    parents = {command.path: command.parser.epilog for command in everything}
    for command in everything:
        out += _command_section(command, parents.get(command.path[:-1]))
    for block in _blocks(parser.epilog or ""):
        if block.heading is None:
            out += block.roff
        elif block.heading != "commands":
            title = block.heading.replace("`", "").upper()
            out += [f'.SH "{_escape(title)}"', *block.roff]
    out += [".SH SEE ALSO", ",\n".join(f".BR {page}" for page in SEE_ALSO)]
    return "\n".join(out) + "\n"


# --- bash completion --------------------------------------------------------------------


def _case(pattern: str, body: str) -> str:
    return f"        {pattern}) {body} ;;"


def _compgen(words: Sequence[str]) -> str:
    return f'COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur"))'


def _value_case(key: str, action: argparse.Action) -> str | None:
    """The completion of the value after one option of the command `key`, if it takes one."""
    if not action.option_strings or action.nargs == 0:
        return None
    pattern = "|".join(f'"{key}:{flag}"' for flag in action.option_strings)
    if action.choices is not None:
        return _case(pattern, _compgen([str(choice) for choice in action.choices]) + "; return")
    return _case(pattern, "_filedir; return" if takes_file(action) else "return")


def render_bash(parser: argparse.ArgumentParser) -> str:
    """The bash completion of `parser`: one function, ``complete -F _ipvsd ipvsd``."""
    tree = [Command((), "", parser), *commands(parser)]
    descend, skip, values, flags, words = [], [], [], [], []
    for command in tree:
        key = " ".join(command.path)
        actions = options(command.parser)
        subs = subcommand_names(command.parser)
        descend += [_case(f'"{key}:{name}"', 'path="${path:+$path }$word"') for name in subs]
        for action in actions:
            case = _value_case(key, action)
            if case is not None:
                values.append(case)
                skip += [f'"{key}:{flag}"' for flag in action.option_strings]
        flag_names = ["-h", "--help", *(flag for a in actions for flag in a.option_strings)]
        flags.append(_case(f'"{key}"', f'opts="{" ".join(flag_names)}"'))
        if subs:
            words.append(_case(f'"{key}"', _compgen(subs)))
        elif any(takes_file(a) for a in actions if not a.option_strings):
            words.append(_case(f'"{key}"', "_filedir"))
    return _BASH.format(
        descend="\n".join(descend),
        skip="|".join(sorted(skip)) or '"-:-"',
        values="\n".join(values),
        flags="\n".join(flags),
        words="\n".join(words),
    )


_BASH = """\
# bash completion for ipvsd(8)
# Generated from ipvsd/cli.py by `python -m ipvsd.manpage --completion`; do not edit.

_ipvsd() {{
    local cur prev words cword
    _init_completion -s || return

    # The command path typed so far ("", "status", "import keepalived"), skipping
    # the values of options that take one.
    local path="" word i opts
    for ((i = 1; i < cword; i++)); do
        word=${{words[i]}}
        case "$path:${{words[i - 1]}}" in
        {skip}) continue ;;
        esac
        case "$path:$word" in
{descend}
        esac
    done

    case "$path:$prev" in
{values}
    esac

    if [[ $cur == -* ]]; then
        case "$path" in
{flags}
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi

    case "$path" in
{words}
    esac
}} &&
    complete -F _ipvsd ipvsd
"""


def main(argv: list[str] | None = None) -> int:
    """Print the man page, or with --completion the bash completion, on stdout."""
    from ipvsd.cli import build_parser

    args = argparse.ArgumentParser(
        prog="python -m ipvsd.manpage",
        description="Print ipvsd(8) (roff) or the bash completion, made from ipvsd's parser.",
    )
    args.add_argument("--completion", action="store_true", help="print the bash completion")
    wanted = args.parse_args(argv)
    parser = build_parser()
    sys.stdout.write(render_bash(parser) if wanted.completion else render_man(parser))
    return 0


if __name__ == "__main__":
    sys.exit(main())
