"""A document of four float64 columns of 3 million values each (96 MB of buffers), and a button whose callback
gives a small source the same data (tests/e2e/test_large_documents.py)."""

import numpy as np
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, Div
from bokeh.plotting import curdoc

ROWS = 3_000_000

values = np.arange(ROWS, dtype=np.float64)
big = ColumnDataSource({name: values + i for i, name in enumerate("abcd")}, name="big")
small = ColumnDataSource({name: np.zeros(1) for name in "abcd"}, name="small")
button = Button(label="Replace")
button.on_click(lambda: setattr(small, "data", dict(big.data)))
curdoc().add_root(column(Div(text=f"{ROWS} rows", name="rows"), button))
curdoc().add_root(big)
curdoc().add_root(small)
