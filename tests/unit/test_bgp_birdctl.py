"""BIRD's control-socket client (ipvsd/bgp/birdctl.py) against a fake BIRD on a unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from ipvsd.bgp.birdctl import (
    BirdClient,
    BirdCommandError,
    BirdUnavailable,
    ProtocolState,
    ReplyLine,
    parse_protocols,
)

GREETING = b"0001 BIRD 2.0.12 ready.\n"
# Captured from BIRD 2.0.12 (`show protocols` of a director, one session up).
SHOW_PROTOCOLS = (
    b"2002-Name       Proto      Table      State  Since         Info\n"
    b"1002-device1    Device     ---        up     13:07:20.536  \n"
    b" vip4_10_0_0_100 Static     master4    up     13:07:20.536  \n"
    b" peer4_10_0_0_1 BGP        ---        up     13:07:21.002  Established   \n"
    b" peer4_10_0_0_2 BGP        ---        start  13:07:20.536  Active        "
    b"Socket: Connection refused\n"
    b"0000 \n"
)
REPLIES: Mapping[bytes, bytes] = {
    b"show protocols": SHOW_PROTOCOLS,
    b'disable "vip4_10_0_0_100"': b"0009-vip4_10_0_0_100: disabled\n0000 \n",
    b'enable "nope"': b"8003 No protocols match\n",
    b"bogus": b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n",
    b"garbage": b"hello world\n",
}


async def fake_bird(
    path: Path, *, greeting: bytes = GREETING, stall: bool = False
) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if stall:
            await asyncio.sleep(10)
        writer.write(GREETING)
        while line := await reader.readline():
            command = line.rstrip(b"\n")
            if command == b"quit":
                break
            if command == b"slow":
                await asyncio.sleep(10)
            writer.write(REPLIES.get(command, b"0000 \n"))
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, str(path))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[BirdClient]:
    server = await fake_bird(tmp_path / "bird.ctl")
    bird = await BirdClient.connect(tmp_path / "bird.ctl")
    yield bird
    bird.close()
    server.close()


async def test_greeting_and_a_reply_of_several_lines(client: BirdClient) -> None:
    assert client.greeting == "BIRD 2.0.12 ready."
    lines = await client.command("show protocols")
    assert lines[0] == ReplyLine(2002, "Name       Proto      Table      State  Since         Info")
    assert lines[2] == ReplyLine(
        1002, "vip4_10_0_0_100 Static     master4    up     13:07:20.536  "
    )
    assert lines[-1] == ReplyLine(0, "")
    rows = parse_protocols(lines)
    assert [r.name for r in rows] == [
        "device1",
        "vip4_10_0_0_100",
        "peer4_10_0_0_1",
        "peer4_10_0_0_2",
    ]
    assert rows[2] == ProtocolState("peer4_10_0_0_1", "BGP", "up", "Established")
    assert rows[2].established
    assert rows[3].info == "Active        Socket: Connection refused"
    assert not rows[3].established


async def test_commands_share_one_connection_in_order(client: BirdClient) -> None:
    results = await asyncio.gather(
        client.command('disable "vip4_10_0_0_100"'), client.command("show protocols")
    )
    assert results[0][0] == ReplyLine(9, "vip4_10_0_0_100: disabled")
    assert len(results[1]) == 6


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        ('enable "nope"', 8003, "BIRD: No protocols match (8003)"),
        ("bogus", 9001, "BIRD: syntax error, unexpected CF_SYM_UNDEFINED (9001)"),
    ],
)
async def test_refusals_are_command_errors(
    client: BirdClient, command: str, code: int, message: str
) -> None:
    with pytest.raises(BirdCommandError) as caught:
        await client.command(command)
    assert (caught.value.code, str(caught.value)) == (code, message)
    assert (await client.command("show protocols"))[-1].code == 0  # still usable


async def test_a_line_that_is_not_birds_is_unavailable(client: BirdClient) -> None:
    with pytest.raises(BirdUnavailable, match="not a BIRD reply line: 'hello world'"):
        await client.command("garbage")


async def test_a_closed_socket_is_unavailable(client: BirdClient) -> None:
    with pytest.raises(BirdUnavailable, match="closed its control socket"):
        await client.command("quit")


async def test_a_stalled_bird_times_out(client: BirdClient) -> None:
    with pytest.raises(BirdUnavailable, match=r"did not answer within 0\.05 s"):
        await client.command("slow", timeout_s=0.05)


async def test_no_socket_or_no_greeting_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BirdUnavailable, match="cannot connect to BIRD"):
        await BirdClient.connect(tmp_path / "missing.ctl")
    server = await fake_bird(tmp_path / "slow.ctl", stall=True)
    with pytest.raises(BirdUnavailable, match="did not answer"):
        await BirdClient.connect(tmp_path / "slow.ctl", timeout_s=0.05)
    server.close()


async def test_a_command_is_one_line(client: BirdClient) -> None:
    with pytest.raises(ValueError, match="one line"):
        await client.command("show\nprotocols")
