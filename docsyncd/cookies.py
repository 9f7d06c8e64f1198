"""Cookies as bokeh serve reads them: one parser for pages, tokens, auth and every other reader.

bokeh serve takes a request's cookies from Tornado, whose ``parse_cookie``
splits the ``Cookie`` header at ``;`` and each piece at its first ``=``,
strips blanks, and unquotes the value with the standard library's rules
(``http.cookies``: ``"hello world"`` is ``hello world``, ``"a\\"b"`` is
``a"b``, octal escapes become their characters); Tornado then keeps only the
names ``http.cookies.SimpleCookie`` accepts (not ``path``, ``expires`` and
the other attribute names, nor names with separators).  Here the same steps
use the standard library's public pieces (``SimpleCookie.value_decode``,
``Morsel.set``), so ``session_context.request.cookies``, the cookies in a
session token, ``get_cookie``/``get_secure_cookie`` of auth modules and
twisted.web's ``request.received_cookies`` all hold the same values.

Where Tornado joins several ``Cookie`` headers with ``,`` (so the first
cookie of the second header is lost in the value of the last of the first),
they are joined with ``;`` as RFC 9113 (8.2.3) says, so every cookie counts.

Tests: tests/test_cookies.py
"""

from __future__ import annotations

from http.cookies import CookieError, Morsel, SimpleCookie
from typing import Iterable

_CODEC = SimpleCookie()


def _accepted_name(name: str, value: str, coded: str) -> bool:
    try:
        Morsel().set(name, value, coded)
    except CookieError:
        return False
    return True


def parse_cookie_header(header: str) -> dict[str, str]:
    """The cookies in a ``Cookie`` header's value, name to unquoted value (the last of a repeated name)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, coded = chunk.partition("=")
        if not sep:  # a value without a name (Mozilla bug 169091): Tornado names it "", which SimpleCookie refuses
            name, coded = "", chunk
        name, coded = name.strip(), coded.strip()
        if not (name or coded):
            continue
        value, _ = _CODEC.value_decode(coded)
        if _accepted_name(name, value, coded):
            cookies[name] = value
    return cookies


def parse_cookie_headers(values: Iterable[str]) -> dict[str, str]:
    """The cookies of every ``Cookie`` header of a request, taken together."""
    return parse_cookie_header("; ".join(values))


def cookie_header(cookies: dict[str, str]) -> str:
    """A ``Cookie`` header value that ``parse_cookie_header`` reads back as ``cookies`` (values quoted as needed)."""
    return "; ".join(f"{name}={_CODEC.value_encode(value)[1]}" for name, value in cookies.items())


class StandardCookiesMixin:
    """For a twisted.web ``Request``: ``received_cookies`` parsed by ``parse_cookie_headers``.

    twisted.web's own ``parseCookies`` keeps quotes and backslashes in the
    values.  Names and values stay bytes, as twisted.web has them (the
    header's bytes as latin-1, which the unquoting never leaves).
    """

    def parseCookies(self) -> None:
        headers = self.requestHeaders.getRawHeaders(b"cookie") or []
        parsed = parse_cookie_headers(h.decode("latin-1") for h in headers)
        self.received_cookies = {k.encode("latin-1"): v.encode("latin-1") for k, v in parsed.items()}
