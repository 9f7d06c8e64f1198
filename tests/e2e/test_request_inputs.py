"""What an app sees of its request, and what malformed requests get, under docsyncd --workers 2 and bokeh serve.

The parent process of ``--workers`` reads every connection's first request
head; a non-ASCII query argument once made it drop the connection (issue 13,
item 2), and quoted cookies kept their quotes (item 5).  Here the same
requests go to docsyncd with two workers and to bokeh serve, which is the
reference.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from benchmarks.loadgen import SyncedDocument
from benchmarks.wsclient import http_get

from workers_support import connect, page_token, run

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "apps" / "request_app.py"
COOKIES = 'quoted="hello world"; esc="a\\"b"; plain=1'
EXPECTED = {"arguments": {"label": [b"caf\xc3\xa9"], "city": [b"Z\xc3\xbcrich"]},
            "cookies": {"quoted": "hello world", "esc": 'a"b', "plain": "1"}}
#: Requests the parent must route or refuse with a status, never drop: path and query, and what docsyncd and
#: bokeh serve answer.  A raw byte above 0x7f in the request line (RFC 9112 wants it percent-encoded; browsers
#: always do) is refused by twisted.web's parser with 400, where Tornado takes it.
MALFORMED = [("/request_app?bokeh-session-id=%FF", {"docsync": 400, "bokeh": 400}),
             ("/request_app?bokeh-token=%C3%28", {"docsync": 400, "bokeh": 400}),
             ("/request_app?x=%E9%", {"docsync": 200, "bokeh": 200}),
             ("/request_app?\xe9=\xe9", {"docsync": 400, "bokeh": 200})]


@pytest.fixture(params=["docsync", "bokeh"])
def server(request, serve):
    if request.param == "docsync":
        return serve(APP, extra_args=["--workers", "2"], kind="docsync")
    return serve(APP, kind="bokeh")


@pytest.mark.timeout(120)
def test_non_ascii_arguments_and_quoted_cookies(server):
    """The app sees {'label': [b'caf\\xc3\\xa9']} and unquoted cookie values, as under bokeh serve."""

    async def scenario():
        token = await page_token(server.port, "?label=caf%C3%A9&city=Z%C3%BCrich", app="request_app",
                                 headers={"Cookie": COOKIES})
        conn = await connect(server.port, token, app="request_app")
        try:
            return SyncedDocument(await conn.pull_doc()).model("request").text
        finally:
            await conn.close()

    assert ast.literal_eval(run(scenario())) == EXPECTED


@pytest.mark.timeout(120)
def test_malformed_query_arguments_get_a_status(server):
    """Arguments that are not UTF-8 or not well escaped get a status (bokeh serve's but for raw bytes), never an
    empty reply."""

    async def statuses():
        return [(await http_get("127.0.0.1", server.port, path)).status for path, _ in MALFORMED]

    assert run(statuses()) == [status[server.kind] for _, status in MALFORMED]
