"""A Python client for docsyncd (and ``bokeh serve``), on Twisted and Autobahn.

Bokeh's client, with its names, for scripts::

    from docsyncd.client import push_session
    session = push_session(curdoc())          # the server's copy of the document is now ours
    curdoc().add_periodic_callback(update, 50)
    session.show(p)                           # add p, open the session's page in a browser
    session.loop_until_closed()               # run callbacks, apply the browsers' changes

and the same session as Deferreds, for code that runs a reactor (an
``IService`` may hold a session)::

    session = await docsyncd.client.push(doc, url="http://localhost:5006/")
    await session.force_roundtrip()
    await session.when_closed()

Changes flow both ways while connected: every change to the client's document
is sent to the server as a PATCH-DOC (and so to every browser on the session);
every PATCH-DOC from the server is applied to the client's document, with the
session as its setter so it is not sent back, and runs the document's
``on_change`` callbacks.  Callbacks added with ``doc.add_periodic_callback``,
``add_timeout_callback`` and ``add_next_tick_callback`` run on the reactor
(``docsyncd.callbacks.SessionCallbacks``, as on the server).

Two faces
---------
``Session``, ``push`` and ``pull`` return Deferreds (awaitable in coroutines
that Twisted runs) and need a running reactor.  ``ClientSession``,
``push_session`` and ``pull_session`` block.  A blocking call runs the global
reactor *in the calling thread* until its result is ready, as ``bokeh.client``
runs its Tornado loop: the reactor is iterated (``reactor.iterate``), never
started, because a Twisted reactor cannot be started twice.  So, as with
``bokeh.client``, nothing happens on the network between blocking calls;
``loop_until_closed()`` is where periodic callbacks run and browsers' changes
arrive, and the document is only ever touched by the script's own thread.
Names are resolved in the calling thread too (Twisted resolves them in its
thread pool, which only runs with a running reactor).  When the reactor
already runs in another thread, blocking calls hand their work to it with
``blockingCallFromThread`` (then touch the document only through
``doc.add_next_tick_callback``); called on the reactor thread itself they raise
instead of deadlocking.

Publishing
----------
A push under a ``session_id`` you chose publishes the document under that name
(``publish=False`` opts out): docsyncd stores it before it acknowledges the
push, and anyone can open it at ``<url>?bokeh-session-id=<name>`` after that,
also after the daemon restarts.  A name is 1 to 64 letters, digits, ``_`` or
``-``.  ``delete_published(name, url)`` (HTTP ``DELETE <url>/published/<name>``)
removes one.  ``bokeh serve`` ignores the publish request.  Publishing,
replacing and deleting need a credential (docsyncd/publishing.py): from the
server's own machine none; else ``publish_key=`` (default
``DOCSYNC_PUBLISH_KEY``), sent as ``Authorization: Bearer <key>``, or the
``headers=`` (e.g. a login cookie) of a user the server's auth module knows.

Connections
-----------
``ws://`` and ``wss://`` (from ``http://`` and ``https://`` URLs).  TLS checks
the server's certificate and host name (service-identity); ``ca_certs`` names
a PEM file of CAs to trust instead of the system's.  A lost connection fails
the requests waiting on it (``ConnectionLost``) and ends the session
(``when_closed`` fires, ``loop_until_closed`` returns, ``error`` says why);
with ``reconnect=True`` the session reconnects with exponential backoff
(Twisted's ``ClientService``) and then pushes its document again, or pulls the
server's if it was pulled, until ``close()``.

Tests: tests/test_client.py; tests/e2e/test_client_script.py, test_client_publish.py, test_client_interop.py
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import threading
from typing import Any, Callable, Iterator
from urllib.parse import quote_plus, urlencode, urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectingRequest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent
from bokeh.util.token import generate_jwt_token, generate_session_id
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from . import logs, wire
from .callbacks import SessionCallbacks, call_user
from .store import BadName, check_name

log = Logger(observer=logs.observer)

__all__ = [
    "ClientSession", "ConnectionLost", "DEFAULT_URL", "ServerError", "Session",
    "delete", "delete_published", "pull", "pull_session", "push", "push_session",
]

#: ``url="default"``: Bokeh's default server, ``BOKEH_DEFAULT_SERVER_HOST`` and ``_PORT`` honoured.
DEFAULT_URL = "http://localhost:5006/"
MAX_MESSAGE_SIZE = 20 * 1024 * 1024
#: How long one blocking wait may sleep in the poller before checking again.
_MAX_POLL = 0.5


class ConnectionLost(Exception):
    """The connection to the server closed (or never opened) before the answer came."""


class ServerError(Exception):
    """The server answered a request with an ERROR message (its text is the message)."""


# -- URLs ------------------------------------------------------------------------


def server_url(url: str) -> str:
    """The http(s) URL of an app: ``default`` is ``http://localhost:5006/``; ws(s)://.../ws is converted."""
    if url == "default":
        from bokeh.settings import settings

        return f"http://{settings.default_server_host()}:{settings.default_server_port()}/"
    if url.startswith(("ws://", "wss://")):
        url = "http" + url[2:]
        url = url[:-3] if url.endswith("/ws") else url
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http://, https://, ws:// or wss:// URL")
    return url


