"""An app using a model from an installed extension package (tests/extension_package/docsync_bell_ext)."""

from bokeh.layouts import column
from bokeh.models import Div
from bokeh.plotting import curdoc
from docsync_bell_ext import BellButton

bell = BellButton(label="Ring", name="bell")
rung = Div(text="not rung", name="rung")
bell.on_click(lambda: setattr(rung, "text", "rung from Python"))
curdoc().add_root(column(bell, rung))
