"""Tests for docsyncd.guard and guard_options: the options, --allow-host, session ids, which headers and cookies reach tokens."""

from __future__ import annotations

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id, get_token_payload
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import tap
from docsyncd.guard import GuardedChannel, GuardedRequest, RequestFilter
from docsyncd.limits import RequestLimits

from guard_support import ServerTestCase, raw_upgrade, send, websocket
from test_limits import LogCapture
from unit_support import SLIDER_APP, make_token, write_app

SECRET = "a-secret-key-that-is-long-enough-for-bokeh"


def parse(*argv):
    options = tap.Options()
    options.parseOptions(["--app", "a.py", *argv])
    return options


class OptionsTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _env(self, monkeypatch):
        for name in ("DOCSYNC_COOKIE_SECRET", "BOKEH_COOKIE_SECRET", "DOCSYNC_SECRET_KEY", "BOKEH_SECRET_KEY"):
            monkeypatch.delenv(name, raising=False)
        self.monkeypatch = monkeypatch

    def assert_usage_error(self, argv, text):
        with self.assertRaises(usage.UsageError) as raised:
            parse(*argv)
        self.assertIn(text, str(raised.exception))

    def test_defaults(self):
        """By default nothing is capped beyond Twisted's own header limits, and no proxy header is believed."""
        options = parse()
        self.assertFalse(options["use-xheaders"])
        self.assertEqual(options["allow-host"], [])
        self.assertEqual((options["max-sessions"], options["max-session-rate"]), (0, 0))
        self.assertEqual(RequestLimits.from_options(options), RequestLimits())
        self.assertEqual(options["websocket-max-send-buffer"], 64 * 1024 * 1024)
        self.assertIsNone(options["auth-module"])
        self.assertIsNone(options["cookie-secret"])
        self.assertIsNone(options["include-headers"])

    def test_lists(self):
        """--allow-host repeats; the header and cookie lists take comma-separated names and repeat."""
        options = parse("--allow-host", "a.example", "--allow-host", "*.b.example:8080",
                        "--include-headers", "User-Agent, Accept", "--include-headers", "Referer",
                        "--exclude-cookies", "session")
        self.assertEqual(options["allow-host"], ["a.example", "*.b.example:8080"])
        self.assertEqual(options["include-headers"], ["User-Agent", "Accept", "Referer"])
        self.assertEqual(options["exclude-cookies"], ["session"])

    def test_refusals(self):
        """Include and exclude lists together, negative caps, empty sizes and a missing auth module are refused in one sentence."""
        self.assert_usage_error(["--include-headers", "a", "--exclude-headers", "b"],
                                "give --include-headers or --exclude-headers, not both")
        self.assert_usage_error(["--include-cookies", "a", "--exclude-cookies", "b"], "not both")
        self.assert_usage_error(["--max-sessions", "-1"], "--max-sessions must be 0 (no limit) or a positive number")
        self.assert_usage_error(["--max-body-size", "0"], "--max-body-size must be a positive number")
        self.assert_usage_error(["--websocket-max-send-buffer", "-1"], "must be 0 (no limit) or a positive number")
        self.assertEqual(parse("--websocket-max-send-buffer", "0")["websocket-max-send-buffer"], 0)  # no limit
        self.assert_usage_error(["--allow-host", "http://x/"], "give a host name")
        self.assert_usage_error(["--auth-module", "/no/such/auth.py"], "--auth-module /no/such/auth.py: no such file")

    def test_cookie_secret_from_environment(self):
        """--cookie-secret defaults to DOCSYNC_COOKIE_SECRET, then BOKEH_COOKIE_SECRET."""
        self.monkeypatch.setenv("BOKEH_COOKIE_SECRET", "from-bokeh")
        self.assertEqual(parse()["cookie-secret"], "from-bokeh")
        self.monkeypatch.setenv("DOCSYNC_COOKIE_SECRET", "from-docsync")
        self.assertEqual(parse()["cookie-secret"], "from-docsync")
        self.assertEqual(parse("--cookie-secret", "given")["cookie-secret"], "given")

    def test_help_names_bokeh_flag(self):
        """--help describes --allow-host and says what bokeh serve called it."""
        text = " ".join(str(tap.Options()).split())
        self.assertIn("--allow-host=", text)
        self.assertIn("bokeh serve once called this option 'host'", text)
        self.assertIn("--use-xheaders", text)


