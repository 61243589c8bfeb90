"""Run ``ipvsd`` with a sampler of event-loop stalls (diagnostics for bench.advert_lateness).

py-spy is not available, so this is a poor man's one, inside the daemon's
process: ``python -m bench.loop_stall_probe run --config ...`` is
``python -m ipvsd run --config ...`` plus

- a heartbeat callback on the event loop, re-armed every 5 ms;
- a watchdog thread that, whenever the heartbeat is more than
  ``IPVSD_STALL_THRESHOLD`` seconds late (default 0.02), samples the stack of
  every thread (``sys._current_frames``) every 5 ms while the stall lasts and
  appends one JSON line per sample to ``IPVSD_STALL_OUT``.

A stalled loop thread is either running Python for too long (its stack shows
where) or waiting for the GIL that another thread holds (its stack is then at
a call that released the GIL, and the other threads' stacks show who had it).
The daemon's code is not changed; only `asyncio.run` is wrapped.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

HEARTBEAT_S = 0.005
POLL_S = 0.005
MAX_SAMPLES = 50_000


def _stack(frame: Any, depth: int = 14) -> list[str]:
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        path = code.co_filename
        short = path.split("/site-packages/")[-1].split("/work/main/")[-1]
        out.append(f"{short}:{frame.f_lineno}:{code.co_name}")
        frame = frame.f_back
    return out


def _watch(state: dict[str, float], main_ident: int, threshold: float, out_path: str) -> None:
    names: dict[int | None, str] = {}
    written = 0
    with open(out_path, "a", buffering=1) as out:
        while written < MAX_SAMPLES:
            time.sleep(POLL_S)
            late = time.monotonic() - state["beat"] - HEARTBEAT_S
            if late <= threshold:
                continue
            frames = sys._current_frames()
            me = threading.get_ident()
            if len(names) != threading.active_count():
                names = {t.ident: t.name for t in threading.enumerate()}
            sample = {
                "t": time.time(),
                "late": round(late, 4),
                "main": _stack(frames.get(main_ident)),
                "others": {
                    names.get(ident, str(ident)): _stack(frame, 6)
                    for ident, frame in frames.items()
                    if ident not in (main_ident, me)
                },
            }
            out.write(json.dumps(sample) + "\n")
            written += 1


def main() -> int:
    from ipvsd.cli import main as cli_main

    threshold = float(os.environ.get("IPVSD_STALL_THRESHOLD", "0.02"))
    out_path = os.environ["IPVSD_STALL_OUT"]
    real_run = asyncio.run

    def run(coro: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
        async def wrapper() -> Any:
            loop = asyncio.get_running_loop()
            state = {"beat": time.monotonic()}

            def beat() -> None:
                state["beat"] = time.monotonic()
                loop.call_later(HEARTBEAT_S, beat)

            loop.call_soon(beat)
            watchdog = threading.Thread(
                target=_watch,
                args=(state, threading.get_ident(), threshold, out_path),
                name="stall-probe",
                daemon=True,
            )
            watchdog.start()
            return await coro

        return real_run(wrapper(), **kwargs)

    asyncio.run = run  # type: ignore[assignment]
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
