"""ServerSession: one live Bokeh document and the connections that show it.

The document is touched only under the session's ``DeferredLock``: messages
from browsers, Python callbacks and lifecycle work all queue on it, so a
callback never sees a half-applied patch.  Every change a callback makes is
serialised once and sent to every connection of the session, except the echo
of a browser's own patch back to that browser.

Tests: tests/test_session.py
"""

from __future__ import annotations

from typing import Any, Callable, Protocol as TypingProtocol

from bokeh.events import ConnectionLost
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from . import logs, wire
from .callbacks import SessionCallbacks, call_user, log_callback_failure

log = Logger(observer=logs.observer)


class Subscriber(TypingProtocol):
    """What a session needs of a connection: a way to send it frames."""

    def send_frames(self, frames: list[wire.Frame]) -> None: ...


class ServerSession:
    """Hosts one document for any number of connections (tabs, clients)."""

    def __init__(self, session_id: str, document: Any, token: str, clock: IReactorTime, reactor: Any = None):
        self.id = session_id
        self.token = token
        self.document = document
        self.destroyed = False
        self._clock = clock
        self._lock = defer.DeferredLock()
        self._connections: set[Subscriber] = set()
        self._patch_origin: Subscriber | None = None
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
            return None if self.destroyed else call_user(f, *args, **kwargs)

        def done(result):
            self._busy -= 1
            return result

        return self._lock.run(locked).addBoth(done)

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

    def push(self, message: Any) -> defer.Deferred:
        """Replace the document with a client's PUSH-DOC."""
        return self.with_document_locked(message.push_to_document, self.document)

    def patch(self, origin: Subscriber, message: Any) -> defer.Deferred:
        """Apply a client's PATCH-DOC; its own changes are not echoed back to it."""

        def apply():
            self._patch_origin = origin
            try:
                message.apply_to_document(self.document, self)
            finally:
                self._patch_origin = None

        return self.with_document_locked(apply)

    # -- document events (Bokeh calls these through on_change_dispatch_to) --

    def _document_patched(self, event: Any) -> None:
        own_echo = self._patch_origin if event.setter is self else None
        targets = [c for c in self._connections if c is not own_echo]
        if not targets:
            return
        frames = wire.encode(wire.PROTOCOL.create("PATCH-DOC", [event]))
        for connection in targets:
            connection.send_frames(frames)

    def _session_callback_added(self, event: Any) -> None:
        self._callbacks.add(event.callback)

    def _session_callback_removed(self, event: Any) -> None:
        self._callbacks.remove(event.callback)

    # -- the end ------------------------------------------------------------

    def destroy(self) -> None:
        """Stop callbacks and release the document; call with the lock held."""
        self.destroyed = True
        self._callbacks.remove_all()
        self.document.destroy(self)
