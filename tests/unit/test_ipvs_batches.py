"""A batch of IPVS changes asks the kernel for one ack, its last request's (issue 14).

The kernel acks a request that fails whether or not it asked for an ack
(``netlink_rcv_skb``), and handles the requests of one ``send`` in order, so
the last request's ack comes after every earlier one's error. A batch of 512
changes that all succeed is then one datagram to read, not 512: inside UML
every read is an expensive system call. `ReadyKernel` (``test_ipvs_yields``)
answers as the kernel does; tests/kernel/test_ipvs_adapter.py proves the same
on the real one.
"""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from ipvsd.errors import AlreadyExists, NotFound
from ipvsd.ipvs.plan import AddDest, DeleteDest, EditDest, Operation
from ipvsd.model import Table
from ipvsd.netlink.ipvs import IpvsClient
from tests.unit.test_ipvs_yields import FAMILY_ID, ReadyKernel, big_table


def _operations(services: int) -> list[Operation]:
    return [
        AddDest(svc.key, dest.key, dest.attrs)
        for svc in big_table(services)
        for dest in svc.dests.values()
    ]


@pytest.mark.parametrize("batch_size", [16, 100])  # on the loop, from a worker thread
async def test_a_batch_that_succeeds_is_one_read(batch_size: int) -> None:
    operations = _operations(50)  # 200: the last batch is a short one
    kernel = ReadyKernel(Table())
    client = IpvsClient(FAMILY_ID, kernel, batch_size=batch_size)  # type: ignore[arg-type]

    result = await client.apply(operations)

    assert (result.applied, result.failures) == (200, ())
    assert kernel.served == -(-200 // batch_size)


@pytest.mark.parametrize("batch_size", [16, 100])
async def test_failures_anywhere_in_a_batch_are_each_reported(batch_size: int) -> None:
    operations = _operations(50)
    # The first request, one inside a batch, the last of a batch, the very last.
    failing = {0: errno.EEXIST, 37: errno.ENOENT, batch_size - 1: errno.EEXIST, 199: errno.ENOENT}
    kernel = ReadyKernel(Table(), failing)
    client = IpvsClient(FAMILY_ID, kernel, batch_size=batch_size)  # type: ignore[arg-type]

    result = await client.apply(operations)

    assert result.applied == 200 - len(failing)
    failed = {operations.index(f.operation): type(f.error) for f in result.failures}
    expected = {i: AlreadyExists if e == errno.EEXIST else NotFound for i, e in failing.items()}
    assert failed == expected
    assert kernel.served == -(-200 // batch_size) + len(failing) - 2  # 2 are last of a batch


async def test_the_next_apply_reads_nothing_left_by_the_last() -> None:
    kernel = ReadyKernel(Table(), {15: errno.EEXIST})
    client = IpvsClient(FAMILY_ID, kernel, batch_size=16)  # type: ignore[arg-type]
    operations = _operations(8)

    first = await client.apply(operations[:16])
    second = await client.apply(operations[16:])

    assert (first.applied, len(first.failures), second.applied, second.failures) == (15, 1, 16, ())


async def test_an_mh_pair_is_never_split_between_two_sends() -> None:
    # An add-then-zero (and a delete-then-add) of one dest straddling the batch
    # boundary goes whole into the first batch: microseconds apart, not a round trip.
    adds = _operations(8)
    pair = adds[15]
    assert isinstance(pair, AddDest)
    zero = EditDest(pair.service, pair.key, replace(pair.attrs, weight=0))
    # The 16th request deletes a dest, the 17th adds it back, the 18th zeroes it.
    operations = [*adds[:15], DeleteDest(pair.service, pair.key), pair, zero, *adds[16:]]
    kernel = ReadyKernel(Table())
    client = IpvsClient(FAMILY_ID, kernel, batch_size=16)  # type: ignore[arg-type]

    result = await client.apply(operations)

    assert (result.applied, result.failures) == (34, ())
    assert kernel.served == 2  # 16 + the 2 that hang on the 16th, then 16
