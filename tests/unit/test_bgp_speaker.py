"""The BIRD child (ipvsd/bgp/speaker.py): clear errors that change nothing, with a fake bird."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvsd.bgp.speaker import BirdSpeaker, SpeakerError

# `bird -p` refuses any config with "bad" in it, as BIRD prints a parse error.
FAKE_BIRD = """#!/bin/sh
if [ "$1" = "-p" ]; then
    if grep -q bad "$3"; then echo "bird: $3:3:1 syntax error, unexpected 'bad'" >&2; exit 1; fi
    exit 0
fi
exit 3
"""


@pytest.fixture
def fake_bird(tmp_path: Path) -> str:
    path = tmp_path / "bird"
    path.write_text(FAKE_BIRD)
    path.chmod(0o755)
    return str(path)


async def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    speaker = BirdSpeaker("no-such-bird-binary", tmp_path / "run")
    with pytest.raises(SpeakerError, match=r"BIRD not found: 'no-such-bird-binary' \(install"):
        await speaker.start("router id 1.2.3.4;\n")
    assert not (tmp_path / "run" / "bird.conf").exists()


async def test_a_refused_config_is_not_installed(tmp_path: Path, fake_bird: str) -> None:
    speaker = BirdSpeaker(fake_bird, tmp_path / "run")
    await speaker.check("good;\n")
    (tmp_path / "run" / "bird.conf").write_text("the running one\n")
    with pytest.raises(SpeakerError) as caught:
        await speaker.reconfigure("bad;\n")
    assert "BIRD refused the generated config" in str(caught.value)
    assert "syntax error, unexpected 'bad'" in str(caught.value)
    assert (tmp_path / "run" / "bird.conf").read_text() == "the running one\n"
    assert (tmp_path / "run" / "bird.conf.new").stat().st_mode & 0o777 == 0o600


async def test_a_bird_that_exits_at_start_is_an_error(tmp_path: Path, fake_bird: str) -> None:
    speaker = BirdSpeaker(fake_bird, tmp_path / "run")
    with pytest.raises(SpeakerError, match=r"BIRD exited at start \(status 3\)"):
        await speaker.start("good;\n")
    assert not speaker.running