def websocket_url(url: str, arguments: dict[str, str] | None = None) -> str:
    """The websocket URL of the app at ``url``, with ``arguments`` for the app in its query."""
    url = server_url(url)
    ws = "ws" + url[4:]
    ws = ws + ("ws" if ws.endswith("/") else "/ws")
    return ws + ("?" + urlencode(arguments) if arguments else "")


def page_url(url: str, session_id: str) -> str:
    """Where a browser shows session ``session_id`` of the app at ``url``."""
    url = server_url(url)
    return f"{url}{'&' if '?' in url else '?'}bokeh-session-id={quote_plus(session_id)}"


# -- connecting --------------------------------------------------------------------


def _trust_root(ca_certs: Any) -> Any:
    """The CAs TLS trusts: the system's, a PEM file's certificates, or a Twisted trust root as it is."""
    from twisted.internet import ssl

    if ca_certs is None:
        return ssl.platformTrust()
    if not isinstance(ca_certs, (str, os.PathLike)):
        return ca_certs
    with open(ca_certs, "rb") as f:
        pem = f.read()
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + block for block in pem.split(marker)[1:]]
    if not blocks:
        raise ValueError(f"ca_certs={os.fspath(ca_certs)!r} holds no PEM certificate")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(block) for block in blocks])


@implementer(IStreamClientEndpoint)
class _FirstAddressThatConnects:
    """Tries already-resolved addresses in order (HostnameEndpoint without the thread pool)."""

    def __init__(self, endpoints: list[Any]):
        self._endpoints = endpoints

    def connect(self, factory: Any) -> defer.Deferred:
        def attempt(index: int, failure: Failure) -> Any:
            if index == len(self._endpoints):
                return failure
            return self._endpoints[index].connect(factory).addErrback(lambda f: attempt(index + 1, f))

        return attempt(0, Failure(error.ConnectError("no address to connect to")))


