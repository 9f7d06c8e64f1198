"""Callbacks: every way a Bokeh app can schedule Python work, made visible.

Each kind of callback writes to its own named Div, so a browser (or a person)
can see that it ran:

* ``periodic_div``  - a periodic callback (100 ms) that removes itself after 5 ticks
* ``timeout_div``   - a one-shot timeout callback (300 ms)
* ``next_tick_div`` - a next-tick callback
* ``nolock_div``    - a callback decorated with ``without_document_lock``, which
                      hands its result back to a locked next-tick callback
* ``thread_div``    - ``add_next_tick_callback`` called from a ``threading.Thread``
* ``async_div``     - an ``async def`` passed straight to ``Button.on_click``
                      (docsyncd runs it; bokeh serve 3.9 drops it with
                      "coroutine ... was never awaited")

Run it with either::

    twistd -n docsync --app examples/callbacks.py
    bokeh serve examples/callbacks.py

then open http://localhost:5006/callbacks
"""

import threading
from functools import partial

from bokeh.document import without_document_lock
from bokeh.layouts import column
from bokeh.models import Button, Div
from bokeh.plotting import curdoc

doc = curdoc()


def make_div(name, text):
    return Div(text=text, name=name)


periodic_div = make_div("periodic_div", "periodic: 0")
timeout_div = make_div("timeout_div", "timeout: waiting")
next_tick_div = make_div("next_tick_div", "next tick: waiting")
nolock_div = make_div("nolock_div", "without_document_lock: waiting")
thread_div = make_div("thread_div", "thread: waiting")
async_div = make_div("async_div", "async on_click: not clicked")
async_button = Button(label="Async click", name="async_button")


def set_text(div, text):
    """Locked update: the only place the document is modified from a handoff."""
    div.text = text


# Periodic: count five ticks, then remove ourselves.
ticks = 0


def on_periodic():
    global ticks
    ticks += 1
    if ticks >= 5:
        doc.remove_periodic_callback(periodic_cb)
        periodic_div.text = f"periodic: {ticks} (stopped)"
    else:
        periodic_div.text = f"periodic: {ticks}"


periodic_cb = doc.add_periodic_callback(on_periodic, 100)

# Timeout: fires once.
doc.add_timeout_callback(lambda: set_text(timeout_div, "timeout: fired"), 300)

# Next tick: runs as soon as the session's event loop gets to it.
doc.add_next_tick_callback(lambda: set_text(next_tick_div, "next tick: ran"))


# without_document_lock: runs without holding the document lock, so it must
# not touch models directly; it schedules a locked callback with its result.
@without_document_lock
def unlocked_work():
    result = sum(range(10))  # stands in for slow, lock-free work
    doc.add_next_tick_callback(
        partial(set_text, nolock_div, f"without_document_lock: ran ({result})"))


doc.add_next_tick_callback(unlocked_work)


# A plain thread may only reach the document through add_next_tick_callback.
def worker():
    name = threading.current_thread().name
    doc.add_next_tick_callback(partial(set_text, thread_div, f"thread: ran ({name})"))


def start_worker():
    # Started from a next-tick callback, so the session is live when the
    # thread hands its update over.
    threading.Thread(target=worker, name="callbacks-worker", daemon=True).start()


doc.add_next_tick_callback(start_worker)


# async on_click: awaits a local coroutine that needs no particular event loop,
# so it behaves the same under asyncio and under the default Twisted reactor.
async def compute_answer():
    return 42


async def on_async_click():
    answer = await compute_answer()
    async_div.text = f"async on_click: {answer}"


async_button.on_click(on_async_click)

doc.add_root(column(periodic_div, timeout_div, next_tick_div, nolock_div,
                    thread_div, async_button, async_div))
doc.title = "Callbacks"
