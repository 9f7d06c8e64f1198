"""Two stocks side by side: linked price charts and a scatter of daily returns.

The two price charts share their x range, so panning or zooming one moves
the other; the returns scatter and the charts share one source, so a
selection in one shows in all, and Python reports the selection's figures.
Select widgets choose the two tickers. Reads its data through
``bokeh.sampledata`` (``pip install bokeh-sampledata``). Serve with
``twistd -n docsync --app examples/sampledata/stocks.py``.
"""

import numpy as np
import pandas as pd

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, Select
from bokeh.plotting import curdoc, figure
from bokeh.sampledata import stocks

TICKERS = ["AAPL", "GOOG", "IBM", "MSFT"]


def prices(ticker: str) -> pd.Series:
    data = getattr(stocks, ticker)
    return pd.Series(data["adj_close"], index=pd.to_datetime(data["date"]), name=ticker)


def pair_data(first: str, second: str) -> dict:
    """Both tickers' prices and daily returns (percent) on the days both traded."""
    both = pd.concat([prices(first), prices(second)], axis=1, join="inner").sort_index()
    returns = both.pct_change().fillna(0) * 100
    return {"date": both.index.to_numpy(), "p1": both[first].to_numpy(), "p2": both[second].to_numpy(),
            "r1": returns[first].to_numpy(), "r2": returns[second].to_numpy()}


first = Select(title="Stock 1", value="AAPL", options=TICKERS, name="first")
second = Select(title="Stock 2", value="GOOG", options=TICKERS, name="second")
source = ColumnDataSource(pair_data(first.value, second.value), name="pair")
stats = Div(name="stats", width=300)

tools = "pan,wheel_zoom,xbox_select,reset"
chart1 = figure(width=600, height=200, x_axis_type="datetime", tools=tools, active_drag="xbox_select", name="chart1")
chart2 = figure(width=600, height=200, x_axis_type="datetime", tools=tools, active_drag="xbox_select",
                x_range=chart1.x_range, name="chart2")
for chart, price in ((chart1, "p1"), (chart2, "p2")):
    chart.line("date", price, source=source)
    chart.scatter("date", price, source=source, size=2, color=None, selection_color="orange")
scatter = figure(width=350, height=350, tools="pan,wheel_zoom,box_select,lasso_select,reset", name="returns")
scatter.scatter("r1", "r2", source=source, size=3, selection_color="orange", nonselection_alpha=0.1)


def describe(indices: list[int]) -> None:
    """Correlation of the returns over the selected days (all days when nothing is selected)."""
    chosen = indices or list(range(len(source.data["r1"])))
    r1, r2 = np.asarray(source.data["r1"])[chosen], np.asarray(source.data["r2"])[chosen]
    correlation = float(np.corrcoef(r1, r2)[0, 1]) if len(chosen) > 1 else float("nan")
    stats.text = f"{first.value} / {second.value}: {len(chosen)} days, correlation {correlation:.3f}"


def tickers_changed(attr, old, new):
    source.data = pair_data(first.value, second.value)
    source.selected.indices = []
    for chart, ticker in ((chart1, first.value), (chart2, second.value)):
        chart.title.text = ticker
    scatter.xaxis.axis_label, scatter.yaxis.axis_label = f"{first.value} returns %", f"{second.value} returns %"
    describe([])


first.on_change("value", tickers_changed)
second.on_change("value", tickers_changed)
source.selected.on_change("indices", lambda attr, old, new: describe(new))
tickers_changed(None, None, None)

doc = curdoc()
doc.add_root(row(column(first, second, stats), column(chart1, chart2), scatter))
doc.title = "Stocks: linked charts"
