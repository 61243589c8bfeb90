"""Which instance a received VRRP packet is for, and whether it accepts it (pure).

One raw IPv4 socket per interface receives every IPv4 VRRP packet on it, v2
and v3 alike (both are IP protocol 112 to 224.0.0.18). The VRID picks the instance
(RFC 3768 §7.1 step 5 / RFC 5798 §7.1), and the *instance's* version picks
the codec: a v3 instance decodes with `ipvsd.vrrp.packet_v3` (checksum over
the pseudo-header with the packet's own source and destination), anything
else goes through the v2 codec exactly as before this module existed, so a
v2-only director drops and counts the same packets with the same reasons. A
packet of the other version is a `RejectReason.VERSION` either way
(keepalived: "wrong version. Received 3 and expect 2").

IPv6 (`accept6`): a raw IPv6 socket hands over the VRRP message without the
IPv6 header, with the hop limit and destination from ancillary data
(`vrrp.transport6.ReceivedPacket6`). Only VRRPv3 exists over IPv6, so the
message goes through `packet_v3.decode_message` with the packet's own
addresses (the checksum covers them) and `validate_v3`, with the IPv4 path's
reasons: hop limit 255 in multicast mode only (`ttl`; keepalived 2.2.7 sends
IPv6 unicast adverts with the kernel's default hop limit, 64, and does not
check it in unicast mode), ff02::12 as destination in multicast mode
(`unexpected_unicast`) and a non-multicast one in unicast mode
(`unexpected_multicast`: an unbound raw IPv6 socket also gets the group's
packets, docs/vrrp-ipv6.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ipvsd.errors import PacketError, RejectReason
from ipvsd.vrrp.machine import AdvertReceived
from ipvsd.vrrp.packet import Expectation, decode, ip_payload, validate
from ipvsd.vrrp.packet_v3 import VRRP_VERSION_3, ReceivedAdvertV3, decode_message, validate_v3
from ipvsd.vrrp.transport6 import ReceivedPacket6

_VRID_OFFSET = 1


class Receiver(Protocol):
    """What `accept` needs of an instance."""

    @property
    def version(self) -> int: ...

    @property
    def expectation(self) -> Expectation: ...


R = TypeVar("R", bound=Receiver)


def accept(ip_packet: bytes, instance_for: Callable[[int], R | None]) -> tuple[R, AdvertReceived]:
    """Decode and validate `ip_packet` for the instance `instance_for(vrid)` names.

    Returns:
        The instance and the machine event for it.

    Raises:
        PacketError: the packet is malformed, for no instance here, or one the
            instance must drop (`RejectReason`).
    """
    src, dst, ttl, message = ip_payload(ip_packet)
    if len(message) > _VRID_OFFSET:
        instance = instance_for(message[_VRID_OFFSET])
        if instance is not None and instance.version == VRRP_VERSION_3:
            advert = decode_message(message, src, dst)
            validate_v3(ReceivedAdvertV3(src, dst, ttl, advert), instance.expectation)
            return instance, AdvertReceived(src, advert.priority, advert.advert_int_s)
    received = decode(ip_packet)
    found = instance_for(received.advert.vrid)
    if found is None:
        raise PacketError(RejectReason.UNKNOWN_VRID, f"vrid {received.advert.vrid}")
    validate(received, found.expectation)
    return found, AdvertReceived(received.src, received.advert.priority)


def accept6(
    packet: ReceivedPacket6, instance_for: Callable[[int], R | None]
) -> tuple[R, AdvertReceived]:
    """`accept` for a packet of an IPv6 socket: VRRPv3 only (see the module doc).

    Raises:
        PacketError: as `accept`; a VRID with no IPv6 instance is `unknown_vrid`.
    """
    advert = decode_message(packet.message, packet.source, packet.destination)
    instance = instance_for(advert.vrid)
    if instance is None:
        raise PacketError(RejectReason.UNKNOWN_VRID, f"vrid {advert.vrid}")
    received = ReceivedAdvertV3(packet.source, packet.destination, packet.hop_limit, advert)
    validate_v3(received, instance.expectation)
    return instance, AdvertReceived(packet.source, advert.priority, advert.advert_int_s)
