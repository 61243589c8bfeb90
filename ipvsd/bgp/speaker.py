"""The BIRD child process: a validated config, a parent death signal, an orderly stop.

Rules
=====

1. Nothing reaches BIRD that ``bird -p`` has not parsed: a config is written
   to ``bird.conf.new``, checked, and only then renamed over ``bird.conf``.
   A bad config or a missing binary raises `SpeakerError` and changes nothing
   that runs.
2. BIRD dies with ipvsd: it is started with ``PR_SET_PDEATHSIG`` = SIGKILL,
   so even a SIGKILLed ipvsd takes it along; the kernel then closes BIRD's
   BGP sessions (FIN) and every router withdraws this director's routes at
   once. A dead *host* sends nothing: BFD or the hold timer covers it.
3. BIRD runs in its own session (``start_new_session``): a terminal's ^C or a
   signal to ipvsd's process group reaches ipvsd alone, which withdraws first
   and then stops BIRD with its ``down`` command.
4. Its log goes to ipvsd's stderr (the journal of the same unit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from ipvsd.bgp.birdctl import BirdClient, BirdUnavailable
from ipvsd.errors import IpvsdError

log = structlog.get_logger("ipvsd.bgp")

CONFIG_FILE = "bird.conf"
SOCKET_FILE = "bird.ctl"
PR_SET_PDEATHSIG = 1
#: Seconds BIRD has to open its control socket after it was started.
START_TIMEOUT_S = 10.0
#: Seconds BIRD has to exit after ``down`` before it is killed.
STOP_TIMEOUT_S = 5.0


class SpeakerError(IpvsdError):
    """The speaker cannot be used: no binary, a config BIRD refuses, a start that failed."""


def _dying_with(parent: int) -> Callable[[], None]:
    """The child's step between fork and exec: die when `parent` does (Rule 2).

    A parent that died before the prctl took effect sends no signal: the
    child then finds itself adopted and exits instead of running unowned.
    """
    prctl = ctypes.CDLL(None).prctl  # looked up before the fork, not in the child

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return die_with_parent


class BirdSpeaker:
    """One BIRD process with its config and control socket in `run_dir`.

    Args:
        binary: ``bird``, or a path.
        run_dir: where ``bird.conf`` and ``bird.ctl`` live (created 0700).
    """

    def __init__(self, binary: str, run_dir: Path) -> None:
        self.binary = binary
        self.run_dir = run_dir
        self.config_path = run_dir / CONFIG_FILE
        self.socket_path = run_dir / SOCKET_FILE
        self.client: BirdClient | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _resolve(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise SpeakerError(
                f"BIRD not found: {self.binary!r} (install Debian's bird2, or set bgp.bird)"
            )
        return found

    async def check(self, text: str) -> Path:
        """Write `text` as ``bird.conf.new`` and have ``bird -p`` parse it (Rule 1).

        Returns:
            The checked file, to be `_install`-ed.

        Raises:
            SpeakerError: no BIRD, a directory that cannot be written, or BIRD's
                parse error (its message).
        """
        binary = self._resolve()
        candidate = self.config_path.with_name(CONFIG_FILE + ".new")
        try:
            self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            candidate.write_text(text, encoding="utf-8")
            candidate.chmod(0o600)  # it may hold TCP MD5 keys
        except OSError as exc:
            raise SpeakerError(f"cannot write {candidate}: {exc.strerror or exc}") from None
        process = await asyncio.create_subprocess_exec(
            binary,
            "-p",
            "-c",
            str(candidate),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            message = " ".join(output.decode(errors="replace").split()) or "no message"
            raise SpeakerError(f"BIRD refused the generated config {candidate}: {message}")
        return candidate

    async def start(self, text: str) -> None:
        """Check `text`, then start BIRD on it and connect to its control socket.

        Raises:
            SpeakerError: as `check`, or BIRD exited or opened no socket in time.
        """
        candidate = await self.check(text)
        candidate.replace(self.config_path)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a dead BIRD's: ours is the only one in run_dir
        self._process = await asyncio.create_subprocess_exec(
            self._resolve(),
            "-f",
            "-c",
            str(self.config_path),
            "-s",
            str(self.socket_path),
            "-P",
            str(self.run_dir / "bird.pid"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            preexec_fn=_dying_with(os.getpid()),  # ctypes only, no locks taken
            start_new_session=True,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self._process.returncode is not None:
                code = self._process.returncode
                self._process = None
                raise SpeakerError(f"BIRD exited at start (status {code}); see its log above")
            try:
                self.client = await BirdClient.connect(self.socket_path, timeout_s=1.0)
            except BirdUnavailable:
                if loop.time() > deadline:
                    await self.stop()
                    raise SpeakerError(
                        f"BIRD opened no control socket at {self.socket_path} "
                        f"within {START_TIMEOUT_S:g} s"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            break
        log.info("bgp.speaker_started", pid=self._process.pid, version=self.client.greeting)

    async def reconfigure(self, text: str) -> None:
        """Check `text`, install it and have the running BIRD re-read it."""
        candidate = await self.check(text)
        candidate.replace(self.config_path)
        if self.client is not None:
            await self.client.command("configure")

    async def exited(self) -> int:
        """Wait for BIRD to exit; its status (-N: killed by signal N)."""
        if self._process is None:
            return 0
        return await self._process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def stop(self) -> None:
        """Stop BIRD: ``down`` (its sessions end with a Cease), then SIGKILL if it lingers."""
        process, self._process = self._process, None
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(IpvsdError):
                await client.command("down")
            client.close()
        if process is None or process.returncode is not None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        log.info("bgp.speaker_stopped", pid=process.pid, status=process.returncode)
