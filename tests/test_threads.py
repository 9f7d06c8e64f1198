"""Tests for docsyncd.threads: what runs in the callback pool, per-thread curdoc, and the pool's life."""

from __future__ import annotations

import functools
import threading

from bokeh.document import Document
from bokeh.document.events import MessageSentEvent
from bokeh.events import ButtonClick
from bokeh.io import curdoc
from bokeh.io.doc import patch_curdoc
from bokeh.models import Button, Div, Slider
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import threads, wire
from docsyncd.threads import CallbackThreads, on_reactor, patch_handlers, runs_on_reactor

from unit_support import ThreadRecordingReactor, client_patch, run_in_joined_thread


class RunsOnReactorTests(SynchronousTestCase):
    def test_sync_function_runs_in_a_thread(self):
        self.assertFalse(runs_on_reactor(lambda: None))

    def test_coroutines_and_generators_stay(self):
        """``async def``, ``inlineCallbacks`` and partials of them stay on the reactor thread."""
        async def coroutine_function():
            pass

        @defer.inlineCallbacks
        def inline():
            yield None

        self.assertTrue(runs_on_reactor(coroutine_function))
        self.assertTrue(runs_on_reactor(functools.partial(coroutine_function)))
        self.assertTrue(runs_on_reactor(inline))

    def test_seen_through_bokehs_wrappers(self):
        """Bokeh wraps session callbacks to patch curdoc; the user's function behind decides."""
        doc = Document()

        async def tick():
            pass

        @on_reactor
        def marked():
            pass

        plain = doc.add_next_tick_callback(lambda: None)
        awaited = doc.add_next_tick_callback(tick)
        kept = doc.add_next_tick_callback(marked)
        self.assertFalse(runs_on_reactor(plain.callback))
        self.assertTrue(runs_on_reactor(awaited.callback))
        self.assertTrue(runs_on_reactor(kept.callback))

    def test_on_reactor_returns_the_function(self):
        def f():
            return 3

        self.assertIs(on_reactor(f), f)
        self.assertTrue(runs_on_reactor(f))


