"""The app of issue 11: a click schedules a coroutine that awaits asyncio, then edits the document.

Runs unchanged under `bokeh serve` (Tornado's asyncio loop) and `twistd -n docsync`.
"""

import asyncio

from bokeh.layouts import column
from bokeh.models import Button, Div
from bokeh.plotting import curdoc

doc = curdoc()
status = Div(text="idle", name="status")
button = Button(label="Sleep", name="sleep")


async def sleep_then_update():
    await asyncio.sleep(0.3)
    status.text = f"slept on {type(asyncio.get_running_loop()).__name__}"


def on_click():
    status.text = "sleeping"
    doc.add_next_tick_callback(sleep_then_update)


button.on_click(on_click)
doc.add_root(column(button, status))
