"""Large-document app: a 100k-point scatter from numpy arrays.

numpy columns travel as binary buffers in PULL-DOC-REPLY, so this measures how
a server serialises and frames a big document, not JSON number formatting.
"""

import numpy as np

from bokeh.models import ColumnDataSource
from bokeh.plotting import curdoc, figure

N = 100_000
rng = np.random.default_rng(0)
source = ColumnDataSource(data={"x": rng.random(N), "y": rng.random(N)}, name="source")
plot = figure(title=f"{N} points", width=600, height=600, output_backend="webgl")
plot.scatter("x", "y", source=source, size=2)

curdoc().add_root(plot)
