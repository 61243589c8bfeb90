"""http/https parity with keepalived's HTTP_GET/SSL_GET (issue 13): status ranges, several
URLs, body digests and a client certificate; loopback servers from test_health_checks."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ipvsd.config import parse_config
from ipvsd.config.model import CheckConfig, UrlConfig
from ipvsd.config.types import CheckType, status_ranges
from ipvsd.errors import ConfigError
from ipvsd.health.checks import run_check
from tests.unit.test_health_checks import (
    OK_RESPONSE,
    Cert,
    cert,
    http_server,
    response,
    target,
)

__all__ = ["cert"]  # the fixture, used by name

BODY = b"all ok\n"
BODY_MD5 = hashlib.md5(BODY, usedforsecurity=False).hexdigest()


def issues(check: str) -> list[tuple[int, str, str]]:
    text = f"""\
        ipvs:
          services:
            - address: 192.168.1.200
              port: 443
              check: {check}
              reals: [{{address: 192.168.1.30}}]
        """
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "t.yaml", default_node_name="n1")
    return [(i.line, i.field, i.message) for i in info.value.issues]


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "codes"),
    [
        (200, (200,)),
        ("200-204", (200, 201, 202, 203, 204)),
        ([200, "301-302", 200], (200, 301, 302)),
        (["500"], (500,)),
    ],
)
def test_expected_status_takes_codes_ranges_and_lists(written: Any, codes: tuple[int, ...]) -> None:
    assert CheckConfig(type=CheckType.HTTP, expected_status=written).expected_status == codes


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("'299-200'", "'299-200': a range goes from the lower code to the higher"),
        ("700", "700: status codes are between 100 and 599"),
        ("'2xx'", "'2xx' is not a status code (200) or a range ('200-299')"),
        ("[]", "must not be empty"),
        ("true", "'True' is not a status code (200) or a range ('200-299')"),
    ],
)
def test_a_bad_expected_status_is_reported_at_its_line(written: str, message: str) -> None:
    assert issues(f"{{type: http, expected_status: {written}}}") == [
        (5, "ipvs.services.0.check.expected_status", message)
    ]


def test_ranges_are_shown_compactly() -> None:
    assert status_ranges([*range(200, 300), 401, 403, 404]) == "200-299, 401, 403-404"
    assert status_ranges([200]) == "200"


def test_digest_urls_and_client_certificates_are_checked() -> None:
    assert issues("{type: http, digest: abc}") == [
        (5, "ipvs.services.0.check.digest",
         "must be an MD5 digest: 32 hex digits (as md5sum prints it)"),
    ]  # fmt: skip
    assert issues("{type: tcp, urls: [{path: /a}], client_cert: /c.pem}") == [
        (5, "ipvs.services.0.check.urls", "only for type http or https (this check is tcp)"),
        (5, "ipvs.services.0.check.client_cert", "only for type https (this check is tcp)"),
    ]
    assert issues("{type: https, client_key: /k.pem}") == [
        (5, "ipvs.services.0.check.client_key",
         "needs client_cert (the certificate it is the key of)"),
    ]  # fmt: skip
    assert issues("{type: https, client_cert: /nonexistent/c.pem}") == [
        (5, "ipvs.services.0.check.client_cert",
         "cannot read /nonexistent/c.pem: no such file or directory"),
    ]  # fmt: skip


def test_urls_take_the_checks_fields_where_they_set_none() -> None:
    check = CheckConfig.model_validate(
        {
            "type": CheckType.HTTP,
            "expected_status": "200-299",
            "urls": (
                {"path": "/a"},
                {"path": "/b", "expected_status": 503, "digest": BODY_MD5.upper()},
            ),
        }
    )
    assert check.urls == (
        UrlConfig(path="/a"),
        UrlConfig(path="/b", expected_status=(503,), digest=BODY_MD5),
    )


# --- checks ----------------------------------------------------------------------------------


def by_path(replies: dict[str, bytes]) -> Any:
    def reply(head: bytes) -> bytes:
        path = head.split(b" ")[1].decode()
        return replies[path]

    return reply


async def test_a_status_outside_the_ranges_names_them() -> None:
    async with http_server(lambda _: response(302)) as server:
        cfg = CheckConfig.model_validate(
            {"type": CheckType.HTTP, "expected_status": ["200-299", 401]}
        )
        result = await run_check(target(cfg, server.port))
    assert (result.ok, result.reason) == (False, "HTTP 302 (expected 200-299, 401)")


async def test_the_body_digest_must_match() -> None:
    async with http_server(lambda _: OK_RESPONSE) as server:
        good = await run_check(
            target(CheckConfig(type=CheckType.HTTP, digest=BODY_MD5), server.port)
        )
        bad = await run_check(
            target(CheckConfig(type=CheckType.HTTP, digest="0" * 32), server.port)
        )
    assert (good.ok, good.reason) == (True, "HTTP 200, digest matches")
    assert (bad.ok, bad.reason) == (False, f"body digest {BODY_MD5} (expected {'0' * 32})")


async def test_every_url_must_pass_and_the_first_failure_is_named() -> None:
    replies = {"/a": OK_RESPONSE, "/b": response(500), "/c": response(204)}
    urls = [{"path": "/a", "body_regex": "ok"}, {"path": "/c", "expected_status": 204}]
    async with http_server(by_path(replies)) as server:
        cfg = CheckConfig.model_validate({"type": CheckType.HTTP, "urls": tuple(urls)})
        good = await run_check(target(cfg, server.port))
        urls.insert(1, {"path": "/b"})
        cfg = CheckConfig.model_validate({"type": CheckType.HTTP, "urls": tuple(urls)})
        bad = await run_check(target(cfg, server.port))
    assert (good.ok, good.reason) == (True, "all 2 URLs passed")
    assert (bad.ok, bad.reason) == (False, "/b: HTTP 500 (expected 200)")
    assert [head.split(b" ")[1] for head in server.heads] == [b"/a", b"/c", b"/a", b"/b"]


@pytest.fixture
def client(tmp_path: Path) -> Cert:
    """A self-signed client certificate for the check to present."""
    made = Cert(tmp_path / "client.pem", tmp_path / "client.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(made.key), "-out", str(made.cert), "-days", "1",
         "-subj", "/CN=ipvsd-check"],
        check=True, capture_output=True,
    )  # fmt: skip
    return made


async def test_a_client_certificate_is_presented_to_a_real_that_asks(
    cert: Cert, client: Cert
) -> None:
    server_tls = cert.server_context()
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(client.cert)
    async with http_server(lambda _: OK_RESPONSE, tls=server_tls) as server:
        without = await run_check(target(CheckConfig(type=CheckType.HTTPS), server.port))
        cfg = CheckConfig(
            type=CheckType.HTTPS, client_cert=str(client.cert), client_key=str(client.key)
        )
        presented = await run_check(target(cfg, server.port))
    assert (presented.ok, presented.reason) == (True, "HTTP 200")
    assert not without.ok
