"""ipvsd(8) and the bash completion, generated from the argument parser (ipvsd/manpage.py)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipvsd import __version__
from ipvsd.cli import build_parser
from ipvsd.manpage import commands, render_bash, render_man, subcommand_names, synopsis

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page() -> str:
    return render_man(build_parser())


def test_every_command_and_option_is_on_the_page(page: str) -> None:
    found = list(commands(build_parser()))
    names = {" ".join(command.path) for command in found}
    assert {"run", "check-config", "status", "reload", "import keepalived", "schema"} <= names
    for command in found:
        assert f'.SS "{command.name.replace("-", chr(92) + "-")}"' in page
        for action in command.parser._actions:
            for flag in action.option_strings:
                assert flag.replace("-", "\\-") in page, (command.name, flag)
    assert f'"ipvsd {__version__}"' in page.splitlines()[1]


def test_epilogs_become_sections_and_preformatted_blocks(page: str) -> None:
    for section in ('.SH "EXAMPLES"', '.SH "EXIT STATUS"', '.SH "FILES"', ".SH SEE ALSO"):
        assert section in page
    # The main epilog's command list is the COMMANDS section instead.
    assert '.SH "COMMANDS"' not in page
    assert ".SH COMMANDS" in page
    # Examples keep their lines; `code` is bold; no line starts a roff request by accident.
    assert "ipvsd status \\-\\-json | jq '.vrrp[].state'" in page
    assert "\\fBipvsadm \\-Ln\\fR" in page
    text_lines = [line for line in page.splitlines() if not line.startswith((".", "'"))]
    assert text_lines


def test_a_small_parser_renders_as_documented() -> None:
    parser = argparse.ArgumentParser(
        prog="ipvsd", description="Top.", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    show = sub.add_parser(
        "show",
        help="show it",
        description="Shows one line:\n\n  ipvsd show --as json\n\nand ends.",
        epilog="examples:\n  ipvsd show\n    -x\n.dotted text\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = show.add_mutually_exclusive_group()
    group.add_argument("--as", choices=["json", "text"], help="format")
    group.add_argument("--quiet", action="store_true", help="nothing")
    show.add_argument("--config", metavar="PATH", help="a file")
    show.add_argument("--to", metavar="DIR", required=True, help="a required option")
    show.add_argument("name", nargs="?", metavar="NAME", help="whose")
    (command,) = commands(parser)
    assert synopsis(command) == (
        "\\fBipvsd show\\fR [\\fB\\-\\-as\\fR\\ \\fI{json,text}\\fR | \\fB\\-\\-quiet\\fR] "
        "[\\fB\\-\\-config\\fR\\ \\fIPATH\\fR] \\fB\\-\\-to\\fR\\ \\fIDIR\\fR [\\fINAME\\fR]"
    )
    page = render_man(parser)
    # "Shows one line:" does not open a paragraph of its own: it is text, not a heading.
    assert ".PP\nShows one line:\n.PP\n.RS 4\n.nf\nipvsd show \\-\\-as json\n.fi\n.RE" in page
    assert (
        ".B examples:\n.PP\n.RS 4\n.nf\nipvsd show\n  \\-x\n.fi\n.RE\n.PP\n\\&.dotted text" in page
    )


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_page_formats_without_warnings(page: str) -> None:
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z"], input=page, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stderr == ""


def test_module_prints_page_and_completion() -> None:
    for args, start in (([], '.\\" Generated'), (["--completion"], "# bash completion")):
        result = subprocess.run(
            [sys.executable, "-m", "ipvsd.manpage", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        assert result.stdout.startswith(start)


# --- bash completion --------------------------------------------------------------------

#: Stand-ins for bash-completion's helpers: the real ones are tested on the installed
#: package (tests/package); these keep this test free of that package.
STUBS = """
_init_completion() {
    words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
    cur=${words[cword]}; prev=${words[cword - 1]}
}
_filedir() { COMPREPLY=(FILES); }
"""


def complete(script: str, *words: str) -> list[str]:
    """What the completion offers for `words` (the last one being completed)."""
    line = " ".join(f"'{word}'" for word in words)
    program = (
        f"{STUBS}\n{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_ipvsd; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.fixture(scope="module")
def completion() -> str:
    return render_bash(build_parser())


def test_completion_is_valid_bash(completion: str) -> None:
    subprocess.run(["bash", "-n"], input=completion, text=True, check=True)
    assert completion.rstrip().endswith("complete -F _ipvsd ipvsd")


def test_completion_offers_every_command(completion: str) -> None:
    assert complete(completion, "ipvsd", "") == subcommand_names(build_parser())


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (("ipvsd", "sta"), {"status"}),
        (("ipvsd", "-"), {"-h", "--help", "--version"}),
        (("ipvsd", "status", "--check", ""), {"master", "backup", "ready"}),
        (("ipvsd", "status", "--c"), {"--config", "--check"}),
        (("ipvsd", "run", "--config", ""), {"FILES"}),
        (("ipvsd", "run", "--config", "x.yaml", "--log-"), {"--log-level", "--log-format"}),
        (("ipvsd", "import", ""), {"keepalived", "ipvsadm"}),
        (("ipvsd", "import", "keepalived", ""), {"FILES"}),
        (("ipvsd", "import", "keepalived", "-"), {"-h", "--help", "-o", "--output", "--strict"}),
        (("ipvsd", "schema", "--format", "r"), {"roff"}),
        (("ipvsd", "drain", ""), set()),
    ],
)
def test_completion_offers(completion: str, words: tuple[str, ...], offered: set[str]) -> None:
    assert set(complete(completion, *words)) == offered