class WiringTests(ServerTestCase):
    def test_site_is_guarded(self):
        """The site's channels and requests are the guarded kinds, with the limits from the options."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--max-request-line", "999", "--websocket-max-send-buffer", "1234"])
        self.assertIs(server.site.requestFactory, GuardedRequest)
        self.assertIs(server.site.protocol, GuardedChannel)
        self.assertEqual(server.site.request_limits.max_request_line, 999)
        self.assertEqual(server.service.factories[0].max_send_buffer, 1234)


class HostTests(ServerTestCase):
    def setUp(self):
        self.log = LogCapture(self)
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                        args=["--allow-host", "localhost:5006", "--allow-host", "*.example.org"])

    def test_allowed_hosts(self):
        """A Host the allowlist names (wildcards, default port) is served."""
        self.assertEqual(send(self.server, "/sliders", host="localhost:5006").status, 200)
        self.assertEqual(send(self.server, "/sliders", host="dash.example.org").status, 200)
        self.assertEqual(send(self.server, "/sliders", host="DASH.example.org:80").status, 200)

    def test_other_host_403(self):
        """Another Host gets 403 and a log line naming it, before any session is built."""
        for host in ["evil.example", "localhost:8080", "dash.example.org:8080"]:
            response = send(self.server, "/sliders", host=host)
            self.assertEqual(response.status, 403, host)
            self.assertIn(b"does not answer for that host name", response.body)
        self.assertEqual(self.server.managers["sliders"].sessions, [])
        self.assertEqual(len(self.log.matching("Host 'evil.example' is not allowed (--allow-host")), 1)

    def test_missing_or_repeated_host_400(self):
        """A request without a Host header, or with two, cannot be checked: 400."""
        self.assertEqual(send(self.server, "/sliders", host=None).status, 400)
        self.assertEqual(send(self.server, "/sliders", {"Host": "evil.example"}).status, 400)

    def test_websocket_host_403(self):
        """A websocket upgrade with a Host the allowlist does not name gets 403 before the upgrade."""
        self.assertEqual(raw_upgrade(self.server, "sliders", make_token(), host="evil.example").status, 403)
        self.assertEqual(raw_upgrade(self.server, "sliders", make_token()).status, 101)

    def test_forwarded_host_checked(self):
        """With --use-xheaders the allowlist checks the host the client used (X-Forwarded-Host)."""
        server = self.start_server(write_app(self.tmp_path, "other", SLIDER_APP),
                                   args=["--allow-host", "public.example", "--use-xheaders"])
        self.assertEqual(send(server, "/other", {"X-Forwarded-Host": "public.example"}, host="127.0.0.1:5006").status, 200)
        self.assertEqual(send(server, "/other", {"X-Forwarded-Host": "evil.example"}, host="public.example").status, 403)

    def test_any_host_by_default(self):
        """Without --allow-host any Host is served."""
        server = self.start_server(write_app(self.tmp_path, "other", SLIDER_APP))
        self.assertEqual(send(server, "/other", host="anything.example").status, 200)


class SessionIdTests(ServerTestCase):
    @pytest.fixture(autouse=True)
    def _secret(self, monkeypatch):
        monkeypatch.setenv("DOCSYNC_SECRET_KEY", SECRET)

    def test_signed(self):
        """--session-ids signed: the page makes signed ids; an unsigned or wrongly signed id or token is refused."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--session-ids", "signed"])
        token = send(server, "/sliders").token()
        self.assertIn(".", get_session_id(token))  # signed ids carry their signature
        self.assertEqual(send(server, "/sliders?bokeh-session-id=mine").status, 403)
        forged = generate_session_id(secret_key=b"another-secret-key-that-is-long-enough", signed=True)
        self.assertEqual(send(server, f"/sliders?bokeh-session-id={forged}").status, 403)
        client, _ = websocket(server, "sliders", make_token())
        self.assertEqual(client.close_code, 1008)

    def test_external_signed(self):
        """--session-ids external-signed: the server makes no ids; a page needs an id signed with the key."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--session-ids", "external-signed"])
        refused = send(server, "/sliders")
        self.assertEqual(refused.status, 403)
        self.assertIn(b"does not generate them", refused.body)
        session_id = generate_session_id(secret_key=SECRET.encode(), signed=True)
        page = send(server, f"/sliders?bokeh-session-id={session_id}")
        self.assertEqual(page.status, 200)
        self.assertEqual(get_session_id(page.token()), session_id)
        self.assertEqual(send(server, "/sliders?bokeh-session-id=unsigned-id").status, 403)
        token = generate_jwt_token(generate_session_id(secret_key=SECRET.encode(), signed=True),
                                   secret_key=SECRET.encode(), signed=True)
        client, _ = websocket(server, "sliders", token)
        self.assertTrue(client.opened and not client.closed)
        unsigned, _ = websocket(server, "sliders", make_token())
        self.assertEqual(unsigned.close_code, 1008)


class RequestFilterTests(SynchronousTestCase):
    headers = {"User-Agent": "ua", "Accept": "*/*", "Cookie": "a=1; b=2"}
    cookies = {"a": "1", "b": "2"}

    def test_include_headers(self):
        """--include-headers keeps only the named headers, in any case."""
        headers, cookies = RequestFilter(include_headers=["user-agent"])(self.headers, self.cookies)
        self.assertEqual((headers, cookies), ({"User-Agent": "ua"}, self.cookies))

    def test_exclude_headers(self):
        """--exclude-headers drops the named headers."""
        headers, _ = RequestFilter(exclude_headers=["Accept"])(self.headers, self.cookies)
        self.assertEqual(headers, {"User-Agent": "ua", "Cookie": "a=1; b=2"})

    def test_cookies(self):
        """Cookie lists keep or drop cookies by exact name, and the raw Cookie header cannot carry a dropped one."""
        headers, cookies = RequestFilter(exclude_cookies=["b"])(self.headers, self.cookies)
        self.assertEqual((headers, cookies), ({"User-Agent": "ua", "Accept": "*/*"}, {"a": "1"}))
        _, cookies = RequestFilter(include_cookies=["b", "c"])(self.headers, self.cookies)
        self.assertEqual(cookies, {"b": "2"})
        headers, _ = RequestFilter(include_headers=["Cookie"], include_cookies=["a"])(self.headers, self.cookies)
        self.assertEqual(headers, {"Cookie": "a=1; b=2"})  # asked for by name

    def test_inactive(self):
        """Without any list the filter is inactive."""
        self.assertFalse(RequestFilter().active)


class TokenPayloadTests(ServerTestCase):
    def payload(self, *args, **headers):
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=list(args))
        response = send(server, "/sliders", {k.replace("_", "-"): v for k, v in headers.items()})
        token = response.token()
        request = server.managers["sliders"].get(get_session_id(token)).document.session_context.request
        return get_token_payload(token), request

    def test_exclude_cookies_and_headers(self):
        """Excluded headers and cookies are not in the token, nor in the request the app sees."""
        payload, request = self.payload("--exclude-headers", "X-Secret", "--exclude-cookies", "auth",
                                        X_Secret="s", User_Agent="ua", Cookie="auth=abc; theme=dark")
        self.assertNotIn("X-Secret", payload["headers"])
        self.assertEqual(payload["cookies"], {"theme": "dark"})
        self.assertNotIn("abc", str(payload))
        self.assertEqual(request.cookies, {"theme": "dark"})
        self.assertEqual(request.headers["Cookie"], "theme=dark")
        self.assertEqual(request.headers["User-Agent"], "ua")

    def test_include_headers(self):
        """With --include-headers only those headers travel."""
        payload, request = self.payload("--include-headers", "User-Agent", User_Agent="ua", Accept="*/*")
        self.assertEqual(payload["headers"], {"User-Agent": "ua"})

    def test_everything_by_default(self):
        """By default every header and cookie travels, as in bokeh serve."""
        payload, _ = self.payload(User_Agent="ua", Cookie="auth=abc")
        self.assertEqual(payload["cookies"], {"auth": "abc"})
        self.assertEqual(payload["headers"]["User-Agent"], "ua")


def test_readme_documents_the_options():
    """Every option of guard_options appears in the README's options table, and the Deployment section has Security and Behind a proxy."""
    from pathlib import Path

    from docsyncd.guard_options import GuardOptions

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Options"):readme.index("### The `docsync` command")]
    names = [p[0] for p in GuardOptions.optParameters + GuardOptions.optFlags]
    names += ["allow-host", "include-headers", "exclude-headers", "include-cookies", "exclude-cookies"]
    for name in names:
        assert f"`--{name}" in table, name
    deployment = readme[readme.index("## Deployment"):]
    assert "### Security" in deployment and "### Behind a proxy" in deployment


