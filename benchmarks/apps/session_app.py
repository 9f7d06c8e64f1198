"""Session-open app: a small figure and a slider, the typical first page.

Kept small on purpose: the session-open scenario measures what a server spends
per visitor beyond running the app, so the app itself should not dominate.
"""

from bokeh.layouts import column
from bokeh.models import Slider
from bokeh.plotting import curdoc, figure

plot = figure(title="session", width=400, height=300)
plot.line([1, 2, 3, 4, 5], [6, 7, 2, 4, 5])
slider = Slider(start=0, end=10, value=1, step=1, title="value", name="slider")

curdoc().add_root(column(slider, plot))
