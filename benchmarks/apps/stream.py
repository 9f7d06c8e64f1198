"""Fan-out app: one row streamed into a ColumnDataSource every 50 ms.

Rows are plain Python lists so every server sends them as JSON (no binary
buffers), and the rollover keeps a long run from growing the document.
"""

import itertools
import random

from bokeh.models import ColumnDataSource
from bokeh.plotting import curdoc, figure

source = ColumnDataSource(data={"x": [], "y": []}, name="source")
plot = figure(title="stream", width=400, height=300)
plot.line("x", "y", source=source)
counter = itertools.count()


def add_row():
    source.stream({"x": [next(counter)], "y": [random.random()]}, rollover=1000)


doc = curdoc()
doc.add_root(plot)
doc.add_periodic_callback(add_row, 50)
