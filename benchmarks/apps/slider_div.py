"""Round-trip app: a browser moves the Slider, Python writes the Div.

The load generator sets ``slider.value`` in a PATCH-DOC and waits for the
PATCH-DOC carrying the Div text set here, so the text names the value it saw.
"""

from bokeh.layouts import column
from bokeh.models import Div, Slider
from bokeh.plotting import curdoc

slider = Slider(start=0, end=1_000_000, value=0, step=1, title="value", name="slider")
div = Div(text="value=0", name="div")


def on_value(attr, old, new):
    div.text = f"value={new}"


slider.on_change("value", on_value)
curdoc().add_root(column(slider, div))
