"""Tests for docsyncd.proxy: --use-xheaders, one test per proxy header, for pages and websockets."""

from __future__ import annotations

from bokeh.util.token import get_session_id
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.proxy import Forwarding, last_entry, valid_host, valid_ip

from guard_support import FACTS_APP, ServerTestCase, send, websocket
from unit_support import make_token, write_app


class ReadTests(SynchronousTestCase):
    def read(self, **headers):
        return Forwarding(True).read({k.replace("_", "-").lower(): v for k, v in headers.items()}.get)

    def test_ignored_without_use_xheaders(self):
        """Without --use-xheaders every forwarding header is ignored: any client can send them."""
        facts = Forwarding(False).read({"x-real-ip": "1.2.3.4", "x-forwarded-proto": "https",
                                        "x-forwarded-host": "example.org"}.get)
        self.assertEqual((facts.remote_ip, facts.scheme, facts.host), (None, None, None))

    def test_x_forwarded_for_last_entry(self):
        """X-Forwarded-For gives the client address: its last entry, the one the proxy next to docsyncd added."""
        self.assertEqual(self.read(X_Forwarded_For="10.9.9.9, 203.0.113.7").remote_ip, "203.0.113.7")
        self.assertEqual(self.read(X_Forwarded_For="2001:db8::1").remote_ip, "2001:db8::1")

    def test_x_real_ip_wins(self):
        """X-Real-IP, when present and valid, wins over X-Forwarded-For (as in Tornado's xheaders)."""
        self.assertEqual(self.read(X_Real_IP="198.51.100.2", X_Forwarded_For="203.0.113.7").remote_ip, "198.51.100.2")
        self.assertEqual(self.read(X_Real_IP="not an ip", X_Forwarded_For="203.0.113.7").remote_ip, "203.0.113.7")

    def test_x_forwarded_proto(self):
        """X-Forwarded-Proto (or X-Scheme) gives the scheme; anything but http or https is ignored."""
        self.assertEqual(self.read(X_Forwarded_Proto="http, https").scheme, "https")
        self.assertEqual(self.read(X_Scheme="HTTPS").scheme, "https")
        self.assertIsNone(self.read(X_Forwarded_Proto="gopher").scheme)

    def test_x_forwarded_host(self):
        """X-Forwarded-Host gives the host the client asked for; a value that is not host[:port] is ignored."""
        self.assertEqual(self.read(X_Forwarded_Host="a.example, dash.example.org:8443").host, "dash.example.org:8443")
        self.assertIsNone(self.read(X_Forwarded_Host="evil.example/path").host)
        self.assertIsNone(self.read(X_Forwarded_Host="a b").host)

    def test_helpers(self):
        """Entries are comma-separated; addresses and hosts are validated."""
        self.assertEqual(last_entry(b" a , b ,"), "b")
        self.assertIsNone(last_entry(" , "))
        self.assertEqual(valid_ip("[::1]"), "::1")
        self.assertIsNone(valid_ip("1.2.3"))
        self.assertEqual(valid_host("[::1]:5006"), "[::1]:5006")
        self.assertIsNone(valid_host(""))


class PageTests(ServerTestCase):
    def setUp(self):
        self.path = write_app(self.tmp_path, "facts", FACTS_APP)

    def page_facts(self, server, **headers):
        response = send(server, "/facts", {k.replace("_", "-"): v for k, v in headers.items()})
        self.assertEqual(response.status, 200, response.body)
        return self.facts(server, "facts", get_session_id(response.token()))

    def test_x_forwarded_for(self):
        """With --use-xheaders, the app sees the client address from X-Forwarded-For."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        self.assertEqual(self.page_facts(server, X_Forwarded_For="1.1.1.1, 203.0.113.7"),
                         "203.0.113.7|http|localhost:5006")

    def test_x_real_ip(self):
        """With --use-xheaders, the app sees the client address from X-Real-IP."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        self.assertEqual(self.page_facts(server, X_Real_IP="198.51.100.2"), "198.51.100.2|http|localhost:5006")

    def test_x_forwarded_proto(self):
        """With --use-xheaders, the app sees https when the proxy says X-Forwarded-Proto: https."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        self.assertEqual(self.page_facts(server, X_Forwarded_Proto="https"), "127.0.0.1|https|localhost:5006")

    def test_x_forwarded_host(self):
        """With --use-xheaders, the Host is the one in X-Forwarded-Host."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        self.assertEqual(self.page_facts(server, X_Forwarded_Host="dash.example.org"), "127.0.0.1|http|dash.example.org")

    def test_without_use_xheaders(self):
        """Without --use-xheaders the app sees the TCP peer and the Host header, whatever the headers say."""
        server = self.start_server(self.path)
        self.assertEqual(self.page_facts(server, X_Real_IP="198.51.100.2", X_Forwarded_For="203.0.113.7",
                                         X_Forwarded_Proto="https", X_Forwarded_Host="evil.example"),
                         "127.0.0.1|http|localhost:5006")

    def test_access_log_names_the_client(self):
        """With --use-xheaders the request's client address, which the access log prints, is the forwarded one."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        seen = []
        server.site.log = lambda request: seen.append(request.getClientAddress().host)
        send(server, "/facts/metadata", {"X-Real-IP": "198.51.100.2"})
        self.assertEqual(seen, ["198.51.100.2"])


class WebsocketTests(ServerTestCase):
    def setUp(self):
        self.path = write_app(self.tmp_path, "facts", FACTS_APP)

    def ws_facts(self, server, headers, origin=None):
        token = make_token()
        client, pump = websocket(server, "facts", token, headers=headers, origin=origin)
        self.assertTrue(client.opened, client.close_reason)
        return self.facts(server, "facts", get_session_id(token))

    def test_websocket_forwarded_facts(self):
        """A session a websocket creates sees the forwarded client address, scheme and host too."""
        server = self.start_server(self.path, args=["--use-xheaders"])
        facts = self.ws_facts(server, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                                       "X-Forwarded-Host": "dash.example.org"})
        self.assertEqual(facts, "203.0.113.7|https|dash.example.org")

    def test_origin_check_uses_forwarded_host(self):
        """Behind a proxy that rewrites Host, the default origin check compares the Origin with X-Forwarded-Host
        (a public name the operator named with --allow-host: security.OriginPolicy)."""
        server = self.start_server(self.path, args=["--use-xheaders", "--allow-host", "dash.example.org:8443"])
        headers = {"X-Forwarded-Host": "dash.example.org:8443", "X-Forwarded-Proto": "https"}
        self.ws_facts(server, headers, origin="https://dash.example.org:8443")
        client, _ = websocket(server, "facts", make_token(), headers=headers, origin="https://localhost:5006")
        self.assertFalse(client.opened)

    def test_origin_check_without_use_xheaders(self):
        """Without --use-xheaders, X-Forwarded-Host cannot talk the origin check into a foreign Origin."""
        server = self.start_server(self.path)
        client, _ = websocket(server, "facts", make_token(), headers={"X-Forwarded-Host": "evil.example"},
                              origin="http://evil.example")
        self.assertFalse(client.opened)
