"""Tests for docsyncd.callbacks: call_user, SessionCallbacks and async def model handlers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from bokeh.document import Document
from bokeh.events import ButtonClick
from bokeh.models import Button, Div, Slider
from bokeh.server.callbacks import NextTickCallback, PeriodicCallback, TimeoutCallback
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import callbacks
from docsyncd.callbacks import (ASYNCIO_HINT, AwaitingDeferreds, SessionCallbacks, accept_coroutine_callbacks,
                                call_user)

from unit_support import ThreadRecordingReactor


class CallUserTests(SynchronousTestCase):
    def test_plain_value(self):
        """A function returning a plain value gives a Deferred that has already fired with it."""
        self.assertEqual(self.successResultOf(call_user(lambda a, b=0: a + b, 1, b=2)), 3)

    def test_exception(self):
        """A function that raises gives a failed Deferred instead of raising to the caller."""
        failure = self.failureResultOf(call_user(lambda: 1 / 0), ZeroDivisionError)
        self.assertIsInstance(failure.value, ZeroDivisionError)

    def test_deferred(self):
        """A returned Deferred is followed: the result arrives when it fires."""
        d = defer.Deferred()
        result = call_user(lambda: d)
        self.assertNoResult(result)
        d.callback("done")
        self.assertEqual(self.successResultOf(result), "done")

    def test_coroutine(self):
        """An ``async def`` runs as a Deferred and may await Deferreds."""
        gate = defer.Deferred()

        async def work(x):
            got = await gate
            return x + got

        result = call_user(work, 1)
        self.assertNoResult(result)
        gate.callback(2)
        self.assertEqual(self.successResultOf(result), 3)

    def test_coroutine_exception(self):
        """An exception raised inside a coroutine fails the Deferred."""

        async def broken():
            raise KeyError("missing")

        self.failureResultOf(call_user(broken), KeyError)

    def test_deferred_resolving_to_coroutine(self):
        """A Deferred whose result is a coroutine (Bokeh's async hook wrappers) is awaited in turn."""

        async def inner():
            return "inner result"

        self.assertEqual(self.successResultOf(call_user(lambda: defer.succeed(inner()))), "inner result")

    def test_coroutine_returning_deferred(self):
        """A coroutine that returns (not awaits) a Deferred is resolved to the Deferred's result."""
        gate = defer.Deferred()

        async def outer():
            return gate

        result = call_user(outer)
        self.assertNoResult(result)
        gate.callback("late")
        self.assertEqual(self.successResultOf(result), "late")

    def test_asyncio_needs_asyncio_reactor(self):
        """A coroutine awaiting asyncio under another reactor (twistd -r) fails with advice to drop -r or use ``-r asyncio``."""

        async def sleeps():
            await asyncio.sleep(1)

        failure = self.failureResultOf(call_user(sleeps), RuntimeError)
        self.assertIn(ASYNCIO_HINT, str(failure.value))
        self.assertIn("without -r", str(failure.value))
        self.assertIn("twistd -r asyncio", str(failure.value))

    def test_non_coroutine_awaitable_needs_asyncio_reactor(self):
        """An awaitable that is not a coroutine (an asyncio future) fails with the asyncio advice."""

        class Awaitable:
            def __await__(self):
                yield None

        failure = self.failureResultOf(call_user(Awaitable), RuntimeError)
        self.assertEqual(str(failure.value), ASYNCIO_HINT)

    def test_other_runtime_errors_unchanged(self):
        """A coroutine's RuntimeError that has nothing to do with asyncio is passed on untouched."""

        async def broken():
            raise RuntimeError("plain")

        failure = self.failureResultOf(call_user(broken), RuntimeError)
        self.assertEqual(str(failure.value), "plain")


def periodic(f, period_ms=1000):
    return PeriodicCallback(f, period_ms, callback_id="periodic")


def timeout(f, timeout_ms=1000):
    return TimeoutCallback(f, timeout_ms, callback_id="timeout")


def next_tick(f):
    return NextTickCallback(f, callback_id="next-tick")


class AwaitingDeferredsTests(SynchronousTestCase):
    """Under the asyncio reactor a user's coroutine is an asyncio Task that may await Deferreds too.

    Each test runs its event loop in a thread of its own: in a whole-suite run Playwright's sync API keeps
    an asyncio loop marked running in pytest's main thread.
    """

    def setUp(self):
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)

    def in_loop_thread(self, f):
        with ThreadPoolExecutor(1) as worker:
            return worker.submit(f).result()

    def run_task(self, coroutine):
        task = self.loop.create_task(AwaitingDeferreds(coroutine, self.loop))
        return self.in_loop_thread(lambda: self.loop.run_until_complete(task))

    def test_deferred_and_asyncio_awaited_in_one_task(self):
        """A coroutine awaits asyncio, a Deferred's result and asyncio again, inside a Task (what asyncio.timeout
        and wait_for need)."""
        d = defer.Deferred()

        async def both():
            await asyncio.sleep(0)
            value = await d
            await asyncio.wait_for(asyncio.sleep(0), 5)
            self.assertIsNotNone(asyncio.current_task())
            return value + 1

        self.loop.call_soon(d.callback, 41)
        self.assertEqual(self.run_task(both()), 42)

    def test_deferred_failure_raises_in_the_coroutine(self):
        """A Deferred's failure is raised at its await, where the coroutine may catch it."""
        d = defer.Deferred()

        async def catching():
            try:
                await d
            except ValueError as e:
                return f"caught {e}"

        self.loop.call_soon(d.errback, ValueError("backend down"))
        self.assertEqual(self.run_task(catching()), "caught backend down")

    def test_cancelling_the_task_cancels_the_deferred(self):
        """Cancelling the Task (shutdown's grace period ran out) cancels the Deferred it waits for."""
        cancelled = []
        d = defer.Deferred(lambda _: cancelled.append(True))

        async def waiting():
            await d

        task = self.loop.create_task(AwaitingDeferreds(waiting(), self.loop))
        self.loop.call_soon(task.cancel)
        with self.assertRaises(asyncio.CancelledError):
            self.in_loop_thread(lambda: self.loop.run_until_complete(task))
        self.assertEqual(cancelled, [True])


class SessionCallbacksTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.reactor = ThreadRecordingReactor()
        self.runs = []
        self.callbacks = SessionCallbacks(self.clock, self.run_callback, self.reactor)

    def run_callback(self, f):
        self.runs.append(f)
        return call_user(f)

    def test_periodic(self):
        """A periodic callback first runs one period after it is added, then once per period."""
        calls = []
        self.callbacks.add(periodic(lambda: calls.append(self.clock.seconds()), 1000))
        self.clock.advance(0.999)
        self.assertEqual(calls, [])
        self.clock.advance(0.001)
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(calls, [1.0, 2.0, 3.0])
        self.assertEqual(len(self.callbacks), 1)

    def test_periodic_remove(self):
        """Removing a periodic callback stops it and leaves no delayed call behind."""
        calls = []
        cb = periodic(lambda: calls.append(1), 500)
        self.callbacks.add(cb)
        self.clock.advance(0.5)
        self.callbacks.remove(cb)
        self.clock.advance(5)
        self.assertEqual(calls, [1])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.callbacks), 0)

    def test_timeout(self):
        """A timeout callback runs once after its timeout and is then forgotten."""
        calls = []
        self.callbacks.add(timeout(lambda: calls.append(self.clock.seconds()), 2500))
        self.clock.advance(2.4)
        self.assertEqual(calls, [])
        self.clock.advance(0.1)
        self.clock.advance(10)
        self.assertEqual(calls, [2.5])
        self.assertEqual(len(self.callbacks), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_remove(self):
        """A timeout callback removed before it is due never runs and its delayed call is cancelled."""
        calls = []
        cb = timeout(lambda: calls.append(1), 1000)
        self.callbacks.add(cb)
        self.callbacks.remove(cb)
        self.clock.advance(2)
        self.assertEqual(calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_next_tick(self):
        """A next-tick callback runs on the next turn of the clock, not synchronously inside ``add``."""
        calls = []
        self.callbacks.add(next_tick(lambda: calls.append(1)))
        self.assertEqual(calls, [])
        self.clock.advance(0)
        self.assertEqual(calls, [1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_next_tick_remove(self):
        """A next-tick callback removed before its turn never runs."""
        calls = []
        cb = next_tick(lambda: calls.append(1))
        self.callbacks.add(cb)
        self.callbacks.remove(cb)
        self.clock.advance(0)
        self.assertEqual(calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_add_twice(self):
        """Adding the same callback object twice schedules it once."""
        calls = []
        cb = periodic(lambda: calls.append(1), 1000)
        self.callbacks.add(cb)
        self.callbacks.add(cb)
        self.clock.advance(1)
        self.assertEqual(calls, [1])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.callbacks.remove_all()

    def test_remove_unknown(self):
        """Removing a callback that was never added (or already ran) is harmless."""
        self.callbacks.remove(timeout(lambda: None))
        self.assertEqual(len(self.callbacks), 0)

    def test_periodic_does_not_overlap(self):
        """A periodic callback whose Deferred is slow is not started again until that Deferred fires."""
        pending = []

        def slow():
            d = defer.Deferred()
            pending.append(d)
            return d

        self.callbacks.add(periodic(slow, 1000))
        self.clock.advance(1)
        self.assertEqual(len(pending), 1)
        for _ in range(5):
            self.clock.advance(1)
        self.assertEqual(len(pending), 1)
        pending[0].callback(None)
        self.clock.advance(1)
        self.assertEqual(len(pending), 2)
        pending[1].callback(None)
        self.callbacks.remove_all()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_periodic_error_logged_and_keeps_running(self):
        """A periodic callback that raises is logged with its name every time and keeps being scheduled."""
        calls = []

        def broken():
            calls.append(1)
            raise ValueError("bad data")

        self.callbacks.add(periodic(broken, 1000))
        for _ in range(3):
            self.clock.advance(1)
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)
        self.assertEqual(len(self.callbacks), 1)
        self.callbacks.remove_all()

    def test_periodic_failed_deferred_logged(self):
        """A periodic callback whose Deferred fails is logged and runs again next period."""
        calls = []

        def fails_later():
            calls.append(1)
            return defer.fail(KeyError("gone"))

        self.callbacks.add(periodic(fails_later, 1000))
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 2)
        self.callbacks.remove_all()

    def test_timeout_error_logged(self):
        """A timeout callback that raises is logged and does not stop other callbacks."""
        calls = []
        self.callbacks.add(timeout(lambda: 1 / 0, 1000))
        self.callbacks.add(periodic(lambda: calls.append(1), 1000))
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(calls, [1, 1])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.callbacks.remove_all()

    def test_runs_through_run_function(self):
        """Every callback is invoked through the ``run`` function the session supplies (for its lock)."""
        f = lambda: None  # noqa: E731
        self.callbacks.add(next_tick(f))
        self.clock.advance(0)
        self.assertEqual(self.runs, [f])

    def test_remove_all(self):
        """``remove_all`` stops every kind of callback and leaves no delayed call."""
        self.callbacks.add(periodic(lambda: None))
        self.callbacks.add(timeout(lambda: None))
        self.callbacks.add(next_tick(lambda: None))
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)
        self.callbacks.remove_all()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.callbacks), 0)

    def _in_thread(self, f):
        thread = threading.Thread(target=f)
        thread.start()
        thread.join()

    def test_add_from_another_thread(self):
        """A callback added from another thread is handed to the reactor with ``callFromThread``."""
        calls = []
        cb = next_tick(lambda: calls.append(threading.current_thread()))
        self._in_thread(lambda: self.callbacks.add(cb))
        self.assertEqual(len(self.reactor.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.reactor.run_handed_over()
        self.clock.advance(0)
        self.assertEqual(calls, [threading.current_thread()])

    def test_remove_from_another_thread(self):
        """A callback removed from another thread is removed on the reactor thread via ``callFromThread``."""
        cb = periodic(lambda: None)
        self.callbacks.add(cb)
        self._in_thread(lambda: self.callbacks.remove(cb))
        self.assertEqual(len(self.callbacks), 1)
        self.reactor.run_handed_over()
        self.assertEqual(len(self.callbacks), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CoroutineHandlerTests(SynchronousTestCase):
    """``accept_coroutine_callbacks`` on documents without a session: coroutines run at once."""

    def setUp(self):
        accept_coroutine_callbacks()
        self.doc = Document()

    def test_async_on_click_runs(self):
        """An ``async def`` passed to ``Button.on_click`` runs to completion, awaiting Deferreds."""
        button = Button()
        div = Div(text="before")
        self.doc.add_root(button)
        self.doc.add_root(div)
        gate = defer.Deferred()

        async def clicked(event):
            await gate
            div.text = f"clicked {type(event).__name__}"

        button.on_click(clicked)
        button._trigger_event(ButtonClick(button))
        self.assertEqual(div.text, "before")
        gate.callback(None)
        self.assertEqual(div.text, "clicked ButtonClick")

    def test_async_on_change_runs(self):
        """An ``async def`` passed to ``model.on_change`` runs with (attr, old, new)."""
        slider = Slider(start=0, end=10, value=1)
        self.doc.add_root(slider)
        seen = []

        async def changed(attr, old, new):
            seen.append((attr, old, new))

        slider.on_change("value", changed)
        slider.value = 4
        self.assertEqual(seen, [("value", 1, 4)])

    def test_remove_on_change_with_original_function(self):
        """``remove_on_change`` with the original coroutine function removes its wrapper."""
        slider = Slider(start=0, end=10, value=1)
        self.doc.add_root(slider)
        seen = []

        async def changed(attr, old, new):
            seen.append(new)

        slider.on_change("value", changed)
        slider.value = 2
        slider.remove_on_change("value", changed)
        slider.value = 3
        self.assertEqual(seen, [2])
        self.assertEqual(slider._callbacks.get("value", []), [])

    def test_plain_functions_untouched(self):
        """Plain function handlers are registered as they are, without a wrapper."""
        slider = Slider(start=0, end=10, value=1)

        def changed(attr, old, new):
            pass

        slider.on_change("value", changed)
        self.assertIs(slider._callbacks["value"][0], changed)

    def test_idempotent(self):
        """Calling ``accept_coroutine_callbacks`` again does not wrap registration twice."""
        from bokeh.util.callback_manager import PropertyCallbackManager

        before = PropertyCallbackManager.on_change
        accept_coroutine_callbacks()
        self.assertIs(PropertyCallbackManager.on_change, before)

    def test_coroutine_handler_error_logged(self):
        """An ``async def`` handler that raises is logged with the handler's name."""
        slider = Slider(start=0, end=10, value=1)
        self.doc.add_root(slider)

        async def broken(attr, old, new):
            raise LookupError("no such row")

        slider.on_change("value", broken)
        slider.value = 2
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)

    def test_signature_kept(self):
        """The wrapper keeps the coroutine function's name and signature for Bokeh's argument checks."""
        import inspect

        async def handler(attr, old, new):
            pass

        wrapped = callbacks._awaiting(handler)
        self.assertIsNot(wrapped, handler)
        self.assertEqual(wrapped.__name__, "handler")
        self.assertEqual(list(inspect.signature(wrapped).parameters), ["attr", "old", "new"])
        self.assertEqual(wrapped, handler)
        self.assertEqual(hash(wrapped), hash(handler))
