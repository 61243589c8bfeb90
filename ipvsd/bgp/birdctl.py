"""A client of BIRD's control socket, and the parser of its ``show protocols``.

BIRD's control protocol (doc/prog: "Command line interface"; birdc speaks it)
is text over a unix stream socket. On connect BIRD greets with
``0001 BIRD 2.0.12 ready.``; each command is one line; each reply is one or
more lines::

    DDDD-text    a line of reply DDDD, more lines follow
     text        (leading space) one more line of the previous reply code
    DDDD text    the last line of the reply

Codes: 0xxx the command succeeded (0000 OK, 0003 reconfigured, 0009
disabled, 0010 already enabled, 0011 enabled, ...), 1xxx/2xxx data lines
(1002 a protocol, 2002 the table header), 8xxx a runtime error (8003 "No
protocols match"), 9xxx a parse error (9001). `BirdClient.command` returns the
lines of a 0xxx reply and raises `BirdCommandError` with BIRD's text for
8xxx / 9xxx; a socket that closes or stalls raises `BirdUnavailable`.

One connection, one command at a time (the replies are not tagged): calls
are serialised by a lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ipvsd.errors import IpvsdError

#: Seconds a command may take before the speaker is taken for stuck.
COMMAND_TIMEOUT_S = 5.0
#: A reply line longer than this is not BIRD's.
MAX_LINE = 64 * 1024


class BirdUnavailable(IpvsdError):
    """BIRD's control socket cannot be reached, or closed, or did not answer."""


class BirdCommandError(IpvsdError):
    """BIRD refused a command (a reply code 8xxx or 9xxx)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"BIRD: {text} ({code:04d})")
        self.code = code


@dataclass(frozen=True, slots=True)
class ReplyLine:
    """One line of a reply: its code (the previous line's for a continuation) and text."""

    code: int
    text: str


class BirdClient:
    """One connection to BIRD's control socket (`connect`, then `command`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self.greeting = ""
        """BIRD's hello line, e.g. ``BIRD 2.0.12 ready.``"""

    @classmethod
    async def connect(cls, path: Path, timeout_s: float = COMMAND_TIMEOUT_S) -> BirdClient:
        """Connect to the socket at `path` and read BIRD's greeting.

        Raises:
            BirdUnavailable: no socket, nobody listening, or no greeting in time.
        """
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        except (OSError, TimeoutError) as exc:
            raise BirdUnavailable(f"cannot connect to BIRD at {path}: {exc}") from None
        client = cls(reader, writer)
        try:
            hello = await client._reply(timeout_s)
        except BirdUnavailable:
            client.close()
            raise
        client.greeting = hello[-1].text if hello else ""
        return client

    async def command(self, line: str, timeout_s: float = COMMAND_TIMEOUT_S) -> list[ReplyLine]:
        """Send one command; its reply's lines.

        Raises:
            BirdCommandError: BIRD refused it (8xxx / 9xxx).
            BirdUnavailable: the connection closed or BIRD did not answer in time.
        """
        if "\n" in line:
            raise ValueError(f"a BIRD command is one line: {line!r}")
        async with self._lock:
            try:
                self._writer.write(line.encode() + b"\n")
                await self._writer.drain()
            except OSError as exc:
                raise BirdUnavailable(f"BIRD's control socket: {exc}") from None
            return await self._reply(timeout_s)

    async def _reply(self, timeout_s: float) -> list[ReplyLine]:
        lines: list[ReplyLine] = []
        code = 0
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    raw = await self._reader.readline()
                    if not raw.endswith(b"\n"):
                        raise BirdUnavailable("BIRD closed its control socket")
                    text = raw[:-1].decode(errors="replace")
                    if text.startswith(" "):
                        lines.append(ReplyLine(code, text[1:]))
                        continue
                    head, sep = text[:4], text[4:5]
                    if not head.isdigit() or sep not in ("-", " "):
                        raise BirdUnavailable(f"not a BIRD reply line: {text[:80]!r}")
                    code = int(head)
                    lines.append(ReplyLine(code, text[5:]))
                    if sep == " ":
                        break
        except TimeoutError:
            raise BirdUnavailable(f"BIRD did not answer within {timeout_s:g} s") from None
        except (OSError, ValueError) as exc:  # ValueError: a line over MAX_LINE
            raise BirdUnavailable(f"BIRD's control socket: {exc}") from None
        if code >= 8000:
            raise BirdCommandError(code, lines[-1].text)
        return lines

    def close(self) -> None:
        self._writer.close()


@dataclass(frozen=True, slots=True)
class ProtocolState:
    """One row of ``show protocols``.

    Attributes:
        name: the protocol's name (``peer4_10_0_0_1``).
        proto: its type (``BGP``, ``Static``).
        state: ``up``, ``start``, ``down``...
        info: the rest (for BGP: ``Established``, ``Active``, ``Connect``...,
            with BIRD's last error after it).
    """

    name: str
    proto: str
    state: str
    info: str

    @property
    def established(self) -> bool:
        """A BGP session that is up."""
        return self.state == "up" and self.info.startswith("Established")


def parse_protocols(lines: list[ReplyLine]) -> list[ProtocolState]:
    """The rows of a ``show protocols`` reply (code 1002 lines)."""
    rows = []
    for line in lines:
        if line.code != 1002:
            continue
        # Name Proto Table State Since Info; Since is one word ("13:01:02.345")
        # in BIRD's default time format, Info the rest.
        fields = line.text.split(None, 5)
        if len(fields) < 4:
            continue
        info = fields[5].strip() if len(fields) > 5 else ""
        rows.append(ProtocolState(fields[0], fields[1], fields[3], info))
    return rows
