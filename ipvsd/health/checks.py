"""Health checks: probe one real server once and say whether it is up, as a value.

Why it is shaped this way:

* **A probe, not a monitor.** `run_check` connects (or runs a command) once
  and returns a `CheckResult`. Intervals, jitter and rise/fall counting belong
  to ``ipvsd.health.monitor``. With them kept out, each checker can be tested
  against a real listener, with no clock tricks.
* **A failing real is the expected case, so it is a value** (style G9). Every
  `OSError` (TLS errors included), malformed HTTP response and timeout becomes
  ``CheckResult(ok=False, reason=...)`` with a short reason for humans:
  ``connection refused``, ``HTTP 500 (expected 200)``, ``timeout after 1.0 s
  (connect)``. An exception that escapes `run_check` is a bug in ipvsd.
* **One hard deadline per probe.** For http, https and exec checks,
  ``asyncio.timeout(check.timeout)`` covers bind, connect, TLS handshake,
  request and response (or the whole command), so a blackholed or hung real
  costs at most its timeout. A timeout reason names the phase that hung: a
  dead host times out in ``connect``, a stuck application in ``response``.
* **tcp checks take a leaner path** (``ipvsd.health.tcp``): they are most of
  the checks a big site runs, 10,000 a second, so they run with no task,
  coroutine or timer of their own, under the same hard deadline. `Checker`
  picks the path; the monitor awaits whatever it returns.
* **udp checks are keepalived's UDP_CHECK**: the payload goes out of a
  connected socket, and Linux turns an ICMP port unreachable into
  ECONNREFUSED on it. Silence until the deadline is up, unless
  ``require_reply`` or ``reply_regex`` asks for a reply (a reply that does
  not match is down). One socket per check, on the loop's selector.
* **dns checks are keepalived's DNS_CHECK**: one query (``ipvsd.health.dns``
  encodes and decodes it) over UDP, again over TCP when the reply is
  truncated; up on NOERROR with a record of the asked type.
* **ping and smtp checks are keepalived's PING_CHECK and SMTP_CHECK**: an
  ICMP echo, and a 220 greeting then 250 to ``HELO`` (``ipvsd.health.probes``
  does their I/O, ``icmp`` and ``smtp`` their messages).
* **A real with several checks** (``checks``) runs them all at once, each
  under its own timeout, and passes when every one does; the result keeps
  each one's outcome (``parts``) for ``ipvsd status``.
* **Failures are logged, passes are not.** Each failed check is one debug
  event (``health.check``); a passing one is the common case and logs
  nothing. Health *changes* are logged by the monitor.
* **HTTP is parsed by h11** (in ``ipvsd.health.http``), a real HTTP/1.1
  parser, not string matching: see that module for why.
* **TLS verification is off by default.** Reals often serve self-signed or
  internal certificates. The check asks whether the service answers, not
  whether its certificate is trusted. ``verify_tls`` turns on chain *and*
  hostname verification against ``ca_file`` (or the system CAs).
  `tls_context` builds the context. A verifying context costs about 17 ms to
  build (it parses the CA bundle), so callers that check often should build
  one per distinct ``(verify_tls, ca_file)`` and pass it to `target_for`.
* **Exec checks never leave processes behind.** A command runs in a session
  and process group of its own. When it exits, times out, or the check is
  cancelled, the whole group gets SIGKILL and the command is reaped, so
  neither a hung script nor one that backgrounds a child (``sleep 100 &``)
  piles up processes every interval (``ipvsd.process``, shared with
  ``ipvsd.vrrp.notify``). A check that must start something long-lived has
  to leave the group (``setsid``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import ssl
from collections.abc import Awaitable
from typing import assert_never

from ipvsd.config.model import CheckConfig, UrlConfig
from ipvsd.config.types import CheckType
from ipvsd.health import dns, http, probes
from ipvsd.health.http import BODY_LIMIT, USER_AGENT, Progress
from ipvsd.health.target import (
    CheckPart,
    CheckResult,
    CheckTarget,
    errno_text,
    log_failure,
    target_for,
)
from ipvsd.health.tcp import TcpProber
from ipvsd.process import run_bounded

__all__ = [
    "BODY_LIMIT",
    "USER_AGENT",
    "CheckResult",
    "CheckTarget",
    "Checker",
    "run_check",
    "target_for",
    "tls_context",
]

OUTPUT_LIMIT = 4096
"""exec: bytes of combined stdout/stderr kept (the tail) for the reason."""
OUTPUT_IN_REASON = 200
"""exec: characters of the output's last line that go into a failure reason."""
DRAIN_S = 0.2
"""exec: seconds to keep reading output after the command has exited."""
CLOSE_GRACE_S = 1.0
"""Seconds to wait for a graceful close (TLS close_notify) before aborting."""
_DEFAULT_PORT = {CheckType.HTTP: 80, CheckType.HTTPS: 443}
UDP_REPLY_LIMIT = 65535
"""udp: bytes of a reply read (a whole datagram)."""
UDP_REPLY_SHOWN = 60
"""udp: bytes of a reply that does not match shown in the reason."""


