"""One NAT director running ipvsd over the reference reals, for the issue 13 kernel tests.

`one_director` builds `lab.scenario.nat_scenario` (with a sorry server if
asked), starts the real servers, writes the config that `config_of` makes
from a file path the test watches (a log its commands or checks append to),
and starts ipvsd on the director; everything is undone on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.daemon import DaemonProcess
from lab.netns import Topology
from lab.scenario import Scenario, nat_scenario

Lab = tuple[Scenario, DaemonProcess, Path]
"""The scenario, the running daemon and the file the test watches."""


@contextmanager
def one_director(
    workdir: Path, config_of: Callable[[Path], str], *, sorry: str | None = None
) -> Iterator[Lab]:
    """A running director; `config_of(watched)` is its config."""
    watched = workdir / "watched.log"
    with Topology() as topo:
        scenario = nat_scenario(topo, workdir, sorry=sorry)
        scenario.start_real_servers()
        path = workdir / "ipvsd.yaml"
        path.write_text(config_of(watched))
        daemon = DaemonProcess(topo, scenario.director, path, workdir / "ipvsd.log")
        daemon.start()
        yield scenario, daemon, watched
