"""A page on another port embeds the app with bokeh.embed.server_document (issue 13, item 4).

Its websocket's Origin is that other port.  ``--allow-websocket-origin '*'``
allows any origin, and ``BOKEH_ALLOW_WS_ORIGIN=localhost`` (an entry without a
port) any port of localhost, as under bokeh serve (``--e2e-server=bokeh``).
"""

from __future__ import annotations

import http.server
import threading

import pytest
from bokeh.embed import server_document

from e2e_support import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedding_site():
    """Factory: serve a page embedding ``url`` on another port of localhost; returns the page's URL."""
    servers = []

    def _site(url: str) -> str:
        page = f"<!DOCTYPE html><html><body><h1>Embedding page</h1>{server_document(url)}</body></html>".encode()

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://localhost:{server.server_port}/"

    yield _site
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("args, env", [(["--allow-websocket-origin", "*"], {}),
                                       ([], {"BOKEH_ALLOW_WS_ORIGIN": "localhost"})],
                         ids=["star", "env-without-port"])
def test_page_on_another_port_embeds_the_app(serve, page, embedding_site, args, env):
    """The embedded document syncs: a button press reaches Python and its answer comes back."""
    server = serve("press_me.py", extra_args=args, env=env)
    page.open(embedding_site(server.url))
    button = page.get_by_role("button", name="Press Me")
    button.click()
    page.wait_for(lambda: page.length("press_me_source") == 1, message="Python's answer to the press")
    assert "Refusing websocket" not in server.log_text() and "not allowed" not in server.log_text()
