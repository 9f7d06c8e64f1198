"""The in-process floor for one session: run the app, serialise its document.

Any server that runs the app per session (both do) spends at least this much
CPU per session, so "server CPU per session / floor" says how much a server
adds on top: HTTP, token, websocket, framing, bookkeeping.

The floor is taken in a fresh interpreter with the same Python and Bokeh the
server runs: for docsyncd that includes its leaner Bokeh internals
(docsyncd/bokeh_tuning.py, on by default), so that the ratio measures the
server's own overhead and not the speed of Bokeh. It is a mean, like the
server's figure (CPU over a window / sessions in it), so both include the
garbage collector's passes that a median would leave out.

    python -m benchmarks.floor APP REPEATS [--bokeh-tuning]   # prints CPU seconds
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WARMUP = 3  # the first runs pay for imports and caches


def floor_cpu_seconds(app: Path, repeats: int, bokeh_tuning: bool) -> float:
    """Mean CPU seconds of ``create_document()`` + ``doc.to_json()`` for ``app``, in a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks.floor", str(app), str(repeats)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command + (["--bokeh-tuning"] if bokeh_tuning else []), cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


def measure(app: Path, repeats: int) -> float:
    from bokeh.command.util import build_single_handler_application

    application = build_single_handler_application(str(app))
    for _ in range(WARMUP):
        application.create_document().to_json()
    start = time.process_time()
    for _ in range(repeats):
        application.create_document().to_json()
    return (time.process_time() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU seconds to run an app and serialise its document.")
    parser.add_argument("app", type=Path)
    parser.add_argument("repeats", type=int)
    parser.add_argument("--bokeh-tuning", action="store_true", help="with docsyncd's leaner Bokeh internals")
    args = parser.parse_args()
    if args.bokeh_tuning:
        from docsyncd import bokeh_tuning

        bokeh_tuning.apply()
    print(measure(args.app, args.repeats))


if __name__ == "__main__":
    main()
