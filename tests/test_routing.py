"""docsyncd.routing: the session a request names, its owning worker, and the nginx key."""

from __future__ import annotations

import collections
import random
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from bokeh.util.token import generate_jwt_token, generate_session_id
from twisted.web.test.requesthelper import DummyRequest

from docsyncd import routing

NGINX_HASH_SITE = Path(__file__).resolve().parents[1] / "etc" / "nginx" / "docsyncd-hash.conf"


def token(session_id: str, **payload) -> str:
    return generate_jwt_token(session_id, extra_payload=payload or None)


# -- owner -----------------------------------------------------------------------------


def test_owner_is_a_stable_function_of_the_id():
    """The owner is SHA-256 of the id modulo the worker count, the same in every process and run."""
    assert routing.owner("abc", 2) == int.from_bytes(__import__("hashlib").sha256(b"abc").digest()[:8], "big") % 2
    assert [routing.owner("shared", n) for n in (1, 2, 3, 4)] == [routing.owner("shared", n) for n in (1, 2, 3, 4)]
    assert routing.owner("x", 1) == 0


def test_owner_spreads_ids_evenly():
    """Random session ids split about evenly over 2 and 3 workers."""
    ids = [generate_session_id() for _ in range(6000)]
    for n in (2, 3):
        counts = collections.Counter(routing.owner(i, n) for i in ids)
        assert set(counts) == set(range(n))
        assert all(abs(c - len(ids) / n) < 0.1 * len(ids) / n for c in counts.values()), counts


# -- the request head --------------------------------------------------------------------


def test_parse_head_waits_for_the_blank_line():
    """An incomplete head gives None; the complete one gives method, target, version, headers and length."""
    raw = b"GET /app?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\nrest"
    assert routing.parse_head(raw[:20]) is None
    head = routing.parse_head(raw)
    assert (head.method, head.target, head.version) == ("GET", "/app?x=1", "HTTP/1.1")
    assert head.headers == {"host": "h", "x-a": "1, 2"}
    assert head.length == len(raw) - len(b"rest")
    assert not head.is_upgrade


def test_parse_head_accepts_bare_newlines_and_leading_blank_lines():
    """LF-only line ends and empty lines before the request line are accepted, as Twisted's parser does."""
    head = routing.parse_head(b"\r\nGET / HTTP/1.0\nUpgrade: WebSocket\n\n")
    assert head.target == "/" and head.is_upgrade


@pytest.mark.parametrize("raw", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"hello\r\n\r\n",
                                 b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"])
def test_parse_head_refuses_what_is_not_http(raw):
    """A TLS hello, a bare word or a header line without a colon is BadHead."""
    with pytest.raises(routing.BadHead):
        routing.parse_head(raw)


def test_parse_head_bounds_its_size():
    """More than MAX_HEAD bytes without the end of the head is BadHead."""
    assert routing.parse_head(b"GET / HTTP/1.1\r\n" + b"a" * 100) is None
    with pytest.raises(routing.BadHead, match="longer than"):
        routing.parse_head(b"GET / HTTP/1.1\r\nX: " + b"a" * routing.MAX_HEAD)


# -- the session a request names -----------------------------------------------------------


@pytest.mark.parametrize("separator", [", ", ",", " , "])
def test_websocket_token_names_its_session(separator):
    """The token in Sec-WebSocket-Protocol names its session, joined as browsers or Tornado join it."""
    assert routing.session_named("/app/ws", {"sec-websocket-protocol": f"bokeh{separator}{token('s1', a=1)}"}) == "s1"


def test_page_names_its_session_by_argument_header_or_token():
    """?bokeh-session-id=, the Bokeh-Session-Id header and ?bokeh-token= name a page's session."""
    assert routing.session_named("/app?bokeh-session-id=a%20b&x=1", {}) == "a b"
    assert routing.session_named("/app", {"bokeh-session-id": "h"}) == "h"
    assert routing.session_named(f"/app/autoload.js?bokeh-token={token('t')}", {}) == "t"
    assert routing.session_named("/app?x=1", {}) is None
    assert routing.session_named("/static/js/bokeh.min.js", {}) is None


def test_unreadable_tokens_name_no_session():
    """A websocket offering other protocols, or a token that is not base64 JSON with a session id, names none."""
    assert routing.session_named("/app/ws", {"sec-websocket-protocol": "chat, superchat"}) is None
    assert routing.session_named("/app/ws", {"sec-websocket-protocol": "bokeh, !!!"}) is None
    assert routing.session_named("/app/ws", {"sec-websocket-protocol": "bokeh, e30"}) is None  # {}
    assert routing.session_named("/app?bokeh-token=garbage", {}) is None


def test_signed_tokens_name_their_session():
    """A signed token (payload.signature) names the session in its payload."""
    key = b"k" * 32
    signed = generate_jwt_token("sid", secret_key=key, signed=True)
    assert "." in signed
    assert routing.session_named("/ws", {"sec-websocket-protocol": "bokeh, " + signed}) == "sid"


def test_request_session_reads_a_twisted_request():
    """``request_session`` finds the same session on a twisted.web request, the header's last value winning."""
    request = DummyRequest([b"app"])
    request.uri = b"/app"
    request.requestHeaders.setRawHeaders(b"bokeh-session-id", [b"first", b"last"])
    assert routing.request_session(request) == "last"
    request = DummyRequest([b"app", b"ws"])
    request.uri = b"/app/ws"
    request.requestHeaders.setRawHeaders(b"sec-websocket-protocol", [b"bokeh, " + token("w").encode()])
    assert routing.request_session(request) == "w"


# -- the nginx key ------------------------------------------------------------------------


def _random_id(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + '-_."\\é'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 70)))


