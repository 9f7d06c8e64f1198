"""apps/slow_click_app.py as a Panel app: Panel widgets, an on_click that blocks until the test's file exists,
and a param.watch echo (tests/e2e/test_callback_threads.py)."""

import os
import threading
import time
from pathlib import Path

import panel as pn

RELEASE = Path(os.environ["SLOW_CLICK_RELEASE"])

button = pn.widgets.Button(name="Slow")
slider = pn.widgets.IntSlider(name="n", start=0, end=10, value=0)
status = pn.pane.Markdown("idle")
echo = pn.pane.Markdown("none")


def clicked(event):
    status.object = f"working in {threading.current_thread().name}"
    deadline = time.monotonic() + 60
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    status.object = "done"


button.on_click(clicked)
slider.param.watch(lambda event: setattr(echo, "object", f"value {event.new}"), "value")
pn.Column(button, slider, status, echo).servable()
