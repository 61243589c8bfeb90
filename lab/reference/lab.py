"""`ReferenceLab`: a reference layout (see `lab.reference.spec`) built, started and driven.

The lab owns a `lab.netns.Topology`: every namespace, link and process it
makes is undone by :meth:`ReferenceLab.close` (processes by PID first, then
the namespaces). Hosts are addressed by name (``director1``, ``real2``,
``client``), never by namespace, so the demo and the tests read like the
scenario.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ipvsd.control.client import ControlClientError, request
from lab.netns import Topology, ip
from lab.prometheus import PrometheusServer
from lab.reference.build import Director, build_hosts
from lab.reference.client import (
    FailoverReport,
    LongConnection,
    Prober,
    Reply,
    curl_requests,
)
from lab.reference.hosts import Real
from lab.reference.observe import (
    IpvsConnection,
    ip_addresses,
    ipvs_connections,
    scrape_metrics,
    service_of,
)
from lab.reference.spec import (
    ECHO_PORT,
    FRONT_DEV,
    WEB_PORT,
    LabSpec,
    Variant,
    endpoint,
    spec_for,
)
from lab.scenario import wait_until


class ReferenceLab:
    """One reference layout on this kernel (which must have IPVS: use ``lab.uml``).

    Example::

        with ReferenceLab("dr") as lab:
            lab.start()
            assert lab.master() == "director1"
            replies = lab.curl(50)
            report = lab.failover_gap(lambda: lab.link_down("director1"))
            print(report.summary())
    """

    def __init__(
        self,
        variant: Variant = "dr",
        workdir: Path | None = None,
        *,
        prefix: str | None = None,
        monitor: bool = False,
    ) -> None:
        """Plan a lab; nothing is created before :meth:`build` / :meth:`start`.

        Args:
            variant: ``dr``, ``nat`` or ``all-active`` (see `lab.reference.spec`).
            workdir: where configs, logs, sockets and nginx files go; default a
                temporary directory removed by :meth:`close`.
            prefix: namespace-name prefix (default random, see `Topology`).
            monitor: add the management segment and the monitor host, for
                :meth:`start_prometheus`.
        """
        self.spec: LabSpec = spec_for(variant, monitor=monitor)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="ipvsd-lab-")) if workdir is None else workdir
        self.topo = Topology(prefix)
        self.directors: dict[str, Director] = {}
        self.reals: dict[str, Real] = {}
        self.client = ""
        """The client's namespace."""
        self.monitor: str | None = None
        """The monitor host's namespace (``monitor=True``)."""
        self.prometheus: PrometheusServer | None = None
        """The Prometheus server, once :meth:`start_prometheus` started it."""

    # ----------------------------------------------------------------- lifecycle

    @property
    def variant(self) -> Variant:
        return self.spec.variant

    @property
    def vips(self) -> list[str]:
        """The service VIPs (one for dr/nat, six for all-active)."""
        return list(self.spec.service_vips)

    @property
    def vip(self) -> str:
        """The first service VIP (192.168.1.200 in dr/nat)."""
        return self.spec.service_vips[0]

    def build(self) -> None:
        """Create the namespaces, links, addresses and sysctls; write every config."""
        hosts = build_hosts(self.topo, self.spec, self.workdir)
        self.directors, self.reals, self.client = hosts.directors, hosts.reals, hosts.client
        self.monitor = hosts.monitor

    def start(self, timeout: float = 120) -> float:
        """Build if needed, start nginx and echo servers, then ipvsd on every director.

        Returns once each VIP is held by its expected MASTER and every director
        sees every real healthy.

        Returns:
            Seconds from starting the first ipvsd until that point.

        Raises:
            AssertionError: not converged within `timeout` seconds.
        """
        if not self.client:
            self.build()
        for real in self.reals.values():
            real.start_nginx()
            if self.spec.echo:
                real.start_echo(self.workdir / "echo_server.py", ECHO_PORT)
        started = time.monotonic()
        for director in self.directors.values():
            director.daemon.start(wait_ready=False)
        for director in self.directors.values():
            director.daemon.wait_event("daemon.ready", timeout=timeout)
        expected = {vip: inst.master for inst in self.spec.instances for vip in inst.addresses}
        left = max(1.0, timeout - (time.monotonic() - started))
        try:
            wait_until(lambda: self.holders() == expected and self.all_healthy(), left, 0.2)
        except AssertionError:
            raise AssertionError(
                f"{self.variant} lab not converged within {timeout} s: expected holders "
                f"{expected}; {self.describe()}"
            ) from None
        return time.monotonic() - started

    def start_prometheus(self, timeout: float = 120) -> PrometheusServer:
        """Start Debian's Prometheus on the monitor host, scraping every director.

        Returns once every director has been scraped (`lab.prometheus`).

        Raises:
            RuntimeError: the lab was made without ``monitor=True``, or not built.
        """
        if self.monitor is None:
            raise RuntimeError("start_prometheus needs ReferenceLab(..., monitor=True), built")
        targets = {name: d.metrics_listen for name, d in self.directors.items()}
        server = PrometheusServer(self.topo, self.monitor, self.workdir / "prometheus", targets)
        self.prometheus = server
        server.start(timeout)
        return server

    def describe(self) -> str:
        """Who holds which VIP and each director's VRRP states and real health, on one line."""
        parts = [f"holders {self.holders()}"]
        for name in self.directors:
            try:
                status = self.status(name)
            except ControlClientError as exc:
                parts.append(f"{name}: {exc}")
                continue
            states = ",".join(f"{v['name']}={v['state']}" for v in status["vrrp"])
            health = ",".join(
                f"{r['address']}:{r['port']}={r['health']}/w{r['weight']}"
                for service in status["services"]
                for r in service["reals"]
            )
            parts.append(f"{name}: {states} {health}")
        return "; ".join(parts)

    def close(self) -> None:
        """Stop every process the lab started (by PID) and delete its namespaces."""
        try:
            if self.prometheus is not None:
                self.prometheus.close()
            self.topo.close(raise_errors=False)
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- VRRP view

    def holders(self) -> dict[str, str | None]:
        """Every virtual address -> the director holding it (None: nobody; first if several)."""
        held: dict[str, list[str]] = {vip: [] for vip in self.spec.all_vips}
        for director in self.directors.values():
            addresses = ip_addresses(director.ns)
            for vip, names in held.items():
                if vip in addresses:
                    names.append(director.name)
        return {vip: names[0] if len(names) == 1 else None for vip, names in held.items()}

    def master(self, vip: str | None = None) -> str | None:
        """The director holding `vip` (default: the first VIP); None if none or several."""
        return self.holders()[vip or self.vip]

    def wait_master(self, director: str, vip: str | None = None, timeout: float = 15) -> float:
        """Seconds until `director` alone holds `vip`; AssertionError after `timeout`."""
        return wait_until(lambda: self.master(vip) == director, timeout, 0.1)

    # ----------------------------------------------------------------- traffic

    def curl(self, count: int = 50, vips: Sequence[str] | None = None) -> list[Reply]:
        """`count` ``curl -I`` requests from the client to each VIP (default: the first), one curl.

        Returns:
            One `Reply` (vip, status, real name) per request.
        """
        return curl_requests(self.topo, self.client, list(vips or [self.vip]), count, WEB_PORT)

    def access_counts(
        self, at_least: int = 0, timeout: float = 5.0, clients: Sequence[str] | None = None
    ) -> Counter[str]:
        """Requests from the client in each real's nginx access log (health checks excluded).

        nginx writes a request's line after the response has gone out, so a
        count read right after curl exits may miss the last ones: with
        `at_least`, wait (up to `timeout` s) until the total reaches it.
        `clients` are the client addresses counted (default: all of them, IPv6
        too in ``dualstack``; ``[CLIENT6]`` counts the IPv6 requests only).
        """
        sources = list(clients or self.spec.clients)

        def counts() -> Counter[str]:
            return Counter(
                {
                    name: sum(real.requests_from(c) for c in sources)
                    for name, real in self.reals.items()
                }
            )

        deadline = time.monotonic() + timeout
        while sum((found := counts()).values()) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def long_connection(self, vip: str | None = None, port: int = ECHO_PORT) -> LongConnection:
        """A TCP connection from the client to a real's echo server through `vip`:`port`."""
        return LongConnection(self.client, vip or self.vip, port)

    def failover_gap(
        self,
        action: Callable[[], object],
        *,
        vips: Sequence[str] | None = None,
        port: int = WEB_PORT,
        moved: Callable[[], bool] | None = None,
        timeout: float = 30,
        settle: int = 5,
        interval: float = 0.05,
    ) -> FailoverReport:
        """Probe `vips` while `action` runs and report the longest stretch without service.

        A prober in the client namespace sends a ``HEAD /`` on a new connection
        every `interval` seconds to each VIP. Once every VIP answered, the lab
        runs `action`, waits until `moved()` is true (default: every probed VIP
        is held by exactly one director, another one than before) and then
        until each VIP answered `settle` more times.

        Returns:
            The `FailoverReport` (gap per VIP, recovery time after the action).

        Raises:
            AssertionError: the VIPs did not move, or were not served again,
                within `timeout` seconds.
        """
        probed = list(vips or [self.vip])
        before = self.holders()
        if moved is None:

            def moved() -> bool:
                now = self.holders()
                return all(now[v] is not None and now[v] != before[v] for v in probed)

        targets = [endpoint(vip, port) for vip in probed]
        script = self.workdir / "prober.py"
        with Prober(self.topo, self.client, targets, script, interval=interval) as prober:
            prober.wait_ready()
            action_at = time.monotonic()
            action()
            try:
                wait_until(moved, timeout, 0.1)
            except AssertionError:
                raise AssertionError(
                    f"{probed} did not move within {timeout} s: {self.describe()}"
                ) from None
            since = time.monotonic()
            left = max(1.0, timeout - (since - action_at))
            wait_until(lambda: prober.successes_since(since) >= settle, left, 0.1)
            attempts = prober.stop()
        return FailoverReport(action_at, attempts, before, self.holders())

    # ----------------------------------------------------------------- faults

    def link_down(self, director: str, dev: str = FRONT_DEV) -> None:
        """``ip link set DEV down`` on `director` (the reference scenario's failure)."""
        ip("link", "set", dev, "down", ns=self.directors[director].ns)

    def link_up(self, director: str, dev: str = FRONT_DEV) -> None:
        """``ip link set DEV up`` on `director`."""
        ip("link", "set", dev, "up", ns=self.directors[director].ns)

    def stop_nginx(self, real: str) -> None:
        """Stop `real`'s nginx (its health check then fails and it is drained)."""
        self.reals[real].stop_nginx()

    def start_nginx(self, real: str) -> None:
        """Start `real`'s nginx again."""
        self.reals[real].start_nginx()

    # ----------------------------------------------------------------- directors

    def status(self, director: str) -> dict[str, Any]:
        """`director`'s status document (what ``ipvsd status --json`` prints), from its socket."""
        answer = request(self.directors[director].socket, {"command": "status"})
        if not answer.get("ok"):
            raise ControlClientError(f"{director}: {answer.get('error')}")
        result: dict[str, Any] = answer["result"]
        return result

    def vrrp_status(self, director: str, instance: str) -> dict[str, Any]:
        """VRRP instance `instance` in `director`'s status (state, fault_reason, ...)."""
        return next(v for v in self.status(director)["vrrp"] if v["name"] == instance)

    def ipvsd(self, director: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``ipvsd ARGS`` in `director`'s namespace, with its socket (``status --json``)."""
        argv = [sys.executable, "-m", "ipvsd", *args]
        if args and args[0] in ("status", "reload", "drain", "undrain"):
            argv += ["--socket", str(self.directors[director].socket)]
        return self.topo.exec(self.directors[director].ns, argv, check=False, timeout=60)

    def metrics(self, director: str) -> str:
        """`director`'s Prometheus exposition text (GET /metrics inside its namespace)."""
        host = self.directors[director]
        return scrape_metrics(host.ns, host.metrics_listen)

    def weights(
        self, director: str, vip: str | None = None, port: int = WEB_PORT
    ) -> dict[str, int]:
        """Real name -> weight in `director`'s kernel now, for service `vip`:`port`."""
        vip = vip or self.vip
        names = {address: name for name, address in self.spec.real_addresses(vip).items()}
        service = service_of(self.status(director), vip, port)
        return {names[r["address"]]: r["weight"] for r in service["reals"]}

    def connections(self, director: str) -> list[IpvsConnection]:
        """`director`'s IPVS connection table (``ipvsadm -Lnc``), synced entries included."""
        return ipvs_connections(self.directors[director].ns)

    def all_healthy(self) -> bool:
        """Whether every director reports every real of every service up."""
        for name in self.directors:
            try:
                status = self.status(name)
            except ControlClientError:
                return False
            for service in status["services"]:
                if any(r["health"] != "up" for r in service["reals"]):
                    return False
        return True

    def exec(
        self, host: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` on `host` (a director, a real or ``client``) and wait for it."""
        kwargs.setdefault("check", False)
        return self.topo.exec(self.ns(host), argv, **kwargs)

    def ns(self, host: str) -> str:
        """The namespace of `host` (``director1``, ``real1``, ``client`` ...)."""
        if host == "client":
            return self.client
        if host == "monitor" and self.monitor is not None:
            return self.monitor
        if host in self.directors:
            return self.directors[host].ns
        return self.reals[host].ns
