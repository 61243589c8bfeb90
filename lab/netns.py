"""Throw-away network topologies for tests, built with iproute2.

Everything here shells out to ``ip`` (``ip -n NS ...`` for configuration,
``ip netns exec NS ...`` for commands) except :func:`in_netns`, which moves the
*calling thread* into a namespace with ``setns(2)`` so that a test can open a
socket there (Python 3.11 has no ``os.setns``; ctypes calls libc's).

:class:`Topology` records what it creates and removes it in reverse order, even
when a step fails half-way. Namespace names carry a random per-topology prefix,
so parallel runs on one host do not collide; veth ends are created directly in
their namespaces (``ip -n NS link add ... peer ... netns PEER_NS``), so names
such as ``eth0`` never clash with the root namespace's links::

    with Topology() as topo:
        sw = topo.netns("sw")
        br = topo.bridge("br0", ns=sw)
        a, b = topo.netns("a"), topo.netns("b")
        topo.veth(a, "eth0", bridge=br, bridge_ns=sw, address="10.98.0.1/24")
        topo.veth(b, "eth0", bridge=br, bridge_ns=sw, address="10.98.0.2/24")
        topo.exec(a, ["ping", "-c", "1", "10.98.0.2"])
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import subprocess
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
IFNAMSIZ = 15  # longest interface name the kernel accepts


class CommandError(RuntimeError):
    """A command exited non-zero; carries its argv, status and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()}")


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output.

    Args:
        argv: command and arguments.
        check: raise :class:`CommandError` on a non-zero exit.
        timeout: seconds before ``subprocess.TimeoutExpired``.
        input: text for the command's stdin.

    Returns:
        The completed process (stdout and stderr as text).
    """
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stderr)
    return done


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip [-n NS] ARGS...``."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def ns_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``ip netns exec NS`` (unchanged when ``ns`` is None)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def ns_exec(
    ns: str | None,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace ``ns`` (the current one when None) and wait for it."""
    return run(ns_argv(ns, argv), check=check, timeout=timeout, input=input)


