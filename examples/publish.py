"""Publish a plot under a name, as ``output_server`` and ``show`` did with the old bokeh-server.

Start a server with no app (published documents go to docsync-store.sqlite,
or to the file ``--store`` names), then publish::

    twistd -n docsync --store published.sqlite
    python examples/publish.py            # publishes "line" and opens it
    python examples/publish.py waves      # under another name

The document stays on the server after the script ends, and after the server
restarts: anyone can open http://localhost:5006/?bokeh-session-id=line, drag
its slider (its value, and the title a JavaScript callback writes, are stored
too), and http://localhost:5006/ lists what is published.  Delete it with
``docsyncd.client.delete_published("line")`` or
``curl -X DELETE http://localhost:5006/published/line``.
"""

import sys

import numpy as np
from bokeh.layouts import column
from bokeh.models import CustomJS, Slider
from bokeh.plotting import figure

from docsyncd.io import output_server, show

name = sys.argv[1] if len(sys.argv) > 1 else "line"
output_server(name)  # url="default": http://localhost:5006/ (BOKEH_DEFAULT_SERVER_PORT moves it)

x = np.linspace(0, 4 * np.pi, 80)
p = figure(title=f"Published as {name!r}", height=300, name="plot")
p.line(x, np.sin(x), line_width=2, color="navy")
slider = Slider(start=1, end=10, value=2, step=1, title="Pick a number", name="slider")
slider.js_on_change("value", CustomJS(args=dict(title=p.title), code="""
    title.text = title.text.split(" (")[0] + ` (${cb_obj.value} picked in a browser)`
"""))

show(column(slider, p))  # prints "session page: URL" and opens it
