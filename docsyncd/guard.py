"""The site's front door: what every request passes before a resource renders.

``guard_site`` (called by ``server.build_site``) installs, from the options:

1. ``GuardedChannel``: request line, header and body limits and the
   handshake timeout (``limits.LimitsChannelMixin``);
2. ``GuardedRequest``, which for each request
   - applies ``--use-xheaders`` (``proxy.Forwarding``): client address, scheme, Host;
   - refuses a Host header ``--allow-host`` does not list (403);
   - with ``--auth-module``, finds the user (``auth.AuthModule``): none means
     a redirect to the login page, or 403 for a websocket or a non-GET;
   - before a resource that would create a session renders (an app page,
     autoload.js, a websocket naming an unknown session), asks
     ``limits.SessionAdmission`` (``--max-sessions``, ``--max-session-rate``):
     503 with Retry-After, before any document is built;
3. the login and logout resources of the auth module, at their URLs;
4. the websocket factories' ``--use-xheaders`` reading,
   ``--websocket-max-send-buffer`` and ``--websocket-send-timeout``.

Every refusal is logged in one line with the reason and the option behind it.

Tests: tests/test_guard.py; against the real daemon in tests/e2e/test_deploy_security.py
"""

from __future__ import annotations

from typing import Any, Iterable

from autobahn.twisted.resource import WebSocketResource
from bokeh.util.token import get_session_id
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server, static

from . import logs
from .auth import AuthModule, AuthModuleError, clear_cookie, get_secure_cookie, set_secure_cookie
from .cookies import StandardCookiesMixin
from .limits import (ConnectionCaps, LimitsChannelMixin, Refusal, RequestLimits, SessionAdmission,
                     default_max_connections, live_sessions)
from .proxy import Forwarding
from .routing import BadArgument, argument, target_arguments, websocket_token
from .security import host_allowed
from .server import NoDelayHTTPChannel
from .web import AppResource, AutoloadJs, ErrorPage

log = Logger(observer=logs.observer)

#: twisted.web's error pages (404s, 405s ...), whatever their class in this Twisted version.
ERROR_PAGES = tuple(t for t in (getattr(pages, "_ErrorPage", None), getattr(resource, "_UnsafeErrorPageBase", None),
                                getattr(resource, "ErrorPage", None), ErrorPage) if isinstance(t, type))


class GuardError(Exception):
    """The options describe a server that cannot be built; one sentence for the operator."""


class GuardedChannel(LimitsChannelMixin, NoDelayHTTPChannel):
    """The site's HTTP channel: TCP_NODELAY, HTTP/1.1 only, and ``RequestLimits``."""