def ns_popen(ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a command inside namespace ``ns``; ``kwargs`` go to ``subprocess.Popen``."""
    return subprocess.Popen(ns_argv(ns, argv), **kwargs)


def netns_exists(name: str) -> bool:
    """Whether ``ip netns`` knows namespace ``name``."""
    return (NETNS_RUN_DIR / name).exists()


def netns_add(name: str) -> None:
    """Create namespace ``name`` and bring its loopback up."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)


def netns_delete(name: str) -> None:
    """Delete namespace ``name`` (its veths, and their peers, go with it)."""
    ip("netns", "delete", name)


def _sysctl_path(key: str) -> Path:
    # "net.ipv4.ip_forward" or "net/ipv4/conf/eth0.100/rp_filter" (slashes keep dots in names)
    return Path("/proc/sys") / (key if "/" in key else key.replace(".", "/"))


def sysctl_set(ns: str | None, key: str, value: str | int) -> None:
    """Set a sysctl in namespace ``ns`` (the current one when None)."""
    with in_netns(ns) if ns else contextlib.nullcontext():
        _sysctl_path(key).write_text(f"{value}\n")


def sysctl_get(ns: str | None, key: str) -> str:
    """Read a sysctl in namespace ``ns`` (the current one when None)."""
    with in_netns(ns) if ns else contextlib.nullcontext():
        return _sysctl_path(key).read_text().strip()


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``name``.

    Sockets created inside keep that namespace after the block ends. Only this
    thread moves: keep the block short and free of ``await`` (other tasks of an
    asyncio loop would run in the namespace too).

    Raises:
        FileNotFoundError: no such namespace.
        OSError: setns failed (needs CAP_SYS_ADMIN).
    """
    target = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)


class Topology:
    """Namespaces, bridges, veth pairs and processes made for one test.

    Every creation pushes its undo step; :meth:`close` (or leaving the ``with``
    block) stops the processes started through :meth:`popen`, then undoes the
    rest in reverse order, and continues past individual failures.
    """

    def __init__(self, prefix: str | None = None) -> None:
        """Args: prefix: namespace-name prefix; default ``lab`` plus 4 random hex digits."""
        self.prefix = prefix or f"lab{secrets.token_hex(2)}"
        self.namespaces: list[str] = []
        self._undo: list[tuple[str, Callable[[], object]]] = []
        self._veths = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(raise_errors=exc is None)

    def netns(self, name: str) -> str:
        """Create namespace ``PREFIX-name`` with ``lo`` up; return its full name."""
        full = f"{self.prefix}-{name}"
        ip("netns", "add", full)
        self._undo.append((f"delete netns {full}", lambda: netns_delete(full)))
        self.namespaces.append(full)
        ip("link", "set", "lo", "up", ns=full)
        return full

    def bridge(self, name: str, *, ns: str | None = None, up: bool = True) -> str:
        """Create a bridge (STP off, so ports forward at once) in ``ns``; return its name.

        In the root namespace (``ns=None``) the name gets this topology's prefix,
        e.g. ``labab12br0``, to stay unique on the host.
        """
        real = name if ns else f"{self.prefix}{name}"[:IFNAMSIZ]
        ip("link", "add", real, "type", "bridge", "stp_state", "0", "forward_delay", "0", ns=ns)
        if ns is None:
            self._undo.append((f"delete bridge {real}", lambda: self._link_delete(real)))
        if up:
            ip("link", "set", real, "up", ns=ns)
        return real

    def veth(
        self,
        ns: str,
        ifname: str,
        *,
        bridge: str | None = None,
        bridge_ns: str | None = None,
        peer_ns: str | None = None,
        peer_name: str | None = None,
        address: str | Sequence[str] | None = None,
        mtu: int | None = None,
    ) -> str:
        """Create a veth pair: ``ifname`` in ``ns``, its peer on a bridge or in ``peer_ns``.

        Args:
            ns: namespace of the main end.
            ifname: name of the main end (e.g. ``eth0``).
            bridge: enslave the peer to this bridge (which lives in ``bridge_ns``).
            bridge_ns: namespace of the bridge; None is the root namespace.
            peer_ns: namespace of the peer when there is no bridge (None: root).
            peer_name: peer's name; default ``PREFIXvN``, unique per topology.
            address: CIDR address(es) for the main end, e.g. ``"10.98.0.1/24"``.
            mtu: MTU for both ends.

        Returns:
            The peer's name. Both ends are up.
        """
        self._veths += 1
        peer = peer_name or f"{self.prefix}v{self._veths}"[:IFNAMSIZ]
        where = bridge_ns if bridge else peer_ns
        # With no namespace given the peer goes to ours (named by our PID), not ns's.
        peer_args = ["netns", where or str(os.getpid())]
        ip("link", "add", ifname, "type", "veth", "peer", "name", peer, *peer_args, ns=ns)
        if where is None:
            self._undo.append((f"delete veth {peer}", lambda: self._link_delete(peer)))
        if mtu is not None:
            ip("link", "set", ifname, "mtu", str(mtu), ns=ns)
            ip("link", "set", peer, "mtu", str(mtu), ns=where)
        if bridge:
            ip("link", "set", peer, "master", bridge, ns=where)
        ip("link", "set", peer, "up", ns=where)
        ip("link", "set", ifname, "up", ns=ns)
        for cidr in [address] if isinstance(address, str) else (address or []):
            self.address(ns, ifname, cidr)
        return peer

    def address(self, ns: str | None, dev: str, cidr: str) -> None:
        """Add address ``cidr`` (``10.98.0.1/24``, ``fd00::1/64``) to ``dev`` in ``ns``."""
        ip("address", "add", cidr, "dev", dev, ns=ns)
        if ns is None:
            self._undo.append(
                (f"delete {cidr} from {dev}", lambda: ip("address", "del", cidr, "dev", dev))
            )

    def route(
        self, ns: str | None, dest: str, *, via: str | None = None, dev: str | None = None
    ) -> None:
        """Add a route (``dest`` may be ``default``) through ``via`` and/or ``dev`` in ``ns``."""
        spec = [dest, *(["via", via] if via else []), *(["dev", dev] if dev else [])]
        ip("route", "add", *spec, ns=ns)
        if ns is None:
            self._undo.append((f"delete route {dest}", lambda: ip("route", "del", *spec)))

    def sysctl(self, ns: str | None, key: str, value: str | int) -> None:
        """Set a sysctl inside ``ns`` (root-namespace changes are not undone)."""
        sysctl_set(ns, key, value)

    def exec(
        self, ns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``ns`` and wait for it (see :func:`ns_exec`)."""
        return ns_exec(ns, argv, check=check, timeout=timeout)

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a long-lived command inside ``ns``; :meth:`close` stops it (by PID)."""
        proc = ns_popen(ns, argv, **kwargs)
        self._undo.append((f"stop {argv[0]} (pid {proc.pid})", lambda: _stop(proc)))
        return proc

    def close(self, *, raise_errors: bool = True) -> None:
        """Stop processes, then undo everything in reverse order.

        Args:
            raise_errors: raise one RuntimeError listing the failed steps (otherwise
                they are only warned about, e.g. while another exception propagates).
        """
        # Processes first: a namespace with a process still in it outlives `ip netns del`.
        steps = _reverse_by_kind(self._undo)
        self._undo.clear()
        errors: list[str] = []
        for what, undo in steps:
            try:
                undo()
            except Exception as exc:  # keep tearing down; report at the end
                errors.append(f"{what}: {exc}")
        self.namespaces.clear()
        if errors:
            message = "topology teardown failed: " + "; ".join(errors)
            if raise_errors:
                raise RuntimeError(message)
            warnings.warn(message, stacklevel=2)

    @staticmethod
    def _link_delete(name: str) -> None:
        ip("link", "delete", name)


def _reverse_by_kind(
    steps: list[tuple[str, Callable[[], object]]],
) -> list[tuple[str, Callable[[], object]]]:
    """Undo order: processes (newest first), then everything else (newest first)."""
    procs = [s for s in steps if s[0].startswith("stop ")]
    rest = [s for s in steps if not s[0].startswith("stop ")]
    return [*reversed(procs), *reversed(rest)]


def _stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
