"""Tests for docsyncd.auth: signed cookies, Bokeh auth modules under twisted.web, login and logout."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import txaio
from bokeh.util.token import get_session_id
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import tap
from docsyncd.auth import AuthModule, AuthModuleError, AuthRequest, create_signed_value, decode_signed_value

from guard_support import ServerTestCase, raw_upgrade, send, websocket
from unit_support import SLIDER_APP, make_token, write_app, write_dir_app

COOKIE_SECRET = "cookie-secret-for-the-tests"

#: An auth module as an operator writes it: get_user reads a signed cookie that the login page sets.
AUTH_MODULE = (Path(__file__).resolve().parent.parent / "examples" / "auth_cookie.py").read_text()

ASYNC_AUTH_MODULE = '''
from twisted.internet import defer

async def get_user_async(request):
    await defer.succeed(None)
    return request.headers.get("X-User")

def get_login_url(request):
    return "https://sso.example.org/login?app=" + request.path
'''

LOGOUT_APP = """
from bokeh.io import curdoc
from bokeh.models import Div
curdoc().add_root(Div(name="facts", text=str(curdoc().session_context.logout_url)))
"""


class SignedValueTests(SynchronousTestCase):
    def test_round_trip(self):
        """A value signed under a name decodes with the same secret and name."""
        signed = create_signed_value(COOKIE_SECRET, "user", "alice", now=1000)
        self.assertEqual(decode_signed_value(COOKIE_SECRET, "user", signed, now=1000), b"alice")

    def test_refused(self):
        """Another secret, another name, a changed value, an expired or malformed value: None."""
        signed = create_signed_value(COOKIE_SECRET, "user", "alice", now=1000)
        self.assertIsNone(decode_signed_value("other-secret", "user", signed, now=1000))
        self.assertIsNone(decode_signed_value(COOKIE_SECRET, "admin", signed, now=1000))
        self.assertIsNone(decode_signed_value(COOKIE_SECRET, "user", signed.replace(b"YWxpY2U=", b"bWFsbG9y"), now=1000))
        self.assertIsNone(decode_signed_value(COOKIE_SECRET, "user", signed, now=1000 + 32 * 86400))
        for garbage in [b"", b"alice", b"2|", b"2|1:0|x", b"2|1:0|4:1000|4:user|8:YWxpY2U=|", b"2|99:0|"]:
            self.assertIsNone(decode_signed_value(COOKIE_SECRET, "user", garbage, now=1000), garbage)

    def test_tornado_compatible(self):
        """Cookies signed by Tornado verify here and the other way round (same secret)."""
        import tornado.web as tornado_web  # installed with bokeh
        now = time.time()
        theirs = tornado_web.create_signed_value(COOKIE_SECRET, "user", "alice")
        self.assertEqual(decode_signed_value(COOKIE_SECRET, "user", theirs, now=now), b"alice")
        ours = create_signed_value(COOKIE_SECRET, "user", "bob", now=now)
        self.assertEqual(tornado_web.decode_signed_value(COOKIE_SECRET, "user", ours), b"bob")


class AuthRequestTests(SynchronousTestCase):
    def test_tornado_handler_methods(self):
        """The request hooks get answers what auth modules ask of Tornado's RequestHandler."""
        cookie = create_signed_value(COOKIE_SECRET, "user", "alice").decode()
        request = AuthRequest(arguments={"a": [b"1", b"2"]}, headers={"X-User": "x"}, cookies={"user": cookie, "c": "v"},
                              uri="/app?a=1", host="example.org", protocol="https", cookie_secret=COOKIE_SECRET)
        self.assertEqual(request.get_secure_cookie("user"), b"alice")
        self.assertIsNone(request.get_secure_cookie("c"))
        self.assertEqual(request.get_cookie("c"), "v")
        self.assertEqual(request.get_argument("a"), "2")
        self.assertEqual(request.get_arguments("a"), ["1", "2"])
        self.assertEqual(request.get_argument("b", "default"), "default")
        self.assertEqual(request.request.headers["X-User"], "x")
        self.assertEqual(request.full_url(), "https://example.org/app?a=1")

    def test_secure_cookie_needs_secret(self):
        """Without --cookie-secret, get_secure_cookie says what is missing."""
        with self.assertRaises(RuntimeError) as raised:
            AuthRequest().get_secure_cookie("user")
        self.assertIn("--cookie-secret", str(raised.exception))


class AuthModuleTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def module(self, source, name="auth.py"):
        path = self.tmp_path / name
        path.write_text(textwrap.dedent(source))
        return str(path)

    def refusal(self, source):
        with self.assertRaises(AuthModuleError) as raised:
            AuthModule(self.module(source))
        return str(raised.exception)

    def test_tornado_handler_refused(self):
        """A Tornado LoginHandler is refused with one sentence saying why and what to write instead."""
        message = self.refusal("""
            from tornado.web import RequestHandler
            def get_user(request): return None
            login_url = "/login"
            class LoginHandler(RequestHandler):
                pass
        """)
        self.assertIn("LoginHandler is a Tornado RequestHandler, which cannot run under twisted.web", message)
        self.assertIn("twisted.web Resource", message)
        self.assertNotIn("\n", message)

    def test_bokeh_rules(self):
        """The rules of Bokeh's AuthProvider hold: one user hook, one login URL source, relative handler URLs."""
        self.assertIn("define only one of get_user and get_user_async", self.refusal("""
            def get_user(r): pass
            async def get_user_async(r): pass
            login_url = "/login"
        """))
        self.assertIn("define login_url or get_login_url", self.refusal("def get_user(r): pass\n"))
        self.assertIn("define get_user", self.refusal("login_url = '/login'\n"))
        self.assertIn("define only one of login_url and get_login_url", self.refusal("""
            def get_user(r): pass
            login_url = "/login"
            def get_login_url(r): return "/x"
        """))
        self.assertIn("LoginHandler needs a relative login_url", self.refusal("""
            from twisted.web.resource import Resource
            def get_user(r): pass
            login_url = "https://sso.example.org/"
            class LoginHandler(Resource): pass
        """))
        self.assertIn("must be a twisted.web Resource", self.refusal("""
            def get_user(r): pass
            login_url = "/login"
            class LoginHandler: pass
        """))
        self.assertIn("ZeroDivisionError", self.refusal("1 / 0\n"))

    def test_urls_under_prefix(self):
        """login_url and logout_url are joined to --prefix, as bokeh serve joins them."""
        auth = AuthModule(self.module(AUTH_MODULE), prefix="/bokeh", cookie_secret=COOKIE_SECRET)
        self.assertEqual(auth.under_prefix("/login"), "/bokeh/login")
        self.assertEqual(auth.public_paths(), ["/bokeh/login", "/bokeh/logout"])
        self.assertEqual(auth.full_logout_url, "/bokeh/logout")
        self.assertEqual([segments for segments, _ in auth.mounts()], [[b"login"], [b"logout"]])

    def test_login_url_taken(self):
        """A LoginHandler whose login_url is an app's URL stops start-up with one sentence."""
        app = write_app(self.tmp_path, "sliders", SLIDER_APP)
        path = self.module(AUTH_MODULE.replace('login_url = "/login"', 'login_url = "/sliders"'))
        options = tap.Options()
        options.parseOptions(["--app", app, "--auth-module", path, "--store", "memory"])
        reactor = MemoryReactorClock()
        self.patch(txaio.config, "loop", reactor)
        with self.assertRaises(SystemExit) as raised:
            tap.make_service(options, reactor)
        self.assertIn("sliders is already served by docsyncd", str(raised.exception.code))

    def test_make_service_one_line(self):
        """twistd docsync stops with one line when the auth module has a Tornado handler."""
        app = write_app(self.tmp_path, "sliders", SLIDER_APP)
        path = self.module("""
            import tornado.web
            def get_user(request): return None
            login_url = "/login"
            logout_url = "/logout"
            class LogoutHandler(tornado.web.RequestHandler): pass
        """)
        options = tap.Options()
        options.parseOptions(["--app", app, "--auth-module", path, "--store", "memory"])
        reactor = MemoryReactorClock()
        self.patch(txaio.config, "loop", reactor)
        with self.assertRaises(SystemExit) as raised:
            tap.make_service(options, reactor)
        self.assertTrue(str(raised.exception.code).startswith(f"docsync: --auth-module {path}: LogoutHandler is a "
                                                              "Tornado RequestHandler"), raised.exception.code)


def cookie_from(response) -> str:
    """``name=value`` of the response's Set-Cookie."""
    return response.headers["set-cookie"].split(";")[0]


