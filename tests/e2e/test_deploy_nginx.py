"""etc/nginx/docsyncd.conf, as shipped, in front of two docsyncd processes.

The test renders the shipped site by plain text replacement (its ports and
the BokehJS directory, nothing else), includes it from a minimal nginx.conf
that keeps every nginx file in tmp, and drives the app through nginx in
Chromium.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from bokeh.util.token import get_session_id

from e2e_support import EXAMPLES, REPO, TWISTD_CMD, http_ok, press_me_clicks, wait_until
from nginx_support import NginxRunner, distinct_ports

pytestmark = pytest.mark.e2e

SITE = REPO / "etc" / "nginx" / "docsyncd.conf"


@pytest.fixture
def nginx(tmp_path):
    """Factory: ``nginx(port, upstream_ports[, edit])`` runs nginx with the shipped site; stopped at teardown."""
    runner = NginxRunner(tmp_path)
    yield lambda port, upstream_ports, edit=lambda text: text: runner(SITE, port, list(upstream_ports), edit)
    runner.stop_all()


def test_nginx_proxies_app_and_websocket_and_serves_static(spawn, nginx, page):
    """Through the shipped nginx site the page, its websocket and clicks work, one docsyncd process holds the session, and nginx itself serves BokehJS."""
    nginx_port, *upstream = distinct_ports(3)
    daemons = []
    for port in upstream:
        cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--port", str(port), "--address", "127.0.0.1",
               "--app", str(EXAMPLES / "press_me.py")]
        # Ready when /press_me/metadata answers: that makes no session.
        daemons.append(spawn(cmd, lambda port=port: http_ok(f"http://127.0.0.1:{port}/press_me/metadata"),
                             port=port))
    run = nginx(nginx_port, tuple(upstream))

    responses = {}
    websockets = []
    page.page.on("response", lambda r: responses.setdefault(urlsplit(r.url).path, r))
    page.page.on("websocket", lambda ws: websockets.append(ws.url))

    page.open(f"http://localhost:{nginx_port}/press_me")
    assert press_me_clicks(page, 2) == ["0", "1"]

    # The websocket went through nginx (and passed docsyncd's default Origin
    # check, which needs the Host header nginx sends to keep the port).
    assert websockets == [f"ws://localhost:{nginx_port}/press_me/ws"]

    # BokehJS came from nginx's alias: nginx's headers (expires 1y sets
    # Expires), and no docsyncd process was asked for /static/.
    js = responses["/static/js/bokeh.min.js"]
    headers = js.all_headers()
    assert js.status == 200
    assert headers["server"].startswith("nginx"), headers
    assert "expires" in headers and "max-age=31536000" in headers["cache-control"], headers
    logs = [d.log_text() for d in daemons]
    assert not any("GET /static/" in log for log in logs), "a docsyncd process served /static/"
    assert not any("refused websocket" in log for log in logs), "\n".join(logs)

    # Session affinity: the session the page GET created is the one the
    # websocket joined, so exactly one process ever created it.
    session_id = get_session_id(_token_from_page(responses["/press_me"].text()))
    created = [log.count(f"session {session_id} created") for log in logs]
    assert sorted(created) == [0, 1], f"session {session_id} created per process: {created}"

    # nginx logs a proxied websocket (101) once it closes.
    page.page.close()
    wait_until(lambda: '"GET /press_me/ws HTTP/1.1" 101' in (run / "access.log").read_text(), timeout=10,
               message="nginx's access log line for the websocket")


def _token_from_page(html: str) -> str:
    match = re.search(r'"token"\s*:\s*"([^"]+)"', html)
    assert match, "no session token in the app page"
    return match.group(1)


#: Shows the request its session was made from.
FACTS_APP = """
from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
curdoc().add_root(Div(name="facts", text="|".join([request.remote_ip, request.protocol, request.host])))
"""


def test_nginx_with_use_xheaders(spawn, nginx, page, tmp_path):
    """Behind the shipped site, --use-xheaders gives apps, the access log and the origin check the browser's view (address, scheme, host), and --allow-host refuses other hosts."""
    nginx_port, *upstream = distinct_ports(3)
    app = tmp_path / "facts.py"
    app.write_text(FACTS_APP)
    daemons = []
    for port in upstream:
        cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--port", str(port), "--address", "127.0.0.1",
               "--app", str(app), "--use-xheaders", "--allow-host", f"localhost:{nginx_port}",
               "--allow-host", f"127.0.0.1:{port}"]
        daemons.append(spawn(cmd, lambda port=port: http_ok(f"http://127.0.0.1:{port}/facts/metadata"), port=port))
    # nginx reaches docsyncd from 127.0.0.3, so the TCP peer differs from the browser's address (127.0.0.1).
    nginx(nginx_port, tuple(upstream),
          edit=lambda text: text.replace("proxy_pass http://docsyncd;", "proxy_pass http://docsyncd;\n        proxy_bind 127.0.0.3;"))

    page.open(f"http://localhost:{nginx_port}/facts")
    assert page.get("facts", "text") == f"127.0.0.1|http|localhost:{nginx_port}"
    logs = "\n".join(d.log_text() for d in daemons)
    assert '"127.0.0.1" - - ' in logs and '"GET /facts HTTP/1.1"' in logs, logs
    assert '"127.0.0.3"' not in logs, "the access log names nginx instead of the browser"
    assert "refused" not in logs, logs

    # What a client sends in X-Forwarded-For is not believed: nginx appends the address it saw.
    import http.client

    conn = http.client.HTTPConnection("localhost", nginx_port, timeout=10)
    conn.request("GET", "/facts/metadata", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
    assert conn.getresponse().status == 200
    conn.close()
    assert "6.6.6.6" not in "\n".join(d.log_text() for d in daemons)

    # A Host --allow-host does not list is refused, straight or through nginx.
    conn = http.client.HTTPConnection("127.0.0.1", upstream[0], timeout=10)
    conn.request("GET", "/facts/metadata", headers={"Host": "evil.example"})
    assert conn.getresponse().status == 403
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=10)
    conn.request("GET", "/facts/metadata", headers={"Host": "evil.example"})
    assert conn.getresponse().status == 403
    conn.close()
