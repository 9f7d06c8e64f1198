"""ServerSession: one live Bokeh document and the connections that show it.

The document is touched only under the session's ``DeferredLock``: messages
from browsers, Python callbacks and lifecycle work all queue on it, so a
callback never sees a half-applied patch.  Every change a callback makes is
serialised once and sent to every connection of the session, except the echo
of a browser's own patch back to that browser.

A published session (pushed with ``publish`` in the PUSH-DOC's metadata, or
restored from the store) saves its document in the store at the end of every
locked operation that changed it, before the lock is released, so that the
OK a client gets for a PUSH-DOC or PATCH-DOC comes after the write.

Tests: tests/test_session.py
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol as TypingProtocol

from bokeh.events import ConnectionLost
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import logs, wire
from .callbacks import SessionCallbacks, call_user, log_callback_failure
from .custom_models import custom_model_files_kept
from .store import IDocumentStore, MemoryStore, check_name

log = Logger(observer=logs.observer)


class Subscriber(TypingProtocol):
    """What a session needs of a connection: a way to send it frames."""

    def send_frames(self, frames: list[wire.Frame]) -> None: ...


class ServerSession:
    """Hosts one document for any number of connections (tabs, clients)."""

    def __init__(self, session_id: str, document: Any, token: str, clock: IReactorTime, reactor: Any = None,
                 store: IDocumentStore | None = None, app_name: str = "", published: bool = False):
        self.id = session_id
        self.token = token
        self.document = document
        self.destroyed = False
        self._clock = clock
        self._lock = defer.DeferredLock()
        self._connections: set[Subscriber] = set()
        self._patch_origin: Subscriber | None = None
        self._push_origin: Subscriber | None = None
        self.store = store if store is not None else MemoryStore()
        self.app_name = app_name
        #: Whether the document is published: then its changes are saved in the store.
        self.published = published
        self._dirty = False
        self._busy = 0
        self._last_detached = clock.seconds()
        self._callbacks = SessionCallbacks(clock, self._run_session_callback, reactor)
        document.callbacks.on_change_dispatch_to(self)
        for callback_obj in document.session_callbacks:
            self._callbacks.add(callback_obj)

    # -- connections ------------------------------------------------------

    @property
    def connections(self) -> frozenset[Subscriber]:
        return frozenset(self._connections)

    def attach(self, connection: Subscriber) -> None:
        self._connections.add(connection)

    def detach(self, connection: Subscriber) -> None:
        """Forget a closed connection and tell the document, as bokeh serve does."""
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._last_detached = self._clock.seconds()
        if not self.destroyed:
            self.with_document_locked(self.document.callbacks.trigger_event, ConnectionLost())

    def unused_for(self, holding_lock: bool = False) -> float | None:
        """Seconds since the last connection left, or None while in use.

        Work queued on the lock counts as use; ``holding_lock`` discounts the
        caller's own turn.
        """
        if self._connections or self.destroyed or self._busy > int(holding_lock):
            return None
        return self._clock.seconds() - self._last_detached

    # -- the document lock ------------------------------------------------

    def with_document_locked(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        """Run ``f`` under the document lock; its Deferred or coroutine holds the lock until done.

        A session is not discarded while work waits for or holds the lock.
        """
        if self.destroyed:
            return defer.succeed(None)
        self._busy += 1

        def locked():
            # The session may have been destroyed while this waited its turn.
            if self.destroyed:
                return None
            return call_user(f, *args, **kwargs).addBoth(self._save_if_changed)

        def done(result):
            self._busy -= 1
            return result

        return self._lock.run(locked).addBoth(done)

    def _save_if_changed(self, result: Any) -> Any:
        """At the end of a locked operation: store a published document it changed.

        A failed write fails the operation (a client's push or patch gets an
        ERROR instead of OK), unless the operation had already failed.
        """
        if self._dirty and self.published and not self.destroyed:
            try:
                self.save()
            except Exception:
                failure = Failure()
                log.failure("could not store published document {name} of app {app}", failure,
                            name=self.id, app=self.app_name)
                return result if isinstance(result, Failure) else failure
        return result

    def save(self) -> None:
        """Write the document to the store under the session's id."""
        doc_json = json.dumps(self.document.to_json(deferred=False), separators=(",", ":"))
        self.store.save(self.app_name, self.id, doc_json)
        self._dirty = False

    def run_awaitable(self, awaitable: Any, name: str) -> defer.Deferred:
        """Run a coroutine a callback produced, under the lock, after the current holder."""
        d = self.with_document_locked(lambda: awaitable)
        return d.addErrback(log_callback_failure, name, self.id)

    def _run_session_callback(self, callback: Callable[[], Any]) -> defer.Deferred:
        if getattr(callback, "nolock", False):
            return call_user(callback)
        return self.with_document_locked(callback)

    # -- messages from a connection ---------------------------------------

    def pull(self, request: Any) -> defer.Deferred:
        """Deferred frames of the PULL-DOC-REPLY to ``request``."""
        return self.with_document_locked(
            lambda: wire.encode(wire.PROTOCOL.create("PULL-DOC-REPLY", request.header["msgid"], self.document))
        )

    def push(self, message: Any, origin: Subscriber | None = None) -> defer.Deferred:
        """Replace the document with a client's PUSH-DOC.

        The pushing connection is not sent the changes its own push makes.
        With ``publish`` in the message's metadata the document is published
        under the session id, which must then be a name (``store.NAME_RULE``):
        it is in the store when the returned Deferred fires.
        """
        publish = bool(message.metadata.get("publish")) if isinstance(message.metadata, dict) else False
        if publish:
            try:
                check_name(self.id)
            except ValueError:
                return defer.fail()

        def replace():
            self._push_origin = origin
            try:
                message.push_to_document(self.document)
            finally:
                self._push_origin = None
            if publish:
                self.published = True
                self._dirty = True

        return self.with_document_locked(replace)

    def patch(self, origin: Subscriber, message: Any) -> defer.Deferred:
        """Apply a client's PATCH-DOC; its own changes are not echoed back to it."""

        def apply():
            self._patch_origin = origin
            try:
                wire.complete_column_data(message, self.document)  # bokeh.client sends partial column data
                message.apply_to_document(self.document, self)
            finally:
                self._patch_origin = None

        return self.with_document_locked(apply)

    # -- document events (Bokeh calls these through on_change_dispatch_to) --

    def _document_patched(self, event: Any) -> None:
        self._dirty = True
        own_echo = self._push_origin or (self._patch_origin if event.setter is self else None)
        targets = [c for c in self._connections if c is not own_echo]
        if not targets:
            return
        frames = wire.encode(wire.PROTOCOL.create("PATCH-DOC", [event]))
        for connection in targets:
            connection.send_frames(frames)

    def send_message(self, message: Any) -> None:
        """Send a Bokeh message to every connection of the session."""
        frames = wire.encode(message)
        for connection in list(self._connections):
            connection.send_frames(frames)

    @property
    def _subscribed_connections(self) -> list[Any]:
        """Bokeh's ServerSession attribute that Panel writes held events to (panel_apps.SessionWriter)."""
        from .panel_apps import SessionWriter

        return [SessionWriter(self)] if self._connections else []

    def _session_callback_added(self, event: Any) -> None:
        self._callbacks.add(event.callback)

    def _session_callback_removed(self, event: Any) -> None:
        self._callbacks.remove(event.callback)

    # -- the end ------------------------------------------------------------

    def destroy(self) -> None:
        """Stop callbacks and release the document; call with the lock held."""
        if self._dirty and self.published:
            try:
                self.save()
            except Exception:
                log.failure("could not store published document {name} of app {app}", name=self.id, app=self.app_name)
        self.destroyed = True
        self._callbacks.remove_all()
        with custom_model_files_kept():  # Bokeh deletes the app's modules here: custom_models.py
            self.document.destroy(self)
