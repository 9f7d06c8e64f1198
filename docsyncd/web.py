"""twisted.web resources: app pages, autoload.js, metadata, static files, the index.

By default the page GET is where a browser's session is created, as under
bokeh serve; with ``--lazy-documents`` (implied by ``--workers``) the page
only mints the token and the websocket builds the document (lazy.py).
Either way the request's headers, cookies and arguments go into the session
token, so the websocket side (and app code) sees the request that made the
session.

Tests: tests/test_web.py
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Callable
from urllib.parse import urlsplit

from bokeh.core.templates import AUTOLOAD_JS
from bokeh.embed.bundle import Script, bundle_for_objs_and_resources
from bokeh.core.has_props import HasProps
from bokeh.embed.elements import html_page_for_render_items, script_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.resources import Resources
from bokeh.settings import settings
from bokeh.util.token import check_token_signature, generate_jwt_token, generate_session_id, get_session_id
from jinja2 import Environment, FileSystemLoader, select_autoescape
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server, static
from twisted.web.pages import notFound
from twisted.web.util import Redirect

from . import logs
from .routing import BadArgument, argument, target_arguments
from .contexts import RequestContext
from .custom_models import CustomModelError, process_custom_models
from .extensions import Extensions
from .files import ONE_YEAR, ContainedFile
from .panel_apps import is_panel_document, panel_page
from .protocol import SyncFactory, SyncResource
from .publishing import page_policy
from .security import OriginPolicy, TokenPolicy
from .sessions import DocumentBuildError, SessionManager

log = Logger(observer=logs.observer)

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")

#: Element ids autoload.js accepts: what ``bokeh.embed.server_document`` makes
#: (``make_globally_unique_css_safe_id``: a letter, then letters, digits and '-').
ELEMENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,127}")


class SessionSettings:
    """How pages mint session ids and tokens (shared by every app of a server)."""

    def __init__(self, secret_key: bytes | None = None, signed: bool = False, token_expiration: int = 300,
                 generate_ids: bool = True):
        self.secret_key = secret_key
        self.signed = signed
        self.token_expiration = token_expiration
        self.generate_ids = generate_ids
        #: Which headers and cookies go into tokens (``guard.RequestFilter``); None keeps all.
        self.request_filter: Callable[[dict, dict], tuple[dict, dict]] | None = None
        #: Which new session ids this process may mint (a ``--workers`` worker: those it owns); None: any.
        self.owns: Callable[[str], bool] | None = None


class HTTPRefusal(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _text(value: bytes | str | None) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else (value or "")


def request_facts(request: server.Request) -> dict[str, str]:
    """What app code may ask of the request besides its arguments, headers and cookies."""
    peer = request.getClientAddress()
    return dict(
        path=_text(request.path),
        uri=_text(request.uri),
        host=_text(request.getHeader(b"host")),
        remote_ip=getattr(peer, "host", ""),
        protocol="https" if request.isSecure() else "http",
    )


def _token_payload(request: server.Request, process_request: Callable[[Any], dict],
                   settings_: SessionSettings | None = None) -> dict[str, Any]:
    """Headers, cookies and arguments of the page GET, carried in the token to the websocket side."""
    headers = {_text(k): _text(v[-1]) for k, v in request.requestHeaders.getAllRawHeaders()}
    cookies = {_text(k): _text(v) for k, v in request.received_cookies.items()}
    if cookies:
        headers.pop("Cookie", None)
    arguments = target_arguments(request.uri)  # as bokeh serve parses them: routing.py
    payload: dict[str, Any] = {"headers": headers, "cookies": cookies, "arguments": arguments}
    payload.update(process_request(RequestContext(**payload, **request_facts(request))))
    if settings_ is not None and settings_.request_filter is not None:  # --include/--exclude-headers/-cookies
        payload["headers"], payload["cookies"] = settings_.request_filter(payload["headers"], payload["cookies"])
    return payload


def session_token_for(request: server.Request, manager: SessionManager, settings_: SessionSettings) -> str:
    """The token naming the session this request asks for (a new one unless it names one).

    ``?bokeh-session-id=``, the ``Bokeh-Session-Id`` header or ``?bokeh-token=``
    name a session; naming it two ways is refused, as in bokeh serve.
    """
    arguments = target_arguments(request.uri)
    try:
        token = argument(arguments, "bokeh-token") or None
        session_id = argument(arguments, "bokeh-session-id") or None
    except BadArgument as e:
        raise HTTPRefusal(http.BAD_REQUEST, str(e)) from None
    header_id = _text(request.getHeader(b"bokeh-session-id")) or None
    if header_id:
        if session_id:
            raise HTTPRefusal(http.FORBIDDEN, "session id given both as argument and header")
        session_id = header_id
    if token and session_id:
        raise HTTPRefusal(http.FORBIDDEN, "both a token and a session id were given")
    if token is None:
        if session_id is None:
            if not settings_.generate_ids:
                raise HTTPRefusal(http.FORBIDDEN, "no bokeh-session-id given, and this server does not generate them")
            session_id = generate_session_id(secret_key=settings_.secret_key, signed=settings_.signed)
            while settings_.owns is not None and not settings_.owns(session_id):  # --workers: routing.py
                session_id = generate_session_id(secret_key=settings_.secret_key, signed=settings_.signed)
        token = generate_jwt_token(
            session_id,
            secret_key=settings_.secret_key,
            signed=settings_.signed,
            expiration=settings_.token_expiration,
            extra_payload=_token_payload(request, manager.application.process_request, settings_),
        )
        try:
            valid = bool(get_session_id(token)) and check_token_signature(
                token, secret_key=settings_.secret_key, signed=settings_.signed
            )
        except Exception:
            valid = False
        if not valid:
            raise HTTPRefusal(http.FORBIDDEN, "invalid session id or token")
        return token
    # ?bokeh-token=: exactly the websocket's checks, so the page never builds a session its websocket refuses.
    refusal = TokenPolicy(settings_.secret_key, settings_.signed).refusal(
        token, manager.clock.seconds(), is_live=lambda session_id: manager.get(session_id) is not None)
    if refusal:
        raise HTTPRefusal(http.FORBIDDEN, refusal)
    return token


class StaticFiles:
    """BokehJS's static directory, with content-hashed URLs cached for a year."""

    def __init__(self, directory: str | None = None):
        self.directory = directory or settings.bokehjs_path()
        self._versions: dict[str, str] = {}

    def versioned(self, path: str) -> str:
        """``path?v=<hash>``: Bokeh's Resources call this for every script URL."""
        version = self._versions.get(path)
        if version is None:
            try:
                with open(os.path.join(self.directory, path), "rb") as f:
                    version = hashlib.sha256(f.read()).hexdigest()[:32]
            except OSError:
                version = ""
            self._versions[path] = version
        return f"{path}?v={version}" if version else path

    def resource(self) -> resource.Resource:
        """``/static/``: BokehJS, and Bokeh's extensions under ``/static/extensions/`` (extensions.py)."""
        files = CachedFile(self.directory)
        files.putChild(b"extensions", Extensions())
        return files


