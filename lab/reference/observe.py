"""Reading what a director shows: its IPVS connection table, status JSON and metrics text."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lab.netns import in_netns

IPVS_CONN = Path("/proc/thread-self/net/ip_vs_conn")
"""The calling thread's namespace's connection table (``ipvsadm -Lnc``)."""

# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2


def ip_addresses(ns: str, family: int = socket.AF_UNSPEC) -> set[str]:
    """Every address of `family` configured in namespace `ns` (what ``ip addr`` lists).

    One RTM_GETADDR dump on a netlink socket opened in `ns`: no process is
    started, which matters when polling inside UML (``ip`` costs ~0.07 s).
    IPv6 addresses come in their compressed form (``fd00:1::200``).

    Args:
        ns: the namespace.
        family: ``socket.AF_INET``, ``socket.AF_INET6`` or (default) both.
    """
    with in_netns(ns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    with sock:
        request = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        header = _NLMSG.pack(
            _NLMSG.size + len(request), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
        )
        sock.sendall(header + request)
        found: set[str] = set()
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    raise OSError(f"RTM_GETADDR dump failed in {ns}")
                if kind == _RTM_NEWADDR:
                    found.update(_address(data[offset + _NLMSG.size : offset + length]))
                offset += (length + 3) & ~3


def _address(body: bytes) -> set[str]:
    attrs: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        attrs[kind] = body[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    family = {4: socket.AF_INET, 16: socket.AF_INET6}.get(len(raw or b""))
    return {socket.inet_ntop(family, raw)} if raw and family else set()


def _proc_address(field: str) -> str:
    """An address of ``/proc/net/ip_vs_conn``: IPv4 as 8 hex digits, IPv6 as ``%pI6``."""
    return str(IPv6Address(field) if ":" in field else IPv4Address(int(field, 16)))


@dataclass(frozen=True)
class IpvsConnection:
    """One line of ``/proc/net/ip_vs_conn``: client -> virtual -> real, and its state."""

    protocol: str
    client: str
    client_port: int
    vip: str
    vport: int
    real: str
    rport: int
    state: str
    expires: int


def ipvs_connections(ns: str) -> list[IpvsConnection]:
    """The IPVS connection entries of namespace `ns` (synced ones included).

    Read from procfs in this thread after ``setns`` (no process started):
    the same table ``ipvsadm -Lnc`` prints.
    """
    with in_netns(ns):
        text = IPVS_CONN.read_text()
    entries = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 9:
            continue
        proto, cip, cport, vip, vport, dip, dport, state, expires = fields[:9]
        entries.append(
            IpvsConnection(
                protocol=proto,
                client=_proc_address(cip),
                client_port=int(cport, 16),
                vip=_proc_address(vip),
                vport=int(vport, 16),
                real=_proc_address(dip),
                rport=int(dport, 16),
                state=state,
                expires=int(expires),
            )
        )
    return entries


def scrape_metrics(ns: str, listen: str) -> str:
    """GET /metrics from `listen` (``HOST:PORT``) inside namespace `ns`; the exposition text.

    Raises:
        RuntimeError: the endpoint answered something else than 200.
    """
    host, port = listen.rsplit(":", 1)
    with in_netns(ns):
        conn = socket.create_connection((host, int(port)), timeout=30)
    with conn:
        # HTTP/1.0: ipvsd then answers without chunked encoding.
        conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"/metrics in {ns} answered {head[:80]!r}")
    return body.decode()


def service_of(status: dict[str, Any], vip: str, port: int) -> dict[str, Any]:
    """The service `vip`:`port` (TCP) in a status document.

    Raises:
        KeyError: the status has no such service.
    """
    for service in status["services"]:
        if service["address"] == vip and service["port"] == port:
            return dict(service)
    raise KeyError(f"no service {vip}:{port} in {status['node']}'s status")


def status_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Parse the output of ``ipvsd status --json`` (as `ReferenceLab.ipvsd` ran it).

    Raises:
        RuntimeError: the command failed.
    """
    if done.returncode != 0:
        raise RuntimeError(f"ipvsd status exited {done.returncode}: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def metric_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` in exposition `text`: (labels, value)."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def backend_metric(text: str, name: str, vip: str, port: int, real: str, rport: int) -> float:
    """One backend sample (node_exporter's labels) of `name`, e.g. connections_inactive.

    Raises:
        KeyError: no such sample.
    """
    for labels, value in metric_values(text, name):
        if (
            labels.get("local_address") == vip
            and labels.get("local_port") == str(port)
            and labels.get("remote_address") == real
            and labels.get("remote_port") == str(rport)
        ):
            return value
    raise KeyError(f"no {name} sample for {vip}:{port} -> {real}:{rport}")
