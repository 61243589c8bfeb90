"""ipvsd: one daemon per load-balancer director (IPVS over netlink, VRRPv2, health checks)."""

__version__ = "0.1.0"
