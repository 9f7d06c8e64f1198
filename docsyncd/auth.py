"""``--auth-module``: Bokeh's authentication hooks, under twisted.web; ``--cookie-secret``: signed cookies.

An auth module is the file ``bokeh serve --auth-module`` takes
(``bokeh/server/auth_provider.py`` describes it).  It defines:

- ``get_user(request)`` or ``async def get_user_async(request)``: the user, or
  None when not logged in.  ``request`` is an ``AuthRequest``: what Tornado's
  ``RequestHandler`` offers auth modules (``get_cookie``,
  ``get_secure_cookie``, ``get_argument``, ``request.headers``,
  ``request.remote_ip`` ...), plus the ``RequestContext`` fields apps see;
- ``login_url`` (relative to ``--prefix``) or ``get_login_url(request)``: where
  a page request without a user is redirected, with ``?next=<uri>``;
- optionally ``LoginHandler`` / ``LogoutHandler`` mounted at ``login_url`` /
  ``logout_url``.  Under Tornado they are ``RequestHandler`` classes, which
  cannot run under twisted.web: here they must be twisted.web resources
  (``IResource``: a ``Resource`` subclass with ``render_GET``/``render_POST``),
  and a Tornado handler is refused at start-up.  Their requests can
  ``request.set_secure_cookie(name, value)``, ``request.get_secure_cookie(name)``
  and ``request.clear_cookie(name)`` (``guard.GuardedRequest``).

Signed cookies use Tornado's format (version 2: HMAC-SHA256 over name, value
and timestamp) keyed by ``--cookie-secret``, so a cookie signed by a Tornado
app with the same secret verifies here, and the other way round.

Without a user, a page or other request gets a redirect to the login page
(GET and HEAD) or 403; a websocket gets 403 before the upgrade.  BokehJS's
static files, an app's ``static/``, the login and logout pages and 404s need
no user.

Tests: tests/test_auth.py; in Chromium in tests/e2e/test_deploy_security.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode, urljoin, urlsplit

from twisted.internet import defer
from twisted.web.resource import IResource

from .callbacks import call_user
from .contexts import RequestContext

#: How long a signed cookie stays valid, in days, unless told otherwise (Tornado's default).
MAX_AGE_DAYS = 31


class AuthModuleError(Exception):
    """The auth module cannot be used; the message is one sentence for the operator."""


# -- signed values, Tornado's version 2 ------------------------------------------


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _field(value: bytes) -> bytes:
    return b"%d:%s" % (len(value), value)


def _signature(secret: str | bytes, data: bytes) -> bytes:
    return hmac.new(_utf8(secret), data, hashlib.sha256).hexdigest().encode("ascii")


def create_signed_value(secret: str | bytes, name: str, value: str | bytes, now: float | None = None) -> bytes:
    """``value`` signed and timestamped under ``name``, as Tornado's ``create_signed_value`` (version 2)."""
    timestamp = str(int(time.time() if now is None else now)).encode("ascii")
    to_sign = b"|".join([b"2", _field(b"0"), _field(timestamp), _field(_utf8(name)),
                         _field(base64.b64encode(_utf8(value))), b""])
    return to_sign + _signature(secret, to_sign)


def decode_signed_value(secret: str | bytes, name: str, value: str | bytes | None, now: float | None = None,
                        max_age_days: float = MAX_AGE_DAYS) -> bytes | None:
    """The value ``create_signed_value`` signed, or None if it is not signed by ``secret``, names
    another cookie, is older than ``max_age_days`` or is malformed."""
    if not value:
        return None
    value = _utf8(value)  # unquoted already, as every cookie docsyncd reads (cookies.py)
    if not value.startswith(b"2|"):
        return None

    def consume(rest: bytes) -> tuple[bytes, bytes]:
        length, _, rest = rest.partition(b":")
        n = int(length)
        if rest[n:n + 1] != b"|":
            raise ValueError("malformed field")
        return rest[:n], rest[n + 1:]

    try:
        rest = value[2:]
        _key_version, rest = consume(rest)
        timestamp, rest = consume(rest)
        name_field, rest = consume(rest)
        value_field, signature = consume(rest)
        stamp = int(timestamp)
    except ValueError:
        return None
    if not hmac.compare_digest(signature, _signature(secret, value[:-len(signature)] if signature else value)):
        return None
    if name_field != _utf8(name):
        return None
    now = time.time() if now is None else now
    if stamp < now - max_age_days * 86400:
        return None
    try:
        return base64.b64decode(value_field, validate=True)
    except ValueError:
        return None


# -- the request auth hooks see ---------------------------------------------------