class Guard:
    """What ``GuardedRequest`` checks, built once from the options."""

    def __init__(self, forwarding: Forwarding, allowed_hosts: list[str], auth: AuthModule | None,
                 admission: SessionAdmission, cookie_secret: str | bytes | None):
        self.forwarding = forwarding
        self.allowed_hosts = allowed_hosts
        self.auth = auth
        self.admission = admission
        self.cookie_secret = cookie_secret
        self.public_paths = auth.public_paths() if auth else []
        try:
            from .metrics import HealthResource  # load balancers probe /health without logging in

            self.public_types: tuple[type, ...] = (HealthResource,)
        except ImportError:
            self.public_types = ()

    # -- before traversal --------------------------------------------------------------

    def host_refusal(self, request: server.Request) -> Refusal | None:
        if not self.allowed_hosts:
            return None
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) != 1:
            return Refusal(http.BAD_REQUEST, "A request needs exactly one Host header.", {},
                           log_reason=f"{len(hosts)} Host headers (--allow-host)")
        host = hosts[0].decode("latin-1")
        if host_allowed(host, self.allowed_hosts, "https" if request.isSecure() else "http"):
            return None
        return Refusal(http.FORBIDDEN, "This server does not answer for that host name.", {},
                       log_reason=f"Host {host!r} is not allowed (--allow-host {' '.join(self.allowed_hosts)})")

    # -- after traversal -----------------------------------------------------------------

    def is_public(self, request: server.Request, resrc: Any) -> bool:
        """Whether ``resrc`` answers without a user: static files, errors, login/logout, /health, CORS preflights."""
        if isinstance(resrc, (static.File,) + ERROR_PAGES + self.public_types):
            return True
        if request.method == b"OPTIONS":  # browsers send preflights without credentials (autoload.js)
            return True
        path = request.path.decode("latin-1")
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.public_paths)

    def check_user(self, request: server.Request, resrc: Any) -> defer.Deferred:
        """Deferred None when the request may go on, else the Refusal to answer."""
        if self.auth is None or self.is_public(request, resrc):
            return defer.succeed(None)
        auth_request = self.auth.request_for(request)

        def decide(user: Any) -> Refusal | None:
            if user:
                request.current_user = user
                return None
            if is_websocket(request, resrc):
                return Refusal(http.FORBIDDEN, "Log in first.", {}, log_reason="websocket without a logged-in user")
            if request.method in (b"GET", b"HEAD"):
                location = self.auth.login_redirect(auth_request)
                return Refusal(http.FOUND, "Log in first.", {b"location": location.encode("utf-8")},
                               log_reason="")  # a redirect to the login page is no incident
            return Refusal(http.FORBIDDEN, "Log in first.", {}, log_reason=f"{request.method.decode()} without a user")

        return self.auth.user(auth_request).addCallback(decide)

    def session_refusal(self, request: server.Request, resrc: Any) -> Refusal | None:
        if not self.admission.active:
            return None
        target = new_session_target(request, resrc)
        if target is None:
            return None
        manager, session_id = target
        if session_id is not None and manager.get(session_id) is not None:
            return None  # joins a live session
        return self.admission.admit(getattr(request.getClientAddress(), "host", "") or "")


def is_websocket(request: server.Request, resrc: Any) -> bool:
    return isinstance(resrc, WebSocketResource) or (request.getHeader(b"upgrade") or b"").lower() == b"websocket"


def _argument(request: server.Request, name: str) -> str | None:
    """A query argument as the page reads it (routing.argument); None when absent or not UTF-8 (the page refuses it)."""
    try:
        return argument(target_arguments(request.uri), name)
    except BadArgument:
        return None


def new_session_target(request: server.Request, resrc: Any) -> tuple[Any, str | None] | None:
    """(manager, session id or None for a new one) when ``resrc`` would find or create a session, else None."""
    try:
        from .published import EmptyAppRoot, names_a_session
    except ImportError:  # pragma: no cover - published documents not installed
        EmptyAppRoot = names_a_session = None
    if EmptyAppRoot is not None and isinstance(resrc, EmptyAppRoot):
        if resrc.index is not None and not names_a_session(request):
            return None  # the index of published documents
        resrc = resrc.page
    if isinstance(resrc, WebSocketResource):
        manager = getattr(resrc._factory, "manager", None)
        # Every line of the header, joined as Autobahn joins them for the handshake that acts on it.
        offered = b", ".join(request.requestHeaders.getRawHeaders(b"sec-websocket-protocol") or []).decode("latin-1")
        token = websocket_token(offered)
        if manager is None or token is None:
            return None  # refused by the handshake itself
        try:
            session_id = get_session_id(token)
        except Exception:
            return None  # refused by the token check
        return manager, session_id if isinstance(session_id, str) else None
    if isinstance(resrc, AutoloadJs):
        resrc = resrc.app
    if isinstance(resrc, AppResource) and request.method in (b"GET", b"HEAD"):
        if request.postpath not in ([], [b""]):
            return None
        token = _argument(request, "bokeh-token")
        session_id = _argument(request, "bokeh-session-id") or (request.getHeader(b"bokeh-session-id") or b"").decode(
            "latin-1") or None
        if token:
            try:
                session_id = get_session_id(token)
            except Exception:
                return None  # refused by the page
        return resrc.manager, session_id if isinstance(session_id, str) else None
    return None


