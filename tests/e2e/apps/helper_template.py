"""A one-file app whose page template comes from a module it imports (issue 13, item 3)."""

from bokeh.io import curdoc
from bokeh.models import Div, Slider

from banner_helper import use_banner_page

slider = Slider(start=0, end=10, value=1, name="slider")
div = Div(text="value=1", name="div")
slider.on_change("value", lambda attr, old, new: setattr(div, "text", f"value={new}"))
curdoc().add_root(slider)
curdoc().add_root(div)
use_banner_page("A banner from the helper")
