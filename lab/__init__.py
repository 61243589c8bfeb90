"""Test-bed tooling for ipvsd (not part of the installed package).

- :mod:`lab.uml` runs a command on a kernel with IPVS: the running kernel when it
  has IPVS, otherwise a User-Mode Linux kernel booted for that one command.
- :mod:`lab.qemu` runs a command on Debian's own kernel under qemu, which has
  IPVS *and* nf_tables inet (UML lacks the latter): accept_mode's kernel test.
- :mod:`lab.netns` builds throw-away network topologies (namespaces, bridges,
  veth pairs) with iproute2 and tears them down again.
- :mod:`lab.reference` runs the reference scenario with several directors
  (DR, NAT, All-Active: ipvsd + VRRP on each, nginx reals, a client) and
  measures failovers; the demo and the kernel tier's failover tests use it.
"""
