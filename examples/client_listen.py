"""A slider in the browser, its callback in this script: browsers' changes reach the client.

Start a server with no app, then run this script::

    twistd -n docsync
    python examples/client_listen.py

It pushes a slider and a Div and opens them in a browser.  Drag the slider:
the script prints each value from its own ``on_change`` callback, which also
writes it into the Div, and every browser on the session shows that.  Ctrl-C
stops it.
"""

from bokeh.layouts import column
from bokeh.models import Div, Slider
from bokeh.plotting import curdoc

from docsyncd.client import push_session

slider = Slider(start=0, end=10, value=1, step=1, title="Drag me", name="slider")
div = Div(text="Nothing yet: drag the slider.", name="div")


def changed(attr, old, new):
    print(f"slider value {new}", flush=True)
    div.text = f"the script saw {new}"


slider.on_change("value", changed)
curdoc().add_root(column(slider, div))

session = push_session(curdoc())
session.show()
print(f"showing {session.page_url}", flush=True)
session.loop_until_closed()
