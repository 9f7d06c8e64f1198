"""Tests for docsyncd.cookies: cookies read as bokeh serve (Tornado) reads them, everywhere docsyncd reads them."""

from __future__ import annotations

import http.cookies

import pytest
from bokeh.util.token import get_session_id
from hypothesis import given, settings, strategies as st
from tornado.httputil import parse_cookie as tornado_parse_cookie
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.auth import AuthRequest, create_signed_value
from docsyncd.contexts import RequestContext
from docsyncd.cookies import cookie_header, parse_cookie_header

from unit_support import SLIDER_APP, InMemoryServer, write_app

QUOTED = 'quoted="hello world"; esc="a\\"b"; plain=1'


def bokeh_serve_cookies(header: str) -> dict[str, str]:
    """What bokeh serve's session handler puts in a token: Tornado's ``request.cookies``, by value."""
    jar = http.cookies.SimpleCookie()
    for name, value in tornado_parse_cookie(header).items():
        try:
            jar[name] = value
        except http.cookies.CookieError:  # Tornado drops the names SimpleCookie refuses
            pass
    return {name: morsel.value for name, morsel in jar.items()}


class ParseTests(SynchronousTestCase):
    def test_quoted_values(self):
        """Quoted values lose their quotes and backslash escapes, as under bokeh serve (issue 13, item 5)."""
        self.assertEqual(parse_cookie_header(QUOTED), {"quoted": "hello world", "esc": 'a"b', "plain": "1"})
        self.assertEqual(parse_cookie_header(QUOTED), bokeh_serve_cookies(QUOTED))

    def test_refused_names(self):
        """Attribute names (path, expires ...) and names with separators are dropped, a nameless value too."""
        header = 'path=/; Expires=x; a b=1; =v; lone; ok=2'
        self.assertEqual(parse_cookie_header(header), {"ok": "2"})
        self.assertEqual(parse_cookie_header(header), bokeh_serve_cookies(header))

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from('ab=;" \\,\t\x7f\xe9/01') , max_size=40))
    def test_same_as_tornado(self, header):
        """Any header, however malformed, gives what bokeh serve's Tornado gives."""
        self.assertEqual(parse_cookie_header(header), bokeh_serve_cookies(header))

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True),
                           st.text(alphabet=st.characters(max_codepoint=255, exclude_categories=("Cc",)),
                                   max_size=12), max_size=4))
    def test_header_round_trip(self, cookies):
        """The Cookie header rebuilt for apps (contexts.py) reads back as the cookies it was built from.

        Control characters are left out: newer CPython releases (Debian's 3.11 and 3.13 among them) refuse
        them in ``Morsel.set``, so there Tornado and docsyncd both drop such a cookie
        (``test_same_as_tornado`` covers that, on whatever Python runs the tests)."""
        self.assertEqual(parse_cookie_header(cookie_header(cookies)), cookies)


class ReadersTests(SynchronousTestCase):
    """Every reader of cookies gets the parsed values: pages and tokens, the app's request, auth modules."""

    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def test_page_token_and_request(self):
        """``session_context.request.cookies`` of a page's session is bokeh serve's, and travels in the token."""
        server = InMemoryServer([write_app(self.tmp_path, "sliders", SLIDER_APP)]).start_for(self)
        response = server.get("/sliders", Cookie=QUOTED)
        token = response.token()
        request = server.managers["sliders"].get(get_session_id(token)).document.session_context.request
        self.assertEqual(request.cookies, {"quoted": "hello world", "esc": 'a"b', "plain": "1"})
        self.assertEqual(RequestContext.from_token(token).cookies, request.cookies)

    def test_two_cookie_headers(self):
        """Cookies of several Cookie headers all count (joined with ';', RFC 9113)."""
        server = InMemoryServer([write_app(self.tmp_path, "sliders", SLIDER_APP)]).start_for(self)
        response = server.raw(b"GET /sliders HTTP/1.0\r\nHost: localhost:5006\r\n"
                              b"Cookie: a=1\r\nCookie: b=\"2 2\"\r\n\r\n")
        token = response.split(b'"token":"')[1].split(b'"')[0].decode()
        self.assertEqual(RequestContext.from_token(token).cookies, {"a": "1", "b": "2 2"})

    def test_quoted_signed_cookie(self):
        """A signed cookie that Tornado's set_secure_cookie quoted (its base64 has '=') verifies."""
        signed = create_signed_value("s3cret", "user", "alice").decode()
        header = f'user={http.cookies.SimpleCookie().value_encode(signed)[1]}'
        self.assertTrue(header.startswith('user="'))
        request = AuthRequest(cookies=parse_cookie_header(header), cookie_secret="s3cret")
        self.assertEqual(request.get_secure_cookie("user"), b"alice")
