"""docsyncd.lazy: --lazy-documents pages mint a token; the websocket builds the document, once."""

from __future__ import annotations

import json
import re

import pytest
from bokeh.util.token import get_session_id

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


#: A helper module that gives the document a template and a banner (issue 13, item 3): the app's own file
#: mentions neither.
BANNER_HELPER = """
from bokeh.io import curdoc
from jinja2 import Template

def use_banner_page(text):
    doc = curdoc()
    doc.template = Template('{% extends base %}{% block contents %}<h1 id="banner">{{ banner }}</h1>'
                            '{{ super() }}{% endblock %}')
    doc.template_variables["banner"] = text
"""

#: Counts its documents in a module attribute that survives between sessions (sys.modules).
COUNTING = """
import sys
counter = sys.modules.setdefault("docsync_built_documents", type(sys)("docsync_built_documents"))
counter.count = getattr(counter, "count", 0) + 1
"""


def test_a_template_set_by_an_imported_module_is_honoured(serve, tmp_path):
    """A one-file app that imports a helper setting doc.template and template_variables gets that page, with its
    banner, under --lazy-documents: what the document does decides, not the app's source text."""
    (tmp_path / "banner_helper.py").write_text(BANNER_HELPER)
    app = write_app(tmp_path, "helped", "from banner_helper import use_banner_page\n" + SLIDER_APP
                    + "\nuse_banner_page('Hello from the helper')\n")
    server = serve([app])
    for _ in range(2):  # the first page (after the rehearsal) and a later one
        response = server.get("/helped")
        assert response.status == 200
        assert '<h1 id="banner">Hello from the helper</h1>' in response.text
        assert render_item(response.text).get("roots")  # eager: the page embeds the document's roots
    assert len(server.managers["helped"].sessions) == 2


def test_directory_template_and_template_variables_stay_eager(serve, tmp_path):
    """A directory app with templates/index.html, or code setting template_variables, builds at the page GET."""
    directory = write_dir_app(tmp_path, "templated", {"main.py": SLIDER_APP, "templates/index.html": TEMPLATE})
    script = write_app(tmp_path, "scripted", SLIDER_APP + "\ndoc.template_variables['x'] = 1\n")
    server = serve([directory, script])
    response = server.get("/templated")
    assert response.status == 200 and "<h1>mine</h1>" in response.text
    assert server.get("/scripted").status == 200
    assert len(server.managers["templated"].sessions) == len(server.managers["scripted"].sessions) == 1


def test_the_first_page_rehearses_the_app_once(serve, tmp_path):
    """Until a document of the app was built in this process, the first page builds one for its request and
    discards it at once; later pages and the websocket build one document per session, and text that merely
    mentions templates does not make the app eager."""
    import sys

    sys.modules.pop("docsync_built_documents", None)
    app = write_app(tmp_path, "plain", COUNTING + SLIDER_APP + "\n# not a .template, no template_variables\n")
    server = serve([app])
    manager = server.managers["plain"]
    assert manager.sets_page_template is None
    tokens = [server.get("/plain").token() for _ in range(3)]
    assert sys.modules["docsync_built_documents"].count == 1  # the rehearsal, discarded
    assert manager.sets_page_template is False and manager.sessions == []
    server.session_websocket("plain", tokens[0])
    assert sys.modules["docsync_built_documents"].count == 2
    assert [s.id for s in manager.sessions] == [get_session_id(tokens[0])]


def test_a_session_that_sets_a_template_makes_later_pages_eager(serve, tmp_path):
    """An app that sets a template only for some requests: once one of its documents did, its pages are eager."""
    (tmp_path / "banner_helper.py").write_text(BANNER_HELPER)
    app = write_app(tmp_path, "sometimes", SLIDER_APP + """
from banner_helper import use_banner_page
if "banner" in arguments:
    use_banner_page("asked for")
""")
    server = serve([app])
    lazy = server.get("/sometimes")
    assert not render_item(lazy.text).get("roots")
    server.session_websocket("sometimes", server.get("/sometimes?banner=1").token())
    assert server.managers["sometimes"].sets_page_template is True
    assert "asked for" in server.get("/sometimes?banner=1").text


def test_a_failing_app_answers_500_and_stays_undecided(serve, tmp_path):
    """An app whose code raises gets the eager page's error (500), and the next page tries again."""
    server = serve([write_app(tmp_path, "broken", "raise RuntimeError('no data today')\n")])
    for _ in range(2):
        response = server.get("/broken")
        assert response.status == 500 and "no data today" in response.text
    assert server.managers["broken"].sets_page_template is None


#: Run in an interpreter of its own: importing Panel patches Bokeh's script handler for the whole process.
PANEL_CHECK = """
import json, re, sys
sys.path.insert(0, sys.argv[1])
import conftest  # the unit tests' process set-up
from unit_support import InMemoryServer

server = InMemoryServer(sys.argv[2:], ["--lazy-documents"])
pages = {name: server.get("/" + name).text for name in ("pn_plain", "pn_templated")}
print(json.dumps({
    "plain_roots": json.loads(re.search(r"const render_items = (\\[.*?\\]);", pages["pn_plain"]).group(1))[0].get("roots"),
    "plain_page": pages["pn_plain"],
    "decided": {name: server.managers[name].sets_page_template for name in pages},
    "templated_sessions": len(server.managers["pn_templated"].sessions),
    "applications": [type(m.application).__module__ for m in server.managers.values()],
    "templated_page": pages["pn_templated"],
}))
"""


def test_panel_servable_and_templates(tmp_path):
    """Panel apps run in Panel's Application and their documents get Panel's page, as under panel serve, so
    their pages are built at the GET:
    ``.servable()`` of a layout (Panel's page, its CSS served locally) and of a template (the template, its title)."""
    import subprocess
    import sys
    from pathlib import Path

    plain = write_app(tmp_path, "pn_plain", """
import panel as pn
pn.Column("# Plain", pn.widgets.IntSlider(name="n", value=1)).servable()
""")
    templated = write_app(tmp_path, "pn_templated", """
import panel as pn
template = pn.template.BootstrapTemplate(title="Templated app")
template.sidebar.append(pn.widgets.IntSlider(name="n", value=1))
template.main.append("# Main")
template.servable()
""")
    run = subprocess.run([sys.executable, "-c", PANEL_CHECK, str(Path(__file__).parent), plain, templated],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["plain_roots"]
    assert 'href="static/extensions/panel/' in result["plain_page"]  # Panel's dist_url: no CDN
    assert result["decided"] == {"pn_plain": True, "pn_templated": True}
    assert result["templated_sessions"] == 1
    assert result["applications"] == ["panel.io.application"] * 2  # Panel's Application, as panel serve runs
    assert "<title>Templated app</title>" in result["templated_page"] and "bootstrap" in result["templated_page"]


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
