"""Tests for docsyncd.web: app pages, autoload.js, metadata, static files and the index, through an in-memory Site."""

from __future__ import annotations

import gc
import json
from urllib.parse import quote

import pytest
from bokeh.util.token import get_session_id, get_token_payload
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.sessions import DocumentBuildError

from unit_support import (RECORDING_LIFECYCLE, SLIDER_APP, InMemoryServer, RawClient, crafted_token, make_token, write_app,
                          write_dir_app)


class WebTestCase(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def start_server(self, *paths, args=()):
        return InMemoryServer(list(paths), list(args)).start_for(self)

    def sliders(self, *args):
        return self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=args)


class PageTests(WebTestCase):
    def setUp(self):
        self.server = self.sliders()
        self.manager = self.server.managers["sliders"]

    def test_page_creates_session(self):
        """GET /<app> builds a session and returns HTML embedding its token, which carries the query arguments."""
        response = self.server.get("/sliders?symbol=AAPL&days=5")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "text/html; charset=utf-8")
        token = response.token()
        session = self.manager.get(get_session_id(token))
        self.assertIsNotNone(session)
        self.assertEqual(get_token_payload(token)["arguments"], {"symbol": [b"AAPL"], "days": [b"5"]})
        self.assertEqual(session.document.session_context.request.arguments, {"symbol": [b"AAPL"], "days": [b"5"]})
        self.assertEqual(session.document.get_model_by_name("div").tags, ["days", "symbol"])
        self.assertIn("<title>Bokeh Application</title>", response.text)
        # The document itself only travels over the websocket.
        self.assertRegex(response.text, r'<script type="application/json" id="[^"]+">\s*\{\}\s*</script>')

    def test_request_headers_and_cookies_in_token(self):
        """The page request's headers and cookies travel in the token to the session's request context."""
        response = self.server.get("/sliders", User_Agent="unit-test", Cookie="theme=dark")
        request = self.manager.get(get_session_id(response.token())).document.session_context.request
        self.assertEqual(request.headers["User-Agent"], "unit-test")
        self.assertEqual(request.cookies, {"theme": "dark"})
        self.assertEqual(request.host, "localhost:5006")

    def test_each_get_new_session(self):
        """Each plain page GET creates its own session."""
        self.server.get("/sliders")
        self.server.get("/sliders/")
        self.assertEqual(len(self.manager.sessions), 2)

    def test_session_id_argument_joins(self):
        """``?bokeh-session-id=`` names the session, so a second GET joins the first's session."""
        first = self.server.get("/sliders?bokeh-session-id=shared")
        second = self.server.get("/sliders?bokeh-session-id=shared")
        self.assertEqual(get_session_id(first.token()), "shared")
        self.assertEqual(get_session_id(second.token()), "shared")
        self.assertEqual([s.id for s in self.manager.sessions], ["shared"])

    def test_session_id_header(self):
        """A ``Bokeh-Session-Id`` header names the session like the argument does."""
        response = self.server.get("/sliders", Bokeh_Session_Id="from-header")
        self.assertEqual(get_session_id(response.token()), "from-header")

    def test_token_argument(self):
        """``?bokeh-token=`` passes a whole token, which is used as it is."""
        token = make_token("given")
        response = self.server.get(f"/sliders?bokeh-token={token}")
        self.assertEqual(response.token(), token)
        self.assertIsNotNone(self.manager.get("given"))

    def test_id_and_token_refused(self):
        """A session id and a token together are refused with 403 and no session."""
        token = make_token("t")
        response = self.server.get(f"/sliders?bokeh-session-id=x&bokeh-token={token}")
        self.assertEqual(response.status, 403)
        self.assertIn("both a token and a session id", response.text)
        self.assertEqual(self.manager.sessions, [])

    def test_id_argument_and_header_refused(self):
        """A session id given both as argument and header is refused with 403."""
        response = self.server.get("/sliders?bokeh-session-id=a", Bokeh_Session_Id="b")
        self.assertEqual(response.status, 403)

    def test_garbage_token_refused(self):
        """A ``bokeh-token`` that does not decode is refused with 403."""
        self.assertEqual(self.server.get("/sliders?bokeh-token=garbage").status, 403)

    def test_crafted_tokens_get_the_websockets_checks(self):
        """A crafted ``?bokeh-token=`` gets 403 with the websocket's reason, never 500, and builds no session."""
        import time

        bomb = b'{"headers": {"x": "' + b" " * (8 * 1024 * 1024) + b'"}}'
        cases = {
            "no expiry": crafted_token({"session_id": "a"}),
            "expired": crafted_token({"session_id": "b", "session_expiry": time.time() - 10}),
            "inflates to more than": crafted_token({"session_id": "c", "session_expiry": time.time() + 300}, bomb),
            "malformed session token": crafted_token({"session_id": "d", "session_expiry": time.time() + 300},
                                                      b"[1, 2]"),
        }
        for reason, token in cases.items():
            for path in (f"/sliders?bokeh-token={token}", f"/sliders/autoload.js?bokeh-autoload-element=e1&bokeh-token={token}"):
                response = self.server.get(path)
                self.assertEqual(response.status, 403, (reason, path))
                self.assertIn(reason, response.text)
        self.assertEqual(self.manager.sessions, [])

    def test_autoload_element_ids_as_bokeh_makes_them(self):
        """autoload.js takes only element ids Bokeh makes: anything that could break out of its JavaScript is 400."""
        from bokeh.util.serialization import make_globally_unique_css_safe_id

        for bad in ('x";alert(1);//', "x'", "x</script>", "1abc", "a b", "a\\u0022"):
            response = self.server.get(f"/sliders/autoload.js?bokeh-autoload-element={quote(bad)}")
            self.assertEqual(response.status, 400, bad)
            self.assertNotIn(bad.encode(), response.body)
        self.assertEqual(self.manager.sessions, [])
        good = make_globally_unique_css_safe_id()
        self.assertEqual(self.server.get(f"/sliders/autoload.js?bokeh-autoload-element={good}").status, 200)

    def test_autoload_cors_only_for_allowed_origins(self):
        """autoload.js grants CORS to origins that may open the websocket, without credentials unless configured."""
        own = self.server.get("/sliders/autoload.js?bokeh-autoload-element=e1", Origin="http://localhost:5006",
                              Cookie="user=secret")
        self.assertEqual(own.headers["access-control-allow-origin"], "http://localhost:5006")
        self.assertNotIn("access-control-allow-credentials", own.headers)
        foreign = self.server.get("/sliders/autoload.js?bokeh-autoload-element=e1", Origin="http://evil.example",
                                  Cookie="user=secret")
        self.assertNotIn("access-control-allow-origin", foreign.headers)
        self.assertNotIn("access-control-allow-credentials", foreign.headers)
        server = self.sliders("--allow-websocket-origin", "embed.example", "--autoload-credentials")
        embed = server.get("/sliders/autoload.js?bokeh-autoload-element=e1", Origin="http://embed.example")
        self.assertEqual(embed.headers["access-control-allow-origin"], "http://embed.example")
        self.assertEqual(embed.headers["access-control-allow-credentials"], "true")
        preflight = server.request("/sliders/autoload.js", method="OPTIONS", headers={"Origin": "http://evil.example"})
        self.assertNotIn("access-control-allow-origin", preflight.headers)

    def test_unknown_app(self):
        """A path naming no app is 404."""
        self.assertEqual(self.server.get("/nothing").status, 404)
        self.assertEqual(self.server.get("/sliders/nothing").status, 404)

    def test_resources_versioned(self):
        """The page loads BokehJS from this server's /static with a content hash for caching."""
        text = self.server.get("/sliders").text
        self.assertRegex(text, r'src="/static/js/bokeh\.min\.js\?v=[0-9a-f]{32}"')

    def test_resources_bundled_once_per_set_of_models(self):
        """Pages reuse the rendered script tags until a new model class (an extension's) could change them."""
        from bokeh.model import Model

        from docsyncd import web

        calls = []
        original = web.bundle_for_objs_and_resources
        self.patch(web, "bundle_for_objs_and_resources", lambda *args: calls.append(args) or original(*args))
        self.server.get("/sliders")
        second = self.server.get("/sliders").text
        self.assertEqual(len(calls), 1)
        self.assertIn("bokeh.min.js", second)

        class PageBundleProbe(Model):  # registering a model class is what an extension's import does
            pass

        self.server.get("/sliders")
        self.assertEqual(len(calls), 2)

    def test_metadata(self):
        """GET /<app>/metadata answers the app's URL and metadata as JSON."""
        response = self.server.get("/sliders/metadata")
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(json.loads(response.body), {"url": "/sliders", "data": {}})

    def test_autoload(self):
        """autoload.js creates a session and embeds its token and the element id."""
        response = self.server.get("/sliders/autoload.js?bokeh-autoload-element=plot-1&bokeh-app-path=/sliders"
                                   "&bokeh-absolute-url=http://localhost:5006/sliders")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/javascript")
        self.assertIn("plot-1", response.text)
        self.assertIsNotNone(self.manager.get(get_session_id(response.token())))
        self.assertEqual(response.headers["access-control-allow-origin"], "*")

    def test_autoload_without_element(self):
        """autoload.js without ``bokeh-autoload-element`` is 400 and creates no session."""
        response = self.server.get("/sliders/autoload.js")
        self.assertEqual(response.status, 400)
        self.assertEqual(self.manager.sessions, [])

    def test_autoload_options(self):
        """An OPTIONS preflight for autoload.js answers with CORS headers."""
        response = self.server.request("/sliders/autoload.js", method="OPTIONS")
        self.assertEqual(response.status, 200)
        self.assertIn("GET", response.headers["access-control-allow-methods"])

    def test_bokehjs_static(self):
        """BokehJS's static files are served under /static and may be cached for a year."""
        response = self.server.get("/static/js/bokeh.min.js")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["cache-control"], "public, max-age=31536000")
        self.assertIn(b"Bokeh", response.body[:2000])

    def test_bokehjs_static_head(self):
        """A HEAD request for a BokehJS file gets the same caching header as GET."""
        response = self.server.request("/static/js/bokeh.min.js", method="HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["cache-control"], "public, max-age=31536000")

    def test_favicon(self):
        """/favicon.ico is served as an icon."""
        response = self.server.get("/favicon.ico")
        self.assertEqual(response.status, 200)
        self.assertIn(response.headers["content-type"], {"image/x-icon", "image/vnd.microsoft.icon"})


class ErrorPageTests(WebTestCase):
    def test_app_raising_500(self):
        """An app that raises while building the document gets a 500 page naming the file and line."""
        path = write_app(self.tmp_path, "broken", "x = 1\nraise ValueError('no data file')\n")
        server = self.start_server(path)
        response = server.get("/broken")
        self.assertEqual(response.status, 500)
        self.assertIn("Error running the app", response.text)
        self.assertIn("line 2", response.text)
        self.assertIn("ValueError: no data file", response.text)
        self.assertEqual(server.managers["broken"].sessions, [])
        self.flushLoggedErrors(DocumentBuildError)


    def test_client_leaves_while_session_builds(self):
        """A browser that leaves before its page's session is ready causes no logged error."""
        server = self.start_server(write_dir_app(self.tmp_path, "gated", {
            "main.py": SLIDER_APP, "server_lifecycle.py": RECORDING_LIFECYCLE,
        }))
        gate = server.managers["gated"].server_context.gate = defer.Deferred()
        client = RawClient()
        pump = server.connect(client)
        client.transport.write(b"GET /gated HTTP/1.0\r\nHost: localhost:5006\r\n\r\n")
        pump.flush()
        client.transport.loseConnection()
        pump.flush()
        gate.callback(None)
        pump.flush()
        gc.collect()  # "Unhandled error in Deferred" is logged when the Deferred is collected
        errors = self.flushLoggedErrors()
        self.assertEqual([e.getErrorMessage() for e in errors], [])


class DirectoryAppTests(WebTestCase):
    def test_template_and_static(self):
        """A directory app's template renders the page and its static/ directory is served at /<app>/static."""
        path = write_dir_app(self.tmp_path, "dash", {
            "main.py": SLIDER_APP,
            "templates/index.html": """
                {% extends base %}
                {% block title %}Dashboard from template{% endblock %}
            """,
            "static/style.css": "body { color: red; }",
        })
        server = self.start_server(path)
        page = server.get("/dash")
        self.assertEqual(page.status, 200)
        self.assertIn("Dashboard from template", page.text)
        css = server.get("/dash/static/style.css")
        self.assertEqual((css.status, css.body), (200, b"body { color: red; }"))


class IndexTests(WebTestCase):
    def test_listing(self):
        """With several apps, / lists them with links."""
        server = self.start_server(write_app(self.tmp_path, "alpha", SLIDER_APP),
                                   write_app(self.tmp_path, "beta", SLIDER_APP))
        response = server.get("/")
        self.assertEqual(response.status, 200)
        self.assertIn('href="/alpha"', response.text)
        self.assertIn('href="/beta"', response.text)

    def test_single_app_redirects(self):
        """With one app, / redirects to it."""
        response = self.sliders().get("/")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers["location"], "/sliders")

    def test_disable_index(self):
        """With --disable-index, / is 404 and the apps are still served."""
        server = self.sliders("--disable-index")
        self.assertEqual(server.get("/").status, 404)
        self.assertEqual(server.get("/sliders").status, 200)

    def test_index_template(self):
        """--index renders a user template with the prefix and the app paths."""
        template = self.tmp_path / "index.html"
        template.write_text("apps:{% for item in items %} {{ prefix }}{{ item }}{% endfor %}")
        response = self.sliders("--index", str(template), "--prefix", "/viz").get("/viz/")
        self.assertEqual(response.text, "apps: /viz/sliders")

    def test_prefix(self):
        """With --prefix, apps, static files and the index live under it, and nothing outside it."""
        server = self.sliders("--prefix", "/bokeh/")
        self.assertEqual(server.get("/bokeh/sliders").status, 200)
        self.assertRegex(server.get("/bokeh/sliders").text, r'src="/bokeh/static/js/bokeh\.min\.js\?v=')
        self.assertEqual(server.get("/bokeh/").headers["location"], "/bokeh/sliders")
        self.assertEqual(server.get("/bokeh/sliders/metadata").status, 200)
        self.assertEqual(json.loads(server.get("/bokeh/sliders/metadata").body)["url"], "/bokeh/sliders")
        self.assertEqual(server.get("/sliders").status, 404)
