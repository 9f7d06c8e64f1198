"""HTTP for published documents, and ``/`` when docsyncd serves the empty app.

| URL | what |
| --- | --- |
| ``<app>/published`` | GET: the app's published documents as JSON |
| ``<app>/published/<name>`` | GET: the stored document's JSON; DELETE: unpublish it |
| ``/published.json`` | every app's published documents as JSON |

``<app>`` is ``/myapp``, or nothing for the empty app that ``twistd docsync``
serves at ``/`` without ``--app`` (as ``bokeh serve`` does without files):
``/published``, ``/published/<name>``.  A published document is viewed at
``<app>?bokeh-session-id=<name>``.

DELETE needs the credential of the document's owner (publishing.py); a
request with an Origin header (any web page, DNS rebinding included) gets
403.  Listings give what a viewer needs to open a document (app, name, URL,
when it changed), never its owner.

Tests: tests/test_store.py (in memory), tests/e2e/test_client_publish.py
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from twisted.logger import Logger
from twisted.web import http, resource, server

from . import logs
from .publishing import PublishRefused, credential_of_request
from .sessions import SessionManager
from .store import BadName, Published, check_name

log = Logger(observer=logs.observer)

SESSION_ARGUMENTS = (b"bokeh-session-id", b"bokeh-token")


def entry(published: Published, app_url: str) -> dict[str, Any]:
    """How listings describe one published document; ``url`` is where to view it."""
    return {"app": published.app, "name": published.name, "url": f"{app_url}?bokeh-session-id={published.name}",
            "updated": published.updated}


def entries(pages: Iterable[tuple[SessionManager, str]]) -> list[dict[str, Any]]:
    """Listing entries of every (manager, app URL) pair, app by app."""
    return [entry(p, url) for manager, url in pages for p in manager.published()]


def _json(request: server.Request, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return (json.dumps(body) + "\n").encode("utf-8")


class PublishedList(resource.Resource):
    """``<app>/published``: the app's published documents; each one below it by name."""

    def __init__(self, manager: SessionManager, app_url: str):
        super().__init__()
        self.manager = manager
        self.app_url = app_url

    def getChild(self, name: bytes, request: server.Request) -> resource.Resource:
        if name == b"":
            return self
        return PublishedDocument(self.manager, name.decode("utf-8", "replace"))

    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, http.OK, {"app": self.manager.app.name,
                                        "published": entries([(self.manager, self.app_url)])})


class PublishedDocument(resource.Resource):
    """``<app>/published/<name>``: GET the stored document JSON, DELETE to unpublish."""

    isLeaf = True

    def __init__(self, manager: SessionManager, name: str):
        super().__init__()
        self.manager = manager
        self.name = name

    def _refusal(self, request: server.Request) -> bytes | None:
        try:
            check_name(self.name)
        except BadName as e:
            return _json(request, http.BAD_REQUEST, {"error": str(e)})
        if request.postpath:
            return _json(request, http.NOT_FOUND, {"error": "not found"})
        return None

    def _not_found(self, request: server.Request) -> bytes:
        app = self.manager.app.name
        where = f"app {app!r}" if app else "the empty app at /"
        return _json(request, http.NOT_FOUND, {"error": f"no document named {self.name!r} is published in {where}"})

    def render_GET(self, request: server.Request) -> bytes:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        doc_json = self.manager.store.load(self.manager.app.name, self.name)
        if doc_json is None:
            return self._not_found(request)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return doc_json.encode("utf-8")

    def render_DELETE(self, request: server.Request) -> bytes:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        published = self.manager.store.find(self.manager.app.name, self.name)
        if published is None:
            return self._not_found(request)
        try:
            owner = self.manager.policy.owner(credential_of_request(request))
            self.manager.policy.check_owner(published.owner, owner, self.name)
        except PublishRefused as e:
            log.warn("refused DELETE of published document {name} from {client}: {why}", name=self.name,
                     client=getattr(request.getClientAddress(), "host", "?"), why=str(e))
            return _json(request, http.FORBIDDEN, {"error": str(e)})
        if not self.manager.unpublish(self.name):
            return self._not_found(request)
        return _json(request, http.OK, {"deleted": self.name, "app": self.manager.app.name})


class AllPublished(resource.Resource):
    """``/published.json``: the published documents of every app served."""

    isLeaf = True

    def __init__(self, pages: list[tuple[SessionManager, str]]):
        super().__init__()
        self.pages = pages

    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, http.OK, {"published": entries(self.pages)})


def names_a_session(request: server.Request) -> bool:
    """Whether a page request asks for a particular session (by id, token or header)."""
    return any(request.args.get(name) for name in SESSION_ARGUMENTS) or bool(request.getHeader(b"bokeh-session-id"))


class EmptyAppRoot(resource.Resource):
    """``/`` when docsyncd runs without ``--app``: the empty app's page for a named
    session (``/?bokeh-session-id=NAME``, as ``bokeh.client`` opens it), else the
    index of published documents (or, with ``--disable-index``, a new empty session).
    """

    isLeaf = True

    def __init__(self, page: resource.Resource, index: resource.Resource | None):
        super().__init__()
        self.page = page
        self.index = index

    def render(self, request: server.Request) -> Any:
        if self.index is None or names_a_session(request):
            return self.page.render(request)
        return self.index.render(request)
