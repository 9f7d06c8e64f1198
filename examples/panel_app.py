"""A Panel (HoloViz) app, unchanged from what `panel serve` runs.

    twistd -n docsync --app examples/panel_app.py              # http://localhost:5006/panel_app
    panel serve examples/panel_app.py                          # the same app on Panel's server

A template with a sidebar, widgets whose callbacks (pn.bind, an async one) redraw a Bokeh figure and a
Markdown pane, the slider mirrored in the URL (?frequency=3), and a greeting when the page has loaded.
"""

import asyncio

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

pn.extension(notifications=True)

frequency = pn.widgets.IntSlider(name="Frequency", start=1, end=10, value=2)
phase = pn.widgets.FloatSlider(name="Phase", start=0, end=np.pi, value=0, step=0.1)
smooth = pn.widgets.Button(name="Smooth it (slowly)", button_type="primary")

xs = np.linspace(0, 2 * np.pi, 200)
source = ColumnDataSource({"x": xs, "y": np.sin(2 * xs)})
plot = figure(height=300, sizing_mode="stretch_width", title="A wave")
plot.line("x", "y", source=source, line_width=2)


def redraw(frequency, phase):
    source.data = {"x": xs, "y": np.sin(frequency * xs + phase)}
    return f"**y = sin({frequency} x + {phase:.1f})**"


async def smoothen(event):
    await asyncio.sleep(0.5)  # stands for slow work: the page stays live meanwhile
    source.data = {"x": xs, "y": np.convolve(source.data["y"], np.ones(15) / 15, mode="same")}
    pn.state.notifications.info("Smoothed", duration=2000)

smooth.on_click(smoothen)
pn.state.location.sync(frequency, {"value": "frequency"})
pn.state.onload(lambda: pn.state.notifications.success("Welcome", duration=2000))

template = pn.template.FastListTemplate(title="docsyncd: a Panel app", sidebar=[frequency, phase, smooth])
template.main.append(pn.Column(pn.pane.Markdown(pn.bind(redraw, frequency, phase)), pn.pane.Bokeh(plot)))
template.servable()