class CachedFile(ContainedFile):
    """A static directory whose answers may be cached for a year (URLs carry a content hash)."""

    def render(self, request: server.Request) -> Any:
        request.setHeader(b"cache-control", f"public, max-age={ONE_YEAR}".encode())
        return super().render(request)


class ErrorPage(resource.Resource):
    isLeaf = True

    def __init__(self, code: int, title: str, detail: str):
        super().__init__()
        self.code, self.title, self.detail = code, title, detail

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        from html import escape

        return (
            f"<!DOCTYPE html><html><head><title>{self.code} {escape(self.title)}</title></head>"
            f"<body><h1>{self.code} {escape(self.title)}</h1><p>{escape(self.detail)}</p></body></html>"
        ).encode("utf-8")


def _respond_later(request: server.Request, d: defer.Deferred, content_type: bytes) -> int:
    """Finish ``request`` with the text a Deferred produces; errors become error pages."""

    def write(body: str) -> None:
        request.setHeader(b"content-type", content_type)
        request.write(body.encode("utf-8"))
        request.finish()

    def fail(failure: Failure) -> None:
        if failure.check(defer.CancelledError):
            return  # the client left before the answer was ready: nobody to answer
        if failure.check(HTTPRefusal):
            log.warn("refused {method} {uri}: {reason}", method=_text(request.method), uri=_text(request.uri),
                     reason=failure.value.reason)
            page = ErrorPage(failure.value.code, http.RESPONSES.get(failure.value.code, b"").decode(), failure.value.reason)
        elif failure.check(CustomModelError):
            log.error("not serving {uri}: {error}", uri=_text(request.uri), error=failure.value)
            page = ErrorPage(http.INTERNAL_SERVER_ERROR, "Custom model did not compile", str(failure.value))
        elif failure.check(DocumentBuildError):
            log.error("app failed to build a document for {uri}: {error}", uri=_text(request.uri), error=failure.value)
            page = ErrorPage(http.INTERNAL_SERVER_ERROR, "Error running the app", str(failure.value))
        else:
            log.failure("error serving {uri}", failure, uri=_text(request.uri))
            page = ErrorPage(http.INTERNAL_SERVER_ERROR, "Internal Server Error", "see the server log")
        request.write(page.render(request))
        request.finish()

    finished = request.notifyFinish()
    d.addCallbacks(write, fail)
    finished.addErrback(lambda _: d.cancel())
    return server.NOT_DONE_YET


