"""SessionManager: the live sessions of one app, from creation to discard.

Sessions are created in one place, ``get_or_create``: the page GET and a
websocket opened with a fresh token both come here, and concurrent requests
for one id wait for a single document build.  The app's lifecycle hooks run
here too, in bokeh serve's order.

A session id that names a published document (one in the store) gets that
document back instead of a new one from the app's code: published documents
outlive their sessions and the daemon.

Tests: tests/test_sessions.py
"""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bokeh.core.templates import FILE
from bokeh.document import Document
from bokeh.util.token import generate_session_id
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import logs
from .apps import LoadedApp, document_build_errors, session_hook
from .callbacks import call_user
from .contexts import AppServerContext, AppSessionContext, RequestContext
from .metrics import REGISTRY
from .panel_apps import is_panel_application, is_panel_document, panel_application
from .session import ServerSession
from .threads import CallbackThreads
from .publishing import PublishPolicy
from .store import IDocumentStore, MemoryStore, Published, is_name

log = Logger(observer=logs.observer)


class DocumentBuildError(Exception):
    """The app's code raised while building a session's document."""


#: A discard's full collection (``one_collection``) waits until the documents discarded since the last one are
#: this share of the app's live sessions: Python's own rule for its full collections (a quarter more).
COLLECT_SHARE = 0.25

#: How many ``one_collection`` blocks are open now (an inner one leaves the collection to the outer one).
_open_collections = 0


@contextmanager
def one_collection(worth_it: Callable[[int], bool] = lambda destroyed: True) -> Iterator[None]:
    """Documents destroyed inside share one garbage collection, run on the way out if any was and ``worth_it``.

    ``Document.destroy`` runs ``gc.collect()`` and, for each of the document's
    modules (every session of a script app has one), ``gc.get_referrers``
    (a leak check that only logs): each a walk over every object in the
    process.  Discarding N sessions at once is then N² work: 400 sessions
    expiring together held a worker for over a minute.  Inside, both are
    no-ops (the leak check is skipped) and one collection afterwards frees
    every destroyed document's cycles.  The reactor runs nothing else
    meanwhile: the sessions whose lock is free are destroyed synchronously
    here; one that waits for its lock is destroyed later, alone, with a
    collection of its own.  Nested, the inner one leaves its collection to
    the outer one (its ``gc.collect()`` is the outer no-op).

    The collection runs only when a document was destroyed inside (the
    no-op ``collect`` was called): the unused-session sweep runs every
    ``--check-unused-sessions`` ms and usually discards nothing, and a full
    collection of a process serving 100 sessions stalls the reactor for
    150–260 ms (issue 15).  It has to be a full one: a session's document
    lived long enough to reach the oldest generation, which a young-generation
    collection does not visit.

    Even then it stalls every session, so the outermost block asks
    ``worth_it(number destroyed)`` first (``SessionManager`` collects once
    ``COLLECT_SHARE`` of its sessions were discarded since its last one):
    until then the destroyed documents wait, set aside (``set_aside``), for
    a later collection.
    """
    global _open_collections
    collect, get_referrers = gc.collect, gc.get_referrers
    destroyed = []
    gc.collect, gc.get_referrers = (lambda generation=2: destroyed.append(generation) or 0), (lambda *objs: [])
    _open_collections += 1
    try:
        yield
    finally:
        _open_collections -= 1
        gc.collect, gc.get_referrers = collect, get_referrers
        if destroyed and (_open_collections or worth_it(len(destroyed))):
            gc.unfreeze()  # the destroyed documents were set aside with the others (set_aside)
            gc.collect()  # nested: the outer block's no-op, which counts them there
            gc.freeze()


def set_aside() -> None:
    """Keep every object alive now out of Python's automatic garbage collections (``gc.freeze``).

    Called once a session's document is built.  A document's objects live as
    long as its session, but Python's own full collections, which come each
    time the objects that survived grew by a quarter, walk every tracked
    object: while 80 users joined the capacity benchmark (issue 15), three of
    them stalled the reactor for 40, 70 and 210 ms (52k, 127k and 194k
    objects), stalls every user waiting for a round trip feels.  Frozen, the
    documents and the imported modules are not walked; Python's collections
    then see only what was made since the last session was built.  Discarding
    sessions is what frees documents, so ``one_collection`` unfreezes,
    collects and freezes again: the discard's collection is the only full one
    left, and it also frees any other cyclic garbage frozen meanwhile.
    """
    gc.freeze()


