"""An app whose callbacks await asyncio, and one whose callback raises."""

import asyncio

from bokeh.layouts import column
from bokeh.models import Button, Div
from bokeh.plotting import curdoc

status = Div(text="idle", name="status")
wait = Button(label="Wait", name="wait")
fail = Button(label="Fail", name="fail")
count = Button(label="Count", name="count")
counter = Div(text="0", name="counter")


async def wait_on_asyncio():
    await asyncio.sleep(0.05)
    status.text = "slept with asyncio"


def raise_on_purpose():
    raise ValueError("raised on purpose by asyncio_app")


def count_up():
    counter.text = str(int(counter.text) + 1)


wait.on_click(wait_on_asyncio)
fail.on_click(raise_on_purpose)
count.on_click(count_up)
curdoc().add_root(column(wait, fail, count, status, counter))
