"""Importers: an existing load-balancer configuration in, an ipvsd config out.

``ipvsd import keepalived FILE`` (`ipvsd.importers.keepalived`) and ``ipvsd
import ipvsadm [FILE]`` (`ipvsd.importers.ipvsadm`). Each converter is pure
(text or a parsed tree in, a `ipvsd.importers.report.Conversion` out); the
files are read by `ipvsd.importers.sources` and the command line is
`ipvsd.importers.command`.

Modules:

- ``keepalived_parse``: keepalived.conf text → a tree of directives.
- ``sources``: reads the files, expands keepalived's ``include``.
- ``keepalived``: the tree → config data (global_defs, sync daemon, timeouts),
  with ``keepalived_vrrp`` (instances, sync groups), ``keepalived_lvs``
  (virtual servers, reals), ``keepalived_groups`` (virtual_server_group,
  service keys), ``keepalived_checks``
  (checkers), ``keepalived_keywords`` (what is reported, and why) and
  ``keepalived_ledger`` (every directive converted or reported).
- ``ipvsadm``: ``ipvsadm -Sn`` rules → config data.
- ``settle``: drops what ipvsd's validation refuses, so the output passes
  ``ipvsd check-config``.
- ``emit``: config data → readable YAML with comments.
- ``report``: the result types (`Conversion`, `Reported`, `SourceError`).
"""