@dataclass
class AuthRequest(RequestContext):
    """The request ``get_user``, ``get_user_async`` and ``get_login_url`` are given.

    It has the fields of ``RequestContext`` (``arguments``, ``headers``,
    ``cookies``, ``path``, ``uri``, ``host``, ``remote_ip``, ``protocol``) and the
    methods Bokeh auth modules call on a Tornado ``RequestHandler``;
    ``request`` is the request itself, so ``request.request.headers`` works too.
    """

    method: str = "GET"
    cookie_secret: str | bytes | None = field(default=None, repr=False)
    now: float | None = field(default=None, repr=False)
    current_user: Any = None

    @property
    def request(self) -> "AuthRequest":
        return self

    def full_url(self) -> str:
        return f"{self.protocol}://{self.host}{self.uri}"

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        return self.cookies.get(name, default)

    def get_secure_cookie(self, name: str, value: str | None = None, max_age_days: float = MAX_AGE_DAYS,
                          min_version: int | None = None) -> bytes | None:
        """The signed cookie ``name`` if its signature holds (``--cookie-secret``), else None."""
        if not self.cookie_secret:
            raise RuntimeError("get_secure_cookie needs a cookie secret: start docsyncd with --cookie-secret "
                               "(or DOCSYNC_COOKIE_SECRET)")
        return decode_signed_value(self.cookie_secret, name, self.get_cookie(name) if value is None else value,
                                   now=self.now, max_age_days=max_age_days)

    get_signed_cookie = get_secure_cookie

    def get_arguments(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.arguments.get(name, [])]

    def get_argument(self, name: str, default: str | None = None) -> str | None:
        values = self.get_arguments(name)
        return values[-1] if values else default

    @classmethod
    def from_twisted(cls, request: Any, cookie_secret: str | bytes | None = None,
                     now: float | None = None) -> "AuthRequest":
        """The ``AuthRequest`` for a twisted.web request (after ``--use-xheaders`` applied)."""

        def text(value: Any) -> str:
            return value.decode("latin-1") if isinstance(value, bytes) else (value or "")

        peer = request.getClientAddress()
        return cls(
            arguments={text(k): list(v) for k, v in (request.args or {}).items()},
            headers={text(k): text(v[-1]) for k, v in request.requestHeaders.getAllRawHeaders()},
            cookies={text(k): text(v) for k, v in request.received_cookies.items()},
            path=text(request.path), uri=text(request.uri), host=text(request.getHeader(b"host")),
            remote_ip=getattr(peer, "host", "") or "", protocol="https" if request.isSecure() else "http",
            method=text(request.method), cookie_secret=cookie_secret, now=now,
        )


# -- signed cookies on twisted.web requests ------------------------------------------


def set_secure_cookie(request: Any, name: str, value: str | bytes, secret: str | bytes,
                      expires_days: float | None = 30, path: str = "/", http_only: bool = True,
                      same_site: str | None = "lax", now: float | None = None) -> None:
    """Set a cookie only ``secret`` can have signed (read it with ``AuthRequest.get_secure_cookie``)."""
    now = time.time() if now is None else now
    max_age = None if expires_days is None else str(int(expires_days * 86400))
    request.addCookie(name.encode("utf-8"), create_signed_value(secret, name, value, now), path=path.encode(),
                      max_age=max_age, httpOnly=http_only, sameSite=same_site,
                      secure=True if request.isSecure() else None)


def get_secure_cookie(request: Any, name: str, secret: str | bytes, max_age_days: float = MAX_AGE_DAYS,
                      now: float | None = None) -> bytes | None:
    """The signed cookie ``name`` of a twisted.web request, if ``secret`` signed it."""
    value = request.received_cookies.get(name.encode("utf-8"))
    return decode_signed_value(secret, name, value, now=now, max_age_days=max_age_days)


def clear_cookie(request: Any, name: str, path: str = "/") -> None:
    request.addCookie(name.encode("utf-8"), b"", path=path.encode(), max_age="0",
                      expires="Thu, 01 Jan 1970 00:00:00 GMT")


# -- the auth module -------------------------------------------------------------------


def _is_tornado_handler(obj: Any) -> bool:
    return isinstance(obj, type) and any(k.__module__.split(".")[0] == "tornado" for k in obj.__mro__)


def _as_resource(obj: Any, what: str, path: str) -> Any:
    """An instance of the module's handler class (or the instance it gives) as a twisted.web resource."""
    if _is_tornado_handler(obj):
        raise AuthModuleError(
            f"--auth-module {path}: {what} is a Tornado RequestHandler, which cannot run under twisted.web; "
            f"write it as a twisted.web Resource with render_GET/render_POST instead")
    if isinstance(obj, type) and IResource.implementedBy(obj):
        try:
            return obj()
        except Exception as e:
            raise AuthModuleError(f"--auth-module {path}: {what}() failed: {type(e).__name__}: {e}") from e
    if IResource.providedBy(obj):
        return obj
    raise AuthModuleError(f"--auth-module {path}: {what} must be a twisted.web Resource class, not {obj!r}")


