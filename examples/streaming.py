"""Streaming: a random walk appended every 100 ms, keeping the last 50 points.

Every tick streams one point with ``rollover=50``; every fifth tick patches the
new point's colour, so both ``ColumnsStreamed`` and ``ColumnsPatched`` events
reach the browser. Run it with either::

    twistd -n docsync --app examples/streaming.py
    bokeh serve examples/streaming.py

then open http://localhost:5006/streaming
"""

from random import choice, gauss

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.plotting import curdoc, figure

ROLLOVER = 50
COLORS = ["firebrick", "olive", "teal", "orange"]  # patched colours; streamed points are navy

source = ColumnDataSource(data=dict(t=[], y=[], color=[]), name="streaming_source")
status = Div(text="ticks: 0, patches: 0", name="streaming_status")

p = figure(height=300, sizing_mode="stretch_width", title="Random walk",
           name="streaming_plot")
p.line("t", "y", source=source, line_color="gray")
p.scatter("t", "y", source=source, color="color", size=6)

state = dict(tick=0, y=0.0, patches=0)


def update():
    """Stream one new point (rolling over at 50) and patch every fifth tick."""
    state["tick"] += 1
    state["y"] += gauss(0, 1)
    source.stream(dict(t=[state["tick"]], y=[state["y"]], color=["navy"]),
                  rollover=ROLLOVER)

    if state["tick"] % 5 == 0:
        # Recolour the point just streamed: every fifth point is not navy.
        newest = len(source.data["t"]) - 1
        source.patch(dict(color=[(newest, choice(COLORS))]))
        state["patches"] += 1

    status.text = f"ticks: {state['tick']}, patches: {state['patches']}"


curdoc().add_periodic_callback(update, 100)
curdoc().add_root(column(status, p, sizing_mode="stretch_width"))
curdoc().title = "Streaming"
