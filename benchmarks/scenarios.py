"""The benchmark scenarios: what each one does to a running server and what it reports.

A scenario gets a freshly started server and returns one number per figure.
Figures measured from the server's side (CPU from /proc, RSS) are the ones to
trust on a noisy machine; wall-clock figures (rates, latencies) are reported
too, and compared only within one run (see ``benchmarks.run``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from .floor import floor_cpu_seconds
from .loadgen import BokehConnection, RowCounter, SyncedDocument, round_trip, run_pool, visit
from .servers import CLOCK_TICKS, ServerProcess

class ScenarioError(Exception):
    """The server did not do what the scenario relies on (rows never arrived, points went missing)."""


#: Seconds to let a server finish the work a scenario caused before reading /proc.
SETTLE = 0.2


@dataclass(frozen=True)
class Sizes:
    """How much load each scenario applies (one preset per purpose below)."""

    warmup: int = 3  # visits before measuring: first sessions pay for lazy imports
    worker_sessions: int = 200  # session_open_workers: visits in the window
    sessions: int = 100
    concurrency: int = 8
    floor_repeats: int = 15  # before the window, and again after
    round_trips: int = 100
    idle_sessions: int = 100
    fanout_clients: int = 20
    shared_clients: int = 50
    fanout_seconds: float = 5.0
    big_visits: int = 3


FULL = Sizes()
QUICK = Sizes(worker_sessions=80, sessions=40, floor_repeats=8, round_trips=50, idle_sessions=40, fanout_clients=10,
              shared_clients=20, fanout_seconds=2.0, big_visits=2)
SMOKE = Sizes(warmup=1, worker_sessions=4, sessions=2, concurrency=2, floor_repeats=2, round_trips=2, idle_sessions=2,
              fanout_clients=2, shared_clients=2, fanout_seconds=0.5, big_visits=1)


@dataclass(frozen=True)
class Target:
    """A goal for docsyncd: on the docsyncd/bokeh ratio, or on docsyncd's own value."""

    bound: float
    on_ratio: bool = True
    #: the figure must reach the bound (≥), not stay under it (≤)
    at_least: bool = False
    #: the figure must equal the bound (to three significant digits)
    exactly: bool = False

    def __str__(self) -> str:
        sign = "=" if self.exactly else "≥" if self.at_least else "≤"
        return f"{sign} {self.bound:g}×" if self.on_ratio else f"docsyncd {sign} {self.bound:g}"

    def met(self, ratio: float | None, docsyncd: float | None) -> bool | None:
        value = ratio if self.on_ratio else docsyncd
        if value is None:
            return None
        if self.exactly:
            return round(value, 2) == round(self.bound, 2)
        return value >= self.bound if self.at_least else value <= self.bound


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    target: Target | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    what: str
    figures: tuple[Figure, ...]
    run: Callable[[ServerProcess, Sizes], Awaitable[dict[str, float]]]
    #: servers to compare instead of docsyncd and bokeh (``servers.VARIANTS`` or kinds), in round order;
    #: ratios are taken against ``variants[1]`` and targets apply to ``variants[0]``
    variants: tuple[str, ...] = ()


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e3


async def close_all(conns: list[BokehConnection]) -> None:
    await asyncio.gather(*(conn.close() for conn in conns))


async def open_session(server: ServerProcess, session_id: str | None = None) -> BokehConnection:
    """A visit whose websocket stays open."""
    conn, _ = await visit(server.address, session_id)
    return conn


async def warm_up(server: ServerProcess, visits: int) -> None:
    """Open and close a few sessions so lazy imports and caches are not measured."""
    for _ in range(visits):
        await (await open_session(server)).close()


