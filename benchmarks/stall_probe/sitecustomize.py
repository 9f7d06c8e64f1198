"""Stall probe: log every asyncio callback that holds a process's main thread for long, with where it was.

Diagnostics for the capacity benchmark, not part of any server.  Python
imports ``sitecustomize`` at start-up from ``PYTHONPATH``, so

    PYTHONPATH=benchmarks/stall_probe STALL_LOG=/tmp/stalls.log python -m benchmarks.run --only capacity ...

loads it in the servers (docsyncd on the asyncio reactor, bokeh serve on
Tornado's asyncio loop) and in the load generator.  Without ``STALL_LOG`` it
does nothing.

Each callback the event loop runs on the main thread (``asyncio.Handle._run``:
a Twisted read, write or timer batch, a Tornado callback) is timed in thread
CPU time, so a process merely waiting for a core on a busy machine is not
counted.  One over ``STALL_MS`` (default 5) is written as

    STALL <unix time> <pid> <cpu ms> wall=<ms> <argv>
      x<samples>: <innermost frame> <- <caller> <- ...

with the stacks a watchdog thread sampled every 2 ms while it ran (sampling
needs the GIL, so frames that release it, system calls, are over-represented:
read the stacks for the code path, not for where time went).  Every full
garbage collection and every young one over 2 ms is written as
``GC <unix time> <pid> gen=<n> <ms> collected=<n> <argv>``.
"""

import collections
import gc
import os
import sys
import threading
import time

PATH = os.environ.get("STALL_LOG")


def _frames(frame, depth=24):
    names = []
    while frame is not None and len(names) < depth:
        code = frame.f_code
        names.append(f"{code.co_filename.split('site-packages/')[-1]}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " <- ".join(names)


def _install(path):
    import asyncio.events

    limit = float(os.environ.get("STALL_MS", "5")) / 1e3
    out = open(path, "a", buffering=1)
    main = threading.main_thread().ident
    clock = time.pthread_getcpuclockid(main)
    pid, argv = os.getpid(), " ".join(sys.argv)[:100]
    running = {"cpu": None, "samples": []}
    run = asyncio.events.Handle._run

    def timed_run(handle):
        if threading.get_ident() != main:
            return run(handle)
        running["samples"] = []
        wall, running["cpu"] = time.perf_counter(), time.thread_time()
        try:
            return run(handle)
        finally:
            cpu, running["cpu"] = time.thread_time() - running["cpu"], None
            if cpu > limit:
                out.write(f"STALL {time.time():.3f} {pid} {cpu * 1e3:.1f} wall={(time.perf_counter() - wall) * 1e3:.1f} "
                          f"{argv}\n")
                for stack, n in collections.Counter(running["samples"]).most_common(3):
                    out.write(f"  x{n}: {stack}\n")

    def watch():
        while True:
            time.sleep(0.002)
            started = running["cpu"]
            if started is not None and time.clock_gettime(clock) - started > 0.003:
                frame = sys._current_frames().get(main)
                if frame is not None:
                    running["samples"].append(_frames(frame))

    collecting = {}

    def on_gc(phase, info):
        if phase == "start":
            collecting["t"] = time.perf_counter()
        elif "t" in collecting:
            took = time.perf_counter() - collecting.pop("t")
            if info["generation"] == 2 or took > 0.002:
                out.write(f"GC {time.time():.3f} {pid} gen={info['generation']} {took * 1e3:.1f} "
                          f"collected={info['collected']} {argv}\n")

    asyncio.events.Handle._run = timed_run
    gc.callbacks.append(on_gc)
    threading.Thread(target=watch, name="stall-probe", daemon=True).start()


if PATH:
    _install(PATH)
