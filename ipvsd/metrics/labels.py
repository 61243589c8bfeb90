"""Label names and values of the IPVS metrics, in one place.

The kernel-table metrics copy node_exporter's IPVS collector
(``collector/ipvs_linux.go``), which reads ``/proc/net/ip_vs`` through
prometheus/procfs, so that dashboards written for ``node_ipvs_*`` work after
dropping the ``node_`` prefix. Its label values, reproduced exactly:

============== ============================ ===============================
label          address/port service         fwmark service
============== ============================ ===============================
local_address  ``192.0.2.1``, ``2001:db8::1`` ``""``
               (IPv6 without brackets)
local_port     ``"80"`` (decimal)           ``"0"``
proto          ``"TCP"``, ``"UDP"``          ``"FWM"``
               (``"SCTP"``: same rule)
local_mark     ``""``                       the mark as the kernel prints it:
                                            ``%08X``, so mark 10 is
                                            ``"0000000A"``
remote_*       the real's address and decimal port, IPv6 without brackets
============== ============================ ===============================

``/proc/net/ip_vs`` prints ``FWM  %08X`` for fwmark services of both address
families, so node_exporter cannot tell an IPv4 from an IPv6 fwmark service with
the same mark: it sums the series whose labels collide. `IpvsExporter` does
the same.

``ipvsd_backend_up`` uses the same backend labels, built by the same function,
so it joins 1:1 with ``ipvs_backend_*``.
"""

from __future__ import annotations

from ipvsd.model import DestKey, ServiceKey

#: Labels of the per-backend series (node_exporter's order).
BACKEND_LABELS = (
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
)

#: Labels of the per-service series: the backend labels without ``remote_*``.
SERVICE_LABELS = ("local_address", "local_port", "proto", "local_mark")

ServiceLabels = tuple[str, str, str, str]
BackendLabels = tuple[str, str, str, str, str, str]


def service_labels(key: ServiceKey) -> ServiceLabels:
    """Label values of a service, in `SERVICE_LABELS` order.

    Args:
        key: the service.

    Returns:
        ``(local_address, local_port, proto, local_mark)`` as node_exporter
        spells them (see the module docstring).
    """
    if key.fwmark:
        return ("", "0", "FWM", f"{key.fwmark:08X}")
    return (str(key.address), str(key.port), key.protocol.name, "")


def backend_labels(key: ServiceKey, dest: DestKey) -> BackendLabels:
    """Label values of one real server of a service, in `BACKEND_LABELS` order.

    Args:
        key: the service.
        dest: the real server.

    Returns:
        ``(local_address, local_port, remote_address, remote_port, proto,
        local_mark)``.
    """
    local_address, local_port, proto, mark = service_labels(key)
    return (local_address, local_port, str(dest.address), str(dest.port), proto, mark)
