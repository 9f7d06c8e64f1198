"""Lazy documents: the page GET mints a token, the websocket builds the document.

With ``--lazy-documents`` (implied by ``--workers``) an app's page is
rendered the way autoload.js is: no document, only a render item that names
the session by its token.  BokehJS then opens the websocket with that token,
and the server that receives it builds the session's document there, once
(``SessionManager.get_or_create``; the request's headers, cookies and
arguments travel in the token, as they always do).  So wherever a load
balancer sends the websocket (``etc/nginx/docsyncd-hash.conf`` hashes the
session inside the token), the document is built in the process that will
serve it, and nowhere else.

What differs from an eager page: BokehJS places the document's roots in one
element instead of one element per root, and takes the page title from the
document once it arrives (the HTML starts with Bokeh's default title).

An app whose page needs its document keeps eager creation: one that sets its
own template or template variables (``templates/index.html`` of a directory
app, ``doc.template`` set in the app or in a module it imports, Panel's
templates), since such a page may embed named roots.  That is decided from
what the app does, not from its source: every document the app builds in this
process is looked at (``sessions.sets_page_template``), and until one has been
built, the first page rehearses the app once (``SessionManager.learn_page_template``:
a document built for that request and discarded at once: not the session
itself, whose websocket a load balancer may send to another process or daemon).  The rehearsal also
imports what the app imports, so the page's bundle lists the extensions
(Panel) its models need.  Once any document of the app set a template, its
pages stay eager; an app that sets one only for some requests gets lazy pages
for the others.

Tests: tests/test_lazy.py; in Chromium tests/e2e/test_panel.py (templates under --workers)
"""

from __future__ import annotations

from typing import Any

from bokeh.embed.elements import html_page_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.util.serialization import make_globally_unique_css_safe_id
from bokeh.util.token import get_session_id
from twisted.internet import defer
from twisted.web import server

from .contexts import RequestContext
from .web import AppResource, HTTPRefusal, _respond_later, request_facts, session_token_for


class TokenOnly:
    """What a lazy page and autoload.js need of a session that is not built yet: its token."""

    def __init__(self, token: str):
        self.token = token


def lazy_documents(options: Any) -> bool:
    """Whether the options ask for lazy documents (``--lazy-documents``, or ``--workers``)."""
    return bool(options.get("lazy-documents")) or options.get("workers") is not None


def page_class(options: Any) -> type[AppResource]:
    """The page resource the options ask for."""
    return LazyAppResource if lazy_documents(options) else AppResource


class LazyAppResource(AppResource):
    """``/<app>`` rendered without building the document when the app's page does not need it (module docstring)."""

    def session_for(self, request: server.Request) -> defer.Deferred:
        """Deferred ``TokenOnly`` for an app that sets no page template, else the built session."""
        try:
            token = session_token_for(request, self.manager, self.session_settings)
        except HTTPRefusal:
            return defer.fail()

        def decide(_: None) -> Any:
            if self.manager.sets_page_template is False:
                return TokenOnly(token)
            return self.session_for_token(token, request)  # a template, or the rehearsal failed: eager

        context = RequestContext.from_token(token, **request_facts(request))
        return self.manager.learn_page_template(token, context).addCallback(decide)

    def render_GET(self, request: server.Request) -> int:
        def render(session: Any) -> Any:
            if not isinstance(session, TokenOnly):
                return session.with_document_locked(self._page, session)
            item = RenderItem(token=session.token, elementid=make_globally_unique_css_safe_id(), use_for_title=True)
            html = html_page_for_render_items(self.page_bundle(), {}, [item], None)
            return self.protect_if_published(html, request, get_session_id(session.token))

        d = self.session_for(request).addCallback(
            lambda session: self.custom_models.ready().addCallback(lambda _: render(session)))
        return _respond_later(request, d, b"text/html; charset=utf-8")
