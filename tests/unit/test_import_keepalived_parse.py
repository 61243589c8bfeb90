"""keepalived.conf → directive tree (keepalived_parse), and include expansion (sources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvsd.importers.keepalived_parse import Node, parse
from ipvsd.importers.report import SourceError
from ipvsd.importers.sources import read_keepalived

DATA = Path(__file__).resolve().parents[1] / "data" / "keepalived"


def shape(nodes: tuple[Node, ...] | None) -> list[object]:
    """The tree as nested lists of words, children after their directive."""
    out: list[object] = []
    for node in nodes or ():
        out.append(" ".join(node.words))
        if node.children is not None:
            out.append(shape(node.children))
    return out


def test_blocks_with_braces_on_the_same_line_or_the_next() -> None:
    text = (
        "vrrp_instance VI_1 {\n"
        "  interface eth0\n"
        "  virtual_ipaddress\n"
        "  {\n"
        "    192.168.1.200/24\n"
        "  }\n"
        "}\n"
    )
    assert shape(parse(text, "k.conf")) == [
        "vrrp_instance VI_1",
        ["interface eth0", "virtual_ipaddress", ["192.168.1.200/24"]],
    ]


def test_braces_split_a_line_into_directives() -> None:
    text = "vrrp_sync_group G { group { VI_1 VI_2 } notify_master /x }\n"
    assert shape(parse(text, "k.conf")) == [
        "vrrp_sync_group G",
        ["group", ["VI_1 VI_2"], "notify_master /x"],
    ]


def test_comments_with_bang_and_hash_anywhere_outside_quotes() -> None:
    text = (
        "! a comment line\n"
        "# another\n"
        "global_defs {   ! trailing\n"
        '  router_id "lb#1 !x"   # the quoted part stays\n'
        "  smtp_server 10.0.0.1#25\n"
        "  notification_email_from a\\!b\n"
        "}\n"
    )
    [node] = parse(text, "k.conf")
    assert node.children is not None
    assert [child.words for child in node.children] == [
        ("router_id", "lb#1 !x"),
        ("smtp_server", "10.0.0.1"),
        ("notification_email_from", "a!b"),
    ]


def test_quoted_strings_are_one_word_without_quotes() -> None:
    [node] = parse('notify_master "/usr/bin/notify.sh  MASTER  VI_1" extra\n', "k.conf")
    assert node.args == ("/usr/bin/notify.sh  MASTER  VI_1", "extra")


def test_lines_and_files_are_recorded() -> None:
    nodes = parse("\n\nglobal_defs {\n\n  router_id x\n}\n", "a/k.conf")
    assert (nodes[0].file, nodes[0].line) == ("a/k.conf", 3)
    assert nodes[0].children is not None
    assert nodes[0].children[0].line == 5


def test_a_backslash_continues_the_line() -> None:
    [node] = parse("lvs_sync_daemon eth1 \\\n  VI_1 id 5\n", "k.conf")
    assert node.words == ("lvs_sync_daemon", "eth1", "VI_1", "id", "5")
    assert node.line == 1


def test_definitions_are_substituted_and_kept_as_dollar_nodes() -> None:
    text = (
        "$IF=eth1\n$VIP = 10.0.0.1\n"
        "vrrp_instance A { interface $IF\n virtual_ipaddress { ${VIP} } }\n"
    )
    nodes = parse(text, "k.conf")
    assert [node.words for node in nodes[:2]] == [("$", "IF", "eth1"), ("$", "VIP", "10.0.0.1")]
    assert shape(nodes[2:]) == [
        "vrrp_instance A",
        ["interface eth1", "virtual_ipaddress", ["10.0.0.1"]],
    ]


def test_conditional_lines_keep_their_condition() -> None:
    nodes = parse("@high priority 170\n@^high\tpriority 85\nweight 1\n", "k.conf")
    assert [(node.words, node.condition) for node in nodes] == [
        (("priority", "170"), "high"),
        (("priority", "85"), "^high"),
        (("weight", "1"), None),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("a {\n  b\n", 1, "the block of 'a' (line 1) is never closed", id="unclosed"),
        pytest.param("a\n}\n", 2, "'}' without an open block", id="extra-close"),
        pytest.param("{\n}\n", 1, "'{' without a directive before it", id="bare-open"),
        pytest.param("a {\n}\n{\n", 3, "'{' without a directive before it", id="open-after-block"),
        pytest.param('a "b\n', 1, "unterminated quote", id="quote"),
        pytest.param("$A={\n", 1, "multi-line $ definitions are not supported", id="multiline-def"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse(text, "bad.conf")
    assert (caught.value.file, caught.value.line, caught.value.message) == (
        "bad.conf",
        line,
        message,
    )
    assert str(caught.value) == f"bad.conf:{line}: {message}"


# --- includes -----------------------------------------------------------------------------


def test_includes_follow_globs_in_order_relative_to_the_including_file() -> None:
    main = DATA / "includes" / "keepalived.conf"
    loaded = read_keepalived(str(main))
    base = str(DATA / "includes")
    assert loaded.files == [
        str(main),
        f"{base}/conf.d/10-vrrp.conf",
        f"{base}/conf.d/20-vrrp.conf",
        f"{base}/services/web.conf",
        f"{base}/services/reals/a.conf",  # `include reals/*.conf` inside services/web.conf
        f"{base}/services/reals/b.conf",
    ]
    assert [node.words for node in loaded.nodes] == [
        ("global_defs",),
        ("include", "conf.d/*.conf"),
        ("vrrp_instance", "VI_1"),
        ("vrrp_instance", "VI_2"),
        ("include", "services/web.conf"),
        ("virtual_server", "192.168.71.200", "80"),
        ("include", "missing/*.conf"),
    ]
    server = loaded.nodes[5]
    assert server.file == f"{base}/services/web.conf"
    assert shape(server.children) == [
        "lb_algo rr",
        "lb_kind NAT",
        "include reals/*.conf",
        "real_server 10.71.0.1 80",
        ["weight 1"],
        "real_server 10.71.0.2 80",
        ["weight 2"],
    ]
    [(unmatched, reason)] = loaded.unmatched.items()
    assert unmatched.words == ("include", "missing/*.conf")
    assert reason == f"no file matches {base}/missing/*.conf: nothing included"


def test_an_absolute_include(tmp_path: Path) -> None:
    other = tmp_path / "other.conf"
    other.write_text("global_defs {\n  router_id x\n}\n")
    main = tmp_path / "sub" / "main.conf"
    main.parent.mkdir()
    main.write_text(f"include {other}\n")
    loaded = read_keepalived(str(main))
    assert [node.directive for node in loaded.nodes] == ["include", "global_defs"]


def test_an_include_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("\ninclude a.conf\n")
    with pytest.raises(SourceError) as caught:
        read_keepalived(str(tmp_path / "a.conf"))
    assert str(caught.value) == (
        f"{tmp_path}/b.conf:2: include: {tmp_path}/a.conf includes itself (a loop)"
    )


def test_a_syntax_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include part.conf\n")
    (tmp_path / "part.conf").write_text("a {\n")
    with pytest.raises(SourceError) as caught:
        read_keepalived(str(tmp_path / "main.conf"))
    assert str(caught.value).startswith(f"{tmp_path}/part.conf:1: ")


def test_an_unreadable_included_file_is_an_error_at_the_include(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("\ninclude conf.d\n")
    (tmp_path / "conf.d").mkdir()  # matched, and unreadable as a file (even for root)
    with pytest.raises(SourceError) as caught:
        read_keepalived(str(tmp_path / "main.conf"))
    assert str(caught.value) == (
        f"{tmp_path}/main.conf:2: include: cannot read {tmp_path}/conf.d: Is a directory"
    )


def test_a_missing_main_file() -> None:
    with pytest.raises(SourceError) as caught:
        read_keepalived("/nonexistent/keepalived.conf")
    assert (
        str(caught.value)
        == "/nonexistent/keepalived.conf:0: cannot read: No such file or directory"
    )
