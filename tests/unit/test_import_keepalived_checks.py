"""``ipvsd import keepalived``: SMTP_CHECK, UDP_CHECK, DNS_CHECK, PING_CHECK and several
checkers per real (issue 13)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from ipvsd.config import load_config
from ipvsd.importers.emit import to_yaml
from ipvsd.importers.keepalived import convert
from ipvsd.importers.keepalived_parse import parse
from ipvsd.importers.report import Conversion

REAL = """\
virtual_server 192.0.2.1 {port} {{
    protocol {protocol}
    real_server 10.0.0.1 {port} {{
{checkers}
    }}
}}
"""


def convert_real(checkers: str, port: int = 25, protocol: str = "TCP") -> Conversion:
    text = REAL.format(
        port=port, protocol=protocol, checkers=textwrap.indent(textwrap.dedent(checkers), " " * 8)
    )
    return convert(parse(text, "k.conf"))


def real(conversion: Conversion) -> dict[str, Any]:
    found: dict[str, Any] = conversion.data["ipvs"]["services"][0]["reals"][0]
    return found


def check(conversion: Conversion) -> dict[str, Any]:
    found: dict[str, Any] = conversion.data["ipvs"]["services"][0]["check"]
    return found


def reports(conversion: Conversion) -> list[str]:
    return [str(report) for report in conversion.reports]


def loads(conversion: Conversion, tmp_path: Path) -> None:
    out = tmp_path / "ipvsd.yaml"
    out.write_text(to_yaml(conversion.data, header=["test"], comments=conversion.comments))
    load_config(out)


def test_smtp_check_is_an_smtp_check_with_keepalived_s_helo_name(tmp_path: Path) -> None:
    conversion = convert_real("SMTP_CHECK {\n    connect_timeout 3\n}\n")
    assert check(conversion) == {
        "type": "smtp",
        "interval": 60,
        "timeout": 3,
        "rise": 1,
        "fall": 2,
        "retry_interval": 1,
        "helo_name": "smtpchecker.keepalived.org",
    }
    assert reports(conversion) == []  # without alpha: converted as alpha: false
    comments = conversion.comments
    assert ("ipvs", "services", 0, "check", "helo_name") in comments
    loads(conversion, tmp_path)


def test_smtp_helo_name_is_kept() -> None:
    conversion = convert_real("SMTP_CHECK {\n    helo_name lb1.example\n}\n")
    assert check(conversion)["helo_name"] == "lb1.example"


def test_udp_check_payload_and_reply_prefix(tmp_path: Path) -> None:
    conversion = convert_real(
        """
        UDP_CHECK {
            payload 0a 1b ff
            require_reply 4f4b
            min_reply_length 2
        }
        """,
        port=53,
        protocol="UDP",
    )
    found = check(conversion)
    assert (found["type"], found["payload_hex"], found["require_reply"]) == ("udp", "0a1bff", True)
    assert found["reply_regex"] == r"\AOK"
    assert "k.conf:8: min_reply_length: ipvsd does not bound a reply's length (reply_regex can): " \
        "ignored" in reports(conversion)  # fmt: skip
    loads(conversion, tmp_path)


def test_udp_reply_with_a_mask_is_reported() -> None:
    conversion = convert_real("UDP_CHECK {\n    require_reply 4f?b\n}\n", 53, "UDP")
    assert check(conversion)["require_reply"] is True
    assert "reply_regex" not in check(conversion)
    assert "k.conf:5: require_reply: '4f?b' is not plain hex bytes: not converted" in reports(
        conversion
    )


def test_dns_check_name_and_type(tmp_path: Path) -> None:
    conversion = convert_real("DNS_CHECK {\n    type a\n    name www.example\n}\n", 53, "UDP")
    found = check(conversion)
    assert (found["type"], found["query_type"], found["query_name"]) == ("dns", "A", "www.example")
    bad = convert_real("DNS_CHECK {\n    type AXFR\n}\n", 53, "UDP")
    assert "query_type" not in check(bad)
    assert any("type: not one of A, AAAA" in line for line in reports(bad))
    loads(conversion, tmp_path)


def test_ping_check_needs_no_port(tmp_path: Path) -> None:
    text = "virtual_server fwmark 7 {\n real_server 10.0.0.1 0 {\n  PING_CHECK {\n  }\n }\n}\n"
    conversion = convert(parse(text, "k.conf"))
    assert conversion.data["ipvs"]["services"][0]["check"]["type"] == "ping"
    loads(conversion, tmp_path)


def test_several_checkers_become_check_and_checks(tmp_path: Path) -> None:
    conversion = convert_real(
        """
        TCP_CHECK {
            connect_timeout 2
        }
        SMTP_CHECK {
            helo_name lb1.example
            retry 3
        }
        PING_CHECK {
            delay_loop 5
        }
        """
    )
    assert check(conversion)["type"] == "tcp"
    more = conversion.data["ipvs"]["services"][0]["checks"]  # one real: shared
    assert [(c["type"], c["interval"], c["fall"]) for c in more] == [
        ("smtp", 60, 4),
        ("ping", 5, 2),
    ]
    assert not any("one check per real" in line for line in reports(conversion))
    loads(conversion, tmp_path)
    config = load_config(tmp_path / "ipvsd.yaml")
    service = config.ipvs.services[0]
    assert [c.type.value for c in service.checks_for(service.reals[0])] == ["tcp", "smtp", "ping"]


def test_http_get_writes_keepalived_s_default_statuses_and_one_host(tmp_path: Path) -> None:
    conversion = convert_real(
        """
        HTTP_GET {
            url {
                path /a
                virtualhost a.example
            }
            url {
                path /b
                virtualhost b.example
            }
        }
        """,
        port=80,
    )
    found = check(conversion)
    assert found["urls"] == [
        {"path": "/a", "expected_status": "200-299"},
        {"path": "/b", "expected_status": "200-299"},
    ]
    assert found["host"] == "a.example"
    assert (
        "k.conf:12: virtualhost: ipvsd sends one Host per check (the first url's): not converted"
        in reports(conversion)
    )
    loads(conversion, tmp_path)


def test_smtp_host_blocks_become_one_check_each(tmp_path: Path) -> None:
    conversion = convert_real(
        """
        SMTP_CHECK {
            helo_name lb1.example
            connect_timeout 3
            host {
                connect_ip 10.0.0.1
                connect_port 25
            }
            host {
                connect_ip 10.0.0.2
                connect_port 587
                retry 9
            }
        }
        """
    )
    first = check(conversion)
    more = conversion.data["ipvs"]["services"][0]["checks"]  # one real: shared
    assert [(c["address"], c["port"], c["helo_name"]) for c in (first, *more)] == [
        ("10.0.0.1", 25, "lb1.example"),
        ("10.0.0.2", 587, "lb1.example"),
    ]
    assert "k.conf:15: retry: ipvsd takes a host's other settings from its SMTP_CHECK: " \
        "ignored" in reports(conversion)  # fmt: skip
    loads(conversion, tmp_path)


def two_reals(service: str, first: str, second: str) -> Conversion:
    """A virtual_server on port 25 with `service`'s lines and two reals with theirs."""
    text = (
        f"virtual_server 192.0.2.1 25 {{\n{service}"
        f" real_server 10.0.0.1 25 {{\n{first} }}\n"
        f" real_server 10.0.0.2 25 {{\n{second} }}\n"
        "}\n"
    )
    return convert(parse(text, "k.conf"))


