"""Slider → Div, plus the pid of the process that built the document (tests/e2e/test_worker_processes.py).

Moving the slider (from a browser or a PATCH-DOC) makes Python write
``value=N`` into the Div, so a client sees the round trip through the one
document of its session; ``pid`` tells which worker process holds it.
"""

import os

from bokeh.layouts import column
from bokeh.models import Div, Slider
from bokeh.plotting import curdoc

slider = Slider(start=0, end=1_000_000, value=0, step=1, title="value", name="slider")
div = Div(text="value=0", name="div")
pid = Div(text=str(os.getpid()), name="pid")


def on_value(attr, old, new):
    div.text = f"value={new}"


slider.on_change("value", on_value)
curdoc().add_root(column(slider, div, pid))
