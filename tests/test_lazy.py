"""docsyncd.lazy: --lazy-documents pages mint a token; the websocket builds the document, once."""

from __future__ import annotations

import json
import re

import pytest
from bokeh.util.token import get_session_id

from docsyncd.lazy import LazyAppResource, sets_own_template
from docsyncd.apps import load_app
from docsyncd.web import AppResource

from unit_support import SLIDER_APP, InMemoryServer, write_app, write_dir_app

TEMPLATE = """{% extends base %}
{% block contents %}<h1>mine</h1>{{ embed(roots.slider) }}{{ embed(roots.div) }}{% endblock %}
"""


@pytest.fixture
def serve(tmp_path):
    servers = []

    def _serve(app_paths, args=("--lazy-documents",)):
        servers.append(InMemoryServer(list(app_paths), list(args)))
        return servers[-1]

    yield _serve
    for server in servers:
        server.restore()


def render_item(html: str) -> dict:
    """The one render item in a page's inline script."""
    match = re.search(r'const render_items = (\[.*?\]);', html)
    assert match, "no render_items in the page"
    (item,) = json.loads(match.group(1))
    return item


def test_lazy_page_builds_no_document(serve, tmp_path):
    """The page GET answers with a token and an element for the whole document, and builds no session."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)])
    response = server.get("/slider?symbol=AAPL")
    assert response.status == 200
    item = render_item(response.text)
    assert item["elementid"] and not item.get("roots") and item["use_for_title"] is True
    assert server.managers["slider"].sessions == []
    assert f'id="{item["elementid"]}"' in response.text


def test_websocket_builds_the_document_once_with_the_pages_request(serve, tmp_path):
    """The websocket with the page's token builds the document, which sees the page's arguments; more tabs join it."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)])
    token = server.get("/slider?symbol=AAPL&days=5").token()
    clients = [server.session_websocket("slider", token)[0] for _ in range(3)]
    assert all(c.msgtypes() == ["ACK"] for c in clients)
    (session,) = server.managers["slider"].sessions
    assert session.id == get_session_id(token)
    assert session.document.get_model_by_name("div").tags == ["days", "symbol"]
    assert len(session.connections) == 3


def test_lazy_autoload_builds_no_document(serve, tmp_path):
    """autoload.js mints a token without building the document."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)])
    response = server.get("/slider/autoload.js?bokeh-autoload-element=el1&bokeh-app-path=/slider")
    assert response.status == 200 and response.token()
    assert server.managers["slider"].sessions == []


def test_named_session_pages_build_nothing_until_the_websocket(serve, tmp_path):
    """Pages naming one session each mint a token for it; the first websocket builds it, the others join."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)])
    tokens = [server.get("/slider?bokeh-session-id=shared&tab=1").token(),
              server.get("/slider?bokeh-session-id=shared&tab=2").token()]
    assert tokens[0] != tokens[1] and {get_session_id(t) for t in tokens} == {"shared"}
    assert server.managers["slider"].sessions == []
    for token in tokens:
        server.session_websocket("slider", token)
    (session,) = server.managers["slider"].sessions
    assert len(session.connections) == 2


def test_apps_with_their_own_template_stay_eager(serve, tmp_path):
    """A directory app with templates/index.html, or code setting curdoc().template, builds at the page GET."""
    directory = write_dir_app(tmp_path, "templated", {"main.py": SLIDER_APP, "templates/index.html": TEMPLATE})
    script = write_app(tmp_path, "scripted", SLIDER_APP + "\ndoc.template_variables['x'] = 1\n")
    plain = write_app(tmp_path, "plain", SLIDER_APP)
    assert sets_own_template(load_app(directory)) and sets_own_template(load_app(script))
    assert not sets_own_template(load_app(plain))
    server = serve([directory, script, plain])
    resources = {name: server.site.resource.children[name.encode()] for name in ("templated", "scripted", "plain")}
    assert type(resources["templated"]) is AppResource and type(resources["scripted"]) is AppResource
    assert type(resources["plain"]) is LazyAppResource
    response = server.get("/templated")
    assert response.status == 200 and "<h1>mine</h1>" in response.text
    assert len(server.managers["templated"].sessions) == 1


def test_without_the_option_pages_stay_eager(serve, tmp_path):
    """Without --lazy-documents (or --workers) the page GET builds the document, as bokeh serve does."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)], args=())
    assert type(server.site.resource.children[b"slider"]) is AppResource
    server.get("/slider")
    assert len(server.managers["slider"].sessions) == 1


def test_lazy_page_refuses_what_an_eager_page_refuses(serve, tmp_path):
    """A session id given both as argument and header is refused with 403, as on an eager page."""
    server = serve([write_app(tmp_path, "slider", SLIDER_APP)])
    response = server.get("/slider?bokeh-session-id=a", bokeh_session_id="b")
    assert response.status == 403
