"""apps/slow_click_app.py as a Panel app: Panel widgets, an on_click that blocks until the test's file exists,
and a param.watch echo (tests/e2e/test_callback_threads.py)."""

import threading

import panel as pn

from release_gate import wait_for_release

button = pn.widgets.Button(name="Slow")
slider = pn.widgets.IntSlider(name="n", start=0, end=10, value=0)
status = pn.pane.Markdown("idle")
echo = pn.pane.Markdown("none")


def clicked(event):
    status.object = f"working in {threading.current_thread().name}"
    wait_for_release()
    status.object = "done"


button.on_click(clicked)
slider.param.watch(lambda event: setattr(echo, "object", f"value {event.new}"), "value")
pn.Column(button, slider, status, echo).servable()
