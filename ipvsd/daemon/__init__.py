"""The composition root: the only package that wires the domains together.

- `root` — `Daemon`: builds the components from the config, runs them in a
  task group, handles signals, starts and stops in the safe order.
- `endpoints` — the control socket and /metrics, moved new-before-old by a reload.
- `view` — what the control socket sees of the daemon (status, drain,
  undrain, ready, reload).
- `status` — builds the typed status document from the config, a kernel
  dump, health and the VRRP instances.
- `reload` — the reload policy: what a new config may change and when it is
  refused.
- `ports` — the Protocols of the kernel-facing components the daemon is
  given, so tests run it in-process over fakes.
- `lock` — one daemon per network namespace, locked before any kernel write.
- `admin_state` — admin drains kept on disk across restarts.
- `components` — what runs now, as the view and the reload policy see it.
"""

from ipvsd.daemon.root import Daemon, run, sync_target

__all__ = ["Daemon", "run", "sync_target"]