def client_endpoint(reactor: Any, url: str, ca_certs: Any = None, timeout: float = 30) -> Any:
    """The endpoint that reaches the host of an http(s) or ws(s) URL, with TLS for https and wss.

    With the reactor running, names are resolved by Twisted (``HostnameEndpoint``);
    otherwise (a blocking call iterating the reactor) here, with getaddrinfo.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    if isIPAddress(host) or isIPv6Address(host):
        endpoint: Any = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)  # connectTCP takes IPv6 literals too
    elif getattr(reactor, "running", False):
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise error.DNSLookupError(f"{host}: {e}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        endpoint = _FirstAddressThatConnects([TCP4ClientEndpoint(reactor, a, port, timeout=timeout) for a in addresses])
    if secure:
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=_trust_root(ca_certs)), endpoint)
    return endpoint


class _Protocol(WebSocketClientProtocol):
    """One websocket connection of a Session: the handshake with a fresh token, then messages."""

    factory: "_Factory"

    def __init__(self) -> None:
        super().__init__()
        self._assembler = wire.MessageAssembler()
        #: Fires with this protocol once the server's ACK arrived; fails if the connection ends first.
        self.ready: defer.Deferred = defer.Deferred()

    def onConnecting(self, transport_details: Any) -> ConnectingRequest:
        f = self.factory
        return ConnectingRequest(host=f.host, port=f.port, resource=f.resource, headers=f.headers,
                                 useragent=f.useragent, origin=f.origin,
                                 protocols=["bokeh", f.session.token])  # a token made now never expired

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = self._assembler.feed(payload, isBinary)
        except wire.WIRE_ERRORS as e:
            log.warn("protocol error from the server: {error}", error=f"{type(e).__name__}: {e}")
            self.sendCloseFrame(code=1002, reasonUtf8=encode_truncate(f"protocol error: {e}", 123))
            return
        if message is None:
            return
        if not self.ready.called:
            if message.msgtype == "ACK":
                self.ready.callback(self)
            else:
                log.warn("expected ACK from the server, got {msgtype}", msgtype=message.msgtype)
            return
        self.factory.session._received(self, message)

    def send_frames(self, frames: list[wire.Frame]) -> None:
        if self.state == self.STATE_OPEN:
            for frame in frames:
                self.sendMessage(frame.payload, frame.is_binary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        why = reason or ("closed" if wasClean else "connection lost")
        if code not in (None, 1000, 1006):
            why = f"{why} (close code {code})"
        if not self.ready.called:
            self.ready.errback(ConnectionLost(f"could not open a session at {self.factory.url}: {why}"))
        self.factory.session._lost(self, why)


class _Factory(WebSocketClientFactory):
    protocol = _Protocol

    def __init__(self, session: "Session", url: str, reactor: Any, max_message_size: int,
                 headers: dict[str, str] | None = None):
        super().__init__(url, protocols=["bokeh"], reactor=reactor, headers=headers)
        self.session = session
        self.setProtocolOptions(maxMessagePayloadSize=max_message_size, maxFramePayloadSize=max_message_size,
                                tcpNoDelay=True, failByDrop=False)


def _deferred(method: Callable[..., Any]) -> Callable[..., defer.Deferred]:
    """An ``async def`` method that returns a Deferred, so it can be awaited or given callbacks."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.ensureDeferred(method(*args, **kwargs))

    return wrapper


# -- the session, as Deferreds ------------------------------------------------------


