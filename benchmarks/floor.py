"""The in-process floor for one session: run the app, serialise its document.

Any server that runs the app per session (both do) spends at least this much
CPU per session, so "server CPU per session / floor" says how much a server
adds on top: HTTP, token, websocket, framing, bookkeeping.

The floor is taken in this (the load generator's) process, between
measurements, with the same interpreter and Bokeh the servers use.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bokeh.command.util import build_single_handler_application


def floor_cpu_seconds(app: Path, repeats: int, warmup: int = 3) -> float:
    """Median CPU seconds of ``create_document()`` + ``doc.to_json()`` for ``app``."""
    application = build_single_handler_application(str(app))
    samples = []
    for i in range(warmup + repeats):
        start = time.process_time()
        doc = application.create_document()
        doc.to_json()
        elapsed = time.process_time() - start
        if i >= warmup:  # the first runs pay for imports and caches
            samples.append(elapsed)
    return statistics.median(samples)
