"""The real servers' processes: nginx on port 80 and a line-echo server on port 9000.

Each real runs Debian's nginx (``/usr/sbin/nginx``) in the foreground
(``daemon off``) with everything under its own directory: config, pid file,
error and access logs, temp paths and one page saying the real's name. Every
response carries ``X-Real-Server: NAME`` so a client tells the reals apart
from the headers of a ``HEAD`` request. The access log has one line per
request, ``REMOTE_ADDR STATUS "REQUEST"``, so requests from the client can be
told from the directors' health checks.

The echo server (port 9000) answers each line with ``NAME LINE``: a
long-lived connection through a VIP says which real holds it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.netns import Topology, in_netns
from lab.scenario import wait_until

NGINX = "/usr/sbin/nginx"
REAL_HEADER = "X-Real-Server"

ECHO_SERVER = textwrap.dedent(
    """
    import socketserver, sys
    name, port = sys.argv[1].encode(), int(sys.argv[2])
    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(name + b" " + line)
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        def handle_error(self, request, client_address):
            pass  # health checks end with a reset: not worth a traceback
    server = Server(("0.0.0.0", port), Echo)
    print("ready", flush=True)
    server.serve_forever()
    """
)


def nginx_config(name: str, root: Path, port: int = 80, *, ipv6: bool = False) -> str:
    """An nginx config serving `root` on `port`, everything kept under `root`'s parent.

    With `ipv6` it listens on ``[::]:PORT`` too: nginx's IPv6 listeners are
    ``ipv6only=on`` by default, so the IPv4 one stays as it is.
    """
    listen6 = f"\n        listen [::]:{port} default_server;" if ipv6 else ""
    base = root.parent
    temp = "\n".join(
        f"    {kind}_temp_path {base / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        textwrap.dedent(
            f"""\
        # nginx of {name} (lab/reference/hosts.py)
        daemon off;
        master_process on;
        worker_processes 1;
        user root;
        pid {base / "nginx.pid"};
        error_log {base / "error.log"} warn;
        events {{ worker_connections 512; }}
        http {{
            types {{ text/html html; }}
            default_type text/plain;
            log_format lab '$remote_addr $status "$request"';
            access_log {base / "access.log"} lab;
            keepalive_timeout 5;
        """
        )
        + temp
        + textwrap.dedent(
            f"""
            server {{
                listen {port} default_server;{listen6}
                root {root};
                add_header {REAL_HEADER} {name} always;
                location / {{ index index.html; }}
            }}
        }}
        """
        )
    )


@dataclass
class Real:
    """One real server: its namespace, address, nginx and echo server.

    Attributes:
        name: ``real1`` / ``real2``.
        ns: its namespace.
        address: its own address (not the VIP).
        directory: nginx's files (``nginx.conf``, ``html/``, ``access.log``, ...).
        address6: its own IPv6 address (``dualstack``; nginx then listens on
            ``[::]:80`` too), else None.
    """

    topo: Topology
    name: str
    ns: str
    address: str
    directory: Path
    address6: str | None = None
    nginx: subprocess.Popen[Any] | None = None
    echo: subprocess.Popen[Any] | None = None

    @property
    def access_log(self) -> Path:
        """nginx's access log: ``REMOTE_ADDR STATUS "REQUEST"`` per line."""
        return self.directory / "access.log"

    @property
    def config(self) -> Path:
        return self.directory / "nginx.conf"

    def prepare(self) -> None:
        """Write nginx's config, page and directories."""
        html = self.directory / "html"
        html.mkdir(parents=True, exist_ok=True)
        (html / "index.html").write_text(f"<h1>{self.name}</h1>\n")
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.directory / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        self.config.write_text(nginx_config(self.name, html, ipv6=self.address6 is not None))

    def start_nginx(self, timeout: float = 15) -> None:
        """Start nginx and wait until it accepts connections on port 80."""
        if self.nginx_running:
            return
        log = (self.directory / "nginx.out").open("ab")
        self.nginx = self.topo.popen(
            self.ns,
            [
                NGINX,
                "-c",
                str(self.config),
                "-p",
                str(self.directory),
                "-e",
                str(self.directory / "error.log"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: self._accepts(80), timeout, interval=0.05)

    def stop_nginx(self, timeout: float = 10) -> None:
        """Stop nginx (SIGTERM to its master, by PID): connections to port 80 are refused."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait(timeout)

    @property
    def nginx_running(self) -> bool:
        return self.nginx is not None and self.nginx.poll() is None

    def start_echo(self, script: Path, port: int) -> None:
        """Start the line-echo server on `port` (its script is written to `script`)."""
        script.write_text(ECHO_SERVER)
        self.echo = self.topo.popen(
            self.ns,
            [sys.executable, str(script), self.name, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.echo.stdout is not None
        line = self.echo.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"echo server of {self.name} did not start: {line!r}")

    def requests_from(self, client: str) -> int:
        """Requests in the access log whose remote address is `client`."""
        return sum(1 for fields in self._log_lines() if fields[:1] == [client])

    def _log_lines(self) -> Iterator[list[str]]:
        if not self.access_log.exists():
            return
        with self.access_log.open() as log:
            for line in log:
                yield line.split()

    def _accepts(self, port: int) -> bool:
        with in_netns(self.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(1)
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            sock.close()
        return True
