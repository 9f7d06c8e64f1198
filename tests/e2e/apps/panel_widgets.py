"""Panel features on one page (tests/e2e/test_panel.py): .servable(), widgets with pn.bind and param.watch,
an async callback that awaits asyncio, periodic and onload callbacks, on_session_destroyed (each session's
id appended to the file $PANEL_DESTROYED_LOG), URL query parameters through pn.state.location and a Bokeh
figure."""

import asyncio
import os

import panel as pn
from bokeh.plotting import figure

pn.extension()

fig = figure(height=200, width=300, name="fig")
fig.line([1, 2, 3], [4, 6, 5])

slider = pn.widgets.IntSlider(name="Count", start=0, end=10, value=3)
bound = pn.pane.Markdown(pn.bind(lambda n: f"bound {n}", slider), name="bound")
watched = pn.pane.Markdown("watched 3", name="watched")
slider.param.watch(lambda event: setattr(watched, "object", f"watched {event.new}"), "value")

text = pn.widgets.TextInput(name="Text", value="")
echoed = pn.pane.Markdown("async idle", name="echoed")


async def echo(event):
    await asyncio.sleep(0.2)  # asyncio, as Panel apps do
    echoed.object = f"async {event.new}"

text.param.watch(echo, "value")

ticks = pn.pane.Markdown("ticks 0", name="ticks")
loaded = pn.pane.Markdown("not loaded", name="loaded")

state = {"ticks": 0}


def tick():
    state["ticks"] += 1
    ticks.object = f"ticks {state['ticks']}"

pn.state.add_periodic_callback(tick, period=200)
pn.state.onload(lambda: setattr(loaded, "object", "loaded"))
pn.state.location.sync(slider, {"value": "count"})


def destroyed(session_context, path=os.environ["PANEL_DESTROYED_LOG"]):
    with open(path, "a") as log:
        log.write(session_context.id + "\n")

pn.state.on_session_destroyed(destroyed)

pn.Column("# Panel features", slider, bound, watched, text, echoed, ticks, loaded,
          pn.pane.Bokeh(fig)).servable(title="Panel features")