class LoginFlowTests(ServerTestCase):
    def setUp(self):
        self.auth = self.tmp_path / "auth.py"
        self.auth.write_text(AUTH_MODULE)
        self.app = write_dir_app(self.tmp_path, "sliders", {"main.py": SLIDER_APP, "static/app.css": "p {}"})
        self.server = self.start_server(self.app, args=["--auth-module", str(self.auth),
                                                        "--cookie-secret", COOKIE_SECRET])

    def login(self, password="sesame"):
        body = f"username=alice&password={password}&next={quote('/sliders?x=1')}".encode()
        return send(self.server, "/login", {"Content-Type": "application/x-www-form-urlencoded"}, method="POST",
                    body=body)

    def test_page_redirects_to_login(self):
        """A page request without a user is redirected to login_url with ``next``; no session is built."""
        response = send(self.server, "/sliders?x=1")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers["location"], "/login?next=%2Fsliders%3Fx%3D1")
        self.assertEqual(self.server.managers["sliders"].sessions, [])
        self.assertEqual(send(self.server, "/").status, 302)
        self.assertEqual(send(self.server, "/sliders/metadata").status, 302)

    def test_websocket_refused(self):
        """A websocket without a user is refused with 403 before the upgrade; no session is built."""
        self.assertEqual(raw_upgrade(self.server, "sliders", make_token()).status, 403)
        self.assertEqual(self.server.managers["sliders"].sessions, [])

    def test_post_without_user_403(self):
        """A request that is not GET or HEAD, without a user, gets 403 rather than a redirect."""
        self.assertEqual(send(self.server, "/sliders/published/x", method="DELETE").status, 403)

    def test_public_resources(self):
        """Static files, the login page, 404s and CORS preflights need no user."""
        self.assertEqual(send(self.server, "/static/js/bokeh.min.js").status, 200)
        self.assertEqual(send(self.server, "/sliders/static/app.css").status, 200)
        self.assertEqual(send(self.server, "/favicon.ico").status, 200)
        self.assertEqual(send(self.server, "/nothing-here").status, 404)
        self.assertEqual(send(self.server, "/sliders/static/missing.css").status, 404)
        preflight = send(self.server, "/sliders/autoload.js", method="OPTIONS")  # CORS: no credentials
        self.assertEqual(preflight.status, 200)
        self.assertEqual(send(self.server, "/sliders/autoload.js?bokeh-autoload-element=x").status, 302)
        form = send(self.server, "/login?next=/sliders")
        self.assertEqual(form.status, 200)
        self.assertIn(b'value="/sliders"', form.body)

    def test_login_then_page_and_websocket(self):
        """The login page sets a signed cookie; with it the page renders and its websocket opens."""
        self.assertEqual(self.login("wrong").status, 403)
        response = self.login()
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers["location"], "/sliders?x=1")
        cookie = cookie_from(response)
        self.assertIn("HttpOnly", response.headers["set-cookie"])
        page = send(self.server, "/sliders?x=1", {"Cookie": cookie})
        self.assertEqual(page.status, 200)
        client, _ = websocket(self.server, "sliders", page.token(), headers={"Cookie": cookie})
        self.assertTrue(client.opened and not client.closed)

    def test_forged_cookie_refused(self):
        """A cookie not signed with --cookie-secret is no user."""
        forged = create_signed_value("guessed-secret", "user", "mallory").decode()
        self.assertEqual(send(self.server, "/sliders", {"Cookie": f"user={forged}"}).status, 302)
        self.assertEqual(send(self.server, "/sliders", {"Cookie": "user=mallory"}).status, 302)

    def test_logout(self):
        """The logout page clears the cookie, and the session context knows its URL."""
        response = send(self.server, "/logout", {"Cookie": cookie_from(self.login())})
        self.assertEqual(response.status, 302)
        self.assertIn("user=;", response.headers["set-cookie"])
        self.assertIn("Max-Age=0", response.headers["set-cookie"])

    def test_logout_url_in_session_context(self):
        """``session_context.logout_url`` is the auth module's logout URL under the prefix."""
        app = write_app(self.tmp_path, "facts", LOGOUT_APP)
        server = self.start_server(app, args=["--auth-module", str(self.auth), "--cookie-secret", COOKIE_SECRET,
                                              "--prefix", "/bokeh"])
        login = send(server, "/bokeh/login", {"Content-Type": "application/x-www-form-urlencoded"}, method="POST",
                     body=b"username=alice&password=sesame&next=/bokeh/facts")
        self.assertEqual(login.status, 302)
        page = send(server, "/bokeh/facts", {"Cookie": cookie_from(login)})
        self.assertEqual(page.status, 200)
        self.assertEqual(self.facts(server, "facts", get_session_id(page.token())), "/bokeh/logout")
        self.assertEqual(send(server, "/bokeh/facts").headers["location"], "/bokeh/login?next=%2Fbokeh%2Ffacts")


class AsyncAuthTests(ServerTestCase):
    def test_get_user_async_and_get_login_url(self):
        """get_user_async may be a coroutine; get_login_url may send users to another site (with the full URL as next)."""
        auth = self.tmp_path / "auth.py"
        auth.write_text(ASYNC_AUTH_MODULE)
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--auth-module", str(auth)])
        self.assertEqual(send(server, "/sliders", {"X-User": "alice"}).status, 200)
        refused = send(server, "/sliders")
        self.assertEqual(refused.status, 302)
        self.assertEqual(refused.headers["location"], "https://sso.example.org/login?app=/sliders")
        self.assertEqual(raw_upgrade(server, "sliders", make_token(), headers={"X-User": "alice"}).status, 101)
        self.assertEqual(raw_upgrade(server, "sliders", make_token()).status, 403)

    def test_user_hook_error(self):
        """A get_user that raises answers 500 and is logged; the server carries on."""
        auth = self.tmp_path / "auth.py"
        auth.write_text("def get_user(request):\n    raise ValueError('directory down')\nlogin_url = '/login'\n")
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--auth-module", str(auth)])
        self.assertEqual(send(server, "/sliders").status, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(send(server, "/static/js/bokeh.min.js").status, 200)
