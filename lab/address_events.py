"""Which addresses a network namespace loses, and when (rtnetlink broadcasts)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from lab.listener import Listener
from lab.netns import in_netns

RTMGRP_IPV4_IFADDR = 0x10
RTM_DELADDR = 21
IFA_LOCAL = 2
NLMSG_HDR = struct.Struct("=IHHII")
IFADDRMSG = struct.Struct("=BBBBI")


class DeletedAddresses(Listener):
    """When each IPv4 address of a namespace is deleted (rtnetlink broadcasts)."""

    def __init__(self, ns: str) -> None:
        with in_netns(ns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, RTMGRP_IPV4_IFADDR))
        self.deleted: dict[str, float] = {}
        super().__init__(sock)

    def received(self, data: bytes, source: object, at: float) -> None:
        offset = 0
        while offset + NLMSG_HDR.size <= len(data):
            length, kind = NLMSG_HDR.unpack_from(data, offset)[:2]
            if kind == RTM_DELADDR:
                self._deleted(data[offset + NLMSG_HDR.size : offset + length], at)
            offset += (length + 3) & ~3 or len(data)

    def _deleted(self, body: bytes, now: float) -> None:
        prefixlen = body[1]
        offset = IFADDRMSG.size
        while offset + 4 <= len(body):
            length, kind = struct.unpack_from("=HH", body, offset)
            if kind == IFA_LOCAL and length == 8:
                address = IPv4Address(body[offset + 4 : offset + 8])
                self.deleted.setdefault(f"{address}/{prefixlen}", now)
            offset += (length + 3) & ~3 or len(body)
