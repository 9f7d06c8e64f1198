"""A Panel template with data apps (tests/e2e/test_panel.py): FastListTemplate with a sidebar and a main
area holding a Tabulator whose edits reach Python, an hvPlot plot and a HoloViews DynamicMap whose RangeXY
stream makes Python recompute when the browser zooms."""

import holoviews as hv
import hvplot.pandas  # noqa: F401  (registers DataFrame.hvplot)
import numpy as np
import pandas as pd
import panel as pn

pn.extension("tabulator")

frame = pd.DataFrame({"name": ["a", "b", "c"], "value": [1, 2, 3]})
table = pn.widgets.Tabulator(frame, name="table")
edits = pn.pane.Markdown("no edit", name="edits")


def edited(event):
    edits.object = f"edited {event.column} row {event.row}: {event.value}"

table.on_edit(edited)

ranges = pn.pane.Markdown("ranges none", name="ranges")


def curve(x_range, y_range):
    low, high = x_range or (0, 10)
    ranges.object = f"x_range {low:.1f} {high:.1f}"
    xs = np.linspace(low, high, 50)
    return hv.Curve((xs, np.sin(xs)), "t", "sin").opts(width=350, height=220, title="dynamic", framewise=True)

dynamic = hv.DynamicMap(curve, streams=[hv.streams.RangeXY()])
waves = pd.DataFrame({"x": np.arange(10), "y": np.arange(10) ** 2}).hvplot.line(x="x", y="y", width=300, height=200)
slider = pn.widgets.IntSlider(name="Rows", start=1, end=3, value=3)
shown = pn.pane.Markdown(pn.bind(lambda n: f"rows {n}", slider))

template = pn.template.FastListTemplate(title="Panel template app", sidebar=[slider, shown])
template.main.append(pn.Column(table, edits, pn.pane.HoloViews(dynamic), ranges, pn.pane.HoloViews(waves)))
template.servable()