async def session_open(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """N visits (page, websocket, ACK, PULL-DOC) at concurrency C, each closed when done."""
    await warm_up(server, sizes.warmup)
    # half the floor samples before the window and half after, so that the
    # machine's drift during the window is in both numerator and denominator
    floor_before = floor_cpu_seconds(server.app, sizes.floor_repeats, server.bokeh_tuning)

    async def one(_: int) -> float:
        start = time.perf_counter()
        conn, _ = await visit(server.address)
        latency = time.perf_counter() - start
        await conn.close()
        return latency

    cpu0, start = server.cpu_seconds(), time.perf_counter()
    latencies = await run_pool(sizes.sessions, sizes.concurrency, one)
    wall = time.perf_counter() - start
    await asyncio.sleep(SETTLE)
    cpu = (server.cpu_seconds() - cpu0) / sizes.sessions
    floor = (floor_before + floor_cpu_seconds(server.app, sizes.floor_repeats, server.bokeh_tuning)) / 2
    return {
        "rate": sizes.sessions / wall,
        "p50": percentile_ms(latencies, 50),
        "p99": percentile_ms(latencies, 99),
        "cpu": cpu * 1e3,
        "floor": floor * 1e3,
        "over_floor": cpu / floor,
    }


async def round_trips(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """Slider value in a PATCH-DOC → the PATCH-DOC with the Div text Python set, one at a time."""
    conn, reply = await visit(server.address)
    try:
        synced = SyncedDocument(reply)
        slider, div = synced.model("slider"), synced.model("div")
        for value in range(1, sizes.warmup + 1):
            await round_trip(conn, synced, slider, div, value)
        cpu0 = server.cpu_seconds()
        first = sizes.warmup + 1
        times = [await round_trip(conn, synced, slider, div, value)
                 for value in range(first, first + sizes.round_trips)]
        await asyncio.sleep(SETTLE)
        cpu = (server.cpu_seconds() - cpu0) / sizes.round_trips
    finally:
        await conn.close()
    return {"p50": percentile_ms(times, 50), "p99": percentile_ms(times, 99), "cpu": cpu * 1e3}


async def idle_memory(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """RSS growth while N sessions sit open with their websockets connected."""
    await warm_up(server, sizes.warmup)
    await asyncio.sleep(SETTLE)
    rss0 = server.rss_bytes()
    conns = await run_pool(sizes.idle_sessions, sizes.concurrency, lambda _: open_session(server))
    try:
        await asyncio.sleep(1.0)
        rss1 = server.rss_bytes()
    finally:
        await close_all(conns)
    return {"per_session": (rss1 - rss0) / sizes.idle_sessions / 1024, "baseline": rss0 / 2**20}


async def _fanout(server: ServerProcess, sizes: Sizes, clients: int, session_id: str | None) -> dict[str, float]:
    """Rows delivered to ``clients`` connections over a fixed window, and server CPU for them."""
    conns = await run_pool(clients, sizes.concurrency, lambda _: open_session(server, session_id))
    counters = [RowCounter(conn) for conn in conns]
    try:
        await asyncio.sleep(0.5)  # every connection is receiving before the window opens
        rows0, cpu0, start = sum(c.rows for c in counters), server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(sizes.fanout_seconds)
        rows1, cpu1, end = sum(c.rows for c in counters), server.cpu_seconds(), time.perf_counter()
    finally:
        stopped = await asyncio.gather(*(counter.stop() for counter in counters), return_exceptions=True)
        await close_all(conns)
    failed = [exc for exc in stopped if isinstance(exc, BaseException)]
    if failed:  # a connection dropped during the window: its rows are missing from the count
        raise failed[0]
    rows = rows1 - rows0
    if rows == 0:
        raise ScenarioError(f"no streamed rows reached {clients} clients in {sizes.fanout_seconds} s")
    return {"rate": rows / (end - start), "cpu": (cpu1 - cpu0) / rows * 1000 * 1e3}


async def fanout_separate(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """Each client on its own session, each session streaming from its own 50 ms callback."""
    return await _fanout(server, sizes, sizes.fanout_clients, None)


async def fanout_shared(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """All clients on one session (``?bokeh-session-id=shared``): one callback, fanned out."""
    return await _fanout(server, sizes, sizes.shared_clients, "shared")


BIG_POINTS = 100_000


async def large_doc(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """Visits to the 100k-point app: time from GET to the whole PULL-DOC-REPLY, bytes received."""
    conn, reply = await visit(server.address)  # warm-up, and check that all points arrived
    await conn.close()
    points = len(SyncedDocument(reply).model("source").data["x"])
    if points != BIG_POINTS:
        raise ScenarioError(f"document carried {points} points, expected {BIG_POINTS}")
    times, wire, payload, cpus = [], [], [], []
    for _ in range(sizes.big_visits):
        cpu0, start = server.cpu_seconds(), time.perf_counter()
        conn, _ = await visit(server.address)
        times.append(time.perf_counter() - start)
        wire.append(conn.page_bytes + conn.traffic.raw_in)
        payload.append(conn.traffic.payload_in)
        await conn.close()
        await asyncio.sleep(SETTLE)
        cpus.append(server.cpu_seconds() - cpu0)
    return {"time": percentile_ms(times, 50), "wire": float(np.median(wire)) / 1024,
            "payload": float(np.median(payload)) / 1024, "cpu": float(np.median(cpus)) * 1e3}


async def session_open_workers(server: ServerProcess, sizes: Sizes) -> dict[str, float]:
    """session_open against one or several server processes: sessions/s, and documents built per session.

    Every visit's session id comes from its token; the app appends one line
    per document it builds (apps/session_count.py), so documents per session
    is the number of lines naming the window's sessions over their number,
    the same count for every server.
    """
    from bokeh.util.token import get_session_id

    # Warm every process (each imports on its first session), at the scenario's concurrency.
    warm = await run_pool(max(sizes.warmup * 2, sizes.concurrency), sizes.concurrency,
                          lambda _: open_session(server))
    await close_all(warm)

    async def one(_: int) -> tuple[float, str]:
        start = time.perf_counter()
        conn, _ = await visit(server.address)
        latency = time.perf_counter() - start
        await conn.close()
        return latency, get_session_id(conn.token)

    busy0, own0 = machine_busy_seconds(), time.process_time()
    cpu0, start = server.tree_cpu_seconds(), time.perf_counter()
    results = await run_pool(sizes.worker_sessions, sizes.concurrency, one)
    wall = time.perf_counter() - start
    busy, own, server_cpu = machine_busy_seconds() - busy0, time.process_time() - own0, server.tree_cpu_seconds() - cpu0
    await asyncio.sleep(SETTLE)
    cpu = (server.tree_cpu_seconds() - cpu0) / sizes.worker_sessions
    ids = {session_id for _, session_id in results}
    if len(ids) != sizes.worker_sessions:
        raise ScenarioError(f"{sizes.worker_sessions} visits made {len(ids)} distinct sessions")
    built = sum(1 for session_id in server.builds() if session_id in ids)
    latencies = [latency for latency, _ in results]
    return {
        "rate": sizes.worker_sessions / wall,
        "docs": built / len(ids),
        "p50": percentile_ms(latencies, 50),
        "cpu": cpu * 1e3,
        "processes": float(len(server.pids())),
        # CPU the rest of the machine used meanwhile: a busy neighbour takes the core a second process needs
        "others": max(0.0, busy - own - server_cpu) / wall,
    }


def machine_busy_seconds() -> float:
    """CPU seconds all processes spent since boot (the ``cpu`` line of /proc/stat, everything but idle and iowait)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("session_open", "session_app.py", "GET page → websocket → ACK → PULL-DOC, then close", (
        Figure("rate", "sessions/s (wall)"),
        Figure("p50", "latency p50 (ms)"),
        Figure("p99", "latency p99 (ms)"),
        Figure("cpu", "server CPU per session (ms)"),
        Figure("floor", "floor: create_document + to_json, no server, same Bokeh (ms)"),
        Figure("over_floor", "server CPU per session / floor", Target(1.05, on_ratio=False)),
    ), session_open),
    Scenario("round_trip", "slider_div.py", "PATCH-DOC slider.value → PATCH-DOC div.text", (
        Figure("p50", "round trip p50 (ms)", Target(0.1)),
        Figure("p99", "round trip p99 (ms)"),
        Figure("cpu", "server CPU per round trip (ms)", Target(0.8)),
    ), round_trips),
    Scenario("idle_memory", "session_app.py", "N open sessions, idle", (
        Figure("per_session", "RSS per open session (KiB)", Target(0.9)),
        Figure("baseline", "RSS before the sessions (MiB)"),
    ), idle_memory),
    Scenario("fanout_separate", "stream.py", "N clients, one session each, 50 ms stream callback", (
        Figure("rate", "rows/s delivered (wall)"),
        Figure("cpu", "server CPU per 1000 rows (ms)", Target(0.7)),
    ), fanout_separate),
    Scenario("fanout_shared", "stream.py", "N connections on one shared session", (
        Figure("rate", "rows/s delivered (wall)"),
        Figure("cpu", "server CPU per 1000 rows (ms)", Target(0.4)),
    ), fanout_shared),
    Scenario("large_doc", "big.py", f"{BIG_POINTS // 1000}k-point scatter, GET → PULL-DOC-REPLY", (
        Figure("time", "time to document (ms)", Target(0.8)),
        Figure("wire", "bytes received, page + websocket, raw (KiB)", Target(1.0)),
        Figure("payload", "websocket message payloads received, after inflation (KiB)"),
        Figure("cpu", "server CPU per visit (ms)"),
    ), large_doc),
    Scenario("session_open_workers", "session_count.py",
             "session_open, by docsyncd --workers 2, docsyncd (one process) and bokeh serve --num-procs 2", (
        Figure("rate", "sessions/s (wall)", Target(1.7, at_least=True)),
        Figure("docs", "documents built per session", Target(1.0, on_ratio=False, exactly=True)),
        Figure("p50", "latency p50 (ms)"),
        Figure("cpu", "server CPU per session, all processes (ms)"),
        Figure("processes", "server processes"),
        Figure("others", "other processes' CPU during the window (cores)"),
    ), session_open_workers, variants=("docsyncd-w2", "docsyncd", "bokeh-np2")),
]}
