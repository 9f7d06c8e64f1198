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
import os
import pwd
import re
import signal
import subprocess
from pathlib import Path

import pytest
from bokeh.settings import settings
from bokeh.util.token import get_session_id

from e2e_support import REPO, TWISTD_CMD, _port_open, free_port, http_ok, wait_until
from workers_support import connect, created, page_token, run, shares_one_document

pytestmark = pytest.mark.e2e

NGINX = "/usr/sbin/nginx"
SITE = REPO / "etc" / "nginx" / "docsyncd-hash.conf"
SHIPPED_STATIC = "/srv/docsync/venv/lib/python3.11/site-packages/bokeh/server/static/"
APP = Path(__file__).parent / "apps" / "workers_app.py"

NGINX_CONF = """\
# Test wrapper around the shipped site: every file nginx writes is in {tmp}.
daemon off;
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    {types}
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {site};
}}
"""


def render_site(nginx_port: int, upstream_ports: list[int], static_dir: str) -> str:
    """The shipped site with its ports and static directory replaced; each must occur exactly once."""
    text = SITE.read_text(encoding="utf-8")
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{nginx_port};",
        "server 127.0.0.1:5006;": f"server 127.0.0.1:{upstream_ports[0]};",
        "server 127.0.0.1:5007;": f"server 127.0.0.1:{upstream_ports[1]};",
        f"alias {SHIPPED_STATIC};": f"alias {static_dir.rstrip('/')}/;",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{SITE} should contain {old!r} exactly once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx(tmp_path):
    """Factory: ``nginx(port, upstream_ports)`` runs nginx with the rendered site; stopped at teardown."""
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed (apt-get install nginx)")
    procs: list[subprocess.Popen] = []

    def _start(port: int, upstream_ports: list[int]) -> Path:
        run_dir = tmp_path / "nginx"
        run_dir.mkdir()
        site = run_dir / "docsyncd-hash.conf"
        site.write_text(render_site(port, upstream_ports, str(settings.bokehjs_path())), encoding="utf-8")
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        types = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") else \
            "types { text/html html; application/javascript js; text/css css; }"
        conf = run_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=run_dir, user=user, types=types, site=site), encoding="utf-8")
        base = [NGINX, "-c", str(conf), "-p", f"{run_dir}/", "-e", str(run_dir / "error.log")]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t rejected the rendered site:\n{check.stderr}"
        with open(run_dir / "nginx.out", "w") as out:
            procs.append(subprocess.Popen(base, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_until(lambda: procs[-1].poll() is not None or _port_open(port), timeout=15,
                   message=f"nginx listening on {port}")
        assert procs[-1].poll() is None, f"nginx exited: {(run_dir / 'error.log').read_text()}"
        return run_dir

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.mark.timeout(180)
def test_hash_site_builds_each_document_once_across_two_daemons(spawn, nginx, page):
    """Through the shipped hash site, every websocket of a session (concurrent tabs on a named session, each with
    its own token, reconnects, a browser) reaches one daemon, which builds the document once; pages and sessions
    are spread over both daemons."""
    nginx_port, *upstream = _distinct_ports(3)
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
