"""Shows the request the session was made from: its query arguments and cookies (tests/e2e/test_request_inputs.py)."""

from bokeh.models import Div
from bokeh.plotting import curdoc

request = curdoc().session_context.request
curdoc().add_root(Div(name="request", text=repr({"arguments": request.arguments, "cookies": request.cookies})))
