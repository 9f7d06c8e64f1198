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
document once it arrives (the HTML starts with Bokeh's default title).  An
app whose page needs its document (a custom template, which may embed named
roots: ``templates/index.html`` in a directory app, or code that sets
``curdoc().template`` or ``template_variables``) keeps eager creation.

Tests: tests/test_lazy.py
"""

from __future__ import annotations

import os
import re
from typing import Any

from bokeh.embed.elements import html_page_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.util.serialization import make_globally_unique_css_safe_id
from twisted.internet import defer
from twisted.web import server

from .apps import LoadedApp
from .web import AppResource, HTTPRefusal, _respond_later, session_token_for

#: Source text that means an app sets its own page template.
_TEMPLATE_USE = re.compile(r"\.template\b|template_variables")


class TokenOnly:
    """What autoload.js needs of a session when none is built yet: its token."""

    def __init__(self, token: str):
        self.token = token


def sets_own_template(app: LoadedApp) -> bool:
    """Whether ``app`` renders its page with its own template (which may embed named roots)."""
    if not app.path:
        return False  # the empty app at /
    if os.path.isdir(app.path):
        if os.path.exists(os.path.join(app.path, "templates", "index.html")):
            return True
        sources = [os.path.join(app.path, name) for name in sorted(os.listdir(app.path)) if name.endswith(".py")]
    else:
        sources = [app.path]
    for path in sources:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if _TEMPLATE_USE.search(f.read()):
                    return True
        except OSError:
            continue
    return False


def lazy_documents(options: Any) -> bool:
    """Whether the options ask for lazy documents (``--lazy-documents``, or ``--workers``)."""
    return bool(options.get("lazy-documents")) or options.get("workers") is not None


def page_class(app: LoadedApp, options: Any) -> type[AppResource]:
    """The page resource for ``app``: lazy when the options ask for it and the app allows it."""
    if lazy_documents(options) and not sets_own_template(app):
        return LazyAppResource
    return AppResource


class LazyAppResource(AppResource):
    """``/<app>`` rendered without building the document (see the module docstring)."""

    def session_for(self, request: server.Request) -> defer.Deferred:
        """The session's token only; autoload.js and the page need nothing else."""
        try:
            token = session_token_for(request, self.manager, self.session_settings)
        except HTTPRefusal:
            return defer.fail()
        return defer.succeed(TokenOnly(token))

    def render_GET(self, request: server.Request) -> int:
        def render(session: TokenOnly) -> str:
            item = RenderItem(token=session.token, elementid=make_globally_unique_css_safe_id(), use_for_title=True)
            return html_page_for_render_items(self.page_bundle(), {}, [item], None)

        d = self.session_for(request).addCallback(
            lambda session: self.custom_models.ready().addCallback(lambda _: render(session)))
        return _respond_later(request, d, b"text/html; charset=utf-8")
