"""--workers 2 as a user runs it: one document per session, every websocket of it in one worker, and a
worker killed with SIGKILL while the other worker's sessions carry on."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from benchmarks.wsclient import ConnectionClosed, http_get
from bokeh.util.token import get_session_id

from docsyncd import routing
from e2e_support import TWISTD_CMD, free_port, start_process, wait_for_workers, wait_until
from workers_support import (connect, created, created_in_worker, page_token, run, shares_one_document,
                             worker_pids)

pytestmark = [pytest.mark.e2e, pytest.mark.docsync_only(reason="--workers is docsyncd's")]

APP = Path(__file__).parent / "apps" / "workers_app.py"


def start(serve):
    server = serve(APP, extra_args=["--workers", "2"])
    wait_for_workers(server)
    return server


@pytest.mark.timeout(180)
def test_each_document_is_built_once_under_concurrent_tabs_and_reconnects(serve, new_page):
    """Concurrent tabs, named sessions opened from several pages and reconnects all reach one document per
    session, built exactly once, in one worker; sessions are spread over both workers."""
    server = start(serve)
    port = server.port

    async def scenario() -> dict[str, int]:
        holders: dict[str, int] = {}
        # Sessions a page minted: three tabs on its token at once, then one of them reconnects.
        tokens = await asyncio.gather(*(page_token(port) for _ in range(6)))

        async def minted(token: str, value: int) -> None:
            conns = list(await asyncio.gather(*(connect(port, token) for _ in range(3))))
            await conns[2].close()
            conns[2] = await connect(port, token)  # the reconnect, with the same token
            holders[get_session_id(token)] = await shares_one_document(conns, value)
            await asyncio.gather(*(c.close() for c in conns))

        # Named sessions: three pages at once, each with its own token for the same id, each a websocket.
        async def named(name: str, value: int) -> None:
            page_tokens = await asyncio.gather(*(page_token(port, f"?bokeh-session-id={name}&tab={i}")
                                                 for i in range(3)))
            assert len(set(page_tokens)) == 3 and {get_session_id(t) for t in page_tokens} == {name}
            conns = list(await asyncio.gather(*(connect(port, t) for t in page_tokens)))
            holders[name] = await shares_one_document(conns, value)
            await asyncio.gather(*(c.close() for c in conns))

        await asyncio.gather(*(minted(t, 100 + i) for i, t in enumerate(tokens)),
                             *(named(f"named-{i}", 200 + i) for i in range(6)))
        return holders

    holders = run(scenario(), timeout=120)

    # A browser too: two tabs on one session, and one of them reloaded.
    tabs = [new_page(), new_page()]
    for tab in tabs:
        tab.open(server.app_url("bokeh-session-id=browser-tabs"))
    tabs[0].set("slider", "value", 7)
    tabs[1].wait_for_prop("div", "text", "value=7")
    tabs[1].page.reload()
    tabs[1].wait_for_document()
    assert tabs[1].get("div", "text") == "value=7"
    holders["browser-tabs"] = int(tabs[1].get("pid", "text"))

    # Workers write their log in batches: wait until every session's line is in.
    wait_until(lambda: set(holders) <= set(created(server.log_text())), message="every session's log line")
    log = server.log_text()
    counts = created(log)
    assert {sid: counts[sid] for sid in holders} == {sid: 1 for sid in holders}, \
        "every session's document is built exactly once"
    where = created_in_worker(log)
    pids = worker_pids(log)
    for sid, pid in holders.items():
        assert pid == pids[where[sid]][-1], f"session {sid} answered from pid {pid}, not from its worker"
        assert where[sid] == routing.owner(sid, 2), f"session {sid} was built outside the worker that owns it"
    assert {where[sid] for sid in holders} == {0, 1}, "sessions should be spread over both workers"
    assert "Traceback" not in log, log


@pytest.mark.timeout(180)
def test_sigkill_of_a_worker_leaves_the_other_workers_sessions_alive(serve):
    """SIGKILL on one worker: the other worker's live sessions keep syncing, the dead one is restarted with a new
    pid and serves new sessions, and SIGTERM still stops everything with exit 0."""
    server = start(serve)
    port = server.port

    async def open_sessions(count: int) -> list:
        sessions = []
        for i in range(count):
            token = await page_token(port)
            conns = [await connect(port, token), await connect(port, token)]
            pid = await shares_one_document(conns, 10 + i)
            sessions.append((get_session_id(token), conns, pid))
        return sessions

    async def scenario() -> None:
        sessions = await open_sessions(6)  # page GETs take turns, so both workers hold sessions
        pids = worker_pids(server.log_text())
        victim_pid = pids[1][-1]
        survivors = [s for s in sessions if s[2] == pids[0][-1]]
        doomed = [s for s in sessions if s[2] == victim_pid]
        assert survivors and doomed, f"sessions by pid: {[s[2] for s in sessions]}, workers: {dict(pids)}"

        os.kill(victim_pid, signal.SIGKILL)  # a descendant of the daemon this test started
        # The killed worker's connections drop (closed, not silent).
        for _, conns, _ in doomed:
            with pytest.raises((ConnectionClosed, ConnectionError, asyncio.IncompleteReadError)):
                await conns[0].recv(timeout=15)

        # Meanwhile, and after, the surviving worker's sessions keep syncing, every connection of them.
        for round_ in range(3):
            for n, (_, conns, pid) in enumerate(survivors):
                assert await shares_one_document(conns, 1000 + 10 * round_ + n) == pid
            await asyncio.sleep(0.5)

        for _ in range(300):  # up to 30 s for worker 1 to be restarted and serving
            restarted = worker_pids(server.log_text())[1]
            if len(restarted) == 2 and f"worker 1 (pid {restarted[-1]}) is serving" in server.log_text():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"worker 1 was not restarted:\n{server.log_tail()}")
        new_pid = restarted[-1]
        assert new_pid != victim_pid

        # New sessions land on both workers again, including the restarted one.
        fresh = await open_sessions(4)
        assert {pid for _, _, pid in fresh} == {pids[0][-1], new_pid}
        # A named session that worker 1 owns is built in the new process.
        name = next(f"owned-{i}" for i in range(100) if routing.owner(f"owned-{i}", 2) == 1)
        conns = [await connect(port, await page_token(port, f"?bokeh-session-id={name}")) for _ in range(2)]
        assert await shares_one_document(conns, 77) == new_pid
        # The survivors are still there, untouched by the restart.
        for n, (_, conns_, pid) in enumerate(survivors):
            assert await shares_one_document(conns_, 5000 + n) == pid
        for _, cs, _ in survivors + fresh:
            await asyncio.gather(*(c.close() for c in cs))
        await asyncio.gather(*(c.close() for c in conns))

    run(scenario(), timeout=150)
    log = server.log_text()
    assert re.search(r"worker 1 \(pid \d+\) exited unexpectedly \(killed by signal 9\)", log), log
    assert "Traceback" not in log, log
    assert server.stop() == 0
    assert "all workers exited" in server.log_text()


@pytest.mark.timeout(60)
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    """If the parent dies without stopping them (SIGKILL), the workers notice its socket closing and exit."""
    port = free_port()
    cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--port", str(port), "--address", "127.0.0.1",
           "--app", str(APP), "--workers", "2"]
    server = start_process(cmd, tmp_path / "parent.log", app=APP, port=port,
                           ready=lambda: server_log(tmp_path).count(") is serving") == 2)
    workers = [pids[-1] for pids in worker_pids(server.log_text()).values()]
    assert len(workers) == 2 and all(_running(pid) for pid in workers)
    server.proc.send_signal(signal.SIGKILL)
    assert server.stop() == -signal.SIGKILL  # reaps it and closes its log
    wait_until(lambda: not any(_running(pid) for pid in workers), timeout=15, message="the orphaned workers to exit")


def server_log(tmp_path: Path) -> str:
    path = tmp_path / "parent.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@pytest.mark.timeout(120)
def test_metrics_and_health_cover_every_worker(serve):
    """The parent's /metrics sums the sessions, connections and builds of both workers, and /health names both."""
    server = start(serve)
    port = server.port

    async def scenario() -> tuple[str, Any]:
        sessions = []
        for i in range(4):  # page GETs take turns, so both workers hold sessions
            conn = await connect(port, await page_token(port))
            await shares_one_document([conn], 20 + i)
            sessions.append(conn)
        try:
            for _ in range(100):  # workers report every second
                text = (await http_get("127.0.0.1", port, "/metrics")).body.decode()
                if 'docsync_sessions_live{app="workers_app"} 4' in text:
                    break
                await asyncio.sleep(0.1)
            return text, await http_get("127.0.0.1", port, "/health")
        finally:
            await asyncio.gather(*(conn.close() for conn in sessions))

    text, health = run(scenario())
    assert set(created_in_worker(server.log_text()).values()) == {0, 1}, "sessions in both workers"
    assert 'docsync_sessions_live{app="workers_app"} 4' in text, text
    assert 'docsync_sessions_created_total{app="workers_app"} 4' in text
    assert 'docsync_connections_live{app="workers_app"} 4' in text
    assert 'docsync_document_build_seconds_count{app="workers_app"} 4' in text
    assert health.status == 200 and health.body == b"ok workers=2/2\n"