def test_nginx_key_is_the_same_for_every_token_of_a_session():
    """Tokens of one session id (other expiry, other request payload) give one key; other ids another."""
    rng = random.Random(7)
    keys = {}
    for _ in range(300):
        session_id = _random_id(rng) if rng.random() < 0.5 else generate_session_id()
        found = {
            routing.nginx_session_key(f"bokeh{sep}" + generate_jwt_token(
                session_id, expiration=300 + i, extra_payload={"headers": {"r": str(rng.random())}}))
            for i, sep in enumerate([", ", ",", ", "])
        }
        assert len(found) == 1 and "" not in found, (session_id, found)
        keys[session_id] = found.pop()
    # Different ids give different keys, unless they differ only in their last two characters.
    distinct = {k for k in keys.values()}
    assert len(distinct) > 0.9 * len(keys)


def test_nginx_key_is_empty_without_a_bokeh_token():
    """Requests without a bokeh token get the empty key (nginx then goes round-robin)."""
    assert routing.nginx_session_key("") == ""
    assert routing.nginx_session_key("chat, " + token("x")) == ""


def test_shipped_nginx_map_is_the_tested_expression():
    """etc/nginx/docsyncd-hash.conf maps $http_sec_websocket_protocol with exactly NGINX_KEY_RE."""
    text = NGINX_HASH_SITE.read_text(encoding="utf-8")
    found = re.search(r'map \$http_sec_websocket_protocol \$docsync_session \{\s*"~(.*?)" \$key;', text)
    assert found, "no map over $http_sec_websocket_protocol in the shipped site"
    assert found.group(1) == routing.NGINX_KEY_RE
    assert "hash $docsync_session consistent;" in text


# -- query arguments, as bokeh serve reads them ------------------------------------------


def test_non_ascii_query_arguments():
    """Percent-escapes of any byte name the session, decoded as bokeh serve's get_argument does (issue 13, item 2)."""
    assert routing.session_named("/app?label=caf%C3%A9&bokeh-session-id=caf%C3%A9", {}) == "café"
    assert routing.target_arguments("/app?label=caf%C3%A9") == {"label": [b"caf\xc3\xa9"]}
    assert routing.target_arguments("/app?label=caf\xc3\xa9") == {"label": [b"caf\xc3\xa9"]}  # raw bytes
    with pytest.raises(routing.BadArgument):
        routing.session_named("/app?bokeh-session-id=%FF", {})


def test_argument_is_tornados_get_argument():
    """The last value, control characters made spaces, stripped: what bokeh serve's handler gets."""
    args = routing.target_arguments("/app?bokeh-session-id=a&bokeh-session-id=+b%01c+")
    assert routing.argument(args, "bokeh-session-id") == "b c"
    assert routing.argument(args, "other") is None


_QUERIES = st.binary(max_size=40) | st.text(alphabet="a=&;%+C3A9FF\x01 ", max_size=30).map(str.encode)


@settings(max_examples=400, deadline=None)
@given(_QUERIES)
def test_query_arguments_are_tornados(query):
    """Any query string parses as Tornado's parse_qs_bytes parses it (bokeh serve's request.arguments)."""
    from tornado.httputil import parse_qs_bytes

    assert routing.query_arguments(query) == parse_qs_bytes(query, keep_blank_values=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_session_named_never_raises_anything_but_bad_argument(noise):
    """Whatever a target and headers hold, the session they name is found or BadArgument is raised."""
    target = "/app?" + noise.decode("latin-1")
    headers = {"sec-websocket-protocol": "bokeh, " + noise.decode("latin-1"), "bokeh-session-id": ""}
    try:
        routing.session_named(target, {})
        routing.session_named("/", headers)
    except routing.BadArgument:
        pass