#: Young-generation collections between two automatic full ones (CPython's default: 10).
FULL_COLLECTION_INTERVAL = 100


def collect_as_a_server() -> None:
    """Tune CPython's automatic garbage collection for a process that holds many documents; once, at start-up.

    Every live session's document is old, so the automatic full collections
    walk all of them, again and again: with the default thresholds one ran
    every ~70 sessions opened, 1.9 ms of CPU per session (gc.callbacks,
    benchmarks session_open), a fifth of what the server adds to running the
    app, and each a stall of the reactor for 100 ms or more once hundreds of
    sessions live (issue 15).  The garbage a server makes in bulk, discarded
    documents, is collected by ``one_collection``'s explicit full collection,
    so automatic full collections are made ten times rarer
    (``FULL_COLLECTION_INTERVAL``), and what start-up built (modules, classes,
    the apps' imports: never garbage) is frozen out of them (``gc.freeze``).
    The young generations are collected as before.
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_INTERVAL)
    gc.freeze()


def sets_page_template(doc: Document) -> bool:
    """Whether ``doc`` asks for its own page: a template other than Bokeh's page, or template variables.

    Set however the app likes: ``templates/index.html`` of a directory app,
    ``curdoc().template`` in the app or in a module it imports, Panel's
    templates.  Such a page may embed named roots, so it needs the document
    (lazy.py); so does the page of a Panel document (panel_apps.py).
    """
    return doc.template is not FILE or bool(doc.template_variables) or is_panel_document(doc)


class SessionManager:
    """Creates, finds and discards the sessions of one app."""

    def __init__(self, app: LoadedApp, clock: IReactorTime, reactor: Any = None,
                 store: IDocumentStore | None = None, policy: PublishPolicy | None = None,
                 threads: CallbackThreads | None = None):
        self.app = app
        #: Where the sessions' sync callbacks run (--num-threads): threads.py.
        self.threads = threads
        self.store = store if store is not None else MemoryStore()
        self.policy = policy if policy is not None else PublishPolicy()
        self.application = app.application
        self.server_context = AppServerContext(self)
        self.clock = clock
        self._clock = clock
        self._reactor = reactor
        self._sessions: dict[str, ServerSession] = {}
        self._contexts: dict[str, AppSessionContext] = {}
        self._waiting: dict[str, list[defer.Deferred]] = {}
        #: documents discarded since the last full collection (``_worth_collecting``)
        self._uncollected = 0
        #: Whether a document of the app built here asked for its own page (None: none built yet).
        self.sets_page_template: bool | None = None
        self._rehearsal: defer.Deferred | None = None

    @property
    def sessions(self) -> list[ServerSession]:
        return list(self._sessions.values())

    @property
    def url(self) -> str:
        """The app's route, without ``--prefix``, as Bokeh's ``ApplicationContext.url`` (Panel reads ``_url``)."""
        return f"/{self.app.name}"

    _url = url

    @property
    def building(self) -> int:
        """How many sessions are being built (counted by --max-sessions: limits.py)."""
        return len(self._waiting)

    def get(self, session_id: str) -> ServerSession | None:
        return self._sessions.get(session_id)

    # -- server lifecycle -------------------------------------------------

    def server_loaded(self) -> None:
        try:
            self.application.on_server_loaded(self.server_context)
        except Exception:
            log.failure("error in on_server_loaded of {label}", app=self.app.name, label=self.app.label)

    def server_unloaded(self) -> None:
        try:
            self.application.on_server_unloaded(self.server_context)
        except Exception:
            log.failure("error in on_server_unloaded of {label}", app=self.app.name, label=self.app.label)

    def replace_app(self, app: LoadedApp) -> defer.Deferred:
        """Serve a new version of the app from now on (``--dev`` reloads; tests/test_dev.py).

        As if the server restarted: the old version's sessions are discarded
        (running its ``on_session_destroyed`` hooks) and its
        ``on_server_unloaded`` runs, then ``app``'s ``on_server_loaded``;
        sessions created after that use ``app``.
        """

        async def replace() -> None:
            try:
                await self.discard_all()
            except Exception:
                log.failure("error while discarding the sessions of {label}", app=self.app.name, label=self.app.label)
            self.server_unloaded()
            self.app, self.application = app, app.application
            self.sets_page_template = None  # new code: learnt again from its documents
            self.server_loaded()

        return defer.Deferred.fromCoroutine(replace())

    # -- creation ------------------------------------------------------------

    def get_or_create(self, session_id: str, token: str, request: RequestContext) -> defer.Deferred:
        """Deferred ServerSession with this id, built now if it does not exist."""
        session = self._sessions.get(session_id)
        if session is not None:
            return defer.succeed(session)
        waiting = self._waiting.get(session_id)
        d = defer.Deferred()
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[session_id] = [d]
        defer.Deferred.fromCoroutine(self._create(session_id, token, request)).addBoth(
            self._notify_waiting, session_id
        )
        return d

    def _notify_waiting(self, result: Any, session_id: str) -> None:
        for d in self._waiting.pop(session_id):
            if isinstance(result, ServerSession):
                d.callback(result)
            else:
                d.errback(result)

    async def _create(self, session_id: str, token: str, request: RequestContext,
                      rehearsal: bool = False) -> ServerSession:
        started = self._clock.seconds()
        doc = Document()
        context = AppSessionContext(session_id, self.server_context, doc, request, token)
        doc._session_context = weakref.ref(context)
        stored = self.store.load(self.app.name, session_id) if is_name(session_id) else None
        entry = self.store.find(self.app.name, session_id) if stored is not None else None
        try:
            await self._run_session_hooks("on_session_created", context)
            if stored is not None:
                doc.replace_with_json(json.loads(stored))  # published: the stored document, not the app's code
            else:
                self.application.initialize_document(doc)
        except Exception as e:
            await self._run_session_hooks("on_session_destroyed", context)
            raise DocumentBuildError(f"{type(e).__name__}: {e}") from e
        errors = [] if stored is not None else document_build_errors(self.application)
        if errors:
            await self._run_session_hooks("on_session_destroyed", context)
            raise DocumentBuildError("; ".join(errors))
        if stored is None and is_panel_document(doc) and not is_panel_application(self.application):
            # A Panel app: served from now on as panel serve serves it, this session included (panel_apps.py).
            ServerSession(session_id, doc, token, self._clock, self._reactor, app_name=self.app.name,
                          threads=self.threads).destroy()
            await self._run_session_hooks("on_session_destroyed", context)
            num_threads = self.threads.size if self.threads is not None else 0
            self.app = LoadedApp(self.app.name, self.app.path, panel_application(self.application, num_threads))
            self.application = self.app.application
            return await self._create(session_id, token, request, rehearsal)
        if stored is None:  # once one of the app's documents asked for its own page, all pages are eager
            self.sets_page_template = bool(self.sets_page_template) or sets_page_template(doc)
        session = ServerSession(session_id, doc, token, self._clock, self._reactor,
                                store=self.store, app_name=self.app.name, published=stored is not None,
                                owner=entry.owner if entry is not None else None, policy=self.policy,
                                threads=self.threads)
        context.attach(session)
        self._contexts[session_id] = context
        if rehearsal:  # not a session anyone uses: learn_page_template discards it at once
            log.info("app {app} rehearsed in {ms:.1f} ms", app=self.app.name,
                     ms=(self._clock.seconds() - started) * 1000)
            return session
        self._sessions[session_id] = session
        set_aside()
        REGISTRY.count("docsync_sessions_created_total", app=self.app.name)
        REGISTRY.observe_build(self.app.name, self._clock.seconds() - started)
        log.info(
            "session {sid} {how} for {label} in {ms:.1f} ms", how="restored from the store" if stored else "created",
            sid=session_id, app=self.app.name, label=self.app.label, ms=(self._clock.seconds() - started) * 1000,
        )
        return session

    def learn_page_template(self, token: str, request: RequestContext) -> defer.Deferred:
        """Deferred None once ``sets_page_template`` is known, after one rehearsal if no document was built yet.

        The rehearsal runs the app for ``request`` as a session of its own
        (with its hooks, so the app and Panel clean up after it) and discards
        it at once: what the app does, its imports and model classes
        included, is then known in this process.  Concurrent callers share
        one rehearsal; a rehearsal that fails leaves the answer unknown.
        """
        if self.sets_page_template is not None:
            return defer.succeed(None)
        rehearsal = self._rehearsal
        if rehearsal is None:
            async def rehearse() -> None:
                try:
                    session = await self._create(generate_session_id(), token, request, rehearsal=True)
                except DocumentBuildError:
                    return  # the page's own build reports it
                await self._discard(session, lambda s: True, counted=False)

            def done(result: Any) -> None:
                self._rehearsal = None
                if isinstance(result, Failure):
                    log.failure("error while rehearsing app {app}", result, app=self.app.name)

            rehearsal = self._rehearsal = defer.Deferred.fromCoroutine(rehearse())
            rehearsal.addBoth(done)
        waiter: defer.Deferred = defer.Deferred()
        rehearsal.addBoth(lambda _: waiter.callback(None))
        return waiter

    # -- published documents -------------------------------------------------

    def published(self) -> list[Published]:
        """The documents published under this app, by name."""
        return self.store.list(self.app.name)

    def is_published(self, session_id: str) -> bool:
        """Whether ``session_id`` names a published document (live, or only in the store)."""
        session = self._sessions.get(session_id)
        if session is not None:
            return session.published
        return is_name(session_id) and self.store.find(self.app.name, session_id) is not None

    def unpublish(self, name: str) -> bool:
        """Delete a published document; a live session on it carries on, unpublished."""
        session = self._sessions.get(name)
        if session is not None:
            session.published = False
        found = self.store.delete(self.app.name, name)
        if found:
            log.info("published document {name} of {label} deleted", name=name, app=self.app.name, label=self.app.label)
        return found

    async def _run_session_hooks(self, hook: str, context: AppSessionContext) -> None:
        """Run every handler's session hook; a failing hook is logged, as under bokeh serve."""
        for handler in self.application.handlers:
            try:
                await call_user(session_hook(handler, hook), context)
            except Exception:
                log.failure("error in {hook} of {label} (session {sid})", hook=hook, app=self.app.name,
                            label=self.app.label, sid=context.id)

    # -- discard -------------------------------------------------------------

    def discard_unused(self, lifetime: float) -> defer.Deferred:
        """Discard every session that has had no connection for ``lifetime`` seconds, or asked to expire
        (``ServerSession.expired``)."""

        def expired(session: ServerSession, holding_lock: bool = True) -> bool:
            return session.expired(lifetime, holding_lock=holding_lock)

        with one_collection(self._worth_collecting):
            return self._discard_each([s for s in self._sessions.values() if expired(s, holding_lock=False)], expired)

    def _worth_collecting(self, destroyed: int) -> bool:
        """Whether the documents discarded since the last full collection, ``destroyed`` more now, are
        ``COLLECT_SHARE`` of the live sessions (all of them once none is left): a full collection walks every
        object of the process, 200–350 ms at 90 sessions (issue 15), so a sweep discarding one session of
        many leaves its document for a later one instead of stalling every other session."""
        self._uncollected += destroyed
        if self._uncollected < COLLECT_SHARE * len(self._sessions):
            return False
        self._uncollected = 0
        return True

    def discard_all(self, grace: float | None = None) -> defer.Deferred:
        """Discard every session, connected or not (server shutdown).

        With ``grace`` (seconds, ``--shutdown-grace``), a session whose lock is
        still held that long later (a callback awaiting a slow backend) has its
        work cancelled and is destroyed without the lock, so shutdown goes on.
        """
        with one_collection():
            return self._discard_each(self.sessions, lambda s: True, grace)

    def _discard_each(self, sessions: list[ServerSession], still_wanted, grace: float | None = None) -> defer.Deferred:
        # The list goes with this frame, so one_collection's collection finds the sessions unreferenced.
        return defer.gatherResults([defer.Deferred.fromCoroutine(self._discard(s, still_wanted, grace))
                                    for s in sessions])

    async def _discard(self, session: ServerSession, still_wanted, grace: float | None = None,
                       counted: bool = True) -> None:
        def destroy_if_still_wanted() -> bool:
            # Someone may have connected while we waited for the lock.
            if not still_wanted(session):
                return False
            with one_collection(self._worth_collecting):  # destroyed later, its lock free: no leak-check walk
                session.destroy()
            return True

        locked = session.with_document_locked(destroy_if_still_wanted)
        if grace is not None:
            locked.addTimeout(grace, self._clock)
        try:
            destroyed = await locked
        except defer.TimeoutError:
            log.warn("session {sid} of app {app}: its callbacks still held the document {grace:g} s after shutdown "
                     "began (--shutdown-grace); cancelling them", sid=session.id, app=self.app.name, grace=grace)
            session.cancel_work()
            destroyed = session.destroyed or destroy_if_still_wanted()
        if not destroyed:
            return
        self._sessions.pop(session.id, None)
        context = self._contexts.pop(session.id)
        await self._run_session_hooks("on_session_destroyed", context)
        if counted:
            REGISTRY.count("docsync_sessions_destroyed_total", app=self.app.name)
            log.info("session {sid} of {label} discarded", sid=session.id, app=self.app.name, label=self.app.label)
