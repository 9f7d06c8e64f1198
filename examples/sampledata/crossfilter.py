"""Explore the autompg cars: pick the axes, colour and origin with Select widgets.

Reads its data through ``bokeh.sampledata`` (``pip install bokeh-sampledata``).
Serve with ``twistd -n docsync --app examples/sampledata/crossfilter.py``
(or ``bokeh serve`` the same file).
"""

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Select
from bokeh.palettes import Category10
from bokeh.plotting import curdoc, figure
from bokeh.sampledata.autompg import autompg

CARS = autompg.copy()
CARS["origin"] = CARS["origin"].map({1: "North America", 2: "Europe", 3: "Asia"})
NUMERIC = ["mpg", "cyl", "displ", "hp", "weight", "accel", "yr"]
ORIGINS = ["All", *sorted(CARS["origin"].unique())]
COLOUR_BY = {"origin": ORIGINS[1:], "cyl": sorted(str(c) for c in CARS["cyl"].unique())}

x_select = Select(title="X axis", value="weight", options=NUMERIC, name="x_select")
y_select = Select(title="Y axis", value="mpg", options=NUMERIC, name="y_select")
colour_select = Select(title="Colour by", value="origin", options=list(COLOUR_BY), name="colour_select")
origin_select = Select(title="Origin", value="All", options=ORIGINS, name="origin_select")

source = ColumnDataSource(name="cars")
plot = figure(width=640, height=480, tools="pan,box_zoom,wheel_zoom,reset,hover",
              tooltips=[("car", "@name"), ("x", "@x"), ("y", "@y")], name="scatter")
plot.scatter("x", "y", source=source, size=9, alpha=0.6, color="colour", line_color="white")


def colours(values, factors):
    palette = Category10[10]
    return [palette[factors.index(str(v)) % len(palette)] for v in values]


def update(attr, old, new):
    """Filter by origin, then put the chosen columns on the axes."""
    cars = CARS if origin_select.value == "All" else CARS[CARS["origin"] == origin_select.value]
    by = colour_select.value
    source.data = {
        "x": cars[x_select.value].to_numpy(),
        "y": cars[y_select.value].to_numpy(),
        "name": cars["name"].tolist(),
        "colour": colours(cars[by], COLOUR_BY[by]),
    }
    plot.xaxis.axis_label = x_select.value
    plot.yaxis.axis_label = y_select.value
    plot.title.text = f"{len(cars)} cars: {y_select.value} against {x_select.value}"


for select in (x_select, y_select, colour_select, origin_select):
    select.on_change("value", update)
update(None, None, None)

doc = curdoc()
doc.add_root(row(column(x_select, y_select, colour_select, origin_select, width=200), plot))
doc.title = "Crossfilter: autompg"