def test_further_checkers_stay_per_real_when_the_reals_differ(tmp_path: Path) -> None:
    tcp = "  TCP_CHECK {\n  }\n"
    conversion = two_reals("", tcp + "  PING_CHECK {\n  }\n", tcp)
    pool = conversion.data["ipvs"]["services"][0]
    assert "checks" not in pool
    assert [r.get("checks") for r in pool["reals"]][1] is None
    assert [c["type"] for c in pool["reals"][0]["checks"]] == ["ping"]
    loads(conversion, tmp_path)


# --- retries: retry and delay_before_retry → fall and retry_interval --------------------------


def timing(conversion: Conversion) -> tuple[int, float | None]:
    found = check(conversion)
    return found["fall"], found.get("retry_interval")


def test_each_checker_s_default_retries_are_written_out(tmp_path: Path) -> None:
    """check_api.c: retry 1, 1 s apart; HTTP_GET / SSL_GET 3 s; MISC_CHECK no retry;
    DNS_CHECK 3 retries, delay_loop apart (ipvsd's null retry_interval)."""
    assert timing(convert_real("TCP_CHECK {\n}\n")) == (2, 1)
    assert timing(convert_real("HTTP_GET {\n}\n", port=80)) == (2, 3)
    assert timing(convert_real("SSL_GET {\n}\n", port=443)) == (2, 3)
    assert timing(convert_real("MISC_CHECK {\n    misc_path /bin/true\n}\n")) == (1, None)
    assert timing(convert_real("MISC_CHECK {\n    misc_path /bin/true\n    retry 2\n}\n")) == (
        3,
        1,
    )
    conversion = convert_real("DNS_CHECK {\n}\n", port=53, protocol="UDP")
    assert timing(conversion) == (4, None)
    assert reports(conversion) == []
    conversion = convert_real("TCP_CHECK {\n}\n")
    text = to_yaml(conversion.data, comments=conversion.comments)
    assert "retry_interval: 1  # keepalived's default delay_before_retry" in text
    loads(conversion, tmp_path)