class Session:
    """A connection to one server session, and the client's copy of its document.

    Every method that talks to the server returns a Deferred; run it on a
    reactor (see ``ClientSession`` for scripts).  Options:

    - ``arguments``: request arguments the app sees (only when the session is created).
    - ``ca_certs``: a PEM file of CAs (or a Twisted trust root) that wss:// trusts.
    - ``reconnect``: True to reconnect with backoff after a lost connection,
      or a retry policy (attempt number to seconds, as ``backoffPolicy()`` makes).
    - ``secret_key``, ``signed``: for servers run with ``--session-ids signed``
      (default: ``DOCSYNC_SECRET_KEY`` / ``BOKEH_SECRET_KEY``, ``BOKEH_SIGN_SESSIONS``).
    - ``endpoint``: the ``IStreamClientEndpoint`` to connect with, instead of
      the one the URL names (tests connect in memory this way).
    - ``publish_key``: the key that publishes, replaces and deletes (default:
      ``DOCSYNC_PUBLISH_KEY``); not needed on the server's own machine.
    - ``headers``: more request headers for the websocket and for deleting
      (e.g. ``{"Cookie": ...}`` for a server with an auth module).
    """

    def __init__(self, session_id: str | None = None, url: str = "default", *, arguments: dict[str, str] | None = None,
                 ca_certs: Any = None, reconnect: bool | Callable[[int], float] = False,
                 secret_key: bytes | str | None = None, signed: bool | None = None,
                 max_message_size: int = MAX_MESSAGE_SIZE, reactor: Any = None, endpoint: Any = None,
                 publish_key: str | None = None, headers: dict[str, str] | None = None):
        if reactor is None:
            from twisted.internet import reactor
        from bokeh.settings import settings

        self._reactor = reactor
        if secret_key is None:
            secret_key = os.environ.get("DOCSYNC_SECRET_KEY") or settings.secret_key_bytes()
        self._secret_key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        self._signed = settings.sign_sessions() if signed is None else signed
        self.id: str = session_id if session_id is not None else generate_session_id(
            secret_key=self._secret_key, signed=self._signed)
        self._named = session_id is not None
        self.url = server_url(url)
        self.websocket_url = websocket_url(self.url, arguments)
        self._ca_certs = ca_certs
        self._endpoint = endpoint
        self._max_message_size = max_message_size
        self._headers = credential_headers(publish_key, headers)
        if reconnect is True:
            reconnect = backoffPolicy(initialDelay=0.5, maxDelay=30.0, factor=1.5)
        self._retry_policy: Callable[[int], float] | None = reconnect or None
        self._service: ClientService | None = None
        self._connection: _Protocol | None = None
        self._connecting: list[defer.Deferred] | None = None  # waiting for the connection being opened
        self._pending: dict[str, defer.Deferred] = {}
        self._document: Document | None = None
        self._applying_server_state = False
        self._synced_by: str | None = None  # "push" or "pull": what to do again after reconnecting
        self._publish = False
        self._closing = False
        self._ended = False
        self._end_waiters: list[defer.Deferred] = []
        #: Why the session ended, when it was not closed by ``close()``.
        self.error: str | None = None
        self._callbacks = SessionCallbacks(reactor, call_user, reactor)

    # -- state ----------------------------------------------------------------

    @property
    def document(self) -> Document | None:
        """The client's copy of the session's document (None until ``push`` or ``pull``)."""
        return self._document

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def token(self) -> str:
        """A fresh session token (Bokeh's JWT) for this session id."""
        return generate_jwt_token(self.id, secret_key=self._secret_key, signed=self._signed)

    @property
    def page_url(self) -> str:
        """Where a browser shows this session."""
        return page_url(self.url, self.id)

    # -- connecting -----------------------------------------------------------

    def connect(self) -> defer.Deferred:
        """Deferred that fires once the session is open (the server's ACK arrived)."""
        if self._ended:
            return defer.fail(ConnectionLost(f"the session is closed ({self.error or 'closed'})"))
        if self._connection is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        if self._connecting is None:
            self._connecting = [d]
            self._open_first().addBoth(self._connect_done)
        else:
            self._connecting.append(d)
        return d

    def _connect_done(self, result: Any) -> None:
        waiting, self._connecting = self._connecting or [], None
        if isinstance(result, Failure):
            self.error = str(result.value)
            for d in waiting:
                d.errback(result)
        else:
            for d in waiting:
                d.callback(None)

    def _make_endpoint(self) -> Any:
        return self._endpoint or client_endpoint(self._reactor, self.websocket_url, self._ca_certs)

    def _open_first(self) -> defer.Deferred:
        try:
            endpoint = self._make_endpoint()
        except Exception:
            return defer.fail()
        factory = _Factory(self, self.websocket_url, self._reactor, self._max_message_size, self._headers)
        if self._retry_policy is None:
            d = endpoint.connect(factory).addCallback(lambda protocol: protocol.ready)
            return d.addCallback(self._opened)
        self._service = ClientService(endpoint, factory, retryPolicy=self._retry_policy, clock=self._reactor,
                                      prepareConnection=self._prepare)
        self._service.startService()

        def first_failed(failure: Failure) -> Failure:
            service, self._service = self._service, None
            if service is not None:
                service.stopService()
            return failure

        # The first connection must work (a wrong URL is reported at once); later ones are retried.
        return self._service.whenConnected(failAfterFailures=1).addCallbacks(lambda _: None, first_failed)

    def _prepare(self, protocol: Any) -> defer.Deferred:
        """ClientService's hook for each new connection: wait for the ACK, then sync the document again."""
        return protocol.ready.addCallback(self._opened)

    def _opened(self, protocol: _Protocol) -> defer.Deferred | None:
        if self._closing:
            protocol.dropConnection(abort=False)
            raise ConnectionLost("the session was closed while connecting")
        self._connection = protocol
        if self._synced_by is None:
            return None
        log.info("reconnected to {url}; {what} the document again", url=self.websocket_url,
                 what="pushing" if self._synced_by == "push" else "pulling")
        resync = self._push_now(self._document, self._publish) if self._synced_by == "push" else self._pull_now()

        def failed(failure: Failure) -> Failure:
            if self._connection is protocol:
                self._connection = None
            protocol.dropConnection(abort=False)
            return failure

        return resync.addErrback(failed)

    def _lost(self, protocol: _Protocol, why: str) -> None:
        if protocol is not self._connection:
            return  # lost before it was ready: its ``ready`` Deferred reported it
        self._connection = None
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(ConnectionLost(f"connection to {self.websocket_url} lost: {why}"))
        if self._closing:
            self._end()
        elif self._service is not None:
            log.warn("connection to {url} lost ({why}); reconnecting", url=self.websocket_url, why=why)
        else:
            log.warn("connection to {url} lost: {why}", url=self.websocket_url, why=why)
            self.error = why
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        service, self._service = self._service, None
        if service is not None:
            service.stopService()
        self._callbacks.remove_all()
        if self._document is not None:
            self._document.remove_on_change(self)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(None)

    def when_closed(self) -> defer.Deferred:
        """Deferred that fires when the session ends: ``close()``, or a lost connection
        (without ``reconnect``; ``error`` then says why).  A session never connected has ended."""
        if self._ended or (self._connection is None and self._connecting is None and self._service is None):
            return defer.succeed(None)
        d = defer.Deferred()
        self._end_waiters.append(d)
        return d

    def close(self, why: str = "closed") -> defer.Deferred:
        """Close the connection (and stop reconnecting); fires once it is closed."""
        self._closing = True
        if self._connection is None:
            self._end()
            return defer.succeed(None)
        d = self.when_closed()
        self._connection.sendClose(code=1000, reason=why)
        return d

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- messages ---------------------------------------------------------------

    def _send(self, message: Any) -> None:
        """Send a message now on the reactor thread, else hand it over to the reactor."""
        frames = wire.encode(message)
        if getattr(self._reactor, "running", False) and not threadable.isInIOThread():
            self._reactor.callFromThread(self._send_frames, frames)
        else:
            self._send_frames(frames)

    def _send_frames(self, frames: list[wire.Frame]) -> None:
        if self._connection is not None:
            self._connection.send_frames(frames)

    def _request(self, message: Any) -> defer.Deferred:
        """Deferred reply to ``message``; an ERROR reply fails it with ``ServerError``."""
        if self._connection is None:
            return defer.fail(ConnectionLost(f"not connected to {self.websocket_url}"))
        d = defer.Deferred()
        self._pending[message.header["msgid"]] = d
        self._send_frames(wire.encode(message))

        def check(reply: Any) -> Any:
            if reply.msgtype == "ERROR":
                raise ServerError(reply.content.get("text", "error"))
            return reply

        return d.addCallback(check)

    def _received(self, protocol: _Protocol, message: Any) -> None:
        if protocol is not self._connection:
            return
        waiting = self._pending.pop(message.header.get("reqid"), None)
        if waiting is not None:
            waiting.callback(message)
        elif message.msgtype == "PATCH-DOC":
            self._apply_patch(message)
        elif message.msgtype == "ERROR":
            log.warn("the server could not apply a change: {text}", text=message.content.get("text"))

    def _apply_patch(self, message: Any) -> None:
        if self._document is None:
            return
        try:
            wire.complete_column_data(message, self._document)
            message.apply_to_document(self._document, self)
        except Exception:
            log.failure("could not apply a change from the server (or an on_change callback raised)")

    # -- the document -----------------------------------------------------------

    def _attach(self, document: Document) -> None:
        self._document = document
        document.callbacks.on_change_dispatch_to(self)
        for callback_obj in document.session_callbacks:
            self._callbacks.add(callback_obj)

    def _document_patched(self, event: Any) -> None:
        if event.setter is self or self._applying_server_state or self._connection is None:
            return
        if isinstance(event, ColumnDataChangedEvent) and event.cols is not None:
            # Every column: a Python server (bokeh serve too) would drop the ones not sent.
            event = ColumnDataChangedEvent(event.document, event.model, event.attr, setter=event.setter)
        self._send(wire.PROTOCOL.create("PATCH-DOC", [event]))

    def _session_callback_added(self, event: Any) -> None:
        self._callbacks.add(event.callback)

    def _session_callback_removed(self, event: Any) -> None:
        self._callbacks.remove(event.callback)

    # -- requests -----------------------------------------------------------------

    @_deferred
    async def push(self, document: Document | None = None, *, publish: bool | None = None) -> None:
        """Make the server's document ``document`` (or ``self.document``, or a new one),
        and keep the two in sync from now on.

        ``publish`` (default: whether you chose the session id) stores it under
        the session id on docsyncd; the Deferred fires once it is stored.
        """
        if self._document is not None and document is not None and document is not self._document:
            raise ValueError("cannot push a different document from the session's document")
        doc = document if document is not None else self._document if self._document is not None else Document()
        publish = self._named if publish is None else publish
        if publish:
            check_name(self.id)
        await self.connect()
        await self._push_now(doc, publish)
        self._synced_by, self._publish = "push", publish

    def _push_now(self, doc: Document, publish: bool) -> defer.Deferred:
        message = wire.PROTOCOL.create("PUSH-DOC", doc, **({"publish": True} if publish else {}))
        attached_now = self._document is None
        if attached_now:  # changes made while the push travels follow it on the connection
            self._attach(doc)

        def failed(failure: Failure) -> Failure:
            if attached_now and self._synced_by is None:
                doc.remove_on_change(self)
                self._callbacks.remove_all()
                self._document = None
            return failure

        return self._request(message).addCallbacks(lambda _: None, failed)

    @_deferred
    async def pull(self) -> Document:
        """The server's document, as ``self.document`` (kept in sync from now on)."""
        await self.connect()
        doc = await self._pull_now()
        self._synced_by = self._synced_by or "pull"
        return doc

    def _pull_now(self) -> defer.Deferred:
        def apply(reply: Any) -> Document:
            doc = self._document if self._document is not None else Document()
            self._applying_server_state = True
            try:
                reply.push_to_document(doc)
            finally:
                self._applying_server_state = False
            if self._document is None:
                self._attach(doc)
            return doc

        return self._request(wire.PROTOCOL.create("PULL-DOC-REQ")).addCallback(apply)

    @_deferred
    async def request_server_info(self) -> dict[str, Any]:
        """The server's SERVER-INFO-REPLY content (``version_info``)."""
        await self.connect()
        reply = await self._request(wire.PROTOCOL.create("SERVER-INFO-REQ"))
        return reply.content

    @_deferred
    async def force_roundtrip(self) -> None:
        """Fires once the server has handled everything sent before."""
        await self.request_server_info()

    @_deferred
    async def prepare_show(self, obj: Any = None) -> str:
        """Add ``obj`` as a root if it is not one, wait until the server has it; the page URL."""
        if obj is not None:
            if self._document is None:
                await self.push()
            if obj not in self._document.roots:
                self._document.add_root(obj)
        if self._document is None:
            raise RuntimeError("push or pull a document before showing the session")
        await self.force_roundtrip()
        return self.page_url

    @_deferred
    async def show(self, obj: Any = None, browser: str | None = None, new: str = "tab") -> str:
        """Open the session's page in a web browser (``$BROWSER`` is honoured), with ``obj`` added as a root."""
        from twisted.internet.threads import deferToThreadPool

        url = await self.prepare_show(obj)
        await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), open_browser, url, browser, new)
        return url

    @_deferred
    async def unpublish(self) -> bool:
        """Delete the document published under this session's id (see ``delete_published``)."""
        return await delete(self.id, self.url, ca_certs=self._ca_certs, reactor=self._reactor, headers=self._headers)