class AppResource(resource.Resource):
    """``/<app>``: the page, plus ``ws``, ``autoload.js``, ``metadata`` and ``static``."""

    def __init__(self, manager: SessionManager, factory: SyncFactory, static_files: StaticFiles,
                 session_settings: SessionSettings, url: str, prefix: str):
        super().__init__()
        self.manager = manager
        # autoload.js's CORS follows the websocket's origin policy (a --dev error page has no websocket)
        self.origins = factory.origins if factory is not None else OriginPolicy()
        self.static_files = static_files
        self.session_settings = session_settings
        self.url = url
        self.prefix = prefix
        self.putChild(b"ws", SyncResource(factory))
        self.putChild(b"autoload.js", AutoloadJs(self))
        self.putChild(b"metadata", Metadata(self))
        if manager.app.static_path:
            self.putChild(b"static", ContainedFile(manager.app.static_path))  # no escape by symlink: files.py
        self.custom_models = process_custom_models()
        self._page_bundle: tuple[str, str] = ("", "")
        self._page_bundle_models: tuple[int, int] = (-1, -1)

    def getChild(self, name: bytes, request: server.Request) -> resource.Resource:
        if name == b"":
            return self
        return notFound()

    def resources(self, absolute_url: str | None = None) -> Resources:
        """Where pages load BokehJS from: this server's /static/ unless BOKEH_RESOURCES says otherwise (cdn,
        inline ...), as bokeh serve decides; Bokeh's Resources also read BOKEH_MINIFIED, BOKEH_LOG_LEVEL, BOKEH_DEV."""
        mode = settings.resources(default="server")
        if mode not in ("server", "server-dev"):
            return Resources(mode=mode)
        root = (absolute_url or "").rstrip("/") + self.prefix + "/"
        return Resources(mode=mode, root_url=root, path_versioner=self.static_files.versioned)

    def page_bundle(self) -> tuple[str, str]:
        """The page's script and style tags, rendered again only when new model classes appear.

        Bundling walks every model class Bokeh knows, looking for extensions
        and custom models: about half the cost of rendering a page, and the
        same answer for every visitor until app code defines a new model class
        or a custom model's compilation finishes (custom_models.py; call after
        ``custom_models.ready()``, so that Bokeh runs no compiler here).
        """
        models = (len(HasProps.model_class_reverse_map), self.custom_models.generation)
        if models != self._page_bundle_models:
            self._page_bundle = tuple(bundle_for_objs_and_resources(None, self.resources()))
            self._page_bundle_models = models
        return self._page_bundle

    def session_for(self, request: server.Request) -> defer.Deferred:
        """Deferred session the request names (or a new one), its document built."""
        try:
            token = session_token_for(request, self.manager, self.session_settings)
        except HTTPRefusal:
            return defer.fail()
        return self.session_for_token(token, request)

    def session_for_token(self, token: str, request: server.Request) -> defer.Deferred:
        context = RequestContext.from_token(token, **request_facts(request))
        return self.manager.get_or_create(get_session_id(token), token, context)

    def render_GET(self, request: server.Request) -> int:
        def render(session: Any) -> defer.Deferred:
            d = self.custom_models.ready().addCallback(lambda _: session.with_document_locked(self._page, session))
            return d.addCallback(self.protect_if_published, request, session.id)

        return _respond_later(request, self.session_for(request).addCallback(render), b"text/html; charset=utf-8")

    def protect_if_published(self, html: str, request: server.Request, session_id: str) -> str:
        """``html``, with the Content-Security-Policy of published pages if ``session_id`` is published (publishing.py)."""
        if self.manager.is_published(session_id):
            request.setHeader(b"content-security-policy", page_policy(html))
        return html

    def _page(self, session: Any) -> str:
        """The HTML page for ``session`` (what bokeh.embed.server's page function renders; Panel's page for a
        Panel document, as panel serve renders it: panel_apps.py)."""
        doc = session.document
        self.custom_models.check(doc)
        if is_panel_document(doc):
            return panel_page(session, self.resources())
        item = RenderItem(token=session.token, roots=doc.roots, use_for_title=True)
        return html_page_for_render_items(self.page_bundle(), {}, [item], doc.title, template=doc.template,
                                          template_variables=doc.template_variables)


