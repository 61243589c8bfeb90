"""The blocking table reader gives up on a kernel that does not answer."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from ipvsd.errors import KernelError
from ipvsd.netlink.table_reader import BlockingTableReader


def test_a_dump_nobody_answers_times_out_with_etimedout() -> None:
    ours, silent = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader = BlockingTableReader(0x1E, ours, timeout_s=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(KernelError, match="did not answer") as caught:
            reader.dump()
    finally:
        reader.close()
        silent.close()
    assert caught.value.errno == errno.ETIMEDOUT
    assert 0.15 < time.monotonic() - started < 5