def tls_context(check: CheckConfig) -> ssl.SSLContext:
    """The client TLS context for an https check.

    Without ``verify_tls``: no certificate or hostname verification. With it:
    the chain must lead to ``ca_file`` (or a system CA when it is unset) and
    the certificate must match the server name (``host``, else the address).
    With ``client_cert`` the context presents that certificate (and
    ``client_key``) to reals that ask for one.

    Args:
        check: the check (``verify_tls``, ``ca_file``, ``client_cert``, ``client_key``).

    Returns:
        A new context; it does not depend on the address, so it can be shared.

    Raises:
        OSError: ``ca_file`` or a client certificate file cannot be read.
        ssl.SSLError: ``ca_file`` holds no usable certificate, or the client
            certificate and key do not load or do not match.
    """
    if check.verify_tls:
        context = ssl.create_default_context(cafile=check.ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if check.client_cert is not None:
        context.load_cert_chain(check.client_cert, check.client_key)
    return context


class Checker:
    """Runs checks on the running event loop: tcp ones with a `TcpProber`, others as coroutines.

    Make one per daemon (or benchmark) and pass its `check` to the monitor;
    `close` releases the prober's epoll instance.
    """

    def __init__(self) -> None:
        self._tcp: TcpProber | None = None

    def check(self, target: CheckTarget) -> Awaitable[CheckResult]:
        """Start a check of `target`; called from a running event loop.

        Args:
            target: what to check and how.

        Returns:
            An awaitable of the outcome (a future for tcp checks, a coroutine
            for the others). A real that is down, unreachable, slow or speaks
            nonsense gives ``ok=False`` with a reason; it never raises for it.
        """
        if target.also:
            return self._together(target)
        return self._one(target)

    def _one(self, target: CheckTarget) -> Awaitable[CheckResult]:
        """`check` of one check (the target's, not its ``also``)."""
        if target.check.type is CheckType.TCP:
            tcp = self._tcp
            loop = asyncio.get_running_loop()
            if tcp is None or tcp.loop is not loop:
                if tcp is not None:
                    tcp.close()
                tcp = self._tcp = TcpProber(loop)
            return tcp.start(target)
        return _run(target)

    async def _together(self, target: CheckTarget) -> CheckResult:
        """All of a real's checks at once: up when every one passes (``checks``)."""
        targets = (target, *target.also)
        results = await asyncio.gather(*(self._one(one) for one in targets))
        parts = tuple(
            CheckPart(one.check.type.value, result.ok, result.reason)
            for one, result in zip(targets, results, strict=True)
        )
        failed = [f"{part.type}: {part.reason}" for part in parts if not part.ok]
        ok = not failed
        reason = "; ".join(failed) if failed else f"all {len(parts)} checks passed"
        weight = next((r.weight for r in results if r.weight is not None), None)
        duration = max(result.duration_s for result in results)
        return CheckResult(ok, reason, duration, weight if ok else None, parts)

    def close(self) -> None:
        """Cancel the tcp checks in flight and release the prober."""
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None


async def run_check(target: CheckTarget) -> CheckResult:
    """Run `target`'s check once, within its timeout (a `Checker` of its own).

    Args:
        target: what to check and how.

    Returns:
        The outcome. A real that is down, unreachable, slow or speaks nonsense
        gives ``ok=False`` with a reason; this never raises for it.
    """
    checker = Checker()
    try:
        return await checker.check(target)
    finally:
        checker.close()


async def _run(target: CheckTarget) -> CheckResult:
    """A check other than tcp, under ``asyncio.timeout``."""
    check = target.check
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress = Progress()
    deadline = asyncio.timeout(check.timeout)
    weight: int | None = None
    async with contextlib.AsyncExitStack() as cleanup:
        try:
            async with deadline:
                ok, reason, weight = await _probe(target, progress, cleanup)
        except TimeoutError as exc:
            if deadline.expired() and _silence_is_up(check, progress.phase):
                ok, reason = True, f"no reply and no ICMP error in {check.timeout} s"
            else:
                ok, reason = False, _timeout_reason(exc, deadline, check.timeout, progress.phase)
        except OSError as exc:  # ssl.SSLError included
            ok, reason = False, _os_reason(exc, progress.phase)
        result = CheckResult(ok, reason, loop.time() - started, weight)
    if not ok:
        log_failure(target, result)
    return result


async def _probe(
    target: CheckTarget, progress: Progress, cleanup: contextlib.AsyncExitStack
) -> tuple[bool, str, int | None]:
    """Dispatch on the check type; `cleanup` closes connections after the deadline scope.

    Returns:
        Up or not, the reason, and the weight the check gave (None: the configured one).
    """
    kind = target.check.type
    match kind:
        case CheckType.NONE:
            return True, "no check", None
        case CheckType.TCP:
            raise AssertionError("tcp checks run on a TcpProber (Checker.check)")
        case CheckType.HTTP | CheckType.HTTPS:
            ok, reason = await _http(target, progress, cleanup)
            return ok, reason, None
        case CheckType.EXEC:
            return await _exec(target, progress)
        case CheckType.UDP:
            ok, reason = await _udp(target, progress)
            return ok, reason, None
        case CheckType.DNS:
            ok, reason = await _dns(target, progress)
            return ok, reason, None
        case CheckType.PING:
            ok, reason = await probes.ping(target, progress)
            return ok, reason, None
        case CheckType.SMTP:
            with await _connect(target, progress) as sock:
                ok, reason = await probes.smtp_dialogue(sock, target, progress)
            return ok, reason, None
        case _:
            assert_never(kind)


async def _udp(target: CheckTarget, progress: Progress) -> tuple[bool, str]:
    """Send the payload from a connected UDP socket and wait for a reply or an ICMP error.

    Linux reports an ICMP port unreachable on a connected socket as ECONNREFUSED. With
    neither a reply nor an error before the deadline, `_run` decides by ``require_reply``
    (the phase is ``reply``).
    """
    check = target.check
    reply = await _exchange(target, progress, udp_payload(check))
    if reply is None:
        return False, "port unreachable (ICMP)"
    if check.reply_regex is None:
        return True, f"reply of {len(reply)} bytes"
    if re.search(check.reply_regex, reply.decode("latin-1")) is None:
        return False, f"reply does not match {check.reply_regex!r}: {reply[:UDP_REPLY_SHOWN]!r}"
    return True, f"reply of {len(reply)} bytes matches"


async def _exchange(target: CheckTarget, progress: Progress, payload: bytes) -> bytes | None:
    """Send `payload` from a connected UDP socket; the first datagram back, None on ICMP
    port unreachable (ECONNREFUSED). Waits for the caller's deadline in phase ``reply``."""
    loop = asyncio.get_running_loop()
    with socket.socket(target.family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        if target.source is not None:
            progress.phase = f"bind to {target.source[0]}"
            sock.bind(target.source)
        progress.phase = "send"
        sock.connect(target.sockaddr)  # UDP: only sets the peer, does not block
        try:
            await loop.sock_sendall(sock, payload)
            progress.phase = "reply"
            return await loop.sock_recv(sock, UDP_REPLY_LIMIT)
        except ConnectionRefusedError:
            return None


async def _dns(target: CheckTarget, progress: Progress) -> tuple[bool, str]:
    """Ask ``query_name``/``query_type`` over UDP, again over TCP when the reply is truncated."""
    check = target.check
    loop = asyncio.get_running_loop()
    ident = random.getrandbits(16)
    query = dns.encode_query(ident, check.query_name, dns.QUERY_TYPES[check.query_type])
    data = await _exchange(target, progress, query)
    if data is None:
        return False, "port unreachable (ICMP)"
    try:
        reply = dns.decode_reply(data, ident)
        if reply.truncated:
            progress.phase = "connect (TCP)"
            stream = await _connect(target, progress)
            with stream:
                progress.phase = "reply (TCP)"
                await loop.sock_sendall(stream, len(query).to_bytes(2, "big") + query)
                size = int.from_bytes(await _read_exactly(stream, 2), "big")
                reply = dns.decode_reply(await _read_exactly(stream, size), ident)
    except dns.DnsError as exc:
        return False, f"bad DNS reply: {exc}"
    return dns_verdict(check, reply)


async def _read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise dns.DnsError(f"the TCP connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def dns_verdict(check: CheckConfig, reply: dns.Reply) -> tuple[bool, str]:
    """Up when `reply` is NOERROR with a record of ``query_type`` (``expected_answer`` if set)."""
    if reply.rcode != 0:
        return False, f"DNS {dns.RCODES.get(reply.rcode, f'RCODE {reply.rcode}')}"
    if reply.truncated:
        return False, "DNS reply truncated over TCP too"
    qtype = dns.QUERY_TYPES[check.query_type]
    found = [data for rtype, data in reply.answers if rtype == qtype]
    if not found:
        return False, f"no {check.query_type} record for {check.query_name!r}"
    expected = check.expected_answer
    if expected is not None and expected.packed not in found:
        return False, f"{expected} is not among the {len(found)} {check.query_type} records"
    return True, f"{len(found)} {check.query_type} record{'s' if len(found) > 1 else ''}"


def udp_payload(check: CheckConfig) -> bytes:
    """The datagram a udp check sends: ``payload`` (UTF-8), ``payload_hex``, or nothing."""
    if check.payload is not None:
        return check.payload.encode()
    if check.payload_hex is not None:
        return bytes.fromhex(check.payload_hex)
    return b""


def _silence_is_up(check: CheckConfig, phase: str) -> bool:
    """A udp check that heard neither reply nor ICMP error, and was not asked for a reply."""
    return (
        check.type is CheckType.UDP
        and phase == "reply"
        and not check.require_reply
        and check.reply_regex is None
    )


async def _connect(target: CheckTarget, progress: Progress) -> socket.socket:
    """A non-blocking TCP socket connected to the target (from ``source_address`` if set)."""
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if target.source is not None:
            progress.phase = f"bind to {target.source[0]}"
            sock.bind(target.source)
        progress.phase = "connect"
        await asyncio.get_running_loop().sock_connect(sock, target.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _http(
    target: CheckTarget, progress: Progress, cleanup: contextlib.AsyncExitStack
) -> tuple[bool, str]:
    """GET ``check.path``, or each of ``check.urls`` on a connection of its own, over
    HTTP/1.1 (TLS for https), and judge status, body and digest; the first URL that fails
    decides."""
    check = target.check
    context: ssl.SSLContext | None = None
    if check.type is CheckType.HTTPS:
        context = target.tls
        if context is None:
            progress.phase = f"loading CA file {check.ca_file}" if check.ca_file else "TLS setup"
            context = tls_context(check)
    if not check.urls:
        return await _get(target, context, progress, cleanup, _the_url(check))
    for url in check.urls:
        ok, reason = await _get(target, context, progress, cleanup, url)
        if not ok:
            return False, f"{url.path}: {reason}"
    return True, f"all {len(check.urls)} URLs passed"


def _the_url(check: CheckConfig) -> UrlConfig:
    """A check without ``urls`` as its one URL."""
    return UrlConfig(
        path=check.path,
        expected_status=check.expected_status,
        body_regex=check.body_regex,
        digest=check.digest,
    )


async def _get(
    target: CheckTarget,
    context: ssl.SSLContext | None,
    progress: Progress,
    cleanup: contextlib.AsyncExitStack,
    url: UrlConfig,
) -> tuple[bool, str]:
    """One GET of `url` on a new connection; its null fields are the check's."""
    check = target.check
    sock = await _connect(target, progress)
    try:
        if context is None:
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            progress.phase = "TLS handshake"
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=context,
                server_hostname=check.host or str(target.address),
                ssl_shutdown_timeout=CLOSE_GRACE_S,
            )
    except BaseException:
        sock.close()  # the transport may own it already: closing twice is harmless
        raise
    cleanup.push_async_callback(_close, writer)

    return await http.get(
        reader,
        writer,
        path=url.path,
        host=http.host_header(check.host, target.address, target.port, _DEFAULT_PORT[check.type]),
        expected_status=url.expected_status or check.expected_status,
        body_regex=url.body_regex or check.body_regex,
        digest=url.digest or check.digest,
        progress=progress,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully, giving up after CLOSE_GRACE_S; how the peer closes changes nothing."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


async def _exec(target: CheckTarget, progress: Progress) -> tuple[bool, str, int | None]:
    """Run ``check.command``; exit status 0 means up (2-255 too, with ``dynamic_weight``)."""
    argv = target.check.command
    assert argv, "config validation requires a command for exec checks"
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "IPVSD_REAL_ADDRESS": str(target.address),
        "IPVSD_REAL_PORT": str(target.port),
    }
    progress.phase = "start"

    def report(phase: str) -> None:
        progress.phase = phase

    # No timeout of its own: run_check's deadline cancels it, which kills the group.
    outcome = await run_bounded(
        argv,
        env=env,
        timeout_s=None,
        tail_bytes=OUTPUT_LIMIT,
        drain_s=DRAIN_S,
        on_phase=report,
        kill_group_on_exit=True,
    )
    if outcome.error is not None:
        return False, f"cannot run {argv[0]!r}: {errno_text(outcome.error)}", None
    assert outcome.returncode is not None, "no timeout, so it ran to its exit"
    return _exit_outcome(outcome.returncode, outcome.output, dynamic=target.check.dynamic_weight)


def _exit_outcome(
    returncode: int, output: bytes, *, dynamic: bool = False
) -> tuple[bool, str, int | None]:
    """Up on status 0; with `dynamic` (misc_dynamic), 2-255 are up too, with weight status - 2."""
    if returncode == 0:
        return True, "exit status 0", None
    if dynamic and 2 <= returncode <= 255:
        return True, f"exit status {returncode}: weight {returncode - 2}", returncode - 2
    if returncode < 0:
        reason = f"killed by {signal.Signals(-returncode).name}"
    else:
        reason = f"exit status {returncode}"
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    if last:
        reason = f"{reason}: {last[:OUTPUT_IN_REASON]}"
    return False, reason, None


def _timeout_reason(
    exc: TimeoutError, deadline: asyncio.Timeout, timeout_s: float, phase: str
) -> str:
    if not deadline.expired():  # ETIMEDOUT from the kernel, not our deadline
        return _os_reason(exc, phase)
    if phase == "killed":
        return f"killed after {timeout_s} s timeout"
    return f"timeout after {timeout_s} s ({phase})"


def _os_reason(exc: OSError, phase: str) -> str:
    """``connection refused``; other phases than connect are named: ``... (response)``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {(exc.reason or str(exc)).replace('_', ' ').lower()}"
    text = errno_text(exc)
    return text if phase == "connect" else f"{text} ({phase})"
