"""etc/nginx/docsyncd-hash.conf, as shipped, in front of two docsyncd daemons: one document per session.

The site is rendered by plain text replacement (its listen port, the two
upstream ports and the BokehJS directory, nothing else) and included from a
minimal nginx.conf that keeps every nginx file in tmp.  One daemon runs
--workers 2, the other --lazy-documents; pages, tabs on named sessions,
reconnects and Chromium all go through nginx.
"""

from __future__ import annotations

import asyncio
import collections
import re
from pathlib import Path

import pytest
from bokeh.util.token import get_session_id

from e2e_support import REPO, TWISTD_CMD, http_ok, wait_until
from nginx_support import NginxRunner, distinct_ports
from workers_support import connect, created, page_token, run, shares_one_document

pytestmark = pytest.mark.e2e

SITE = REPO / "etc" / "nginx" / "docsyncd-hash.conf"
APP = Path(__file__).parent / "apps" / "workers_app.py"

@pytest.fixture
def nginx(tmp_path):
    """Factory: ``nginx(port, upstream_ports[, edit])`` runs nginx with the shipped site; stopped at teardown."""
    runner = NginxRunner(tmp_path)
    yield lambda port, upstream_ports, edit=lambda text: text: runner(SITE, port, list(upstream_ports), edit)
    runner.stop_all()


@pytest.mark.timeout(180)
def test_hash_site_builds_each_document_once_across_two_daemons(spawn, nginx, page):
    """Through the shipped hash site, every websocket of a session (concurrent tabs on a named session, each with
    its own token, reconnects, a browser) reaches one daemon, which builds the document once; pages and sessions
    are spread over both daemons."""
    nginx_port, *upstream = distinct_ports(3)
    daemons = []
    for port, mode in zip(upstream, (["--workers", "2"], ["--lazy-documents"])):
        cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--port", str(port), "--address", "127.0.0.1",
               "--app", str(APP), *mode]
        daemons.append(spawn(cmd, lambda port=port: http_ok(f"http://127.0.0.1:{port}/workers_app/metadata"),
                             app=APP, port=port))
    wait_until(lambda: daemons[0].log_text().count(") is serving") == 2, timeout=30, message="both workers serving")
    run_dir = nginx(nginx_port, upstream)

    async def scenario() -> dict[str, int]:
        holders: dict[str, int] = {}

        async def minted(value: int) -> None:
            token = await page_token(nginx_port)
            conns = list(await asyncio.gather(*(connect(nginx_port, token) for _ in range(2))))
            await conns[1].close()
            conns[1] = await connect(nginx_port, token)  # a reconnect, through nginx again
            holders[get_session_id(token)] = await shares_one_document(conns, value)
            await asyncio.gather(*(c.close() for c in conns))

        async def named(name: str, value: int) -> None:
            tokens = await asyncio.gather(*(page_token(nginx_port, f"?bokeh-session-id={name}&tab={i}")
                                            for i in range(3)))
            assert len(set(tokens)) == 3
            conns = list(await asyncio.gather(*(connect(nginx_port, t) for t in tokens)))
            holders[name] = await shares_one_document(conns, value)
            await asyncio.gather(*(c.close() for c in conns))

        await asyncio.gather(*(minted(100 + i) for i in range(8)), *(named(f"shared-{i}", 200 + i) for i in range(8)))
        return holders

    holders = run(scenario(), timeout=120)

    # Chromium, through nginx: the page's websocket and a second tab on the same named session.
    page.open(f"http://localhost:{nginx_port}/workers_app?bokeh-session-id=browser")
    page.set("slider", "value", 42)
    page.wait_for_prop("div", "text", "value=42")

    everyone = {*holders, "browser"}
    wait_until(lambda: everyone <= set(created("".join(d.log_text() for d in daemons))),
               message="every session's log line")  # workers write their log in batches
    logs = [d.log_text() for d in daemons]
    counts = [created(log) for log in logs]
    total = collections.Counter()
    for c in counts:
        total.update(c)
    assert {sid: total[sid] for sid in everyone} == {sid: 1 for sid in everyone}, \
        "each session's document is built exactly once, in one daemon"
    assert all(sum(c[sid] for sid in holders) for c in counts), "sessions should be spread over both daemons"
    assert all(re.search(r'"GET /workers_app(\?[^ ]*)? HTTP/1.[01]" 200', log) for log in logs), \
        "page GETs should be spread over both daemons"
    access = (run_dir / "access.log").read_text()
    assert access.count('"GET /workers_app/ws HTTP/1.1" 101') >= 8 * 3 + 8 * 3
    assert not any("Traceback" in log for log in logs)
