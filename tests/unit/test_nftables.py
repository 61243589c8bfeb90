"""The nf_tables messages that enforce ``accept_mode: false`` (`ipvsd.netlink.nftables`).

The golden bytes are what the host kernel accepted (tests/netns/test_no_accept.py
sends the same batches and checks the packets they drop).
"""

from __future__ import annotations

import struct
from ipaddress import ip_address

from ipvsd.netlink import nftables as nft
from ipvsd.netlink.rtmsg import messages

#: BATCH_BEGIN, NEWTABLE inet ipvsd (create), DELTABLE inet ipvsd, BATCH_END.
DELETE_BATCH = (
    "14000000100001000100000000000000000000 0a"
    "20000000000a050402000000000000000100000 00a000100697076736400000"
    "020000000020a05000300000000000000010000000a0001006970767364000000"
    "140000001100010004000000000000000000000a"
)
#: ``meta nfproto ipv4 ip daddr 192.0.2.10 drop``: meta, cmp, payload, cmp, immediate.
DROP_192_0_2_10 = (
    "24000180090001006d6574610000000014000280080002000000000f0800010000000001"
    "2c00018008000100636d700020000280080001000000000108000200000000000c00038005000100"
    "02000000"
    "340001800c0001007061796c6f61640024000280080001000000000108000200000000010800"
    "03000000001008000400000000 04"
    "2c00018008000100636d700020000280080001000000000108000200000000000c00038008000100"
    "c000020a"
    "300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c000280"
    "0800010000000000"
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_no_vip_is_a_batch_that_deletes_the_table_whatever_is_there() -> None:
    assert b"".join(nft.batch([])) == _hex(DELETE_BATCH)


def test_an_ipv4_vip_is_dropped_by_daddr() -> None:
    assert nft.rules([ip_address("192.0.2.10")])[-1] == _hex(DROP_192_0_2_10)


def test_the_batch_makes_table_chain_and_rules_in_one_transaction() -> None:
    parts = nft.batch([ip_address("192.0.2.10"), ip_address("2001:db8::10")], seq=7)
    kinds = [m.kind for part in parts for m in messages(part)]
    subsys = nft.NFNL_SUBSYS_NFTABLES << 8
    assert kinds == [
        nft.NFNL_MSG_BATCH_BEGIN,
        subsys | nft.NFT_MSG_NEWTABLE,
        subsys | nft.NFT_MSG_DELTABLE,
        subsys | nft.NFT_MSG_NEWTABLE,
        subsys | nft.NFT_MSG_NEWCHAIN,
        *[subsys | nft.NFT_MSG_NEWRULE] * 6,  # ND, ICMPv6 errors, 2 ICMP errors, 2 VIPs
        nft.NFNL_MSG_BATCH_END,
    ]
    assert [m.seq for part in parts for m in messages(part)] == list(range(7, 7 + 12))


def test_the_chain_hooks_input_after_ipvs() -> None:
    chain = nft.batch([ip_address("192.0.2.10")])[4]
    hook = struct.pack("!HHI", 8, nft.NFTA_HOOK_HOOKNUM, nft.NF_INET_LOCAL_IN)
    priority = struct.pack("!HHi", 8, nft.NFTA_HOOK_PRIORITY, 100)
    # Attribute headers are host order, their values network order.
    assert hook[4:] in chain
    assert priority[4:] in chain
    assert nft.PRIORITY > 99  # IPVS: LOCAL_IN at NF_IP_PRI_NAT_SRC - 2 and - 1


def test_ipv6_vips_let_neighbour_discovery_through_first() -> None:
    found = nft.rules([ip_address("2001:db8::10")])
    assert len(found) == 3
    assert found[0] == nft._icmp_types(True, 135, 136)
    assert ip_address("2001:db8::10").packed in found[2]
    assert ip_address("2001:db8::10").packed not in found[0] + found[1]
