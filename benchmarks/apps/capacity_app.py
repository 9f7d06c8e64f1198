"""Capacity app: what one user of a typical dashboard makes the server do.

Each session has a Slider whose ``on_change`` writes a Div (the user's round
trip), a line chart that gets 10 rows streamed every 100 ms, and a Button
whose sync ``on_click`` callback takes 100 ms before it writes a second Div.
How the click spends its 100 ms is chosen per session by the page's query
argument ``click`` (``benchmarks/capacity.py`` sets it):

- ``sleep`` (default): ``time.sleep(0.1)``, like waiting on a database;
- ``numpy``: 100 ms of this thread's CPU spent sorting random arrays, like a
  pandas group-by or a model fit.

Rows are plain Python lists (JSON on the wire for both servers) and the
rollover keeps a long run from growing the document.
"""

import itertools
import random
import time

import numpy as np
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, Div, Slider
from bokeh.plotting import curdoc, figure

#: what a click costs, in seconds (wall time for ``sleep``, thread CPU time for ``numpy``)
CLICK_SECONDS = 0.1
ROWS_PER_TICK = 10
TICK_MS = 100


def sleep_work():
    time.sleep(CLICK_SECONDS)


def numpy_work():
    """Sort 10⁵ random floats until this thread has spent CLICK_SECONDS of CPU (about 8 ms a sort)."""
    rng = np.random.default_rng()
    done = time.thread_time() + CLICK_SECONDS
    while time.thread_time() < done:
        np.sort(rng.random(100_000))


WORK = {"sleep": sleep_work, "numpy": numpy_work}

doc = curdoc()
arguments = doc.session_context.request.arguments if doc.session_context else {}
work = WORK[arguments.get("click", [b"sleep"])[0].decode()]

slider = Slider(start=0, end=1_000_000, value=0, step=1, title="value", name="slider")
div = Div(text="value=0", name="div")
button = Button(label="compute", name="button")
status = Div(text="clicks=0", name="status")
source = ColumnDataSource(data={"x": [], "y": []}, name="source")
plot = figure(title="stream", width=400, height=200)
plot.line("x", "y", source=source)
counter = itertools.count()
clicks = itertools.count(1)


def on_value(attr, old, new):
    div.text = f"value={new}"


def on_click():
    work()
    status.text = f"clicks={next(clicks)}"


def add_rows():
    xs = [next(counter) for _ in range(ROWS_PER_TICK)]
    source.stream({"x": xs, "y": [random.random() for _ in xs]}, rollover=1000)


slider.on_change("value", on_value)
button.on_click(on_click)
doc.add_root(column(slider, div, button, status, plot))
doc.add_periodic_callback(add_rows, TICK_MS)