class AutoloadJs(resource.Resource):
    """``/<app>/autoload.js``: what ``bokeh.embed.server_document`` puts in another site's page."""

    isLeaf = True

    def __init__(self, app: AppResource):
        super().__init__()
        self.app = app

    def _cors(self, request: server.Request) -> None:
        """CORS for pages that fetch autoload.js (a ``<script src>`` needs none).

        bokeh serve reflects any Origin and allows credentials, so any site
        could read a token carrying its visitor's cookies.  Here an Origin is
        granted only when it may open the websocket too (``--allow-websocket-origin``,
        by default this server), with credentials only under
        ``--autoload-credentials``; a request without Origin gets ``*``.
        """
        request.setHeader(b"vary", b"Origin")
        request.setHeader(b"access-control-allow-headers", b"*")
        origin = _text(request.getHeader(b"origin"))
        if not origin:
            request.setHeader(b"access-control-allow-origin", b"*")
            return
        policy = self.app.origins
        if policy.refusal(origin, _text(request.getHeader(b"host")), "https" if request.isSecure() else "http"):
            return
        request.setHeader(b"access-control-allow-origin", origin.encode("latin-1"))
        if policy.credentials:
            request.setHeader(b"access-control-allow-credentials", b"true")

    def render_OPTIONS(self, request: server.Request) -> bytes:
        self._cors(request)
        request.setHeader(b"access-control-allow-methods", b"PUT, GET, OPTIONS")
        return b""

    def render_GET(self, request: server.Request) -> Any:
        self._cors(request)
        arguments = target_arguments(request.uri)
        try:
            element_id = argument(arguments, "bokeh-autoload-element")
            app_path = argument(arguments, "bokeh-app-path") or "/"
            absolute_url = argument(arguments, "bokeh-absolute-url") or None
            with_resources = argument(arguments, "resources") != "none"
        except BadArgument as e:
            return ErrorPage(http.BAD_REQUEST, "Bad Request", str(e)).render(request)
        if not element_id:
            return ErrorPage(http.BAD_REQUEST, "Bad Request", "no bokeh-autoload-element query parameter").render(request)
        if not ELEMENT_ID.fullmatch(element_id):  # it lands in JavaScript unescaped (Bokeh's template)
            log.warn("refused autoload.js for element id {id!r}", id=element_id[:100])
            return ErrorPage(http.BAD_REQUEST, "Bad Request", "bokeh-autoload-element must be an element id as "
                             "Bokeh makes them: a letter, then letters, digits, '-' or '_'").render(request)

        def render(session: Any) -> str:
            server_url = None
            if absolute_url:
                parts = urlsplit(absolute_url)
                server_url = f"{parts.scheme}://{parts.netloc}"
            bundle = bundle_for_objs_and_resources(None, self.app.resources(server_url) if with_resources else None)
            items = [RenderItem(token=session.token, elementid=element_id, use_for_title=False)]
            bundle.add(Script(script_for_render_items({}, items, app_path=app_path, absolute_url=absolute_url)))
            return AUTOLOAD_JS.render(bundle=bundle, elementid=element_id)

        d = self.app.session_for(request).addCallback(lambda session: self.app.custom_models.ready().addCallback(
            lambda _: render(session)))
        return _respond_later(request, d, b"application/javascript")


