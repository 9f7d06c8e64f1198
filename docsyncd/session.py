"""ServerSession: one live Bokeh document and the connections that show it.

The document is touched only under the session's ``DeferredLock``: messages
from browsers, Python callbacks and lifecycle work all queue on it, so a
callback never sees a half-applied patch.  Every change a callback makes is
serialised once and sent to every connection of the session, except the echo
of a browser's own patch back to that browser.

A published session (pushed with ``publish`` in the PUSH-DOC's metadata, or
restored from the store) keeps its document in the store.  A PUSH-DOC is
serialised and written in the reactor's thread pool while the session's lock
is held, and the OK comes after the write, so an acknowledged push survives
SIGKILL.  Later changes (patches, callbacks) are saved coalesced: the first
change schedules one save ``SAVE_DELAY`` later, and every change made until it
runs goes into that one write, also serialised and written off the reactor
thread; other sessions never wait for it.  It has
an owner (publishing.py): only a connection with that owner may push to it;
other connections are viewers, whose patches may only change model values.

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
from .apps import app_label
from .callbacks import SessionCallbacks, call_user, log_callback_failure
from .custom_models import custom_model_files_kept
from .publishing import PublishPolicy, PublishRefused, viewer_refusal
from .store import IDocumentStore, MemoryStore, check_name
from .threads import CallbackThreads, event_handlers, patch_handlers, runs_on_reactor

log = Logger(observer=logs.observer)

#: Seconds between a change to a published document and its save: a burst of patches
#: (a slider dragged, a client's loop) becomes one write instead of one each.
SAVE_DELAY = 0.5


class Subscriber(TypingProtocol):
    """What a session needs of a connection: a way to send it frames."""

    def send_frames(self, frames: list[wire.Frame]) -> None: ...

    #: Who sent what the connection sends (publishing.PublishPolicy.owner), or None with the reason.
    owner: str | None
    owner_refusal: str


class ServerSession:
    """Hosts one document for any number of connections (tabs, clients).

    Its public face is Bokeh's ``ServerSession``
    (``bokeh/server/session.py``), which apps reach through
    ``session_context.server_context.sessions``: ``id``, ``document``,
    ``token``, ``destroyed``, ``connection_count``,
    ``milliseconds_since_last_unsubscribe``, and expiration control with
    Bokeh's meaning (``bokeh/server/contexts.py``, ``_cleanup_sessions``): a
    session without connections is discarded once it has been unused for
    ``--unused-session-lifetime``, or at the next check after
    ``request_expiration()``; never while its expiration is blocked
    (``block_expiration()``, or work waiting for or holding its document lock).
    """

    def __init__(self, session_id: str, document: Any, token: str, clock: IReactorTime, reactor: Any = None,
                 store: IDocumentStore | None = None, app_name: str = "", published: bool = False,
                 owner: str | None = None, policy: PublishPolicy | None = None,
                 threads: CallbackThreads | None = None):
        self.id = session_id
        self.token = token
        self.document = document
        self.destroyed = False
        #: Set by ``cancel_work``: locked work that has not started yet does not run.
        self.cancelled = False
        self._holder: defer.Deferred | None = None
        self._clock = clock
        self._lock = defer.DeferredLock()
        self._connections: set[Subscriber] = set()
        self._patch_origin: Subscriber | None = None
        self._push_origin: Subscriber | None = None
        self.store = store if store is not None else MemoryStore()
        self.app_name = app_name
        #: Whether the document is published: then its changes are saved in the store.
        self.published = published
        #: Who published the document (publishing.py); None until it is published.
        self.owner = owner
        self.policy = policy if policy is not None else PublishPolicy()
        #: Where sync user code runs (--num-threads): threads.py; none given, on the reactor thread.
        self.threads = threads if threads is not None else CallbackThreads(reactor, 0)
        self._dirty = False
        self._expiration_blocks = 0
        self._expiration_requested = False
        self._save_queued = False
        self._save_timer: Any = None
        #: Runs a function in a thread and returns a Deferred of its result (tests run it in place).
        self.run_in_thread: Callable[[Callable[[], Any]], defer.Deferred] = _thread_runner(reactor)
        self._busy = 0
        self._last_detached = clock.seconds()
        self._callbacks = SessionCallbacks(clock, self._run_session_callback, reactor, session_id=session_id)
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
            event = ConnectionLost()
            self._locked(lambda: self._call_handlers(event_handlers(self.document, event.event_name),
                                                     self.document.callbacks.trigger_event, event))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def milliseconds_since_last_unsubscribe(self) -> float:
        """Milliseconds since a connection last left (or since the session was made, if none ever did)."""
        return (self._clock.seconds() - self._last_detached) * 1000.0

    # -- expiration (Bokeh's ServerSession API) ------------------------------

    @property
    def expiration_requested(self) -> bool:
        return self._expiration_requested

    def request_expiration(self) -> None:
        """Discard this session at the next check once it has no connections, without waiting out its lifetime."""
        self._expiration_requested = True

    def block_expiration(self) -> None:
        """Keep the session until a matching ``unblock_expiration()``, even when unused or expiration was requested."""
        self._expiration_blocks += 1

    def unblock_expiration(self) -> None:
        if self._expiration_blocks <= 0:
            raise RuntimeError("mismatched block_expiration / unblock_expiration")
        self._expiration_blocks -= 1

    @property
    def expiration_blocked(self) -> bool:
        return self._expiration_blocks > 0

    @property
    def expiration_blocked_count(self) -> int:
        return self._expiration_blocks

    def expired(self, lifetime: float, holding_lock: bool = False) -> bool:
        """Whether the reaper may discard the session now: no connection, unused ``lifetime`` seconds or
        expiration requested, expiration not blocked (``holding_lock`` discounts the caller's own turn)."""
        if self._connections or self.destroyed or self._expiration_blocks > int(holding_lock):
            return False
        return self._expiration_requested or self._clock.seconds() - self._last_detached >= lifetime

    # -- the document lock ------------------------------------------------

    def with_document_locked(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        """Run ``f`` under the document lock, on the reactor thread; its Deferred or coroutine holds the lock
        until done.

        A session is not discarded while work waits for or holds the lock.
        """
        return self._locked(lambda: call_user(f, *args, **kwargs))

    def _locked(self, start: Callable[[], defer.Deferred]) -> defer.Deferred:
        """Call ``start`` under the document lock; the lock is held until its Deferred fires."""
        if self.destroyed:
            return defer.succeed(None)
        self.block_expiration()

        def locked():
            # The session may have been destroyed (or its work cancelled) while this waited its turn.
            if self.destroyed or self.cancelled:
                return None
            self._holder = holder = start()

            def released(result):
                if self._holder is holder:
                    self._holder = None
                return result

            return holder.addBoth(released).addBoth(self._save_if_changed)

        def done(result):
            self.unblock_expiration()
            return result

        return self._lock.run(locked).addBoth(done)

    def cancel_work(self) -> None:
        """Cancel what holds the document lock (a callback's Deferred or coroutine), and skip what waits for it.

        For shutdown (``SessionManager.discard_all``): a callback that awaits
        a slow backend must not keep the daemon from stopping.
        """
        self.cancelled = True
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.cancel()

    def _save_if_changed(self, result: Any) -> Any:
        """At the end of a locked operation that changed a published document: save it ``SAVE_DELAY``
        seconds later (on the lock, after what waits for it then), unless a save is already coming."""
        if self._dirty and self.published and not self.destroyed and not self._save_queued:
            self._save_queued = True
            self._save_timer = self._clock.callLater(SAVE_DELAY, self.with_document_locked, self._save_changes)
        return result

    def _save_changes(self) -> defer.Deferred | None:
        """The queued save: every change made since the last one, in one write."""
        self._save_queued, self._save_timer = False, None
        if not (self._dirty and self.published):
            return None
        return self.write().addErrback(self._log_save_failure)

    def write(self) -> defer.Deferred:
        """Serialise the document and store it under the session's id, off the reactor thread.

        Call with the lock held (nothing touches the document meanwhile).
        Fires once the document is durable; fails with ``PublishRefused`` when
        it is larger than ``--max-published-size``.  A document unpublished
        meanwhile is not written back (the store's ``only_if``).
        """
        self._dirty = False
        app, name, owner, document = self.app_name, self.id, self.owner, self.document

        def serialise_and_store() -> None:
            doc_json = json.dumps(document.to_json(deferred=False), separators=(",", ":"))
            self.policy.check_size(name, doc_json)
            self.store.save(app, name, doc_json, owner=owner, only_if=lambda: self.published)

        return self.run_in_thread(serialise_and_store)

    def _log_save_failure(self, failure: Failure) -> None:
        """One line for a refused save, a traceback for a failed one; the changes wait for the next change's save."""
        if failure.check(PublishRefused):
            log.warn("published document {name} of {label} not stored: {why}", name=self.id, app=self.app_name,
                     label=app_label(self.app_name), why=failure.getErrorMessage())
        else:
            log.failure("could not store published document {name} of {label}", failure,
                        name=self.id, app=self.app_name, label=app_label(self.app_name))

    def run_awaitable(self, awaitable: Any, name: str) -> defer.Deferred | None:
        """Run a coroutine a callback produced, under the lock, after the current holder.

        Called from a callback thread (an ``async def`` handler triggered by a
        patch applied there), it is handed to the reactor thread and returns None.
        """
        if not self.threads.on_home_thread():
            self.threads.reactor.callFromThread(self.run_awaitable, awaitable, name)
            return None
        d = self.with_document_locked(lambda: awaitable)
        return d.addErrback(log_callback_failure, name, self.id)

    def _run_session_callback(self, callback: Callable[[], Any]) -> defer.Deferred:
        """A periodic, timeout or next-tick callback: in a callback thread once it proved slow (threads.py)."""
        if getattr(callback, "nolock", False):
            return self.threads.call_session_callback(callback)
        return self._locked(lambda: self.threads.call_session_callback(callback))

    def _call_handlers(self, handlers: list[Any] | None, f: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Call ``f(*args)``, which calls ``handlers`` (None: unknown ones): in a callback thread when there are
        any and none must run on the reactor thread."""
        in_thread = handlers is None or (bool(handlers) and not any(map(runs_on_reactor, handlers)))
        return self.threads.call(f, *args, in_thread=in_thread)

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
        under the session id, which must then be a name (``store.NAME_RULE``),
        owned by ``origin.owner``: it is in the store when the returned
        Deferred fires.  A published document is replaced only by its owner.
        Refusals fail the Deferred with ``PublishRefused`` or ``BadName``.
        """
        publish = bool(message.metadata.get("publish")) if isinstance(message.metadata, dict) else False
        owner = getattr(origin, "owner", None)

        def replace():
            if self.published:
                self.policy.check_owner(self.owner, owner, self.id)
            if publish:
                if owner is None:
                    raise PublishRefused(getattr(origin, "owner_refusal", "") or "publishing needs a credential")
                check_name(self.id)
                self.policy.check_publish(self.store, self.app_name, self.id, owner)
            self._push_origin = origin
            try:
                message.push_to_document(self.document)
            finally:
                self._push_origin = None
            if publish or self.published:  # written before the OK: an acknowledged push survives SIGKILL
                before = (self.published, self.owner)
                self.published, self.owner = True, owner

                def undo(failure: Failure) -> Failure:
                    self.published, self.owner = before
                    return failure

                return self.write().addErrback(undo)
            return None

        return self.with_document_locked(replace)

    def patch(self, origin: Subscriber, message: Any) -> defer.Deferred:
        """Apply a client's PATCH-DOC; its own changes are not echoed back to it.

        On a published document, a connection that is not its owner is a
        viewer: its patch may only change model values (``publishing.viewer_refusal``).
        """

        def apply():
            if self.published and getattr(origin, "owner", None) != self.owner:
                refusal = viewer_refusal(message.content)
                if refusal:
                    raise PublishRefused(refusal)
            self._patch_origin = origin
            try:
                wire.complete_column_data(message, self.document)  # bokeh.client sends partial column data
                message.apply_to_document(self.document, self)
            finally:
                self._patch_origin = None

        # which handlers it triggers is read once the lock is held: earlier callbacks may add some
        return self._locked(lambda: self._call_handlers(patch_handlers(message.content, self.document, self), apply))

    # -- document events (Bokeh calls these through on_change_dispatch_to) --

    def _document_patched(self, event: Any) -> None:
        """Send a change to every connection but the one it came from; from a callback thread, encoded there
        and handed to the reactor thread."""
        self._dirty = True
        own_echo = self._push_origin or (self._patch_origin if event.setter is self else None)
        if self.threads.on_home_thread() and not any(c is not own_echo for c in self._connections):
            return
        if self._connections:
            self._send(wire.encode(wire.PROTOCOL.create("PATCH-DOC", [event])), own_echo)

    def send_message(self, message: Any) -> None:
        """Send a Bokeh message to every connection of the session (from any thread)."""
        self._send(wire.encode(message))

    def _send(self, frames: wire.EncodedMessage, exclude: Subscriber | None = None) -> None:
        if not self.threads.on_home_thread():
            self.threads.reactor.callFromThread(self._send, frames, exclude)
            return
        for connection in list(self._connections):
            if connection is not exclude:
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
        if self._save_timer is not None and self._save_timer.active():
            self._save_timer.cancel()
        if self._dirty and self.published:  # changes whose save had not run yet: written in place
            self.run_in_thread, runner = _run_in_place, self.run_in_thread
            self.write().addErrback(self._log_save_failure)
            self.run_in_thread = runner
        self.destroyed = True
        self._callbacks.remove_all()
        with custom_model_files_kept():  # Bokeh deletes the app's modules here: custom_models.py
            self.document.destroy(self)


def _run_in_place(f: Callable[[], Any]) -> defer.Deferred:
    return defer.maybeDeferred(f)


def _thread_runner(reactor: Any) -> Callable[[Callable[[], Any]], defer.Deferred]:
    """``deferToThreadPool`` on ``reactor``'s pool; in place when it has none (a test's MemoryReactor)."""
    get_pool = getattr(reactor, "getThreadPool", None)
    if get_pool is None:
        return _run_in_place
    from twisted.internet.threads import deferToThreadPool

    return lambda f: deferToThreadPool(reactor, get_pool(), f)
