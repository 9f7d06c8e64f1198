"""A slow sync click callback next to a fast round trip (tests/e2e/test_callback_threads.py).

The button's callback says "working", then blocks until the file named by
SLOW_CLICK_RELEASE exists (the test creates it), then says "done": a slow
database query, without a clock in the test.  The slider's on_change writes
its value into the "echo" Div: the round trip other users make meanwhile.
"""

import os
import threading
import time
from pathlib import Path

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, Div, Slider

RELEASE = Path(os.environ["SLOW_CLICK_RELEASE"])

button = Button(label="Slow", name="button")
slider = Slider(start=0, end=10, value=0, step=1, name="slider")
status = Div(text="idle", name="status")
echo = Div(text="none", name="echo")


def clicked():
    status.text = f"working in {threading.current_thread().name}"
    deadline = time.monotonic() + 60
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    status.text = "done"


def moved(attr, old, new):
    echo.text = f"value {new}"


button.on_click(clicked)
slider.on_change("value", moved)
curdoc().add_root(column(button, slider, status, echo))
