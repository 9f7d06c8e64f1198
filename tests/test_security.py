"""Tests for docsyncd.security: websocket origin allowlists and session token checks."""

from __future__ import annotations

import base64
import json
import time

from bokeh.util.token import generate_session_id, get_token_payload
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.security import OriginPolicy, TokenPolicy, host_allowed, normalise_host

from unit_support import make_token

SECRET = b"a-secret-key-that-is-long-enough-for-bokeh"


def handmade_token(payload, signature=None):
    """A token built by hand, to say things Bokeh's token functions never would."""
    token = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return token if signature is None else f"{token}.{signature}"


class HostTests(SynchronousTestCase):
    def test_normalise(self):
        """Hosts are compared in lower case with the scheme's default port made explicit."""
        self.assertEqual(normalise_host("Example.ORG"), "example.org:80")
        self.assertEqual(normalise_host("example.org", "https"), "example.org:443")
        self.assertEqual(normalise_host("example.org:8080", "https"), "example.org:8080")
        self.assertEqual(normalise_host("[::1]", "http"), "[::1]:80")
        self.assertEqual(normalise_host("[::1]:5006"), "[::1]:5006")
        self.assertEqual(normalise_host(""), "")

    def test_wildcards(self):
        """Allowlist entries may use ``*`` for any part of the host or port."""
        self.assertTrue(host_allowed("a.example.org", ["*.example.org"]))
        self.assertTrue(host_allowed("localhost:5007", ["localhost:*"]))
        self.assertFalse(host_allowed("example.org.evil.com", ["*.example.org"]))


class OriginPolicyTests(SynchronousTestCase):
    def test_no_origin(self):
        """A request without an Origin header (not a browser) is accepted."""
        self.assertIsNone(OriginPolicy().refusal(None, "localhost:5006"))
        self.assertIsNone(OriginPolicy(["only.example.org"]).refusal("", "localhost:5006"))

    def test_same_origin_by_default(self):
        """Without an allowlist, a page from this very server (its Host) may connect."""
        policy = OriginPolicy(default_names=["localhost", "example.org"])
        self.assertIsNone(policy.refusal("http://localhost:5006", "localhost:5006"))
        self.assertIsNone(policy.refusal("http://Example.org", "example.org:80"))
        self.assertIsNone(policy.refusal("https://example.org", "example.org", "https"))
        self.assertIsNone(policy.refusal("http://192.0.2.7:5006", "192.0.2.7:5006"))
        self.assertIsNone(policy.refusal("http://[::1]:5006", "[::1]:5006"))

    def test_rebinding_name_refused_by_default(self):
        """Without an allowlist, a page whose Origin equals its Host is refused when the Host is not this machine:
        a DNS-rebinding page (evil.example resolving to 127.0.0.1). --allow-host names the public host."""
        reason = OriginPolicy().refusal("http://evil.example:5006", "evil.example:5006")
        self.assertIn("DNS rebinding", reason)
        self.assertIn("--allow-websocket-origin=evil.example:5006", reason)
        self.assertIsNone(OriginPolicy(default_names=["localhost", "*.example:5006"]).refusal(
            "http://public.example:5006", "public.example:5006"))

    def test_foreign_origin_refused(self):
        """A foreign Origin is refused with a sentence telling how to allow it."""
        reason = OriginPolicy().refusal("http://evil.example:8000", "localhost:5006")
        self.assertIn("'http://evil.example:8000' is not allowed", reason)
        self.assertIn("--allow-websocket-origin=evil.example:8000", reason)
        self.assertIn("allowed: localhost:5006", reason)

    def test_other_port_refused(self):
        """The same host on another port is another origin."""
        self.assertIsNotNone(OriginPolicy().refusal("http://localhost:8080", "localhost:5006"))

    def test_allowlist_replaces_default(self):
        """An explicit allowlist replaces the default: only the listed origins may connect."""
        policy = OriginPolicy(["app.example.org", "*.intranet:8080"])
        self.assertIsNone(policy.refusal("http://app.example.org", "localhost:5006"))
        self.assertIsNone(policy.refusal("https://app.example.org", "localhost:5006"))
        self.assertIsNone(policy.refusal("http://dash.intranet:8080", "localhost:5006"))
        self.assertIsNotNone(policy.refusal("http://localhost:5006", "localhost:5006"))

    def test_malformed_origin(self):
        """An Origin that is not a URL (e.g. ``null`` from a sandboxed frame) is refused as malformed."""
        self.assertEqual(OriginPolicy().refusal("null", "localhost:5006"), "malformed Origin 'null'")


