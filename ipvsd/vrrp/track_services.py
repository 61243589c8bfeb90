"""Tracked services: a VRRP instance's priority follows a service's quorum.

An instance's ``track_services`` entry counts like a tracked script whose
"succeeds" is "the service has quorum" (``ipvsd.health.quorum``): weight > 0
is added while it has quorum, < 0 while it has not, and 0 puts the instance
in FAULT while it has not. So the router hands each tracked service to the
machine as a script named ``service SERVICE`` (`script_name`), with its
weight, and `ServiceQuorumFeed` tells the instances that track a service its
quorum as a script state: True with quorum, False without, None before the
first computation (which, as for a script, adds nothing, and with weight 0
means FAULT). Status shows these entries with the tracked scripts.

The health manager publishes each quorum it computes (first computation and
every change); the feed keeps the last one, so an instance that starts
tracking a service hears its state at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ipvsd.model import ServiceKey

Listener = Callable[[str, bool | None], None]
"""``listener(script_name, up)``: the `ipvsd.vrrp.instance.VrrpInstance.script_changed` shape."""


def script_name(key: ServiceKey) -> str:
    """The name a tracked service goes by among the tracked scripts."""
    return f"service {key}"


class ServiceQuorumFeed:
    """The last quorum of every service, and who listens to which."""

    def __init__(self) -> None:
        self._up: dict[ServiceKey, bool | None] = {}
        self._listeners: dict[ServiceKey, list[Listener]] = {}

    def publish(self, key: ServiceKey, up: bool | None) -> None:
        """The service's quorum is `up` now (None: not computed, or no longer configured)."""
        if self._up.get(key) == up and key in self._up:
            return
        self._up[key] = up
        for listener in list(self._listeners.get(key, ())):
            listener(script_name(key), up)

    def subscribe(self, key: ServiceKey, listener: Listener) -> Callable[[], None]:
        """Tell `listener` the service's quorum now and at every change; returns the
        unsubscribe call."""
        listeners = self._listeners.setdefault(key, [])
        listeners.append(listener)
        listener(script_name(key), self._up.get(key))

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe
