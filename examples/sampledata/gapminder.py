"""Fertility against life expectancy, country by country, 1964 to 2013.

A Slider picks the year; Play advances it with a periodic callback until
Pause. Bubbles are sized by population and coloured by region. Reads its data
through ``bokeh.sampledata`` (``pip install bokeh-sampledata``). Serve with
``twistd -n docsync --app examples/sampledata/gapminder.py``.
"""

import numpy as np

from bokeh.layouts import column, row
from bokeh.models import Button, CategoricalColorMapper, ColumnDataSource, Label, Slider
from bokeh.palettes import Spectral6
from bokeh.plotting import curdoc, figure
from bokeh.sampledata import gapminder

FERTILITY, LIFE, POPULATION = gapminder.fertility, gapminder.life_expectancy, gapminder.population
REGIONS = gapminder.regions["Group"].reindex(FERTILITY.index)
YEARS = [int(year) for year in FERTILITY.columns]
STEP_MS = 200


def year_data(year: int) -> dict:
    column = str(year)
    population = POPULATION[column].to_numpy(dtype=float)
    return {
        "country": FERTILITY.index.tolist(),
        "fertility": FERTILITY[column].to_numpy(dtype=float),
        "life": LIFE[column].to_numpy(dtype=float),
        "size": np.sqrt(np.nan_to_num(population) / np.pi) / 200 + 3,
        "region": REGIONS.tolist(),
    }


source = ColumnDataSource(year_data(YEARS[0]), name="countries")
plot = figure(width=720, height=480, x_range=(1, 9), y_range=(20, 90), name="bubbles",
              x_axis_label="children per woman", y_axis_label="life expectancy (years)",
              tooltips=[("country", "@country"), ("region", "@region")])
year_label = Label(x=1.3, y=22, text=str(YEARS[0]), text_font_size="80px", text_color="#dddddd", name="year_label")
plot.add_layout(year_label)
regions = sorted(set(REGIONS.dropna()))
plot.scatter("fertility", "life", size="size", source=source, alpha=0.8, line_color="#7c7e71",
             fill_color={"field": "region", "transform": CategoricalColorMapper(factors=regions, palette=Spectral6)},
             legend_field="region")
plot.legend.location = "bottom_left"

slider = Slider(start=YEARS[0], end=YEARS[-1], value=YEARS[0], step=1, title="Year", name="year")
play = Button(label="► Play", width=80, name="play")
doc = curdoc()
playing = {}


def show_year(attr, old, new):
    source.data = year_data(new)
    year_label.text = str(new)


def advance():
    slider.value = slider.value + 1 if slider.value < YEARS[-1] else YEARS[0]


def toggle():
    if "callback" in playing:
        doc.remove_periodic_callback(playing.pop("callback"))
        play.label = "► Play"
    else:
        playing["callback"] = doc.add_periodic_callback(advance, STEP_MS)
        play.label = "❚❚ Pause"


slider.on_change("value", show_year)
play.on_click(toggle)
doc.add_root(column(plot, row(slider, play)))
doc.title = "Gapminder"
