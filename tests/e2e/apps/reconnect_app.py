"""An app that can cut its own websockets, as a flaky network would, and counts while they are down."""

from bokeh.layouts import column
from bokeh.models import Button, Div, Slider
from bokeh.plotting import curdoc

doc = curdoc()
slider = Slider(start=0, end=100, value=0, step=1, title="value", name="slider")
ticks = Div(text="0", name="ticks")
cut = Button(label="Cut", name="cut")


def cut_connections():
    """Drop every websocket of this session without a closing handshake."""
    for connection in doc.session_context.session.connections:
        connection.transport.abortConnection()


def tick():
    ticks.text = str(int(ticks.text) + 1)


cut.on_click(cut_connections)
doc.add_periodic_callback(tick, 200)
doc.add_root(column(cut, slider, ticks))
