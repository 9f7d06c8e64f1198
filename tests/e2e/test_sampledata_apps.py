"""Apps that read bokeh.sampledata (examples/sampledata/), driven in Chromium as a user would.

The data comes from the bokeh-sampledata package (test extras): nothing is
downloaded. Each test also runs against bokeh serve (--e2e-server=bokeh), the
reference for how these ordinary Bokeh apps behave.
"""

from __future__ import annotations

import math
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def canvas_box(page, index: int) -> dict:
    """The bounding box of the ``index``-th plot canvas on the page (canvases live in shadow DOM)."""
    box = page.locator("canvas").nth(index).bounding_box()
    assert box is not None, "no such canvas"
    return box


def same_numbers(left, right) -> bool:
    """Whether two float sequences agree, NaN matching NaN."""
    return len(left) == len(right) and all(
        (math.isnan(a) and math.isnan(b)) if (a is None or b is None or math.isnan(a) or math.isnan(b))
        else math.isclose(a, b) for a, b in zip((math.nan if v is None else v for v in left),
                                                  (math.nan if v is None else v for v in right)))


def test_crossfilter_selects_axes_and_filters_origin(module_serve, page):
    """autompg crossfilter: choosing an axis column and an origin in the Select widgets re-plots from Python."""
    from bokeh.sampledata.autompg import autompg

    server = module_serve("sampledata/crossfilter.py")
    page.open(server.app_url())
    assert page.length("cars") == len(autompg)

    page.get_by_role("combobox", name="X axis").select_option("hp")
    page.wait_for(lambda: page.js("return e2e.model('scatter').title.text;") == f"{len(autompg)} cars: mpg against hp",
                  message="the title for hp")
    assert page.column("cars", "x") == autompg["hp"].tolist()

    page.get_by_role("combobox", name="Origin").select_option("Europe")
    europe = autompg[autompg["origin"] == 2]
    page.wait_for(lambda: page.length("cars") == len(europe), message=f"{len(europe)} European cars")
    assert page.column("cars", "y") == europe["mpg"].tolist()

    page.get_by_role("combobox", name="Colour by").select_option("cyl")
    page.wait_for(lambda: len(set(page.column("cars", "colour"))) == europe["cyl"].nunique(),
                  message="one colour per cylinder count")


def test_gapminder_slider_and_play_animation(module_serve, page):
    """Gapminder: the year Slider (moved by keyboard) shows that year's data; Play advances it with a periodic
    callback until Pause."""
    from bokeh.sampledata import gapminder

    server = module_serve("sampledata/gapminder.py")
    page.open(server.app_url())
    assert page.get("year_label", "text") == "1964"

    page.get_by_role("slider").first.press("ArrowRight")
    page.wait_for_prop("year_label", "text", "1965")
    assert page.get("year", "value") == 1965
    assert same_numbers(page.column("countries", "life"), gapminder.life_expectancy["1965"].tolist())

    page.get_by_role("button", name="Play").click()
    page.wait_for(lambda: page.get("year", "value") >= 1968, message="the animation to pass 1968")
    assert page.get("play", "label") == "❚❚ Pause"
    page.get_by_role("button", name="Pause").click()
    page.wait_for_prop("play", "label", "► Play")
    stopped = page.get("year", "value")
    time.sleep(0.6)  # three animation steps, had it gone on
    assert page.get("year", "value") == stopped
    page.wait_for_prop("year_label", "text", str(stopped))
    assert same_numbers(page.column("countries", "fertility"), gapminder.fertility[str(stopped)].tolist())


def test_stocks_linked_charts_selection_and_tickers(module_serve, page):
    """Stocks: the charts share one x range; a box selection dragged on a chart reaches Python, which reports
    the selected days; a Select changes the ticker pair."""
    server = module_serve("sampledata/stocks.py")
    page.open(server.app_url())
    days = page.length("pair")
    assert page.get("stats", "text").startswith(f"AAPL / GOOG: {days} days, correlation ")
    assert page.js("return e2e.model('chart1').x_range === e2e.model('chart2').x_range;")

    box = canvas_box(page, 0)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    page.wait_for(lambda: 0 < len(page.js("return e2e.model('pair').selected.indices;")) < days,
                  message="a selection of some days")
    selected = len(page.js("return e2e.model('pair').selected.indices;"))
    page.wait_for_prop("stats", "text", lambda text: text.startswith(f"AAPL / GOOG: {selected} days"))

    page.get_by_role("combobox", name="Stock 2").select_option("MSFT")
    page.wait_for_prop("stats", "text", lambda text: text.startswith("AAPL / MSFT: "))
    assert page.js("return e2e.model('pair').selected.indices.length;") == 0
    assert page.get("stats", "text").startswith(f"AAPL / MSFT: {page.length('pair')} days")
