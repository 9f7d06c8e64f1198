"""Sync user code in a pool of threads (``--num-threads``), so that one slow callback does not stall the others.

With one reactor thread, a sync callback that takes 200 ms (a database
query, a pandas group-by, a model fit) stops every session of the process
for 200 ms.  Bokeh 3.10 runs sync callbacks in a pool of 4 threads
(``bokeh/server/executor.py``), each holding its session's document lock;
Panel calls the same knob ``--num-threads``.  docsyncd does the same:

- in the pool: sync ``on_change``, ``on_event``/``on_click`` handlers (by
  applying, in a thread, a browser's PATCH-DOC that triggers them:
  ``patch_handlers``), and the periodic, timeout and next-tick callbacks
  that proved slow (``call_session_callback``), each holding its session's
  document lock (``ServerSession``), so two callbacks of one session never
  overlap and none sees a half-applied patch; ``without_document_lock``
  callbacks run there without the lock;
- on the reactor thread: coroutine functions, ``inlineCallbacks`` generators,
  whatever a threaded callback returns that must be awaited, and callbacks
  marked with ``on_reactor`` (for code that is not thread-safe);
- document change events raised in a thread are encoded there and handed to
  the reactor thread for sending (``ServerSession._document_patched``):
  nothing touches a transport, a Deferred or a timer off the reactor thread.

Bokeh before 3.10 keeps ``curdoc()``'s patched documents in one list for the
whole process; ``thread_local_curdocs`` gives each thread its own, as 3.10's
ContextVar does.

Tests: tests/test_threads.py; the session side in tests/test_session.py
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from typing import Any, Callable, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.threadpool import ThreadPool

from . import logs
from .callbacks import as_deferred, call_user

log = Logger(observer=logs.observer)

#: Threads per process when --num-threads is not given: Bokeh 3.10's pool size; see README "Threads".
DEFAULT_NUM_THREADS = 4

#: A periodic, timeout or next-tick callback whose code held the reactor thread this many seconds in
#: ``SLOW_RUNS`` runs in a row runs in the pool from then on (``CallbackThreads.call_session_callback``).
SLOW_CALLBACK = 0.010
SLOW_RUNS = 2

F = TypeVar("F", bound=Callable[..., Any])


def on_reactor(callback: F) -> F:
    """Mark a callback to run on the reactor thread, never in the pool: for code that is not thread-safe.

    Use it as a decorator on the function given to ``on_change``, ``on_event``,
    ``on_click`` or ``add_*_callback``; it returns the function itself.  A
    browser change that triggers a marked handler is applied on the reactor
    thread, with every other handler it triggers.
    """
    callback.__docsyncd_on_reactor__ = True
    return callback


def _innermost(f: Any) -> Any:
    """The user's own function behind Bokeh's curdoc wrappers (``functools.wraps``) and partials."""
    while True:
        if isinstance(f, functools.partial):
            f = f.func
        elif hasattr(f, "__wrapped__"):
            f = f.__wrapped__
        else:
            return f


def _code_of(f: Any) -> Any:
    """What all sessions' copies of a callback share: its function's code (an app's script runs once per
    session, its functions are new each time, their code is the same), else its class."""
    inner = _innermost(f)
    code = getattr(inner, "__code__", None)
    return code if code is not None else type(inner)


def runs_on_reactor(f: Any) -> bool:
    """Whether ``f`` must run on the reactor thread: marked ``on_reactor``, a coroutine or generator function
    (``async def``, ``inlineCallbacks``), or one that stands for one (callbacks._AwaitedCallback)."""
    inner = _innermost(f)
    return (any(getattr(layer, "__docsyncd_on_reactor__", False) for layer in (f, inner))
            or inspect.iscoroutinefunction(inner) or inspect.isgeneratorfunction(inner)
            or inspect.isasyncgenfunction(inner))


class ThreadLocalCurdocs(threading.local):
    """Bokeh < 3.10's stack of patched curdocs (``bokeh.io.doc._PATCHED_CURDOCS``), one per thread.

    ``patch_curdoc`` appends and pops, ``curdoc()`` reads the last entry:
    with one list for the process, a callback in one thread would see another
    thread's document.  This has the list methods those two use.
    """

    def __init__(self) -> None:
        self.stack: list[Any] = []

    def append(self, ref: Any) -> None:
        self.stack.append(ref)

    def pop(self, index: int = -1) -> Any:
        return self.stack.pop(index)

    def clear(self) -> None:
        self.stack.clear()

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, index: Any) -> Any:
        return self.stack[index]

    def __iter__(self) -> Any:
        return iter(self.stack)


def thread_local_curdocs() -> None:
    """Give each thread its own ``curdoc()`` under Bokeh < 3.10 (3.10 keeps it in a ContextVar already)."""
    import bokeh.io.doc as bokeh_doc

    current = bokeh_doc._PATCHED_CURDOCS
    if isinstance(current, list):
        replacement = ThreadLocalCurdocs()
        replacement.stack.extend(current)  # this thread's, if any is patched right now
        bokeh_doc._PATCHED_CURDOCS = replacement


class CallbackThreads:
    """Runs sync user code in a pool of ``size`` threads and hands results back to the reactor thread.

    ``size`` 0 (``--num-threads 0``) runs everything on the reactor thread,
    as docsyncd did before; so does a reactor without threads (a test's
    Clock).  ``defer_to_thread(f)`` runs ``f`` in a thread and returns a
    Deferred of its result (default: Twisted's ``deferToThreadPool`` on this
    object's own pool, whose threads are daemons so that a callback stuck
    past ``--shutdown-grace`` cannot keep the process alive).
    """

    def __init__(self, reactor: Any, size: int, defer_to_thread: Callable[[Callable[[], Any]], defer.Deferred] | None = None,
                 timer: Callable[[], float] = time.perf_counter):
        if size < 0:
            raise ValueError(f"--num-threads must be 0 or more, not {size}")
        self.reactor = reactor
        self.size = size if hasattr(reactor, "callFromThread") or defer_to_thread is not None else 0
        self._pool: ThreadPool | None = None
        if defer_to_thread is None and self.size:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.size, name="docsync-callbacks")
            self._pool.threadFactory = functools.partial(threading.Thread, daemon=True)
            defer_to_thread = functools.partial(deferToThreadPool, reactor, self._pool)
        self._defer_to_thread = defer_to_thread
        self._timer = timer
        #: The code of session callbacks that proved slow, and how many of its last runs in a row were slow.
        self._slow_callbacks: set[Any] = set()
        self._slow_runs: dict[Any, int] = {}
        #: The reactor thread once the reactor runs; before that, the thread that built this.
        self.home_thread = threadable.ioThread or threadable.getThreadID()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def on_home_thread(self) -> bool:
        """Whether the caller is on the reactor thread (the only one that may touch Twisted)."""
        return threadable.getThreadID() == (threadable.ioThread or self.home_thread)

    def call(self, f: Callable[..., Any], *args: Any, in_thread: bool | None = None) -> defer.Deferred:
        """Call user code ``f(*args)``; a Deferred of its result, fired on the reactor thread.

        ``in_thread`` None: in the pool unless ``runs_on_reactor(f)``; False
        or threads off: here.  What a threaded call returns that is awaitable
        (a coroutine, a Deferred) is awaited on the reactor thread.
        """
        if in_thread is None:
            in_thread = not runs_on_reactor(f)
        if not (in_thread and self.enabled):
            return call_user(f, *args)
        return self._defer_to_thread(functools.partial(f, *args)).addCallback(as_deferred)

    def call_session_callback(self, callback: Callable[[], Any]) -> defer.Deferred:
        """Run a periodic, timeout or next-tick callback: on the reactor thread until it proves slow.

        Such callbacks run many times a second (a stream's tick takes a fraction
        of a millisecond), and handing each run to a thread and its changes back
        costs more than the run: with every tick in the pool, the capacity
        benchmark's streaming users cost 1.3–2.3× the CPU and one process
        served 40 of them instead of 130.  So a callback runs on the reactor
        thread, timed; once runs of its code held the reactor thread
        ``SLOW_CALLBACK`` or longer ``SLOW_RUNS`` times in a row, every later
        run of it, in any session of the process, goes to the pool.  In a row,
        because a quick tick is sometimes slow once: its first run (caches
        filled, modules imported) or one a busy machine preempted.
        """
        if not self.enabled or runs_on_reactor(callback):
            return call_user(callback)
        code = _code_of(callback)
        if code in self._slow_callbacks:
            return self.call(callback, in_thread=True)
        started = self._timer()
        result = call_user(callback)
        took = self._timer() - started
        slow_runs = self._slow_runs[code] = self._slow_runs.get(code, 0) + 1 if took >= SLOW_CALLBACK else 0
        if slow_runs >= SLOW_RUNS:
            self._slow_callbacks.add(code)
            del self._slow_runs[code]
            log.info("callback {name} held the reactor thread for {ms:.0f} ms; it runs in callback threads from "
                     "now on", name=getattr(_innermost(callback), "__qualname__", repr(callback)), ms=took * 1000)
        return result

    def start(self) -> None:
        if self._pool is not None:
            self._pool.start()

    def stop(self) -> None:
        """Stop the pool; a callback still running (stuck past --shutdown-grace) is left to die with the process."""
        if self._pool is None or not self._pool.started:
            return
        busy = len(self._pool.working)
        if busy:
            log.warn("{n} sync callback(s) still running in threads at exit; not waiting for them", n=busy)
            return
        self._pool.stop()


# -- which Python handlers a browser's change triggers -----------------------

#: PATCH-DOC event kinds that change a model's property (its ``on_change`` handlers run), with the attribute
#: they change (None: the event's "attr").
_PROPERTY_EVENTS = {"ModelChanged": None, "ColumnDataChanged": "data", "ColumnsStreamed": "data",
                    "ColumnsPatched": "data"}
#: Kinds that run no model handler (the document's own change handlers still see them).
_DOCUMENT_EVENTS = {"RootAdded", "RootRemoved", "TitleChanged"}


def event_handlers(document: Any, event_name: str) -> list[Any]:
    """The Python handlers Bokeh's ``trigger_event`` calls for a ``event_name`` event: those of every model
    subscribed to it and the document's own (``bokeh/document/callbacks.py``, ``trigger_event``)."""
    callbacks = document.callbacks
    handlers = list(callbacks._event_callbacks.get(event_name, ()))
    for model_ref in list(callbacks._subscribed_models.get(event_name, ())):
        model = model_ref()
        if model is not None:
            handlers.extend(model._event_callbacks.get(event_name, ()))
    return handlers


def patch_handlers(content: Any, document: Any, receiver: Any) -> list[Any] | None:
    """The Python handlers applying a PATCH-DOC's ``content`` to ``document`` calls; None when it cannot be told.

    Property events run the changed model's ``on_change`` handlers for that
    attribute, ``MessageSent`` events (button clicks, taps) the handlers of
    their event name, and every event the document's ``on_change`` handlers
    other than ``receiver`` (the session, which sends changes on).  A patch
    with none is applied on the reactor thread: a thread would only add a
    hand-over.
    """
    try:
        events = content["events"]
        handlers = [h for key, h in document.callbacks._change_callbacks.items() if key is not receiver]
        for event in events:
            kind = event["kind"]
            if kind in _PROPERTY_EVENTS:
                model = document.get_model_by_id(event["model"]["id"])
                if model is not None:
                    handlers.extend(model._callbacks.get(_PROPERTY_EVENTS[kind] or event["attr"], ()))
            elif kind == "MessageSent":
                if event["msg_type"] == "bokeh_event":
                    handlers.extend(event_handlers(document, event["msg_data"]["name"]))
            elif kind not in _DOCUMENT_EVENTS:
                return None
        return handlers
    except (AttributeError, KeyError, TypeError):
        return None
