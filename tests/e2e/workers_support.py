"""Raw Bokeh clients for the --workers and nginx-hash tests: tabs, reconnects, and who built what.

Clients speak Bokeh's protocol with benchmarks.loadgen (plain asyncio, the
way test_fuzz.py drives the daemon), on a thread of their own because
Playwright's sync API keeps an event loop on the test's thread.  The app is
tests/e2e/apps/workers_app.py: a Slider whose Python callback writes
``value=N`` into a Div.
"""

from __future__ import annotations

import asyncio
import collections
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.loadgen import TOKEN_RE, BokehConnection, SyncedDocument, model_changes, round_trip
from benchmarks.wsclient import WebSocket, http_get

APP = "workers_app"
#: "session <id> created" as docsyncd logs it; with --workers the line's system names the worker.
CREATED = re.compile(r"\[(?:worker (?P<worker>\d+): )?docsyncd\.sessions#info\] session (?P<sid>\S+) created ")


def run(coroutine: Any, timeout: float = 60) -> Any:
    """Run a coroutine to completion on a fresh event loop in another thread."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, asyncio.wait_for(coroutine, timeout)).result()


async def page_token(port: int, query: str = "", host: str = "127.0.0.1", app: str = APP,
                     headers: dict[str, str] | None = None) -> str:
    """GET the app page (through whatever listens on ``port``) and return the token in it."""
    page = await http_get(host, port, f"/{app}{query}", headers)
    if page.status != 200:
        raise AssertionError(f"GET /{app}{query}: HTTP {page.status}")
    found = TOKEN_RE.search(page.body.decode("utf-8", "replace"))
    assert found, "no token in the page"
    return found.group(1)


async def connect(port: int, token: str, host: str = "127.0.0.1", app: str = APP) -> BokehConnection:
    """A websocket for ``token``, after its ACK."""
    ws = await WebSocket.connect(host, port, f"/{app}/ws", ["bokeh", token])
    conn = BokehConnection(ws, token, 0)
    ack = await conn.recv(timeout=30)
    assert ack.msgtype == "ACK", ack.msgtype
    return conn


async def wait_for_div(conn: BokehConnection, expected: str, timeout: float = 15) -> None:
    """Read ``conn`` until a PATCH-DOC sets a Div's text to ``expected``."""

    async def read() -> None:
        while True:
            message = await conn.recv(timeout=None)
            if any(ev.get("attr") == "text" and ev.get("new") == expected for ev in model_changes(message)):
                return

    await asyncio.wait_for(read(), timeout)


async def shares_one_document(conns: list[BokehConnection], value: int) -> int:
    """Move the slider on the first connection; every other one must see Python's answer.

    Returns the pid of the process holding the document (its ``pid`` Div).
    """
    first = conns[0]
    synced = SyncedDocument(await first.pull_doc())
    waiting = [asyncio.ensure_future(wait_for_div(c, f"value={value}")) for c in conns[1:]]
    await round_trip(first, synced, synced.model("slider"), synced.model("div"), value)
    await asyncio.gather(*waiting)
    return int(synced.model("pid").text)


def created(log_text: str) -> collections.Counter:
    """How many times each session id was created, in a log (with --workers: every worker's lines)."""
    return collections.Counter(m.group("sid") for m in CREATED.finditer(log_text))


def created_in_worker(log_text: str) -> dict[str, int]:
    """The worker index that created each session (``--workers`` logs)."""
    return {m.group("sid"): int(m.group("worker")) for m in CREATED.finditer(log_text) if m.group("worker")}


def worker_pids(log_text: str) -> dict[int, list[int]]:
    """Every pid each worker slot ran as, in order ("worker N started (pid P)")."""
    found: dict[int, list[int]] = collections.defaultdict(list)
    for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)", log_text):
        found[int(m.group(1))].append(int(m.group(2)))
    return found
