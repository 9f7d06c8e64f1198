"""Running user callbacks on the reactor.

User code (Bokeh callbacks, lifecycle hooks) may return a plain value, a
Deferred, or a coroutine.  ``call_user`` is the single boundary where that
result becomes a Deferred; everything else in docsyncd deals only in Deferreds.

``SessionCallbacks`` schedules a document's periodic, timeout and next-tick
callbacks (Bokeh's ``doc.add_*_callback``) on an ``IReactorTime``, so tests
drive them with ``task.Clock``.

``accept_coroutine_callbacks`` teaches Bokeh's ``on_change`` / ``on_event`` /
``on_click`` to run ``async def`` handlers: Bokeh itself calls them and drops
the coroutine unawaited.

Tests: tests/test_callbacks.py
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import threadable

from . import logs
from .metrics import REGISTRY

log = Logger(observer=logs.observer)

#: Only reached when twistd's -r chose another reactor: docsync runs on asyncio otherwise (reactors.py).
ASYNCIO_HINT = (
    "this callback awaits asyncio, which needs the asyncio reactor: start twistd without -r "
    "(docsync runs on asyncio by default) or with `twistd -r asyncio -n docsync ...`"
)


def _asyncio_reactor_running() -> bool:
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def _explain_asyncio(failure):
    """Turn the RuntimeErrors asyncio raises outside its loop into advice."""
    if failure.check(RuntimeError) and any(
        phrase in str(failure.value)
        for phrase in ("no running event loop", "await wasn't used with future", "no current event loop")
    ):
        raise RuntimeError(f"{failure.value}: {ASYNCIO_HINT}")
    return failure


class AwaitingDeferreds(collections.abc.Coroutine):
    """A coroutine, as an asyncio Task runs it, that may await Twisted Deferreds as well as asyncio futures.

    Under the asyncio reactor a user's coroutine runs as an asyncio Task (so that
    ``asyncio.timeout``, ``wait_for`` and libraries that ask for the current task
    work), but a Task refuses what ``await deferred`` yields (the Deferred itself:
    "Task got bad yield").  This wrapper hands the Task a future in its place,
    done when the Deferred fires; the Task then resumes the coroutine, whose
    ``Deferred.__await__`` returns the Deferred's result or raises its failure.
    Cancelling the Task cancels the Deferred it waits for.
    """

    def __init__(self, coroutine: Any, loop: asyncio.AbstractEventLoop):
        self._coroutine = coroutine
        self._loop = loop
        self.__qualname__ = getattr(coroutine, "__qualname__", type(coroutine).__qualname__)

    def send(self, value: Any) -> Any:
        return self._future_for(self._coroutine.send(value))

    def throw(self, *exception: Any) -> Any:
        return self._future_for(self._coroutine.throw(*exception))

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Any:
        return (yield from self._coroutine.__await__())

    def _future_for(self, yielded: Any) -> Any:
        if not isinstance(yielded, defer.Deferred):
            return yielded
        future = self._loop.create_future()

        def fired(result: Any) -> Any:
            if not future.done():
                future.set_result(None)
            return result  # the coroutine's await reads it from the Deferred

        def done(future: asyncio.Future) -> None:
            if future.cancelled():
                yielded.addErrback(lambda _: None)  # the coroutine is told by the Task, not by this Deferred
                yielded.cancel()

        yielded.addBoth(fired)
        future.add_done_callback(done)
        future._asyncio_future_blocking = True  # what asyncio's own futures say when awaited
        return future


def as_deferred(result: Any) -> defer.Deferred:
    """Wrap whatever user code returned in a Deferred, awaiting coroutines.

    A coroutine runs as a Deferred under Twisted's reactors; under the asyncio
    reactor it runs as an asyncio Task so that it may await asyncio futures,
    and Deferreds too (``AwaitingDeferreds``).
    An awaitable that resolves to another awaitable (an ``async def`` hook
    called through Bokeh's ``async`` handler methods) is awaited in turn.
    """
    if isinstance(result, defer.Deferred):
        return result.addCallback(_resolve_nested)
    if inspect.isawaitable(result):
        if _asyncio_reactor_running():
            if inspect.iscoroutine(result):
                result = AwaitingDeferreds(result, asyncio.get_event_loop())
            d = defer.Deferred.fromFuture(asyncio.ensure_future(result))
        elif inspect.iscoroutine(result):
            d = defer.Deferred.fromCoroutine(result).addErrback(_explain_asyncio)
        else:
            d = defer.fail(RuntimeError(ASYNCIO_HINT))
        return d.addCallback(_resolve_nested)
    return defer.succeed(result)


def _resolve_nested(value: Any) -> Any:
    if inspect.isawaitable(value) or isinstance(value, defer.Deferred):
        return as_deferred(value)
    return value


def call_user(f: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
    """Call user code; its exception, value, Deferred or coroutine becomes a Deferred."""
    try:
        result = f(*args, **kwargs)
    except BaseException:
        return defer.fail()
    return as_deferred(result)


def log_callback_failure(failure, what: str, session_id: str = "-") -> None:
    """Log a failed user callback with the app's traceback; the session carries on.

    A callback cancelled at shutdown (``--shutdown-grace``) was already reported in one line.
    """
    if failure.check(defer.CancelledError):
        return None
    REGISTRY.count("docsync_callback_errors_total")
    log.failure("error in {what} (session {sid})", failure, what=what, sid=session_id)


# -- Bokeh session callbacks --------------------------------------------------


class SessionCallbacks:
    """Schedules one document's session callbacks on a clock.

    ``run`` is how a callback is invoked: the session passes a function that
    takes the document lock (unless the callback is ``without_document_lock``)
    and returns a Deferred.  A periodic callback does not overlap itself: the
    next run is scheduled after the previous one's Deferred fires.
    """

    def __init__(self, clock: IReactorTime, run: Callable[[Callable[[], Any]], defer.Deferred], reactor=None,
                 session_id: str = "-"):
        self._clock = clock
        self._session_id = session_id  # for log lines
        self._reactor = reactor
        self._run = run
        self._scheduled: dict[Any, Any] = {}
        # The reactor thread once the reactor runs; before that (tests on a
        # Clock), the thread that built the session.
        self._home_thread = threadable.ioThread or threadable.getThreadID()

    def add(self, callback_obj: Any) -> None:
        """Start a Bokeh ``SessionCallback``; safe to call from any thread."""
        if self._on_home_thread():
            self._start(callback_obj)
        else:
            self._reactor_for_threads().callFromThread(self._start, callback_obj)

    def remove(self, callback_obj: Any) -> None:
        """Stop a Bokeh ``SessionCallback``; safe to call from any thread."""
        if self._on_home_thread():
            self._stop(callback_obj)
        else:
            self._reactor_for_threads().callFromThread(self._stop, callback_obj)

    def remove_all(self) -> None:
        for callback_obj in list(self._scheduled):
            self._stop(callback_obj)

    def __len__(self) -> int:
        return len(self._scheduled)

    def _on_home_thread(self) -> bool:
        return threadable.getThreadID() == self._home_thread

    def _reactor_for_threads(self):
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def _start(self, callback_obj: Any) -> None:
        if callback_obj in self._scheduled:
            return
        period = getattr(callback_obj, "period", None)
        if period is not None:
            loop = LoopingCall(self._invoke, callback_obj)
            loop.clock = self._clock
            loop.start(period / 1000.0, now=False)
            self._scheduled[callback_obj] = loop
        else:
            delay = getattr(callback_obj, "timeout", 0) / 1000.0
            self._scheduled[callback_obj] = self._clock.callLater(delay, self._invoke_once, callback_obj)

    def _stop(self, callback_obj: Any) -> None:
        scheduled = self._scheduled.pop(callback_obj, None)
        if isinstance(scheduled, LoopingCall):
            if scheduled.running:
                scheduled.stop()
        elif scheduled is not None and scheduled.active():
            scheduled.cancel()

    def _invoke_once(self, callback_obj: Any) -> defer.Deferred:
        # Bokeh's one-shot wrapper removes the callback from the document when
        # it runs, which reaches remove(); forget it here first either way.
        self._scheduled.pop(callback_obj, None)
        return self._invoke(callback_obj)

    def _invoke(self, callback_obj: Any) -> defer.Deferred:
        d = self._run(callback_obj.callback)
        d.addErrback(log_callback_failure, f"{type(callback_obj).__name__} {callback_obj.callback.__name__}",
                     self._session_id)
        return d


# -- async def handlers for on_change / on_event ------------------------------


class _AwaitedCallback:
    """Stands in for an ``async def`` model callback and runs its coroutine.

    It compares and hashes as the wrapped function so ``remove_on_change``
    with the original function still finds it, and keeps its signature so
    Bokeh's argument-count checks see the original.
    """

    def __init__(self, coroutine_function: Callable[..., Any]):
        self.__wrapped__ = coroutine_function
        functools.update_wrapper(self, coroutine_function)

    def __call__(self, *args: Any) -> None:
        from bokeh.io import curdoc

        coroutine = self.__wrapped__(*args)
        doc = curdoc()
        session_context = getattr(doc, "session_context", None)
        run_awaitable = getattr(session_context, "run_awaitable", None)
        if run_awaitable is not None:
            run_awaitable(coroutine, self.__wrapped__.__name__)
        else:
            call_user(lambda: coroutine).addErrback(log_callback_failure, self.__wrapped__.__name__)

    def __eq__(self, other: object) -> bool:
        return other is self or other == self.__wrapped__

    def __hash__(self) -> int:
        return hash(self.__wrapped__)


def _awaiting(callback: Any) -> Any:
    if inspect.iscoroutinefunction(callback):
        return _AwaitedCallback(callback)
    return callback


def _wrap_registration(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def register(self, key, *callbacks):
        return method(self, key, *map(_awaiting, callbacks))

    register.__docsyncd_accepts_coroutines__ = True
    return register


def accept_coroutine_callbacks() -> None:
    """Let Bokeh models and documents take ``async def`` event and change handlers.

    Bokeh calls a handler and discards what it returns, so a coroutine handler
    never runs under bokeh serve.  Registration is wrapped once per process:
    coroutine functions are replaced by ``_AwaitedCallback``, plain functions
    pass through untouched, so ordinary callbacks cost nothing extra.
    """
    from bokeh.document.callbacks import DocumentCallbackManager
    from bokeh.util.callback_manager import EventCallbackManager, PropertyCallbackManager

    for cls, name in (
        (PropertyCallbackManager, "on_change"),
        (EventCallbackManager, "on_event"),
        (DocumentCallbackManager, "on_event"),
    ):
        method = getattr(cls, name)
        if not getattr(method, "__docsyncd_accepts_coroutines__", False):
            setattr(cls, name, _wrap_registration(method))
