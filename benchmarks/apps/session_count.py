"""session_app.py, plus a line per document built: how many documents each session cost.

Every run of this script (one per document a server builds) appends
"<pid> <session id>" to the file named by $DOCSYNC_BENCH_BUILDS, which
benchmarks/servers.py sets for every server it starts.  The same count works
for docsyncd and for bokeh serve, one process or several.
"""

import os

from bokeh.layouts import column
from bokeh.models import Slider
from bokeh.plotting import curdoc, figure

plot = figure(title="session", width=400, height=300)
plot.line([1, 2, 3, 4, 5], [6, 7, 2, 4, 5])
slider = Slider(start=0, end=10, value=1, step=1, title="value", name="slider")

curdoc().add_root(column(slider, plot))

builds = os.environ.get("DOCSYNC_BENCH_BUILDS")
if builds:
    with open(builds, "a", encoding="utf-8") as f:  # one short append: atomic across processes
        f.write(f"{os.getpid()} {curdoc().session_context.id}\n")