def test_delay_before_retry_is_the_retry_interval(tmp_path: Path) -> None:
    conversion = convert_real(
        "TCP_CHECK {\n    delay_loop 6\n    retry 3\n    delay_before_retry 1.5\n}\n"
    )
    assert timing(conversion) == (4, 1.5)
    assert reports(conversion) == []
    loads(conversion, tmp_path)


def test_a_delay_before_retry_without_retries_changes_nothing() -> None:
    conversion = convert_real("TCP_CHECK {\n    retry 0\n    delay_before_retry 2\n}\n")
    assert timing(conversion) == (1, None)
    assert reports(conversion) == []


def test_delay_before_retry_of_delay_loop_or_more(tmp_path: Path) -> None:
    """Equal: ipvsd's default. Above: reported once, however many reals inherit it."""
    conversion = convert_real("TCP_CHECK {\n    delay_loop 3\n    delay_before_retry 3\n}\n")
    assert timing(conversion) == (2, None)
    assert reports(conversion) == []
    tcp = "  TCP_CHECK {\n  }\n"
    conversion = two_reals(" delay_loop 2\n delay_before_retry 5\n", tcp, tcp)
    assert timing(conversion) == (2, None)
    assert reports(conversion) == [
        "k.conf:3: delay_before_retry: ipvsd retries no slower than it checks: retries every "
        "interval (2 s, delay_loop) instead of every 5 s"
    ]
    loads(conversion, tmp_path)


def test_a_delay_before_retry_below_a_tenth_of_a_second_is_one(tmp_path: Path) -> None:
    conversion = convert_real("TCP_CHECK {\n    delay_before_retry 0\n}\n")
    assert timing(conversion) == (2, 0.1)
    assert reports(conversion) == [
        "k.conf:5: delay_before_retry: ipvsd retries 0.1 s after a failed check at the soonest"
    ]
    loads(conversion, tmp_path)


def test_a_shared_retry_interval_stays_with_the_reals_own_intervals(tmp_path: Path) -> None:
    """The reals' intervals differ, so the service check has ipvsd's default (2 s), which
    their common retry_interval (2.5 s) would exceed there: it stays on each real."""
    tcp = "  TCP_CHECK {\n  }\n"
    conversion = two_reals(
        " delay_before_retry 2.5\n", "  delay_loop 6\n" + tcp, "  delay_loop 3\n" + tcp
    )
    pool = conversion.data["ipvs"]["services"][0]
    assert "retry_interval" not in pool["check"]
    assert [r["check"] for r in pool["reals"]] == [
        {"interval": 6, "retry_interval": 2.5},
        {"interval": 3, "retry_interval": 2.5},
    ]
    assert reports(conversion) == []
    loads(conversion, tmp_path)