class CurdocTests(SynchronousTestCase):
    def setUp(self):
        import bokeh.io.doc as bokeh_doc

        before = bokeh_doc._PATCHED_CURDOCS
        self.addCleanup(setattr, bokeh_doc, "_PATCHED_CURDOCS", before)
        threads.thread_local_curdocs()

    def test_each_thread_sees_its_own_document(self):
        """Two callbacks running at once in two threads each see their own session's document as curdoc()."""
        docs = [Document(), Document()]
        both_patched = threading.Barrier(2)
        seen = {}

        def callback(index):
            with patch_curdoc(docs[index]):
                both_patched.wait(timeout=10)  # the other thread has patched its document by now
                seen[index] = curdoc()

        workers = [threading.Thread(target=callback, args=(i,)) for i in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.assertIs(seen[0], docs[0])
        self.assertIs(seen[1], docs[1])

    def test_installing_twice_keeps_it(self):
        import bokeh.io.doc as bokeh_doc

        first = bokeh_doc._PATCHED_CURDOCS
        threads.thread_local_curdocs()
        self.assertIs(bokeh_doc._PATCHED_CURDOCS, first)


class PatchHandlersTests(SynchronousTestCase):
    """Which Python handlers a browser's PATCH-DOC will call, read from the patch before applying it."""

    def setUp(self):
        self.doc = Document()
        self.slider = Slider(start=0, end=10, value=1, name="slider")
        self.div = Div(text="x", name="div")
        self.button = Button(name="button")
        self.doc.add_root(self.slider)
        self.doc.add_root(self.div)
        self.doc.add_root(self.button)
        self.session = object()  # the receiver of on_change_dispatch_to, not a handler
        self.doc.callbacks.on_change_dispatch_to(self.session)

    def handlers(self, change):
        return patch_handlers(client_patch(self.doc, change).content, self.doc, self.session)

    def click(self):
        message = wire.PROTOCOL.create("PATCH-DOC", [MessageSentEvent(self.doc, "bokeh_event", ButtonClick(self.button))])
        return patch_handlers(message.content, self.doc, self.session)

    def test_no_handler(self):
        self.assertEqual(self.handlers(lambda doc: setattr(doc.get_model_by_name("div"), "text", "y")), [])

    def test_property_handler(self):
        def changed(attr, old, new):
            pass

        self.slider.on_change("value", changed)
        self.assertEqual(self.handlers(lambda doc: setattr(doc.get_model_by_name("slider"), "value", 3)), [changed])
        self.assertEqual(self.handlers(lambda doc: setattr(doc.get_model_by_name("slider"), "end", 30)), [])

    def test_click_handler(self):
        """A click names the handlers Bokeh calls: those of models subscribed to the event when attached."""
        def clicked(event):
            pass

        self.assertEqual(self.click(), [])
        self.button = Button(name="clickable")
        self.button.on_click(clicked)
        self.doc.add_root(self.button)
        self.assertEqual(len(self.click()), 1)

    def test_document_change_handler_sees_everything(self):
        def any_change(event):
            pass

        self.doc.on_change(any_change)
        self.assertEqual(self.handlers(lambda doc: setattr(doc.get_model_by_name("div"), "text", "y")), [any_change])

    def test_unknown_content(self):
        self.assertIsNone(patch_handlers({"events": [{"kind": "SomethingNew"}]}, self.doc, self.session))
        self.assertIsNone(patch_handlers({"no events": []}, self.doc, self.session))


class CallbackThreadsTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = ThreadRecordingReactor()
        self.threads = CallbackThreads(self.reactor, 4, defer_to_thread=run_in_joined_thread)

    def test_sync_code_runs_in_another_thread(self):
        here = threading.get_ident()
        self.assertNotEqual(self.successResultOf(self.threads.call(threading.get_ident)), here)

    def test_in_thread_false_and_coroutines_run_here(self):
        here = threading.get_ident()
        self.assertEqual(self.successResultOf(self.threads.call(threading.get_ident, in_thread=False)), here)

        async def where():
            return threading.get_ident()

        self.assertEqual(self.successResultOf(self.threads.call(where)), here)

    def test_awaitable_result_is_awaited_here(self):
        """What a threaded callback returns that must be awaited (a Deferred here) is awaited on this thread."""
        later = defer.Deferred()
        d = self.threads.call(lambda: later)
        self.assertNoResult(d)
        later.callback("done")
        self.assertEqual(self.successResultOf(d), "done")

    def test_exception_fails_the_deferred(self):
        self.failureResultOf(self.threads.call(lambda: 1 / 0), ZeroDivisionError)

    def test_zero_threads_runs_everything_here(self):
        here = threading.get_ident()
        off = CallbackThreads(self.reactor, 0)
        self.assertFalse(off.enabled)
        self.assertEqual(self.successResultOf(off.call(threading.get_ident)), here)

    def test_a_clock_has_no_threads(self):
        self.assertFalse(CallbackThreads(Clock(), 4).enabled)

    def test_negative_size_refused(self):
        self.assertRaises(ValueError, CallbackThreads, self.reactor, -1)


class SessionCallbackPlacementTests(SynchronousTestCase):
    """Periodic, timeout and next-tick callbacks stay on the reactor thread until one of their runs is slow."""

    def setUp(self):
        self.now = 0.0
        self.threads = CallbackThreads(ThreadRecordingReactor(), 4, defer_to_thread=run_in_joined_thread,
                                       timer=lambda: self.now)

    def callback_of_a_session(self, seconds):
        """The callback as each session's run of the app's script makes it: a new function, the same code."""
        def tick():
            self.now += seconds
            return threading.get_ident()

        return tick

    def test_quick_callback_stays(self):
        for _ in range(3):
            here = self.successResultOf(self.threads.call_session_callback(self.callback_of_a_session(0.001)))
            self.assertEqual(here, threading.get_ident())

    def test_slow_callback_moves_for_every_session(self):
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        ran_on = [self.successResultOf(self.threads.call_session_callback(self.callback_of_a_session(0.2)))
                  for _ in range(3)]
        here = threading.get_ident()
        self.assertEqual(ran_on[:2], [here, here])  # found out the hard way, twice per process
        self.assertNotEqual(ran_on[2], here)
        self.assertTrue(any("runs in callback threads from now on" in e.get("log_format", "") for e in logged))

    def test_one_slow_run_among_quick_ones_stays(self):
        """A quick tick slow once (its first run, a preempted one) stays on the reactor thread."""
        for seconds in (0.2, 0.001, 0.2, 0.001, 0.2):
            here = self.successResultOf(self.threads.call_session_callback(self.callback_of_a_session(seconds)))
            self.assertEqual(here, threading.get_ident())

    def test_marked_callback_never_moves(self):
        slow = on_reactor(self.callback_of_a_session(0.2))
        for _ in range(2):
            self.assertEqual(self.successResultOf(self.threads.call_session_callback(slow)), threading.get_ident())


class PoolLifeTests(SynchronousTestCase):
    """The real pool: daemon threads, and a stop that does not wait for a stuck callback."""

    def test_stop_leaves_a_stuck_callback(self):
        pool_threads = CallbackThreads(ThreadRecordingReactor(), 2)
        pool_threads.start()
        started, release = threading.Event(), threading.Event()

        def stuck():
            started.set()
            release.wait(timeout=30)

        pool_threads._pool.callInThread(stuck)
        self.assertTrue(started.wait(timeout=10))
        self.assertTrue(all(t.daemon for t in pool_threads._pool.threads))
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        pool_threads.stop()  # returns at once: the stuck callback is left to die with the process
        self.assertTrue(pool_threads._pool.started)
        self.assertTrue(any("still running in threads" in e.get("log_format", "") for e in logged))
        release.set()
        pool_threads._pool.stop()
        self.assertFalse(pool_threads._pool.started)
