"""Tests for docsyncd.bokeh_settings: the BOKEH_* settings bokeh serve honours, honoured the same way."""

from __future__ import annotations

import re

import pytest
from bokeh.settings import Settings
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import bokeh_settings
from docsyncd.security import OriginPolicy

from test_tap import parse
from unit_support import SLIDER_APP, InMemoryServer, write_app

ALL_BOKEH_VARIABLES = sorted({s.env_var for s in vars(Settings).values() if hasattr(s, "env_var")})


class SettingsTestCase(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _env(self, monkeypatch, tmp_path):
        for name in ALL_BOKEH_VARIABLES + ["DOCSYNC_SECRET_KEY", "DOCSYNC_COOKIE_SECRET"]:
            monkeypatch.delenv(name, raising=False)
        self.env = monkeypatch
        self.tmp_path = tmp_path


class MappingTests(SettingsTestCase):
    def test_every_setting_is_honoured_or_explained(self):
        """Every BOKEH_* variable of bokeh.settings is in the module's table or among the library's own settings."""
        documented = set(re.findall(r"BOKEH_[A-Z_]+", bokeh_settings.__doc__)) | set(bokeh_settings.LIBRARY_SETTINGS)
        self.assertEqual([v for v in ALL_BOKEH_VARIABLES if v not in documented], [])

    def test_defaults_without_settings(self):
        """Nothing set: unsigned ids, info logging, no auth module, no secrets, the default origin check."""
        options = parse()
        self.assertEqual((options["session-ids"], options["log-level"], options["auth-module"], options["secret-key"],
                          options["cookie-secret"], options["allow-websocket-origin"], options["listen"]),
                         ("unsigned", "info", None, None, None, [], ["tcp:5006"]))

    def test_allow_ws_origin(self):
        """BOKEH_ALLOW_WS_ORIGIN replaces --allow-websocket-origin, as bokeh serve's check_origin does; an entry
        without a port allows every port (bokeh.server.util.match_host)."""
        self.env.setenv("BOKEH_ALLOW_WS_ORIGIN", "example.com, other.org:8080")
        options = parse("--allow-websocket-origin", "given.net")
        self.assertEqual(options["allow-websocket-origin"], ["example.com:*", "other.org:8080"])
        policy = OriginPolicy(options["allow-websocket-origin"])
        self.assertIsNone(policy.refusal("http://example.com:9999", "localhost:5006"))
        self.assertIsNotNone(policy.refusal("http://other.org:9999", "localhost:5006"))
        self.assertIsNotNone(policy.refusal("http://given.net", "localhost:5006"))

    def test_star_allows_any_origin(self):
        """--allow-websocket-origin '*' allows any origin on any port, as under bokeh serve (issue 13, item 4)."""
        policy = OriginPolicy(parse("--allow-websocket-origin", "*")["allow-websocket-origin"])
        for origin in ("http://localhost:8000", "https://elsewhere.example:8443", "http://example.com"):
            self.assertIsNone(policy.refusal(origin, "localhost:5006"), origin)

    def test_signing(self):
        """BOKEH_SIGN_SESSIONS signs ids when --session-ids is not given, with BOKEH_SECRET_KEY; DOCSYNC_SECRET_KEY
        comes first; --session-ids wins."""
        self.env.setenv("BOKEH_SIGN_SESSIONS", "yes")
        self.assertRaises(usage.UsageError, parse)  # no key: refused, as bokeh serve dies
        self.env.setenv("BOKEH_SECRET_KEY", "k" * 32)
        self.assertEqual((parse()["session-ids"], parse()["secret-key"]), ("signed", "k" * 32))
        self.env.setenv("DOCSYNC_SECRET_KEY", "d" * 32)
        self.assertEqual(parse()["secret-key"], "d" * 32)
        self.assertEqual(parse("--session-ids", "unsigned")["session-ids"], "unsigned")

    def test_auth_module_and_cookie_secret(self):
        """BOKEH_AUTH_MODULE and BOKEH_COOKIE_SECRET fill --auth-module and --cookie-secret; options win."""
        auth = self.tmp_path / "auth.py"
        auth.write_text("")
        self.env.setenv("BOKEH_AUTH_MODULE", str(auth))
        self.env.setenv("BOKEH_COOKIE_SECRET", "from-bokeh")
        options = parse()
        self.assertEqual((options["auth-module"], options["cookie-secret"]), (str(auth), "from-bokeh"))
        self.env.setenv("DOCSYNC_COOKIE_SECRET", "from-docsync")
        self.assertEqual(parse()["cookie-secret"], "from-docsync")
        self.assertEqual(parse("--cookie-secret", "given")["cookie-secret"], "given")

    def test_py_log_level(self):
        """BOKEH_PY_LOG_LEVEL sets --log-level's default, in bokeh serve's spellings; --log-level wins."""
        for value, level in (("debug", "debug"), ("warning", "warning"), ("critical", "critical"),
                             ("trace", "trace"), ("none", "info")):
            self.env.setenv("BOKEH_PY_LOG_LEVEL", value)
            self.assertEqual(parse()["log-level"], level, value)
        self.assertEqual(parse("--log-level", "error")["log-level"], "error")

    def test_ssl(self):
        """BOKEH_SSL_CERTFILE and BOKEH_SSL_KEYFILE make the listener TLS on --port; a key password or an explicit
        --listen is refused in one sentence."""
        self.env.setenv("BOKEH_SSL_CERTFILE", "/etc/ssl/cert.pem")
        self.assertEqual(parse("--port", "8443")["listen"],
                         ["ssl:8443:privateKey=/etc/ssl/cert.pem:certKey=/etc/ssl/cert.pem"])
        self.env.setenv("BOKEH_SSL_KEYFILE", "/etc/ssl/key.pem")
        self.assertEqual(parse("--address", "127.0.0.1")["listen"],
                         ["ssl:5006:privateKey=/etc/ssl/key.pem:certKey=/etc/ssl/cert.pem:interface=127.0.0.1"])
        with self.assertRaisesRegex(usage.UsageError, "--listen names the endpoints too"):
            parse("--listen", "tcp:5006")
        self.env.setenv("BOKEH_SSL_PASSWORD", "secret")
        with self.assertRaisesRegex(usage.UsageError, "cannot read an encrypted key"):
            parse()

    def test_xsrf_cookies_refused(self):
        """BOKEH_XSRF_COOKIES asks for a protection docsyncd lacks: refused rather than silently missing."""
        self.env.setenv("BOKEH_XSRF_COOKIES", "yes")
        with self.assertRaisesRegex(usage.UsageError, "BOKEH_XSRF_COOKIES"):
            parse()


class PageTests(SettingsTestCase):
    """Settings Bokeh's Resources read for every page, and the favicon and browser settings."""

    def page(self):
        server = InMemoryServer([write_app(self.tmp_path, "sliders", SLIDER_APP)]).start_for(self)
        return server, server.get("/sliders").text

    def test_server_resources_by_default(self):
        """Pages load the minified BokehJS from this server, versioned."""
        _, text = self.page()
        self.assertRegex(text, r'src="/static/js/bokeh\.min\.js\?v=[0-9a-f]+"')

    def test_resources_minified_and_log_level(self):
        """BOKEH_RESOURCES=cdn, BOKEH_MINIFIED=no and BOKEH_LOG_LEVEL=debug change the page as under bokeh serve."""
        self.env.setenv("BOKEH_RESOURCES", "cdn")
        self.env.setenv("BOKEH_MINIFIED", "no")
        self.env.setenv("BOKEH_LOG_LEVEL", "debug")
        _, text = self.page()
        self.assertRegex(text, r'src="https://cdn\.bokeh\.org/bokeh/release/bokeh-3[^"]*\.js"')
        self.assertNotIn(".min.js", text)
        self.assertIn('Bokeh.set_log_level("debug")', text)

    def test_ico_path_none(self):
        """BOKEH_ICO_PATH=none: no /favicon.ico."""
        self.env.setenv("BOKEH_ICO_PATH", "none")
        server, _ = self.page()
        self.assertEqual(server.get("/favicon.ico").status, 404)

    def test_browser_none(self):
        """BOKEH_BROWSER=none: --show opens nothing (Bokeh's dummy browser)."""
        from docsyncd.urls import BrowserOpener

        self.env.setenv("BOKEH_BROWSER", "none")
        opener = BrowserOpener(None, "", ["app"], None)
        self.assertEqual(type(opener.open_url.__self__).__name__, "DummyWebBrowser")
