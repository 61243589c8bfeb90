"""RFC 5798 §6.1 ``accept_mode: false`` enforced with nf_tables, over netlink by hand.

A non-owner MASTER with Accept_Mode False must not accept packets addressed to
its VIPs as its own; but IPVS must still schedule the clients' connections to
them. On LOCAL_IN, IPVS hooks at priority 98 (NAT replies) and 99 (requests,
``NF_IP_PRI_NAT_SRC - 1``) and steals what it schedules (``NF_STOLEN``), so a
filter chain at priority `PRIORITY` (100, after IPVS) sees only what IPVS did not
take: packets to a VIP port with no virtual service, pings, and the like. It
drops those. (keepalived's ``no_accept`` rule runs at priority 0, before IPVS,
and drops the load-balanced traffic too.)

One table, ``inet ipvsd``, owned by ipvsd: `apply` replaces it whole, in one
nf_tables transaction (a batch: the table created if missing, deleted, created
again with its chain and rules), so the kernel has the old table or the new one,
never half of one; with no VIP to guard the table is deleted (which is also the
clean-up of one a killed daemon left behind). The chain, ``input``, type filter,
hook input, policy accept, has these rules, in order:

1. IPv6 ICMPv6 neighbor solicitation and advertisement (types 135-136): accept.
   A neighbour's unicast solicitation (NUD) is addressed to the VIP, and the
   MASTER must answer it (RFC 5798 §6.4.3; ipvsd's own ND runs on the address).
2. ICMP errors: IPv4 destination unreachable (3), time exceeded (11), parameter
   problem (12); ICMPv6 1-4 (packet too big included): accept. They open nothing
   and carry path MTU news for traffic sent from the VIP (what IPVS relates to
   its connections it takes before this chain anyway).
3. One rule per VIP: ``ip daddr VIP drop`` / ``ip6 daddr VIP drop``.

Everything else, echo requests included, addressed to a VIP is dropped. A real
server that is this host itself (IPVS's local delivery: ``NF_ACCEPT``, not
stolen) reaches the chain, so it is dropped too: with accept_mode false a local
real server must listen on another address.

Each call opens its own NETLINK_NETFILTER socket (in the calling thread's
network namespace), sends the batch and reads every answer, which the kernel
queues before ``send`` returns. A refusal is a `KernelError` with the kernel's
reason. A kernel without nf_tables for IP (Debian's User-Mode Linux 6.1 has
``CONFIG_NF_TABLES`` for the bridge only, not ``CONFIG_NF_TABLES_INET``) refuses
with EOPNOTSUPP, one without nfnetlink with EPROTONOSUPPORT (`UNSUPPORTED`): no
table can exist there, and the error says which option is missing.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

from ipvsd.errors import KernelError
from ipvsd.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    attribute,
    error_of,
    messages,
    request,
)
from ipvsd.netlink.rtnl import error_text

__all__ = [
    "CHAIN",
    "PRIORITY",
    "TABLE",
    "UNSUPPORTED",
    "apply",
    "batch",
    "table_exists",
]

TABLE = "ipvsd"
CHAIN = "input"
#: After IPVS's LOCAL_IN hooks (98, 99): what IPVS schedules never gets here.
PRIORITY = 100

NETLINK_NETFILTER = 12
# <linux/netfilter/nfnetlink.h>
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
# <linux/netfilter/nf_tables.h>
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NLM_F_APPEND = 0x800
NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
NF_INET_LOCAL_IN = 1
NF_DROP = 0
NF_ACCEPT = 1
NLA_F_NESTED = 0x8000
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFTA_CHAIN_HOOK = 4
NFTA_CHAIN_POLICY = 5
NFTA_CHAIN_TYPE = 7
NFTA_HOOK_HOOKNUM = 1
NFTA_HOOK_PRIORITY = 2
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_EXPRESSIONS = 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFT_REG_VERDICT = 0
NFT_REG_1 = 1
NFTA_META_DREG = 1
NFTA_META_KEY = 2
NFT_META_NFPROTO = 15
NFT_META_L4PROTO = 16
NFTA_PAYLOAD_DREG = 1
NFTA_PAYLOAD_BASE = 2
NFTA_PAYLOAD_OFFSET = 3
NFTA_PAYLOAD_LEN = 4
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_PAYLOAD_TRANSPORT_HEADER = 2
NFTA_CMP_SREG = 1
NFTA_CMP_OP = 2
NFTA_CMP_DATA = 3
NFT_CMP_EQ = 0
NFTA_RANGE_SREG = 1
NFTA_RANGE_OP = 2
NFTA_RANGE_FROM_DATA = 3
NFTA_RANGE_TO_DATA = 4
NFT_RANGE_EQ = 0
NFTA_IMMEDIATE_DREG = 1
NFTA_IMMEDIATE_DATA = 2

IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

_NFGENMSG = struct.Struct("!BBH")
_BE32 = struct.Struct("!I")
_BE32S = struct.Struct("!i")
_RECV_SIZE = 1 << 16
#: The errnos of a kernel that cannot have the table at all.
UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EPROTONOSUPPORT})
_MISSING = {
    errno.EOPNOTSUPP: "the kernel has no nf_tables inet family (CONFIG_NF_TABLES_INET)",
    errno.EPROTONOSUPPORT: "the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)",
}

VipAddress = IPv4Address | IPv6Address


def _string(kind: int, text: str) -> bytes:
    return attribute(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attribute(kind, _BE32.pack(value))


def _nest(kind: int, *parts: bytes) -> bytes:
    return attribute(kind | NLA_F_NESTED, b"".join(parts))


def _data(kind: int, value: bytes) -> bytes:
    return _nest(kind, attribute(NFTA_DATA_VALUE, value))


def _expr(name: str, *parts: bytes) -> bytes:
    return _nest(NFTA_LIST_ELEM, _string(NFTA_EXPR_NAME, name), _nest(NFTA_EXPR_DATA, *parts))


def _meta(key: int) -> bytes:
    return _expr("meta", _u32(NFTA_META_KEY, key), _u32(NFTA_META_DREG, NFT_REG_1))


def _payload(base: int, offset: int, length: int) -> bytes:
    return _expr(
        "payload",
        _u32(NFTA_PAYLOAD_DREG, NFT_REG_1),
        _u32(NFTA_PAYLOAD_BASE, base),
        _u32(NFTA_PAYLOAD_OFFSET, offset),
        _u32(NFTA_PAYLOAD_LEN, length),
    )


def _cmp(value: bytes) -> bytes:
    return _expr(
        "cmp",
        _u32(NFTA_CMP_SREG, NFT_REG_1),
        _u32(NFTA_CMP_OP, NFT_CMP_EQ),
        _data(NFTA_CMP_DATA, value),
    )


def _range(low: int, high: int) -> bytes:
    return _expr(
        "range",
        _u32(NFTA_RANGE_SREG, NFT_REG_1),
        _u32(NFTA_RANGE_OP, NFT_RANGE_EQ),
        _data(NFTA_RANGE_FROM_DATA, bytes([low])),
        _data(NFTA_RANGE_TO_DATA, bytes([high])),
    )


def _verdict(code: int) -> bytes:
    verdict = _nest(NFTA_DATA_VERDICT, _u32(NFTA_VERDICT_CODE, code))
    return _expr(
        "immediate",
        _u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
        _nest(NFTA_IMMEDIATE_DATA, verdict),
    )


def _family(ipv6: bool) -> bytes:
    return _meta(NFT_META_NFPROTO) + _cmp(bytes([NFPROTO_IPV6 if ipv6 else NFPROTO_IPV4]))


def _icmp_types(ipv6: bool, low: int, high: int) -> bytes:
    """``meta nfproto F meta l4proto icmp[v6] icmp[v6] type low-high accept``."""
    proto = IPPROTO_ICMPV6 if ipv6 else IPPROTO_ICMP
    match = _range(low, high) if low != high else _cmp(bytes([low]))
    return (
        _family(ipv6)
        + _meta(NFT_META_L4PROTO)
        + _cmp(bytes([proto]))
        + _payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1)
        + match
        + _verdict(NF_ACCEPT)
    )


def _drop_to(vip: VipAddress) -> bytes:
    """``ip daddr VIP drop`` (``ip6 daddr``: offset 24, 16 bytes)."""
    ipv6 = isinstance(vip, IPv6Address)
    offset = 24 if ipv6 else 16
    return (
        _family(ipv6)
        + _payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len(vip.packed))
        + _cmp(vip.packed)
        + _verdict(NF_DROP)
    )


def rules(vips: Iterable[VipAddress]) -> list[bytes]:
    """Each rule's expression list (the module doc's order), for `vips`."""
    vips = sorted(set(vips), key=lambda ip: (ip.version, ip))
    found: list[bytes] = []
    if any(ip.version == 6 for ip in vips):
        found += [_icmp_types(True, 135, 136), _icmp_types(True, 1, 4)]
    if any(ip.version == 4 for ip in vips):
        found += [_icmp_types(False, 3, 3), _icmp_types(False, 11, 12)]
    return found + [_drop_to(vip) for vip in vips]


def _message(kind: int, flags: int, seq: int, attrs: bytes, family: int = NFPROTO_INET) -> bytes:
    subsys = (NFNL_SUBSYS_NFTABLES << 8) | kind
    return request(subsys, NLM_F_REQUEST | flags, seq, _NFGENMSG.pack(family, 0, 0) + attrs)


def batch(vips: Iterable[VipAddress], seq: int = 1) -> list[bytes]:
    """The transaction that makes table ``inet ipvsd`` guard `vips` (none: delete it).

    Messages in order, sequence numbers from `seq`: BATCH_BEGIN, NEWTABLE (so the
    DELTABLE after it cannot fail for a missing table), DELTABLE, then for any VIP
    NEWTABLE, NEWCHAIN, NEWRULE each, and BATCH_END. Every message but the batch
    markers asks for an ack.
    """
    table = _string(NFTA_TABLE_NAME, TABLE)
    body = [
        (NFT_MSG_NEWTABLE, NLM_F_CREATE, table),
        (NFT_MSG_DELTABLE, 0, table),
    ]
    found = rules(vips)
    if found:
        hook = _nest(
            NFTA_CHAIN_HOOK,
            _u32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_IN),
            attribute(NFTA_HOOK_PRIORITY, _BE32S.pack(PRIORITY)),
        )
        chain = (
            _string(NFTA_CHAIN_TABLE, TABLE)
            + _string(NFTA_CHAIN_NAME, CHAIN)
            + hook
            + _u32(NFTA_CHAIN_POLICY, NF_ACCEPT)
            + _string(NFTA_CHAIN_TYPE, "filter")
        )
        body += [(NFT_MSG_NEWTABLE, NLM_F_CREATE, table), (NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain)]
        where = _string(NFTA_RULE_TABLE, TABLE) + _string(NFTA_RULE_CHAIN, CHAIN)
        for exprs in found:
            attrs = where + _nest(NFTA_RULE_EXPRESSIONS, exprs)
            body.append((NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, attrs))
    subsys = _NFGENMSG.pack(0, 0, NFNL_SUBSYS_NFTABLES)
    out = [request(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, subsys)]
    for offset, (kind, flags, attrs) in enumerate(body, start=1):
        out.append(_message(kind, NLM_F_ACK | flags, seq + offset, attrs))
    out.append(request(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + len(body) + 1, subsys))
    return out


def _open() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
    )
    try:
        sock.bind((0, 0))
        sock.setsockopt(270, 10, 1)  # SOL_NETLINK, NETLINK_CAP_ACK
        sock.setsockopt(270, 11, 1)  # NETLINK_EXT_ACK
    except OSError:
        sock.close()
        raise
    return sock


def _answers(sock: socket.socket) -> list[tuple[int, int, str]]:
    """(seq, errno, reason) of every ack or error queued on `sock`."""
    found: list[tuple[int, int, str]] = []
    while True:
        try:
            data = sock.recv(_RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return found
        for message in messages(data):
            if message.kind == NLMSG_ERROR:
                code, text = error_of(message)
                found.append((message.seq, code, text))


def apply(vips: Iterable[VipAddress]) -> None:
    """Make table ``inet ipvsd`` drop what is addressed to `vips` (none: no table).

    Raises:
        KernelError: the kernel refused the transaction (nothing changed), or the
            socket failed; ``errno`` in `UNSUPPORTED`: this kernel cannot have it.
    """
    vips = frozenset(vips)
    what = f"nftables table inet {TABLE} ({len(vips)} VIPs)" if vips else f"delete table {TABLE}"
    try:
        with _open() as sock:
            parts = batch(vips)
            sock.send(b"".join(parts))
            answers = _answers(sock)
    except OSError as exc:
        raise _error(what, exc.errno or 0, "") from exc
    for _seq, code, text in answers:
        if code:
            raise _error(what, code, text)
    if len(answers) < len(parts) - 2:  # every message but the batch markers is acked
        raise KernelError(f"{what}: the kernel acked {len(answers)} of {len(parts) - 2}")


def _error(what: str, code: int, text: str) -> KernelError:
    reason = error_text(code, text)
    if code in _MISSING:
        reason = f"{_MISSING[code]}: {reason}"
    return KernelError(f"{what}: {reason}", errno=code, operation=what)


def table_exists() -> bool:
    """Whether table ``inet ipvsd`` exists (in the calling thread's namespace).

    Raises:
        KernelError: the socket failed, or the kernel answered with another error.
    """
    try:
        with _open() as sock:
            attrs = _string(NFTA_TABLE_NAME, TABLE)
            sock.send(_message(NFT_MSG_GETTABLE, NLM_F_ACK, 1, attrs))
            answers = _answers(sock)
    except OSError as exc:
        raise _error(f"get table {TABLE}", exc.errno or 0, "") from exc
    for _seq, code, text in answers:
        if code == errno.ENOENT:
            return False
        if code:
            raise _error(f"get table {TABLE}", code, text)
    return True
