"""Tests for docsyncd.sessions.SessionManager and the contexts app code sees (docsyncd.contexts)."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from bokeh.events import ButtonClick
from bokeh.util.token import get_session_id
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import apps
from docsyncd.callbacks import accept_coroutine_callbacks
from docsyncd.contexts import RequestContext
from docsyncd.sessions import FULL_COLLECTION_INTERVAL, DocumentBuildError, SessionManager, collect_as_a_server

from unit_support import (RECORDING_LIFECYCLE, SLIDER_APP, FakeConnection, make_token, model_changes, write_app,
                          write_dir_app)


class ManagerTestCase(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.clock = Clock()

    def manager_for(self, path):
        manager = SessionManager(apps.load_app(path), self.clock)
        manager.server_loaded()
        self.addCleanup(lambda: self.successResultOf(manager.discard_all()))
        return manager

    def recording_app(self, main=SLIDER_APP, name="recorded"):
        """A directory app whose lifecycle hooks append to ``server_context.events``."""
        return self.manager_for(write_dir_app(self.tmp_path, name, {
            "main.py": main, "server_lifecycle.py": RECORDING_LIFECYCLE,
        }))

    def create(self, manager, session_id="s1", **arguments):
        token = make_token(session_id, arguments={k: [v.encode()] for k, v in arguments.items()})
        request = RequestContext.from_token(token)
        return manager.get_or_create(session_id, token, request)


class CreationTests(ManagerTestCase):
    def test_builds_document(self):
        """``get_or_create`` runs the app to build a new session's document, then finds that session by id."""
        manager = self.manager_for(write_app(self.tmp_path, "sliders", SLIDER_APP))
        session = self.successResultOf(self.create(manager, "abc"))
        self.assertEqual(session.id, "abc")
        self.assertEqual(session.document.get_model_by_name("slider").value, 1)
        self.assertIs(manager.get("abc"), session)
        self.assertIs(self.successResultOf(self.create(manager, "abc")), session)
        self.assertEqual(manager.sessions, [session])

    def test_concurrent_requests_build_one_document(self):
        """Requests for one id that arrive while its document is being built all get the one session."""
        manager = self.recording_app()
        gate = manager.server_context.gate = defer.Deferred()
        first, second = self.create(manager, "same"), self.create(manager, "same")
        self.assertNoResult(first)
        self.assertNoResult(second)
        gate.callback(None)
        del manager.server_context.gate
        self.assertIs(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(manager.server_context.events, ["server loaded", "created same"])
        self.assertEqual(len(manager.sessions), 1)

    def test_session_hooks(self):
        """``on_session_created`` runs before the session exists and ``on_session_destroyed`` when it is discarded."""
        manager = self.recording_app()
        self.successResultOf(self.create(manager, "one"))
        self.assertEqual(manager.server_context.events, ["server loaded", "created one"])
        self.successResultOf(manager.discard_all())
        self.assertEqual(manager.server_context.events, ["server loaded", "created one", "destroyed one"])
        manager.server_unloaded()
        self.assertEqual(manager.server_context.events[-1], "server unloaded")

    def test_session_hooks_run_on_the_reactor_thread(self):
        """Both session hooks run in the thread that runs the reactor, with the session's context.

        Bokeh 3.10's lifecycle handler would run ``on_session_created`` in a
        worker thread (and only inside a running asyncio loop)."""
        path = write_dir_app(self.tmp_path, "threads", {
            "main.py": SLIDER_APP,
            "server_lifecycle.py": (
                "import threading\n"
                "def on_server_loaded(ctx):\n    ctx.threads = []\n"
                "def on_session_created(ctx):\n"
                "    ctx.server_context.threads.append(('created', threading.get_ident(), ctx.id))\n"
                "def on_session_destroyed(ctx):\n"
                "    ctx.server_context.threads.append(('destroyed', threading.get_ident(), ctx.id))\n"
            ),
        })
        manager = self.manager_for(path)
        session = self.successResultOf(self.create(manager, "t"))
        self.assertIs(manager._contexts["t"].document, session.document)
        self.successResultOf(manager.discard_all())
        here = threading.get_ident()
        self.assertEqual(manager.server_context.threads, [("created", here, "t"), ("destroyed", here, "t")])

    def test_log_lines_name_the_empty_app_as_the_app_at_root(self):
        """Without --app, sessions are logged as "for the app at /", not "for app  in"."""
        from twisted.logger import formatEvent, globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        manager = SessionManager(apps.empty_app(), self.clock)
        manager.server_loaded()
        self.successResultOf(self.create(manager, "e"))
        self.successResultOf(manager.discard_all())
        lines = [formatEvent(e) for e in events if e.get("log_namespace") == "docsyncd.sessions"]
        self.assertEqual([line.split(" in ")[0] for line in lines],
                         ["session e created for the app at /", "session e of the app at / discarded"])

    def test_app_raising_gives_build_error(self):
        """An app whose main.py raises gives DocumentBuildError naming file and line, and no session."""
        manager = self.recording_app(main="x = 1\nraise ValueError('no data file')\n", name="broken")
        failure = self.failureResultOf(self.create(manager, "bad"), DocumentBuildError)
        message = str(failure.value)
        self.assertIn("main.py, line 2", message)
        self.assertIn("ValueError: no data file", message)
        self.assertEqual(manager.sessions, [])
        self.assertIsNone(manager.get("bad"))
        self.assertEqual(manager.server_context.events, ["server loaded", "created bad", "destroyed bad"])

    def test_build_error_does_not_block_retry(self):
        """After a failed build, a later request for the same id tries again instead of waiting forever."""
        path = write_app(self.tmp_path, "flaky", "raise RuntimeError('first time')\n")
        manager = self.manager_for(path)
        self.failureResultOf(self.create(manager, "again"), DocumentBuildError)
        self.failureResultOf(self.create(manager, "again"), DocumentBuildError)

    def test_failing_session_hook_logged(self):
        """An ``on_session_created`` hook that raises is logged and the session is still created."""
        path = write_dir_app(self.tmp_path, "hooks", {
            "main.py": SLIDER_APP,
            "server_lifecycle.py": "def on_session_created(ctx):\n    raise OSError('database down')\n",
        })
        manager = self.manager_for(path)
        self.successResultOf(self.create(manager, "s"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_failing_server_hook_logged(self):
        """An ``on_server_loaded`` hook that raises is logged, not raised to the service."""
        path = write_dir_app(self.tmp_path, "badload", {
            "main.py": SLIDER_APP,
            "server_lifecycle.py": "def on_server_loaded(ctx):\n    raise OSError('no cache')\n",
        })
        SessionManager(apps.load_app(path), self.clock).server_loaded()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_async_on_click_runs_under_lock(self):
        """An ``async def`` click handler runs under the document lock, after the patch that triggered it."""
        accept_coroutine_callbacks()  # build_site does this for the server
        manager = self.manager_for(write_app(self.tmp_path, "clicks", """
            from bokeh.io import curdoc
            from bokeh.models import Button, Div
            button = Button(name="button")
            div = Div(text="", name="div")
            async def clicked(event):
                div.text += "clicked;"
            button.on_click(clicked)
            curdoc().add_root(button)
            curdoc().add_root(div)
        """))
        session = self.successResultOf(self.create(manager))
        connection = FakeConnection()
        session.attach(connection)
        div = session.document.get_model_by_name("div")
        button = session.document.get_model_by_name("button")

        def click_then_mark():
            button._trigger_event(ButtonClick(button))
            div.text += "patch done;"

        self.successResultOf(session.with_document_locked(click_then_mark))
        self.assertEqual(div.text, "patch done;clicked;")
        self.assertEqual(model_changes(connection.messages)[-1], ("text", "patch done;clicked;"))


class DiscardTests(ManagerTestCase):
    def setUp(self):
        super().setUp()
        self.manager = self.recording_app()

    def test_discard_after_lifetime(self):
        """A session without connections is discarded once it has been unused for the lifetime."""
        session = self.successResultOf(self.create(self.manager, "idle"))
        self.clock.advance(14)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIs(self.manager.get("idle"), session)
        self.clock.advance(1)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIsNone(self.manager.get("idle"))
        self.assertTrue(session.destroyed)
        self.assertEqual(self.manager.server_context.events[-1], "destroyed idle")

    def test_not_while_connected(self):
        """A connected session is never discarded; its lifetime counts from when the last connection left."""
        session = self.successResultOf(self.create(self.manager, "busy"))
        connection = FakeConnection()
        session.attach(connection)
        self.clock.advance(100)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIs(self.manager.get("busy"), session)
        session.detach(connection)
        self.clock.advance(10)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIs(self.manager.get("busy"), session)
        self.clock.advance(5)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIsNone(self.manager.get("busy"))

    def test_connected_session_kept_with_zero_lifetime(self):
        """Even with a zero lifetime, a session that has a connection is kept."""
        session = self.successResultOf(self.create(self.manager, "zero"))
        session.attach(FakeConnection())
        self.successResultOf(self.manager.discard_unused(0))
        self.assertIs(self.manager.get("zero"), session)

    def test_expired_together_collected_once(self):
        """Sessions discarded together cost one garbage collection, and their documents are freed."""
        import gc
        import weakref

        manager = self.manager_for(write_app(self.tmp_path, "plain", SLIDER_APP))  # hooks that keep nothing
        sessions = [self.successResultOf(self.create(manager, f"batch{i}")) for i in range(3)]
        documents = [weakref.ref(session.document) for session in sessions]
        del sessions
        collections = []
        collect, get_referrers = gc.collect, gc.get_referrers
        counting = lambda *args: collections.append(args) or collect(*args)  # noqa: E731
        self.patch(gc, "collect", counting)
        self.clock.advance(20)
        self.successResultOf(manager.discard_unused(15))
        self.assertEqual(len(collections), 1)
        self.assertEqual([ref() for ref in documents], [None, None, None])
        self.assertEqual((gc.collect, gc.get_referrers), (counting, get_referrers))  # both restored

    def test_sweep_without_expiry_does_not_collect(self):
        """A sweep that discards nothing runs no garbage collection: a full one stalls the reactor (issue 15)."""
        manager = self.manager_for(write_app(self.tmp_path, "plain", SLIDER_APP))
        self.successResultOf(self.create(manager, "young"))
        connected = self.successResultOf(self.create(manager, "connected"))
        connected.attach(FakeConnection())
        collections = []
        collect = gc.collect
        self.patch(gc, "collect", lambda *args: collections.append(args) or collect(*args))
        for _ in range(2):
            self.clock.advance(7)
            self.successResultOf(manager.discard_unused(15))  # 15 s not reached yet, and "connected" is in use
        self.successResultOf(self.manager.discard_unused(15))  # another app's manager, no session at all
        self.assertEqual(collections, [])
        self.assertEqual(len(manager.sessions), 2)
        self.clock.advance(1)
        self.successResultOf(manager.discard_unused(15))  # "young" expires: its document's cycles are freed
        self.assertEqual(len(collections), 1)
        self.assertEqual([s.id for s in manager.sessions], ["connected"])

    def test_built_documents_set_aside_from_collections(self):
        """Once built, a session's document is out of Python's automatic garbage collections (``gc.freeze``):
        their full ones walk every tracked object and, while sessions join, stalled the reactor for 70–210 ms
        (issue 15); discarding the session still frees the document."""
        manager = self.manager_for(write_app(self.tmp_path, "plain", SLIDER_APP))
        session = self.successResultOf(self.create(manager, "built"))
        models = list(session.document.models)
        tracked = {id(o) for o in gc.get_objects()}  # what a collection walks: frozen objects are not among them
        self.assertEqual([m for m in models if id(m) in tracked], [])
        document = weakref.ref(session.document)
        del session, models, tracked
        self.clock.advance(20)
        self.successResultOf(manager.discard_unused(15))
        self.assertIsNone(document())

    def test_discards_collected_once_a_quarter_of_the_sessions(self):
        """A sweep that discards one session of many leaves its document for a later full collection, which
        comes once the discarded documents since the last one are a quarter of the live sessions: each full
        collection stalls every session (200–350 ms at 90, issue 15); the documents are freed then."""
        manager = self.manager_for(write_app(self.tmp_path, "plain", SLIDER_APP))
        for i in range(6):
            self.successResultOf(self.create(manager, f"kept{i}")).attach(FakeConnection())
        leaving = [self.successResultOf(self.create(manager, f"leaving{i}")) for i in range(2)]
        documents = [weakref.ref(session.document) for session in leaving]
        collections = []
        collect = gc.collect
        self.patch(gc, "collect", lambda *args: collections.append(args) or collect(*args))
        self.clock.advance(10)
        busy = FakeConnection()
        leaving[1].attach(busy)  # in use a while longer
        self.clock.advance(10)
        self.successResultOf(manager.discard_unused(15))  # "leaving0": 1 discarded < 7 live / 4
        self.assertEqual((collections, len(manager.sessions)), ([], 7))
        self.assertTrue(leaving[0].destroyed)
        leaving[1].detach(busy)
        del leaving
        self.clock.advance(20)
        self.successResultOf(manager.discard_unused(15))  # "leaving1": 2 discarded ≥ 6 live / 4
        self.assertEqual(len(collections), 1)
        self.assertEqual([ref() for ref in documents], [None, None])

    def test_discarded_after_its_lock_without_leak_walk(self):
        """A session destroyed later, once its lock is free, costs one collection and no ``gc.get_referrers``
        walk over every object of the process (Bokeh's leak check, which only logs)."""
        manager = self.manager_for(write_app(self.tmp_path, "plain", SLIDER_APP))
        session = self.successResultOf(self.create(manager, "busy"))
        gate = defer.Deferred()
        session.with_document_locked(lambda: gate)
        d = manager.discard_all()
        calls = []
        collect, get_referrers = gc.collect, gc.get_referrers
        self.patch(gc, "collect", lambda *args: calls.append("collect") or collect(*args))
        self.patch(gc, "get_referrers", lambda *objs: calls.append("get_referrers") or get_referrers(*objs))
        gate.callback(None)
        self.successResultOf(d)
        self.assertTrue(session.destroyed)
        self.assertEqual(calls, ["collect"])

    def test_discard_all(self):
        """``discard_all`` discards connected sessions too, running every destroyed hook."""
        for sid in ("a", "b"):
            self.successResultOf(self.create(self.manager, sid)).attach(FakeConnection())
        self.successResultOf(self.manager.discard_all())
        self.assertEqual(self.manager.sessions, [])
        self.assertEqual(sorted(self.manager.server_context.events[-2:]), ["destroyed a", "destroyed b"])

    def test_discard_stops_callbacks(self):
        """Discarding a session stops its periodic callbacks: no delayed call is left."""
        session = self.successResultOf(self.create(self.manager, "ticking"))
        session.document.add_periodic_callback(lambda: None, 1000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(self.manager.discard_all())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_document_destroyed_callbacks(self):
        """Callbacks the app registered with ``doc.on_session_destroyed`` run when the session is discarded."""
        path = write_app(self.tmp_path, "goodbye", """
            from bokeh.io import curdoc
            from bokeh.models import Div
            def bye(session_context):
                session_context.server_context.goodbyes.append(session_context.id)
            curdoc().add_root(Div())
            curdoc().on_session_destroyed(bye)
        """)
        manager = self.manager_for(path)
        manager.server_context.goodbyes = []
        self.successResultOf(self.create(manager, "leaving"))
        self.successResultOf(manager.discard_all())
        self.assertEqual(manager.server_context.goodbyes, ["leaving"])

    def test_memory_released(self):
        """After a session is discarded nothing keeps its document alive."""
        session = self.successResultOf(self.create(self.manager, "gone"))
        session.attach(FakeConnection())
        document = weakref.ref(session.document)
        context = weakref.ref(session.document.session_context)
        del session
        self.successResultOf(self.manager.discard_all())
        gc.collect()
        self.assertIsNone(document())
        self.assertIsNone(context())

    def test_discard_waits_for_lock(self):
        """Discarding waits for work holding the document lock, and a session is not discarded mid-callback."""
        session = self.successResultOf(self.create(self.manager, "working"))
        gate = defer.Deferred()
        session.with_document_locked(lambda: gate)
        d = self.manager.discard_all()
        self.assertNoResult(d)
        self.assertFalse(session.destroyed)
        gate.callback(None)
        self.successResultOf(d)
        self.assertTrue(session.destroyed)



    def test_request_expiration(self):
        """``request_expiration()`` discards the session at the next check without waiting out its lifetime,
        once it has no connection, as Bokeh's session cleanup does (bokeh/server/contexts.py)."""
        session = self.successResultOf(self.create(self.manager, "asked"))
        connection = FakeConnection()
        session.attach(connection)
        session.request_expiration()
        self.assertTrue(session.expiration_requested)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIs(self.manager.get("asked"), session, "a connected session is kept, as by bokeh serve")
        session.detach(connection)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIsNone(self.manager.get("asked"))
        self.assertTrue(session.destroyed)

    def test_blocked_expiration_keeps_the_session(self):
        """While ``block_expiration()`` outnumbers ``unblock_expiration()`` the session is kept, unused or asked to
        expire; one unblock too many is an error, as in Bokeh."""
        session = self.successResultOf(self.create(self.manager, "kept"))
        session.block_expiration()
        session.block_expiration()
        session.request_expiration()
        self.clock.advance(100)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertEqual((session.expiration_blocked, session.expiration_blocked_count), (True, 2))
        session.unblock_expiration()
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIs(self.manager.get("kept"), session)
        session.unblock_expiration()
        self.assertFalse(session.expiration_blocked)
        self.assertRaises(RuntimeError, session.unblock_expiration)
        self.successResultOf(self.manager.discard_unused(15))
        self.assertIsNone(self.manager.get("kept"))

    def test_sessions_have_bokehs_public_api(self):
        """``server_context.sessions`` items have every public attribute of Bokeh's ServerSession, with its values."""
        from bokeh.server.session import ServerSession as BokehServerSession

        public = {name for name in vars(BokehServerSession) if not name.startswith("_")}
        internal = {"subscribe", "unsubscribe", "pull", "push", "patch", "notify_connection_lost",
                    "with_document_locked", "destroy"}  # the server's own calls, not the apps'
        session = self.successResultOf(self.create(self.manager, "api"))
        session.attach(FakeConnection())
        (seen,) = self.manager.server_context.sessions
        for name in sorted(public - internal):
            self.assertTrue(hasattr(seen, name), name)
        self.assertEqual((seen.id, seen.connection_count, seen.destroyed, seen.expiration_requested,
                          seen.expiration_blocked, seen.expiration_blocked_count),
                         ("api", 1, False, False, False, 0))
        self.assertIs(seen.document, session.document)
        self.assertEqual(get_session_id(seen.token), "api")
        self.clock.advance(2)
        self.assertEqual(seen.milliseconds_since_last_unsubscribe, 2000)

    def test_periodic_callback_over_server_sessions(self):
        """An app's periodic callback may sum ``connection_count`` over the server's sessions (issue 13, item 7),
        and a callback's error is logged with its session's id."""
        path = write_app(self.tmp_path, "counting", """
            from bokeh.io import curdoc
            from bokeh.models import Div
            div = Div(name="count")
            context = curdoc().session_context
            def count():
                div.text = str(sum(s.connection_count for s in context.server_context.sessions))
            def broken():
                raise ValueError("broken callback")
            curdoc().add_root(div)
            curdoc().add_periodic_callback(count, 200)
            curdoc().add_timeout_callback(broken, 100)
        """)
        manager = self.manager_for(path)
        session = self.successResultOf(self.create(manager, "counted"))
        session.attach(FakeConnection())
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.clock.advance(0.2)
        self.assertEqual(session.document.get_model_by_name("count").text, "1")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        (failure,) = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(formatEvent(failure), "error in TimeoutCallback broken (session counted)")

class CollectorTests(SynchronousTestCase):
    def test_collect_as_a_server(self):
        """A daemon's automatic full collections come ten times rarer, the young ones as before, and what
        existed at start-up is frozen out of them."""
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        collect_as_a_server()
        self.assertEqual(gc.get_threshold(), (before[0], before[1], FULL_COLLECTION_INTERVAL))
        self.assertGreater(gc.get_freeze_count(), 0)


class ContextTests(ManagerTestCase):
    def test_request_arguments(self):
        """App code sees the page request's query arguments (as lists of bytes) through the session context."""
        manager = self.manager_for(write_app(self.tmp_path, "args", SLIDER_APP))
        session = self.successResultOf(self.create(manager, "q", symbol="AAPL", days="5"))
        context = session.document.session_context
        self.assertEqual(context.request.arguments, {"symbol": [b"AAPL"], "days": [b"5"]})
        self.assertEqual(session.document.get_model_by_name("div").tags, ["days", "symbol"])
        self.assertEqual(context.id, "q")
        self.assertFalse(context.destroyed)
        self.assertIs(context.server_context, manager.server_context)
        self.assertEqual(context.server_context.sessions, [session])
        self.assertEqual(context.token_payload["arguments"]["symbol"], [b"AAPL"])

    def test_destroyed_flag(self):
        """The session context reports ``destroyed`` once its session is discarded."""
        manager = self.manager_for(write_app(self.tmp_path, "flag", SLIDER_APP))
        session = self.successResultOf(self.create(manager))
        context = session.document.session_context
        self.successResultOf(manager.discard_all())
        self.assertTrue(context.destroyed)

    def test_with_locked_document(self):
        """``session_context.with_locked_document`` runs its function with the document, under the lock."""
        manager = self.manager_for(write_app(self.tmp_path, "locked", SLIDER_APP))
        session = self.successResultOf(self.create(manager))
        gate = defer.Deferred()
        session.with_document_locked(lambda: gate)
        d = session.document.session_context.with_locked_document(lambda doc: doc.get_model_by_name("div").text)
        self.assertNoResult(d)
        gate.callback(None)
        self.assertEqual(self.successResultOf(d), "start")

    def test_request_from_token(self):
        """A request rebuilt from a token carries headers and cookies, and hides ``bokeh-session-id``."""
        token = make_token(
            "t", headers={"User-Agent": "test"}, cookies={"theme": "dark"},
            arguments={"bokeh-session-id": [b"t"], "x": [b"1"]},
        )
        request = RequestContext.from_token(token, path="/app", host="example.org:80")
        self.assertEqual(request.arguments, {"x": [b"1"]})
        self.assertEqual(request.cookies, {"theme": "dark"})
        self.assertEqual(request.headers, {"User-Agent": "test", "Cookie": "theme=dark"})
        self.assertEqual((request.path, request.host), ("/app", "example.org:80"))
