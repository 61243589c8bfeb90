"""SMTP replies for the smtp check (RFC 5321 §4.2; pure).

The check is keepalived's SMTP_CHECK: read the greeting (220), send ``HELO``,
expect 250, send ``QUIT``. This module reads replies out of the bytes the
server sends: a reply is one or more lines ``CODE-text`` ending with
``CODE text`` (or a bare ``CODE``), CRLF-terminated, every line with the
same three-digit code (RFC 5321 §4.2.1). A server that sends anything else,
or more than `REPLY_LIMIT` bytes without ending its reply, is not an SMTP
server we can judge: `SmtpError`. The I/O is in ``ipvsd.health.probes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REPLY_LIMIT", "Reply", "ReplyReader", "SmtpError", "helo"]

REPLY_LIMIT = 8192
"""Bytes of one reply read at most (RFC 5321 §4.5.3.1.5: a reply line is at most 512)."""
TEXT_IN_REASON = 80
"""Characters of a reply's text kept in a reason."""

_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?")


class SmtpError(ValueError):
    """Bytes that are not an SMTP reply."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole reply.

    Attributes:
        code: the three-digit reply code.
        text: the text of its last line (decoded as Latin-1, for reasons).
    """

    code: int
    text: str

    def shown(self) -> str:
        """``220 mail.example ESMTP`` cut to `TEXT_IN_REASON` characters, for reasons."""
        text = f"{self.code} {self.text}".strip()
        return text[:TEXT_IN_REASON] + ("..." if len(text) > TEXT_IN_REASON else "")


class ReplyReader:
    """Collects a server's bytes and gives its replies one by one (`feed`, then `next_reply`)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """Add bytes read from the server."""
        self._buffer += data

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None while more bytes are needed.

        Raises:
            SmtpError: the bytes are not an SMTP reply, or one is longer than `REPLY_LIMIT`.
        """
        code: bytes | None = None
        position = 0
        while True:
            end = self._buffer.find(b"\n", position)
            if end < 0:
                if len(self._buffer) > REPLY_LIMIT:
                    raise SmtpError(f"no end of reply in {len(self._buffer)} bytes")
                return None
            line = self._buffer[position:end].rstrip(b"\r")
            match = _LINE.fullmatch(line)
            if match is None:
                raise SmtpError(f"not an SMTP reply line: {line[:TEXT_IN_REASON]!r}")
            if code is not None and match[1] != code:
                raise SmtpError(f"reply code {match[1].decode()} inside a {code.decode()} reply")
            code = match[1]
            position = end + 1
            if match[2] != b"-":  # "250 text" or a bare "250": the reply's last line
                self._buffer = self._buffer[position:]
                return Reply(int(code), (match[3] or b"").decode("latin-1"))


def helo(name: str) -> bytes:
    """The ``HELO`` command line (RFC 5321 §4.1.1.1)."""
    return f"HELO {name}\r\n".encode("ascii")