class TokenPolicyTests(SynchronousTestCase):
    def setUp(self):
        self.now = time.time()

    def test_valid_unsigned(self):
        """A fresh unsigned token is accepted by the default policy."""
        self.assertIsNone(TokenPolicy().refusal(make_token(), self.now))

    def test_missing(self):
        """No token at all is refused, naming where the token was expected."""
        for missing in (None, ""):
            self.assertEqual(TokenPolicy().refusal(missing, self.now),
                             "no session token in the Sec-WebSocket-Protocol header")

    def test_garbage(self):
        """A token that does not decode is refused as malformed."""
        for garbage in ("garbage", "!!!", handmade_token([1, 2, 3]), "e30"):
            self.assertEqual(TokenPolicy().refusal(garbage, self.now), "malformed session token", garbage)

    def test_expired(self):
        """A token past its ``session_expiry`` is refused with advice about the expiration option."""
        token = make_token("old", expiration=300)
        self.assertIsNone(TokenPolicy().refusal(token, self.now + 299))
        reason = TokenPolicy().refusal(token, self.now + 301)
        self.assertIn("session token for 'old' expired", reason)
        self.assertIn("--session-token-expiration", reason)

    def test_no_expiry(self):
        """A token without a numeric expiry is refused."""
        for payload in ({"session_id": "x"}, {"session_id": "x", "session_expiry": "never"}):
            self.assertEqual(TokenPolicy().refusal(handmade_token(payload), self.now), "session token has no expiry")

    def test_empty_session_id(self):
        """A token naming an empty session id is refused."""
        token = handmade_token({"session_id": "", "session_expiry": self.now + 60})
        self.assertEqual(TokenPolicy().refusal(token, self.now), "session token names an empty session id")

    def test_signed_valid(self):
        """With signed ids, a token signed with the server's key is accepted."""
        policy = TokenPolicy(SECRET, signed=True)
        self.assertIsNone(policy.refusal(make_token(secret_key=SECRET), self.now))

    def test_signed_bad_signature(self):
        """With signed ids, tokens signed with another key, or not signed, are refused for their signature."""
        policy = TokenPolicy(SECRET, signed=True)
        other_key = b"another-secret-key-that-is-long-enough"
        for token in (make_token(secret_key=other_key), make_token("plain-id"), make_token()):
            self.assertIn("has an invalid signature", policy.refusal(token, self.now))

    def test_signed_token_with_forged_id(self):
        """With signed ids, a correctly signed token around an unsigned session id is refused."""
        from bokeh.util.token import generate_jwt_token

        token = generate_jwt_token(generate_session_id(signed=False), secret_key=SECRET, signed=True)
        self.assertIn("has an invalid signature", TokenPolicy(SECRET, signed=True).refusal(token, self.now))

    def test_non_string_session_id(self):
        """A token whose session id is not a string is refused as malformed rather than raising."""
        token = handmade_token({"session_id": 12345, "session_expiry": self.now + 60}, signature="forged")
        for policy in (TokenPolicy(), TokenPolicy(SECRET, signed=True)):
            self.assertEqual(policy.refusal(token, self.now), "malformed session token")


class ReconnectTests(SynchronousTestCase):
    def test_expired_token_rejoins_a_live_session(self):
        """An expired token whose signature verifies may rejoin a session that is still alive, but not start a new one."""
        token = make_token(expiration=1)
        later = get_token_payload(token)["session_expiry"] + 600
        policy = TokenPolicy()
        self.assertIn("expired", policy.refusal(token, later))
        self.assertIsNone(policy.refusal(token, later, is_live=lambda session_id: True))

    def test_bad_signature_never_rejoins(self):
        """A token with a bad signature is refused even when it names a live session."""
        token = make_token(secret_key=b"x" * 32)
        policy = TokenPolicy(secret_key=b"y" * 32, signed=True)
        self.assertIn("invalid signature", policy.refusal(token, 0, is_live=lambda session_id: True))

