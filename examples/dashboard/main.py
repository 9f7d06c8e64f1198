"""Dashboard: a directory app with data, theme, template, static files and hooks.

Layout::

    dashboard/
      main.py              this file: builds the document
      server_lifecycle.py  on_server_loaded/unloaded, on_session_created/destroyed
      theme.yaml           Plot and Title styling
      templates/index.html extends Bokeh's page and links static/style.css
      static/              style.css, logo.svg (served at /dashboard/static/)
      data/points.csv      the data plotted here

Run it with either::

    twistd -n docsync --app examples/dashboard
    bokeh serve examples/dashboard

then open http://localhost:5006/dashboard (optionally ?title=Hello).
Set DASHBOARD_HOOK_LOG=/some/file to get one line per lifecycle hook call.
"""

import csv
import html
import os

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import curdoc, figure

DATA = os.path.join(os.path.dirname(__file__), "data", "points.csv")

with open(DATA, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))

xs = [float(r["x"]) for r in rows]
base_ys = [float(r["y"]) for r in rows]
labels = [r["label"] for r in rows]

doc = curdoc()
ctx = doc.session_context  # None when run outside a server (e.g. `bokeh json`)

# ?title=... on the page URL; request arguments are lists of bytes.
title = "Dashboard"
if ctx is not None and ctx.request is not None:
    values = ctx.request.arguments.get("title")
    if values:
        title = values[0].decode("utf-8") if isinstance(values[0], bytes) else str(values[0])

# Attributes set by server_lifecycle.py on the shared server context.
server_info = "no server context"
if ctx is not None:
    sc = ctx.server_context
    server_info = (f"server started: {getattr(sc, 'started', False)}, "
                   f"sessions created: {getattr(sc, 'sessions_created', 0)}")

source = ColumnDataSource(data=dict(x=xs, y=list(base_ys), label=labels),
                          name="dashboard_source")

p = figure(title=title, height=320, width=600, name="dashboard_plot",
           tools="pan,wheel_zoom,reset")
p.line("x", "y", source=source, line_width=2)
p.scatter("x", "y", source=source, size=8)

peak = max(range(len(rows)), key=lambda k: base_ys[k])
heading = Div(text=f"<h2>{html.escape(title)}</h2>", name="dashboard_title")
info = Div(text=(f"{len(rows)} points from points.csv; "
                 f"peak {labels[peak]} at y={base_ys[peak]:g}"),
           name="dashboard_info")
server_div = Div(text=server_info, name="dashboard_server_info")
scale_div = Div(text="scale: 1", name="dashboard_div")
slider = Slider(start=1, end=10, value=1, step=1, title="Scale",
                name="dashboard_slider")


def on_scale(attr, old, new):
    """Rescale the curve and report the value back from Python."""
    source.data = dict(source.data, y=[y * new for y in base_ys])
    scale_div.text = f"scale: {new}"


slider.on_change("value", on_scale)

doc.add_root(column(heading, info, server_div, slider, scale_div, p,
                    name="dashboard_layout"))
doc.title = title