def open_browser(url: str, browser: str | None = None, new: str = "tab") -> None:
    """Open ``url`` as Bokeh's ``show`` does, and print it: the script's user sees where the session is,
    also when no browser could be opened (webbrowser then answers False, and Bokeh says nothing)."""
    from bokeh.util.browser import NEW_PARAM, get_browser_controller

    opened = get_browser_controller(browser=browser).open(url, new=NEW_PARAM[new])
    note = "" if opened else " (no web browser found to open it; set $BROWSER to choose one)"
    print(f"session page: {url}{note}", flush=True)


# -- HTTP: deleting a published document ------------------------------------------------


def credential_headers(publish_key: str | None = None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The request headers that carry a client's credential (docsyncd/publishing.py).

    ``publish_key`` becomes ``Authorization: Bearer <key>``; without one,
    ``DOCSYNC_PUBLISH_KEY`` does, unless ``headers`` already has an Authorization.
    """
    from .publishing import env_publish_key

    headers = dict(headers or {})
    has_authorization = any(name.lower() == "authorization" for name in headers)
    key = publish_key or (None if has_authorization else env_publish_key())
    if key:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {key}"
    return headers


def published_url(url: str, name: str) -> str:
    """``<app url>/published/<name>``, where a published document is read and deleted."""
    base = server_url(url).split("?", 1)[0].rstrip("/")
    return f"{base}/published/{name}"


@_deferred
async def delete(name: str, url: str = "default", *, ca_certs: Any = None, reactor: Any = None,
                 publish_key: str | None = None, headers: dict[str, str] | None = None) -> bool:
    """Deferred: delete the document published as ``name`` in the app at ``url``;
    True if it was there, False if nothing was published under that name.

    ``publish_key`` and ``headers`` carry the owner's credential, as for ``Session``;
    a server that refuses it raises ``ServerError`` with its reason.
    """
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers
    from twisted.web.iweb import IAgentEndpointFactory

    check_name(name)
    if reactor is None:
        from twisted.internet import reactor

    @implementer(IAgentEndpointFactory)
    class Endpoints:
        def endpointForURI(self, uri: Any) -> Any:
            return client_endpoint(reactor, uri.toBytes().decode("ascii"), ca_certs)

    target = published_url(url, name)
    headers = credential_headers(publish_key, headers)
    request_headers = Headers({k.encode("latin-1"): [v.encode("latin-1")] for k, v in headers.items()})
    response = await Agent.usingEndpointFactory(reactor, Endpoints()).request(b"DELETE", target.encode("ascii"),
                                                                                request_headers)
    body = await readBody(response)
    if response.code == 200:
        return True
    if response.code == 404:
        return False
    text = body.decode("utf-8", "replace")
    if response.code == 400:
        raise BadName(text)
    raise ServerError(f"DELETE {target}: HTTP {response.code} {text}")


def push(document: Document, session_id: str | None = None, url: str = "default", **options: Any) -> defer.Deferred:
    """Deferred ``Session`` whose document has been pushed (see ``Session`` for ``options``)."""
    session = Session(session_id, url, **options)
    return session.push(document).addCallback(lambda _: session)


def pull(session_id: str | None = None, url: str = "default", **options: Any) -> defer.Deferred:
    """Deferred ``Session`` holding the server's document."""
    session = Session(session_id, url, **options)
    return session.pull().addCallback(lambda _: session)


# -- the blocking face ------------------------------------------------------------------


@contextlib.contextmanager
def _handling_sigint(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for SIGINT while the block runs (only the main thread can set one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_blocking(reactor: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``f`` (which returns a Deferred or a value) and wait for its result.

    The reactor is iterated in this thread until the result is there, unless
    it runs in another thread, which then does the work.
    """
    if getattr(reactor, "running", False):
        if threadable.isInIOThread():
            raise RuntimeError("a blocking docsyncd.client call on the reactor thread would never return; "
                               "use the Deferred API there (docsyncd.client.Session, push, pull)")
        from twisted.internet.threads import blockingCallFromThread

        return blockingCallFromThread(reactor, f, *args, **kwargs)
    results: list[Any] = []
    defer.maybeDeferred(f, *args, **kwargs).addBoth(results.append)
    while not results:
        delay = reactor.timeout()
        reactor.iterate(_MAX_POLL if delay is None else max(0.0, min(delay, _MAX_POLL)))
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class ClientSession:
    """``bokeh.client.ClientSession`` for scripts: the same session, each call blocking.

    ``document``, ``id``, ``push()``, ``pull()``, ``request_server_info()``,
    ``force_roundtrip()``, ``show()``, ``loop_until_closed()`` and ``close()``
    behave as in Bokeh; use it as a context manager to close it.  ``session``
    is the underlying ``Session`` (Deferreds).  Options as for ``Session``.
    """

    def __init__(self, session_id: str | None = None, url: str = "default", **options: Any):
        self.session = Session(session_id, url, **options)
        self._reactor = self.session._reactor

    def _run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return run_blocking(self._reactor, f, *args, **kwargs)

    def __enter__(self) -> "ClientSession":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def document(self) -> Document | None:
        return self.session.document

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def url(self) -> str:
        return self.session.url

    @property
    def page_url(self) -> str:
        return self.session.page_url

    @property
    def token(self) -> str:
        return self.session.token

    @property
    def connected(self) -> bool:
        return self.session.connected

    @property
    def error(self) -> str | None:
        """Why the session ended, when it was not by ``close()``."""
        return self.session.error

    def connect(self) -> None:
        self._run(self.session.connect)

    def push(self, document: Document | None = None, *, publish: bool | None = None) -> None:
        self._run(self.session.push, document, publish=publish)

    def pull(self) -> Document:
        return self._run(self.session.pull)

    def request_server_info(self) -> dict[str, Any]:
        return self._run(self.session.request_server_info)

    def force_roundtrip(self) -> None:
        self._run(self.session.force_roundtrip)

    def show(self, obj: Any = None, browser: str | None = None, new: str = "tab") -> None:
        """Add ``obj`` as a root, then open the session's page in a web browser (``$BROWSER`` is honoured)."""
        url = self._run(self.session.prepare_show, obj)
        if getattr(self._reactor, "running", False):
            self._run(self.session.show, None, browser, new)
        else:
            open_browser(url, browser, new)

    def unpublish(self) -> bool:
        return self._run(self.session.unpublish)

    def loop_until_closed(self) -> None:
        """Run callbacks and apply the server's changes until the session ends (or Ctrl-C).

        Ctrl-C is taken by a SIGINT handler, not as KeyboardInterrupt: raised
        while a Deferred callback runs, that exception becomes a failed
        Deferred and the loop would never see it.
        """
        interrupted = defer.Deferred()

        def on_sigint(signum: int, frame: Any) -> None:
            self._reactor.callFromThread(lambda: interrupted.called or interrupted.callback(None))

        def until_closed_or_interrupted() -> defer.Deferred:
            closed = self.session.when_closed()
            first = defer.DeferredList([closed, interrupted], fireOnOneCallback=True, fireOnOneErrback=True,
                                       consumeErrors=True)
            return first.addErrback(lambda failure: failure.value.subFailure)

        with _handling_sigint(on_sigint):
            self._run(until_closed_or_interrupted)
        if interrupted.called:
            self.close("user interruption")

    def close(self, why: str = "closed") -> None:
        self._run(self.session.close, why)


def push_session(document: Document, session_id: str | None = None, url: str = "default",
                 **options: Any) -> ClientSession:
    """Push ``document`` to a new session (or the one ``session_id`` names: then also
    publish it under that name), and keep it in sync; blocks.  Bokeh's ``push_session``."""
    session = ClientSession(session_id, url, **options)
    session.push(document)
    return session


def pull_session(session_id: str | None = None, url: str = "default", **options: Any) -> ClientSession:
    """A session holding the server's document (the app's new one, or ``session_id``'s); blocks.
    Bokeh's ``pull_session``."""
    session = ClientSession(session_id, url, **options)
    session.pull()
    return session


def delete_published(name: str, url: str = "default", **options: Any) -> bool:
    """Delete the document published as ``name`` in the app at ``url``; blocks.
    True if it was there, False if nothing was published under that name."""
    reactor = options.get("reactor")
    if reactor is None:
        from twisted.internet import reactor
    return run_blocking(reactor, delete, name, url, **options)