def _relative(url: str) -> bool:
    return not url.startswith(("http://", "https://", "//"))


class AuthModule:
    """The hooks of one auth module, checked as Bokeh's ``AuthProvider`` checks them."""

    def __init__(self, path: str, prefix: str = "", cookie_secret: str | bytes | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = path
        self.prefix = prefix
        self.cookie_secret = cookie_secret
        self.clock = clock
        if not os.path.isfile(path):
            raise AuthModuleError(f"--auth-module {path}: no such file")
        name = "docsyncd_auth_" + uuid.uuid4().hex
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise AuthModuleError(f"--auth-module {path}: {type(e).__name__}: {e}") from e
        self.get_user = getattr(module, "get_user", None)
        self.get_user_async = getattr(module, "get_user_async", None)
        self.login_url = getattr(module, "login_url", None)
        self.get_login_url = getattr(module, "get_login_url", None)
        self.logout_url = getattr(module, "logout_url", None)
        login_handler = getattr(module, "LoginHandler", None)
        logout_handler = getattr(module, "LogoutHandler", None)

        problem = None
        if self.get_user and self.get_user_async:
            problem = "define only one of get_user and get_user_async"
        elif not (self.get_user or self.get_user_async):
            problem = "define get_user(request) or get_user_async(request)"
        elif not (self.login_url or self.get_login_url):
            problem = "define login_url or get_login_url(request), where users without a login are sent"
        elif self.login_url and self.get_login_url:
            problem = "define only one of login_url and get_login_url"
        elif login_handler is not None and self.get_login_url:
            problem = "LoginHandler cannot be used with get_login_url(); give login_url instead"
        elif login_handler is not None and not _relative(self.login_url):
            problem = "LoginHandler needs a relative login_url"
        elif logout_handler is not None and not self.logout_url:
            problem = "LogoutHandler needs a logout_url"
        elif logout_handler is not None and not _relative(self.logout_url):
            problem = "LogoutHandler needs a relative logout_url"
        if problem:
            raise AuthModuleError(f"--auth-module {path}: {problem}")
        self.login_handler = None if login_handler is None else _as_resource(login_handler, "LoginHandler", path)
        self.logout_handler = None if logout_handler is None else _as_resource(logout_handler, "LogoutHandler", path)

    # -- URLs ---------------------------------------------------------------------

    def under_prefix(self, url: str) -> str:
        """A relative ``login_url``/``logout_url`` under ``--prefix``, as bokeh serve joins them."""
        return urljoin(self.prefix + "/", url.lstrip("/")) if _relative(url) else url

    def mounts(self) -> list[tuple[list[bytes], Any]]:
        """(path segments below the prefix, resource) for the login and logout handlers."""
        found = []
        for url, handler in ((self.login_url, self.login_handler), (self.logout_url, self.logout_handler)):
            if handler is not None:
                segments = [s.encode("utf-8") for s in urlsplit(url).path.split("/") if s]
                if not segments:
                    raise AuthModuleError(f"--auth-module {self.path}: {url!r} cannot be mounted: it is the root")
                found.append((segments, handler))
        return found

    def public_paths(self) -> list[str]:
        """Paths that need no user: the login and logout pages."""
        return [urlsplit(self.under_prefix(url)).path for url in (self.login_url, self.logout_url)
                if url and _relative(url)]

    @property
    def full_logout_url(self) -> str | None:
        return self.under_prefix(self.logout_url) if self.logout_url else None

    # -- at request time -------------------------------------------------------------

    def request_for(self, request: Any) -> AuthRequest:
        return AuthRequest.from_twisted(request, self.cookie_secret, self.clock())

    def user(self, auth_request: AuthRequest) -> defer.Deferred:
        """Deferred user (None: not logged in), from whichever hook the module defines."""
        hook = self.get_user_async or self.get_user
        return call_user(hook, auth_request)

    def login_redirect(self, auth_request: AuthRequest) -> str:
        """Where to send a page request without a user: the login URL, with ``next`` unless it has a query."""
        if self.get_login_url is not None:
            url = self.get_login_url(auth_request)
        else:
            url = self.under_prefix(self.login_url)
        if "?" not in url:
            next_url = auth_request.full_url() if urlsplit(url).scheme else auth_request.uri
            url += "?" + urlencode({"next": next_url})
        return url
