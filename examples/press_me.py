"""Press Me: every button press writes a number at a random place.

The classic Bokeh server demo, in today's Bokeh 3 API. Run it with either::

    twistd -n docsync --app examples/press_me.py
    bokeh serve examples/press_me.py

then open http://localhost:5006/press_me
"""

from random import random

from bokeh.layouts import column
from bokeh.models import Button
from bokeh.palettes import RdYlBu3
from bokeh.plotting import curdoc, figure

# A black, axis-less canvas with fixed 0..100 ranges.
p = figure(x_range=(0, 100), y_range=(0, 100), toolbar_location=None,
           background_fill_color="black", border_fill_color="black",
           outline_line_color="black", name="press_me_plot")
p.grid.grid_line_color = None
p.axis.visible = False

# Start with an empty text renderer; the callback fills it in.
r = p.text(x=[], y=[], text=[], text_color=[], text_font_size="26px",
           text_baseline="middle", text_align="center")
ds = r.data_source
ds.name = "press_me_source"

i = 0


def callback():
    """Append the next number at a random position with a random colour."""
    global i

    # Build a new dict and assign it once: one change event, one PATCH-DOC.
    new_data = dict(ds.data)
    new_data["x"] = list(ds.data["x"]) + [random() * 70 + 15]
    new_data["y"] = list(ds.data["y"]) + [random() * 70 + 15]
    new_data["text_color"] = list(ds.data["text_color"]) + [RdYlBu3[i % 3]]
    new_data["text"] = list(ds.data["text"]) + [str(i)]
    ds.data = new_data

    i = i + 1


button = Button(label="Press Me", name="press_me_button")
button.on_click(callback)

curdoc().add_root(column(button, p))
curdoc().title = "Press Me"