class GuardedRequest(StandardCookiesMixin, server.Request):
    """A twisted.web request that passes the ``Guard`` of its site first (see the module docstring).

    Its ``received_cookies`` are read as bokeh serve reads them (cookies.py).
    """

    _forwarded_scheme: str | None = None
    current_user: Any = None

    @property
    def guard(self) -> Guard | None:
        channel = self.channel
        return getattr(channel.site, "guard", None) if channel is not None else None

    def process(self) -> None:
        guard = getattr(self.channel.site, "guard", None)
        if guard is not None:
            self._forwarded_scheme = guard.forwarding.apply(self).scheme
            refusal = guard.host_refusal(self)
            if refusal is not None:
                self.site = self.channel.site
                self._answer(refusal)
                return
        super().process()

    def isSecure(self) -> bool:
        if self._forwarded_scheme is not None:
            return self._forwarded_scheme == "https"
        return super().isSecure()

    def render(self, resrc: Any) -> None:
        guard = self.guard
        if guard is None:
            return super().render(resrc)
        d = guard.check_user(self, resrc)

        def proceed(refusal: Refusal | None) -> None:
            if self._disconnected or self.finished:
                return
            refusal = refusal or guard.session_refusal(self, resrc)
            if refusal is not None:
                self._answer(refusal)
                return
            super(GuardedRequest, self).render(resrc)

        d.addCallback(proceed).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if self._disconnected or self.finished:
            return
        self.processingFailed(failure)

    def _answer(self, refusal: Refusal) -> None:
        """Answer with ``refusal`` instead of rendering; log it unless it is a plain login redirect."""
        if refusal.log_reason:
            log.warn("refused {method} {uri} from {client}: {reason}; answered {code}",
                     method=self.method.decode("latin-1"), uri=self.uri.decode("latin-1"),
                     client=getattr(self.getClientAddress(), "host", "?"), reason=refusal.log_reason,
                     code=refusal.code)
        self.setResponseCode(refusal.code)
        for name, value in refusal.headers.items():
            self.setHeader(name, value)
        body = f"{refusal.code} {http.RESPONSES.get(refusal.code, b'').decode()}: {refusal.reason}\n".encode("utf-8")
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.setHeader(b"content-length", str(len(body)).encode())
        if refusal.code >= 400 and is_websocket(self, None):
            self.setHeader(b"connection", b"close")
        self.write(body)
        self.finish()

    # -- signed cookies for login and logout resources (auth.py) --------------------------

    def _cookie_secret(self) -> str | bytes:
        secret = self.guard.cookie_secret if self.guard is not None else None
        if not secret:
            raise RuntimeError("signed cookies need --cookie-secret (or DOCSYNC_COOKIE_SECRET)")
        return secret

    def set_secure_cookie(self, name: str, value: str | bytes, expires_days: float | None = 30, **kwargs: Any) -> None:
        """Set a cookie signed with --cookie-secret (Tornado's format), for ``get_secure_cookie``."""
        set_secure_cookie(self, name, value, self._cookie_secret(), expires_days=expires_days, **kwargs)

    set_signed_cookie = set_secure_cookie

    def get_secure_cookie(self, name: str, **kwargs: Any) -> bytes | None:
        """The cookie ``name`` if --cookie-secret signed it, else None."""
        return get_secure_cookie(self, name, self._cookie_secret(), **kwargs)

    get_signed_cookie = get_secure_cookie

    def clear_cookie(self, name: str, path: str = "/") -> None:
        clear_cookie(self, name, path)


def _mount(root: resource.Resource, segments: list[bytes], leaf: Any) -> None:
    node = root
    for segment in segments[:-1]:
        child = node.children.get(segment)
        if child is None:
            child = resource.Resource()
            node.putChild(segment, child)
        node = child
    if segments[-1] in node.children:
        raise GuardError(f"--auth-module: {b'/'.join(segments).decode()} is already served by docsyncd "
                         f"(an app or a built-in page); choose another login_url or logout_url")
    node.putChild(segments[-1], leaf)


