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
- `early` — the first thing ``ipvsd run`` does: the lock, then stale VIPs removed
  before the rest is imported.
- `admin_state` — admin drains kept on disk across restarts.
- `components` — what runs now, as the view and the reload policy see it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipvsd.daemon.root import Daemon, run, sync_target

__all__ = ["Daemon", "run", "sync_target"]


def __getattr__(name: str) -> Any:
    # Lazily: `ipvsd run` takes the lock and removes stale VIPs (`early`, `lock`)
    # before the root and everything it wires are imported.
    if name in __all__:
        from ipvsd.daemon import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
