"""A Shout (a Div whose TypeScript view shouts its text) that a Python button callback writes to."""

from bokeh.layouts import column
from bokeh.models import Button
from bokeh.plotting import curdoc

from .models.shout import Shout

shout = Shout(text="quiet", name="shout")
button = Button(label="Say hello", name="say")
said = {"count": 0}


def say_hello():
    said["count"] += 1
    shout.text = f"hello {said['count']}"


button.on_click(say_hello)
curdoc().add_root(column(button, shout))
