"""The reference scenario with several directors, on a kernel with IPVS (issue 6).

Four layouts (`lab.reference.spec` has the addresses and the reasons):

- ``dr``: director1 .10 (priority 100) and director2 .20 (90) run ipvsd with
  VRRP instance VI_1 for VIP 192.168.1.200, nginx reals .30/.40 hold the VIP
  on lo, client .50, all on 192.168.1.0/24;
- ``nat``: the same front; reals 192.168.2.30/.40 behind the directors, their
  gateway 192.168.2.254 a second VIP (VI_2) in one sync group with VI_1;
- ``all-active``: three directors, six VIPs 192.168.1.201-.206, each
  director MASTER for two, whose backups are two different directors;
- ``dualstack``: ``dr`` plus fd00:1::/64 on the same segment, IPv6 VIP
  fd00:1::200 (VI_6, VRRPv3) in one sync group with VI_1, and an IPv6 DR
  web service [fd00:1::200]:80; nginx listens on [::]:80 too.

DR and NAT run the IPVS connection-sync daemon (``ipvs.sync_daemon``
following VI_1). Each director has its metrics on 127.0.0.1:9477 inside its
namespace (on its management address with ``monitor=True``) and its control
socket at ``WORKDIR/DIRECTOR.sock``. Every real runs
nginx on port 80 (page and ``X-Real-Server`` header naming it, access log
``WORKDIR/REAL/access.log``) and a line-echo server on port 9000 (dr, nat).

API (all blocking; run inside ``python -m lab.uml`` when the host lacks IPVS)::

    from lab.reference import ReferenceLab

    with ReferenceLab("dr", workdir) as lab:      # close(): processes by PID, namespaces
        lab.build()                               # optional: start() builds if needed
        lab.start()                               # nginx, echo, ipvsd x N; waits for the
                                                  # expected MASTERs and healthy reals
        lab.master()           -> "director1"     # holder of a VIP (default lab.vip)
        lab.holders()          -> {vip: director | None}
        lab.wait_master("director2", timeout=10)
        lab.curl(50)           -> [Reply(vip, status, real), ...]   # one curl process
        lab.curl(5, lab.vips)                     # 5 per VIP (all-active, dualstack)
        lab.access_counts(at_least=50) -> Counter({"real1": 25, "real2": 25})
                                                  # client lines of the nginx logs
        lab.access_counts(clients=[CLIENT6])      # only the IPv6 ones (dualstack)
        lab.status("director1")  -> dict          # the status JSON, over the socket
        lab.ipvsd("director1", "status")          # the CLI itself (CompletedProcess)
        lab.weights("director1") -> {"real1": 1, "real2": 0}  # kernel weights now
        lab.metrics("director1") -> str           # /metrics exposition text
        lab.connections("director2") -> [IpvsConnection]  # ipvsadm -Lnc (synced too)
        lab.link_down("director1"); lab.link_up("director1")  # eth1 by default
        lab.stop_nginx("real1"); lab.start_nginx("real1")
        conn = lab.long_connection()              # echo via VIP:9000; conn.real,
        conn.alive() -> bool; conn.exchange("x")  # -> "real1 x" | None
        report = lab.failover_gap(lambda: lab.link_down("director1"))
        report.gap().length, report.recovered_after(), report.summary()
        lab.exec("client", ["ip", "neigh"])       # any command on a host, by name

    with ReferenceLab("dr", monitor=True) as lab:  # + mgmt segment and a monitor host
        lab.start()
        prometheus = lab.start_prometheus()       # lab.prometheus.PrometheusServer
        prometheus.values("ipvsd_vrrp_state")     # -> {"director1": 2.0, "director2": 1.0}

Hosts are named ``director1..3``, ``real1``, ``real2``, ``client`` (and ``monitor``);
``lab.directors[name]`` (ns, address, priorities, daemon, socket) and
``lab.reals[name]`` (ns, address, access_log, directory) give the details.
`status_json`, `service_of`, `metric_values` and `backend_metric` read the
``ipvsd status --json`` output and the metrics text.
"""

from lab.reference.build import Director
from lab.reference.client import Attempt, FailoverReport, Gap, LongConnection, Reply
from lab.reference.lab import ReferenceLab
from lab.reference.observe import (
    IpvsConnection,
    backend_metric,
    metric_values,
    service_of,
    status_json,
)
from lab.reference.spec import (
    ADVERT_INT,
    ALL_ACTIVE_VIPS,
    CLIENT,
    CLIENT6,
    ECHO_PORT,
    NAT_GATEWAY,
    VARIANTS,
    VIP,
    VIP6,
    WEB_PORT,
    LabSpec,
    Variant,
    endpoint,
    spec_for,
)

__all__ = [
    "ADVERT_INT",
    "ALL_ACTIVE_VIPS",
    "CLIENT",
    "CLIENT6",
    "ECHO_PORT",
    "NAT_GATEWAY",
    "VARIANTS",
    "VIP",
    "VIP6",
    "WEB_PORT",
    "Attempt",
    "Director",
    "FailoverReport",
    "Gap",
    "IpvsConnection",
    "LabSpec",
    "LongConnection",
    "ReferenceLab",
    "Reply",
    "Variant",
    "backend_metric",
    "endpoint",
    "metric_values",
    "service_of",
    "spec_for",
    "status_json",
]