def guard_site(site: server.Site, root: resource.Resource, factories: Iterable[Any], session_settings: Any,
               options: Any, reactor: Any) -> Guard:
    """Install the guard on ``site`` (whose tree starts at ``root`` below ``--prefix``); see the module docstring."""
    factories = list(factories)
    forwarding = Forwarding(bool(options.get("use-xheaders")))
    cookie_secret = options.get("cookie-secret")
    auth = None
    if options.get("auth-module"):
        try:
            auth = AuthModule(options["auth-module"], options["prefix"], cookie_secret, clock=reactor.seconds)
        except AuthModuleError as e:
            raise GuardError(str(e)) from e
        for segments, handler in auth.mounts():
            _mount(root, segments, handler)
        for factory in factories:
            factory.manager.server_context.logout_url = auth.full_logout_url
        log.info("user authentication hooks from {path}", path=options["auth-module"])
    admission = SessionAdmission(
        reactor, lambda: live_sessions(f.manager for f in factories),
        max_sessions=options.get("max-sessions") or 0, max_rate=options.get("max-session-rate") or 0,
        retry_after_full=(options["unused-session-lifetime"] + options["check-unused-sessions"]) / 1000.0,
    )
    site.guard = Guard(forwarding, list(options.get("allow-host") or []), auth, admission, cookie_secret)
    site.requestFactory = GuardedRequest
    site.protocol = GuardedChannel
    site.request_limits = RequestLimits.from_options(options) if "max-request-line" in options else RequestLimits()
    max_connections = options.get("max-connections")
    site.connection_caps = ConnectionCaps(default_max_connections() if max_connections is None else max_connections,
                                          options.get("max-connections-per-address") or 0)
    for factory in factories:
        factory.forwarding = forwarding
        factory.max_send_buffer = options.get("websocket-max-send-buffer") or 0
        factory.send_timeout = options.get("websocket-send-timeout", 30000) / 1000.0
    session_settings.request_filter = request_filter(options)
    return site.guard


class RequestFilter:
    """Which of the page request's headers and cookies travel in the session token.

    ``--include-headers`` / ``--exclude-headers`` and ``--include-cookies`` /
    ``--exclude-cookies``, as in bokeh serve: an include list keeps only what
    it names, an exclude list drops what it names.  Header names match in any
    case, cookie names exactly.  Once cookies are filtered, the raw
    ``Cookie`` header is dropped too (unless ``--include-headers`` names it),
    so an excluded cookie cannot travel inside it; apps still see a
    ``Cookie`` header, rebuilt from the cookies that were kept.  The token is
    readable by the page's JavaScript: exclude what the page must not see.
    """

    def __init__(self, include_headers: Iterable[str] | None = None, exclude_headers: Iterable[str] | None = None,
                 include_cookies: Iterable[str] | None = None, exclude_cookies: Iterable[str] | None = None):
        lower = lambda names: None if names is None else frozenset(n.lower() for n in names)  # noqa: E731
        self.include_headers = lower(include_headers)
        self.exclude_headers = lower(exclude_headers) or frozenset()
        self.include_cookies = None if include_cookies is None else frozenset(include_cookies)
        self.exclude_cookies = frozenset(exclude_cookies or ())

    @property
    def active(self) -> bool:
        return bool(self.include_headers is not None or self.exclude_headers or self.include_cookies is not None
                    or self.exclude_cookies)

    def __call__(self, headers: dict[str, str], cookies: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        if self.include_headers is not None:
            headers = {k: v for k, v in headers.items() if k.lower() in self.include_headers}
        else:
            headers = {k: v for k, v in headers.items() if k.lower() not in self.exclude_headers}
        if self.include_cookies is not None:
            cookies = {k: v for k, v in cookies.items() if k in self.include_cookies}
        else:
            cookies = {k: v for k, v in cookies.items() if k not in self.exclude_cookies}
        cookies_filtered = self.include_cookies is not None or self.exclude_cookies
        if cookies_filtered and "cookie" not in (self.include_headers or ()):
            headers = {k: v for k, v in headers.items() if k.lower() != "cookie"}
        return headers, cookies


def request_filter(options: Any) -> RequestFilter | None:
    """The token payload's filter the options ask for, or None to keep everything."""
    selected = RequestFilter(options.get("include-headers"), options.get("exclude-headers"),
                             options.get("include-cookies"), options.get("exclude-cookies"))
    return selected if selected.active else None
