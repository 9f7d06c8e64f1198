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
    assert "largest passing N, sleep clicks | 2+ |" in capacity.markdown(ramps, capacity.SMOKE)


def test_capacity_tables():
    """The capacity summary: largest passing N per mode, the docsyncd/bokeh ratio, what clicks add to the others'
    p99, and the issue's goals (≥ 3× bokeh's users per process; clicks move the others' p99 by ≤ 10 ms) with their
    verdicts; a ramp that passed every step is a lower bound, one that failed its first step an upper one."""
    from benchmarks.capacity import FULL, Ramp, Step, summary_table

    def step(users, p99, passed):
        return Step(users=users, clickers=users // 10, p50=1.0, p99=p99, clicker_p99=float("nan"), min_rows=1.0,
                    clicker_min_rows=float("nan"),
                    clicks_answered=0, cpu_per_user=2.0, rss_per_user=100.0, rss_total=90.0, client_cores=0.1,
                    passed=passed)

    ramps = [Ramp("docsyncd", "none", [step(10, 5.0, True), step(20, 8.0, True), step(30, 150.0, False)]),
             Ramp("bokeh", "none", [step(10, 40.0, True), step(20, 200.0, False)]),
             Ramp("docsyncd-t0", "none", error="not started: option --num-threads not recognized"),
             Ramp("docsyncd", "sleep", [step(10, 12.0, True), step(20, 120.0, False)]),
             Ramp("bokeh", "sleep", [step(10, 130.0, False)]),
             Ramp("docsyncd-t0", "sleep", error="not started: option --num-threads not recognized"),
             Ramp("docsyncd", "numpy", [step(10, 30.0, True), step(20, 60.0, True), step(30, 70.0, True)]),
             Ramp("bokeh", "numpy", [step(10, 90.0, True), step(20, 130.0, False)]),
             Ramp("docsyncd-t0", "numpy", error="not started: option --num-threads not recognized")]
    table = summary_table(ramps, FULL)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert table.splitlines()[0] == "| figure | docsyncd | bokeh | docsyncd-t0 | docsyncd / bokeh | target | met? |"
    assert rows["largest passing N, no clicks"].endswith("| 20 | 10 | — | 2.00× | docsyncd ≥ 3× bokeh | **no** |")
    # bokeh failed its first step of 10 users: docsyncd's 10 are more than 1× its, not known to be 3×
    assert rows["largest passing N, sleep clicks"].endswith("| 10 | 0 | — | > 1.00× | docsyncd ≥ 3× bokeh | ? |")
    # docsyncd passed every step up to the plan's last: 30 or more, ≥ 3× bokeh's 10
    assert rows["largest passing N, numpy clicks"].endswith("| 30+ | 10 | — | ≥ 3.00× | docsyncd ≥ 3× bokeh | yes |")
    # 12-5 at N=10; bokeh: 130-40 at its first step
    assert rows["sleep clicks move the others' p99 by (ms)"].endswith("| 7.0 | 90.0 | — |  | docsyncd ≤ 10 ms | yes |")
    # at N=20, the largest both passed (N=30 failed without clicks): 60-8; bokeh 90-40 at N=10
    assert rows["numpy clicks move the others' p99 by (ms)"].endswith("| 52.0 | 50.0 | — |  | docsyncd ≤ 10 ms | **no** |")
    assert f"≤ {FULL.p99_ms:g} ms" in table
    assert "- docsyncd-t0, sleep: not started: option --num-threads not recognized" in table


def test_round_trip_on_another_reactor(tmp_path):
    """`--docsyncd-reactor epoll` starts docsyncd with twist's `--reactor epoll` (which twist honours:
    tests/test_reactors.py); the round trip works on it."""
    with running_server("docsyncd", SCENARIOS["round_trip"].app, tmp_path, reactor="epoll") as server:
        with ThreadPoolExecutor(1) as worker:
            values = worker.submit(asyncio.run, SCENARIOS["round_trip"].run(server, SMOKE)).result()
        argv = server.proc.args
    assert argv[argv.index("docsync") - 2:argv.index("docsync")] == ["--reactor", "epoll"]
    assert values["p50"] > 0


def test_bokeh310_python_choice(tmp_path, monkeypatch):
    """The bokeh310 venv is built with --bokeh310-python when given, else with the first python3.13/3.12 that
    starts (a pyenv shim of an unselected version does not), PATH before pyenv; none found is a clear error."""
    from benchmarks import bokeh310

    def script(path, code):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\nexit {code}\n")
        path.chmod(0o755)
        return str(path)

    script(tmp_path / "bin" / "python3.13", 1)  # a shim that cannot start this version
    good_path = script(tmp_path / "bin" / "python3.12", 0)
    pyenv = script(tmp_path / "pyenv" / "versions" / "3.13.0" / "bin" / "python3", 0)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setattr(bokeh310, "base_python", None)
    assert bokeh310.find_base_python() == good_path
    (tmp_path / "bin" / "python3.12").unlink()
    assert bokeh310.find_base_python() == pyenv
    monkeypatch.setattr(bokeh310, "base_python", "/opt/python3.12")
    assert bokeh310.find_base_python() == "/opt/python3.12"
    monkeypatch.setattr(bokeh310, "base_python", None)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(bokeh310.Unavailable, match="--bokeh310-python"):
        bokeh310.find_base_python()


def test_capacity_kinds_commands(tmp_path, monkeypatch):
    """The capacity column servers start as the issue names them: docsyncd --num-threads 0, --workers 2,
    bokeh serve --num-procs 2, and bokeh serve on the bokeh310 venv's Python, the app last for bokeh."""
    from benchmarks import capacity, servers

    monkeypatch.setitem(servers.INTERPRETERS, "bokeh310", lambda: "/venv/bin/python")
    app = tmp_path / "capacity_app.py"
    argv = {kind: servers.command(kind, app, 5006) for kind in capacity.KINDS}
    assert argv["docsyncd-t0"][-2:] == ["--num-threads", "0"] and argv["docsyncd-w2"][-2:] == ["--workers", "2"]
    assert argv["bokeh-np2"][-3:] == ["--num-procs", "2", str(app)]
    assert argv["bokeh310"] == ["/venv/bin/python", *argv["bokeh"][1:]]
