"""A slow sync click callback next to a fast round trip (tests/e2e/test_callback_threads.py).

The button's callback says "working", then blocks until the file named by
SLOW_CLICK_RELEASE exists (release_gate.py), then says "done".  The slider's on_change writes
its value into the "echo" Div: the round trip other users make meanwhile.
"""

import threading

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, Div, Slider

from release_gate import wait_for_release

button = Button(label="Slow", name="button")
slider = Slider(start=0, end=10, value=0, step=1, name="slider")
status = Div(text="idle", name="status")
echo = Div(text="none", name="echo")


def clicked():
    status.text = f"working in {threading.current_thread().name}"
    wait_for_release()
    status.text = "done"


def moved(attr, old, new):
    echo.text = f"value {new}"


button.on_click(clicked)
slider.on_change("value", moved)
curdoc().add_root(column(button, slider, status, echo))
