"""The server and session contexts that Bokeh application code sees.

``curdoc().session_context`` must offer what it offers under bokeh serve:
``id``, ``request`` (``arguments``, ``headers``, ``cookies``),
``server_context``, ``destroyed``, ``token_payload`` and
``with_locked_document``.  The request travels inside the session token (as
in bokeh serve), so a session created by a websocket alone sees the same
request as one created by the page GET.

Tests: tests/test_sessions.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from bokeh.application.application import ServerContext, SessionContext
from bokeh.util.token import get_token_payload
from twisted.internet import defer

from .callbacks import call_user, log_callback_failure
from .cookies import cookie_header

if TYPE_CHECKING:
    from .session import ServerSession
    from .sessions import SessionManager


@dataclass
class RequestContext:
    """The HTTP request that created a session, as app code sees it.

    ``arguments`` maps names to lists of bytes, as under bokeh serve.
    """

    arguments: dict[str, list[bytes]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    path: str = ""
    uri: str = ""
    host: str = ""
    remote_ip: str = ""
    protocol: str = "http"

    @classmethod
    def from_token(cls, token: str, url_arguments: dict[str, list[bytes]] | None = None,
                   **request_facts: str) -> "RequestContext":
        """The request a token carries; ``url_arguments`` stand in when it carries none."""
        payload = get_token_payload(token)
        headers = dict(payload.get("headers", {}))
        cookies = dict(payload.get("cookies", {}))
        if cookies and "Cookie" not in headers:
            headers["Cookie"] = cookie_header(cookies)
        arguments = payload.get("arguments", url_arguments or {})
        arguments = {k: v for k, v in arguments.items() if k != "bokeh-session-id"}
        return cls(arguments=arguments, headers=headers, cookies=cookies, **request_facts)


class AppServerContext(ServerContext):
    """Shared by every session of one app; apps may hang their own attributes on it."""

    #: The auth module's logout URL under --prefix, when it has one (guard.py sets it).
    logout_url: str | None = None

    def __init__(self, manager: "SessionManager"):
        self._manager = manager

    @property
    def sessions(self) -> list["ServerSession"]:
        return self._manager.sessions

    @property
    def application_context(self) -> "SessionManager":
        return self._manager


class AppSessionContext(SessionContext):
    """One session as app code sees it, before and after the session exists."""

    def __init__(self, session_id: str, server_context: AppServerContext, document: Any,
                 request: RequestContext, token: str):
        super().__init__(server_context, session_id)
        self._document = document
        self._request = request
        self._token = token
        self._session: ServerSession | None = None

    def attach(self, session: "ServerSession") -> None:
        self._session = session

    @property
    def session(self) -> "ServerSession | None":
        return self._session

    @property
    def destroyed(self) -> bool:
        return self._session is not None and self._session.destroyed

    @property
    def document(self) -> Any:
        """The session's document (abstract in Bokeh 3.10's SessionContext; 3.9 had no such property)."""
        return self._document

    @property
    def request(self) -> RequestContext:
        return self._request

    @property
    def token_payload(self) -> dict[str, Any]:
        return get_token_payload(self._token)

    @property
    def logout_url(self) -> str | None:
        return self.server_context.logout_url

    def with_locked_document(self, func: Callable[[Any], Any]) -> defer.Deferred:
        """Run ``func(document)`` under the session's lock (directly while the session is being built)."""
        if self._session is None:
            return call_user(func, self._document)
        return self._session.with_document_locked(func, self._document)

    def run_awaitable(self, awaitable: Any, name: str) -> defer.Deferred:
        """Where an ``async def`` model callback's coroutine is run (see callbacks.py)."""
        if self._session is None:
            return call_user(lambda: awaitable).addErrback(log_callback_failure, name, self.id)
        return self._session.run_awaitable(awaitable, name)
