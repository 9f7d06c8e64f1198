"""An app whose custom model's TypeScript does not compile (a type error), beside an ordinary Div."""

from bokeh.layouts import column
from bokeh.models import Div
from bokeh.plotting import curdoc


class Broken(Div):
    __implementation__ = """
import {Div, DivView} from "models/widgets/div"

export class BrokenView extends DivView {
  declare model: Broken
  override render(): void {
    super.render()
    const width: number = "not a number"
    this.markup_el.textContent = `${width}`
  }
}

export class Broken extends Div {
  static {
    this.prototype.default_view = BrokenView
  }
}
"""


curdoc().add_root(column(Div(text="plain"), Broken(text="broken")))
