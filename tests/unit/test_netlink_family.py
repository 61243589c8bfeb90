"""The IPVS family lookup without pyroute2 (`ipvsd.netlink.ipvs.resolve_family_id`).

The request is pyroute2's (a CTRL_CMD_GETFAMILY with the name), checked by
decoding it with pyroute2's ``ctrlmsg``; the answer's parse is checked on
crafted replies and on the host kernel's own controller family, ``nlctrl``,
whose id is fixed (GENL_ID_CTRL).
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from ipvsd.errors import IpvsUnavailable, KernelError
from ipvsd.netlink import ipvs, wire


def _error_reply(code: int) -> bytes:
    return struct.pack("=IHHIIi", 20, wire.NLMSG_ERROR, 0, 1, 0, -code)


def test_the_request_is_what_pyroute2_would_decode() -> None:
    from pyroute2.netlink.generic import ctrlmsg

    msg = ctrlmsg(ipvs.family_request("IPVS", 7))
    msg.decode()
    assert msg["header"]["type"] == ipvs.GENL_ID_CTRL
    assert msg["header"]["sequence_number"] == 7
    assert msg["cmd"] == ipvs.CTRL_CMD_GETFAMILY
    assert msg.get_attr("CTRL_ATTR_FAMILY_NAME") == "IPVS"


def test_the_family_id_is_read_from_the_answer() -> None:
    attr = wire.nla_u16(ipvs.CTRL_ATTR_FAMILY_ID, 42) + wire.nla_str(2, "IPVS")
    answer = wire.message(ipvs.GENL_ID_CTRL, 1, attr, 0, 1)
    assert ipvs.family_id_from(answer) == 42


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ENOTSUP])
def test_no_such_family_is_no_ipvs(code: int) -> None:
    with pytest.raises(IpvsUnavailable):
        ipvs.family_id_from(_error_reply(code))


def test_another_refusal_is_a_kernel_error() -> None:
    with pytest.raises(KernelError) as caught:
        ipvs.family_id_from(_error_reply(errno.EPERM))
    assert caught.value.errno == errno.EPERM
    assert not isinstance(caught.value, IpvsUnavailable)


def test_the_kernels_controller_family() -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ipvs.NETLINK_GENERIC) as sock:
        sock.settimeout(5)
        sock.bind((0, 0))
        sock.send(ipvs.family_request("nlctrl", 1))
        assert ipvs.family_id_from(sock.recv(65536)) == ipvs.GENL_ID_CTRL