class Metadata(resource.Resource):
    """``/<app>/metadata``: the app's URL and its user-supplied metadata as JSON."""

    isLeaf = True

    def __init__(self, app: AppResource):
        super().__init__()
        self.app = app

    def render_GET(self, request: server.Request) -> bytes:
        data = self.app.manager.application.metadata
        if callable(data):
            data = data()
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"url": self.app.url, "data": data or {}}).encode("utf-8")


class Index(resource.Resource):
    """``/``: a list of the apps and of the published documents, or a redirect
    when there is only one app and nothing is published.

    ``published`` returns the published documents' listing entries
    (``docsyncd.published.entries``); templates see them as ``published``.
    """

    isLeaf = True

    def __init__(self, prefix: str, app_urls: list[str], template: str | None = None, redirect: bool = True,
                 published: Callable[[], list[dict[str, Any]]] | None = None):
        super().__init__()
        self.prefix = prefix
        self.app_urls = sorted(app_urls)
        self.redirect = redirect and template is None and len(app_urls) == 1
        self.published = published or list
        directory, name = os.path.split(template) if template else (TEMPLATES, "index.html")
        env = Environment(loader=FileSystemLoader(directory or "."), autoescape=select_autoescape())
        self.template = env.get_template(name)

    def render_GET(self, request: server.Request) -> bytes:
        published = self.published()
        if self.redirect and not published:
            return Redirect((self.prefix + self.app_urls[0]).encode()).render(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.template.render(prefix=self.prefix, items=self.app_urls, published=published).encode("utf-8")


class Root(resource.Resource):
    """The server's root: index, BokehJS static files, favicon and one child per app."""

    def __init__(self, index: resource.Resource | None, static_files: StaticFiles):
        super().__init__()
        self.index = index
        self.putChild(b"static", static_files.resource())
        if settings.ico_path() != "none":  # BOKEH_ICO_PATH, as bokeh serve reads it
            self.putChild(b"favicon.ico", static.File(settings.ico_path(), defaultType="image/x-icon"))

    def getChild(self, name: bytes, request: server.Request) -> resource.Resource:
        if name == b"" and self.index is not None:
            return self.index
        return notFound()


class _PrefixSegment(resource.Resource):
    """One segment of ``--prefix``: anything but the next segment is not found."""

    def getChild(self, name: bytes, request: server.Request) -> resource.Resource:
        return notFound()


def mount(prefix: str, root: resource.Resource) -> resource.Resource:
    """Nest ``root`` under the URL ``prefix`` (``/a/b``)."""
    for segment in reversed([s for s in prefix.split("/") if s]):
        outer = _PrefixSegment()
        outer.putChild(segment.encode(), root)
        root = outer
    return root
