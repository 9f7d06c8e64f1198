"""Smoke test for benchmarks/: each scenario once, at tiny size, against each server.

Benchmarks are not tests and CI does not run them; this only keeps them
working (apps load, the load generator still speaks the protocol both servers
speak, every figure comes out as a number). Servers are shared per app to stay
well under a minute. docsyncd's cases skip until its twistd plugin can load.
"""

import asyncio
import contextlib
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks` lives at the repo root

from benchmarks.report import RunResults, markdown_table  # noqa: E402
from benchmarks.scenarios import SCENARIOS, SMOKE  # noqa: E402
from benchmarks.servers import KINDS, base_kind, docsyncd_missing, running_server  # noqa: E402

pytestmark = pytest.mark.timeout(120)
each_server = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture(scope="module")
def server_for(tmp_path_factory):
    """A function (kind, app) → running server, started on first use, stopped after the module."""
    log_dir = tmp_path_factory.mktemp("benchmark-logs")
    started = {}
    with contextlib.ExitStack() as stack:
        def get(kind, app):
            if base_kind(kind) == "docsyncd" and (reason := docsyncd_missing()):
                pytest.fail(f"docsyncd not available: {reason}")
            if (kind, app) not in started:
                started[kind, app] = stack.enter_context(running_server(kind, app, log_dir))
            return started[kind, app]

        yield get


def run_once(server_for, kind, name):
    """Run scenario ``name`` once at SMOKE size; check it reported every figure as a finite number."""
    scenario = SCENARIOS[name]
    server = server_for(kind, scenario.app)
    try:
        # On a thread of its own: once a browser test ran, Playwright's sync API
        # keeps an event loop running on the main thread, where asyncio.run refuses.
        with ThreadPoolExecutor(1) as worker:
            values = worker.submit(asyncio.run, asyncio.wait_for(scenario.run(server, SMOKE), 60)).result()
    except Exception as exc:
        raise AssertionError(f"{name} against {kind} failed: {exc!r}\n--- log:\n{server.log_tail()}") from exc
    assert set(values) == {figure.key for figure in scenario.figures}
    assert all(math.isfinite(v) for v in values.values()), values
    return values


@each_server
def test_session_open(server_for, kind):
    """Visits complete (page, token, websocket, ACK, PULL-DOC) and cost the server some CPU."""
    values = run_once(server_for, kind, "session_open")
    assert values["rate"] > 0 and values["cpu"] > 0 and values["floor"] > 0


@each_server
def test_round_trip(server_for, kind):
    """A slider PATCH-DOC comes back as the Div PATCH-DOC that the app's on_change set."""
    values = run_once(server_for, kind, "round_trip")
    assert values["p50"] > 0


@each_server
def test_idle_memory(server_for, kind):
    """Sessions can be held open and the server's RSS read (the delta at N=2 is noise)."""
    values = run_once(server_for, kind, "idle_memory")
    assert values["baseline"] > 10  # MiB: a Python process with Bokeh loaded


@each_server
def test_fanout_separate(server_for, kind):
    """Clients on their own sessions receive rows from each session's periodic callback."""
    values = run_once(server_for, kind, "fanout_separate")
    assert values["rate"] > 0


@each_server
def test_fanout_shared(server_for, kind):
    """Connections that name one session id all receive that session's streamed rows."""
    values = run_once(server_for, kind, "fanout_shared")
    assert values["rate"] > 0


@each_server
def test_large_doc(server_for, kind):
    """The 100k-point document arrives whole; its wire size is about two float64 columns."""
    values = run_once(server_for, kind, "large_doc")
    assert values["wire"] > 2 * 100_000 * 8 / 1024 * 0.9


@pytest.mark.parametrize("kind", SCENARIOS["session_open_workers"].variants)
def test_session_open_workers(server_for, kind):
    """docsyncd --workers 2, docsyncd and bokeh serve --num-procs 2 serve visits; docsyncd builds one document per
    session, and the multi-process servers show their processes."""
    values = run_once(server_for, kind, "session_open_workers")
    assert values["rate"] > 0 and values["cpu"] > 0
    if base_kind(kind) == "docsyncd":
        assert values["docs"] == 1.0
    else:
        assert values["docs"] >= 1.0
    assert values["processes"] == (1 if kind in KINDS else 3)


@each_server
def test_cpu_clock_agrees_with_proc_stat(server_for, kind):
    """The nanosecond CPU clock used for per-operation CPU is the utime+stime of /proc/PID/stat."""
    server = server_for(kind, SCENARIOS["round_trip"].app)
    clock, stat = server.cpu_seconds(), server.stat_cpu_seconds()
    assert stat - 0.02 <= clock <= stat + 0.05  # stat truncates to 10 ms ticks; clock read after


def test_report_table():
    """The Markdown table renders medians, paired ratios and target verdicts from per-round figures."""
    results = RunResults()
    for d, b in [(1.0, 20.0), (2.0, 10.0)]:
        results.add("round_trip", "docsyncd", {"p50": d, "p99": d, "cpu": d})
        results.add("round_trip", "bokeh", {"p50": b, "p99": b, "cpu": b})
    table = markdown_table(results, [SCENARIOS["round_trip"]])
    p50_row = next(line for line in table.splitlines() if "round trip p50" in line)
    assert "1.50 (1.00–2.00)" in p50_row and "15.0 (10.0–20.0)" in p50_row
    assert "0.125 (0.0500–0.200)×" in p50_row and "| yes |" not in p50_row  # median ratio 0.125 > 0.1


def test_variants_table():
    """A scenario with variants gets its own table: a column per server, ratios to the second, targets on the first."""
    from benchmarks.report import variants_table

    scenario = SCENARIOS["session_open_workers"]
    results = RunResults()
    for w2, one, np2 in [(36.0, 20.0, 30.0), (40.0, 20.0, 28.0)]:
        for kind, rate, docs in [("docsyncd-w2", w2, 1.0), ("docsyncd", one, 1.0), ("bokeh-np2", np2, 1.4)]:
            results.add(scenario.name, kind, {"rate": rate, "docs": docs, "p50": 1.0, "cpu": 1.0, "processes": 3.0, "others": 0.0})
    table = variants_table(results, scenario)
    rate_row = next(line for line in table.splitlines() if "sessions/s" in line)
    assert "1.90 (1.80–2.00)×" in rate_row and rate_row.endswith("| yes |")
    docs_row = next(line for line in table.splitlines() if "documents built per session" in line)
    assert "1.40" in docs_row and docs_row.endswith("| yes |")
    assert "| docsyncd-w2 / docsyncd | bokeh-np2 / docsyncd |" in table.splitlines()[0]


@each_server
def test_capacity_ramp(server_for, kind):
    """The capacity load generator drives users on the capacity app: round trips come back, rows stream in,
    clicks (sleep and numpy) are answered, and the server's CPU and RSS are read (one step of two users)."""
    from benchmarks import capacity

    server = server_for(kind, capacity.APP)
    with ThreadPoolExecutor(1) as worker:  # see run_once
        ramps = [worker.submit(asyncio.run, capacity.ramp(server, mode, capacity.SMOKE, report=lambda line: None))
                 .result() for mode in ("sleep", "numpy")]
    for ramp in ramps:
        assert not ramp.error, f"{ramp.error}\n--- log:\n{server.log_tail()}"
        [step] = ramp.steps
        assert step.passed and step.users == 2 and step.clickers == 1, step
        assert step.p99 > 0 and step.min_rows > 0.3 and step.clicker_min_rows > 0.1 and step.clicks_answered >= 1 and step.cpu_per_user > 0, step
    assert "largest passing N, sleep clicks | 2 |" in capacity.markdown(ramps, capacity.SMOKE)


def test_capacity_tables():
    """The capacity summary: largest passing N per mode, the docsyncd/bokeh ratio, and what clicks add to p99."""
    from benchmarks.capacity import FULL, Ramp, Step, summary_table

    def step(users, p99, passed):
        return Step(users=users, clickers=users // 10, p50=1.0, p99=p99, clicker_p99=float("nan"), min_rows=1.0,
                    clicker_min_rows=float("nan"),
                    clicks_answered=0, cpu_per_user=2.0, rss_per_user=100.0, rss_total=90.0, client_cores=0.1,
                    passed=passed)

    ramps = [Ramp("docsyncd", "none", [step(10, 5.0, True), step(20, 8.0, True), step(30, 150.0, False)]),
             Ramp("bokeh", "none", [step(10, 40.0, True), step(20, 200.0, False)]),
             Ramp("docsyncd", "sleep", [step(10, 12.0, True), step(20, 120.0, False)]),
             Ramp("bokeh", "sleep", [step(10, 130.0, False)])]
    table = summary_table(ramps, FULL)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert rows["largest passing N, no clicks"].endswith("| 20 | 10 | 2.00× |")
    assert rows["largest passing N, sleep clicks"].endswith("| 10 | 0 |  |")  # no ratio against zero
    assert "| 7.0 | 90.0 |" in rows["sleep clicks move the others' p99 by (ms)"]  # 12-5 at N=10; 130-40 at its first step
    assert f"≤ {FULL.p99_ms:g} ms" in table


def test_round_trip_on_another_reactor(tmp_path):
    """`--docsyncd-reactor epoll` starts docsyncd with twist's `--reactor epoll` (which twist honours:
    tests/test_reactors.py); the round trip works on it."""
    with running_server("docsyncd", SCENARIOS["round_trip"].app, tmp_path, reactor="epoll") as server:
        with ThreadPoolExecutor(1) as worker:
            values = worker.submit(asyncio.run, SCENARIOS["round_trip"].run(server, SMOKE)).result()
        argv = server.proc.args
    assert argv[argv.index("docsync") - 2:argv.index("docsync")] == ["--reactor", "epoll"]
    assert values["p50"] > 0