class UnixSocketTests(ServerTestCase):
    def test_guard_on_a_unix_socket(self):
        """On a unix socket (no client address) the guard still answers: pages, the rate limit per proxy-named client, websockets."""
        from twisted.internet.address import UNIXAddress
        from twisted.test import iosim

        from unit_support import RawClient, _drain
        from guard_support import parse_response

        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--max-session-rate", "1", "--use-xheaders", "--allow-host", "localhost"])

        def request(lines):
            client = RawClient()
            address = UNIXAddress(str(self.tmp_path / "docsync.sock"))
            protocol = server.site.buildProtocol(address)
            pump = iosim.connect(protocol, iosim.FakeTransport(protocol, True, hostAddress=address, peerAddress=address),
                                 client, iosim.FakeTransport(client, False, hostAddress=address, peerAddress=address),
                                 clock=server.clock)
            client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            _drain(pump)
            return parse_response(client.data)

        self.assertEqual(request(["GET /sliders HTTP/1.0", "Host: localhost", "X-Real-IP: 10.0.0.1"]).status, 200)
        self.assertEqual(request(["GET /sliders HTTP/1.0", "Host: localhost", "X-Real-IP: 10.0.0.2"]).status, 200)
        self.assertEqual(request(["GET /sliders HTTP/1.0", "Host: localhost", "X-Real-IP: 10.0.0.1"]).status, 503)
        self.assertEqual(request(["GET /sliders HTTP/1.0", "Host: elsewhere"]).status, 403)
        upgrade = request(["GET /sliders/ws HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
                           f"Sec-WebSocket-Protocol: bokeh, {make_token()}", "X-Real-IP: 10.0.0.3"])
        self.assertEqual(upgrade.status, 101)
