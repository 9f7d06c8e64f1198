"""A custom model: a Tally button written in TypeScript, in the app's own file.

Bokeh compiles ``__implementation__`` with node (``apt install nodejs``) when
the first page needs it; docsyncd does that once, off the reactor, and serves
every later page from its cache. Clicking the Tally counts in the browser;
the count reaches Python, whose callback writes the Div below it. Serve with
``twistd -n docsync --app examples/custom_model.py`` (or ``bokeh serve`` it).
"""

from bokeh.core.properties import Int, String
from bokeh.layouts import column
from bokeh.models import Div, Widget
from bokeh.plotting import curdoc
from bokeh.util.compiler import TypeScript

TALLY_TS = """
import {Widget, WidgetView} from "models/widgets/widget"
import type * as p from "core/properties"
import {button} from "core/dom"

export class TallyView extends WidgetView {
  declare model: Tally
  private button_el: HTMLButtonElement

  override connect_signals(): void {
    super.connect_signals()
    const {count, label} = this.model.properties
    this.on_change([count, label], () => this._update())
  }

  override render(): void {
    super.render()
    this.button_el = button({class: "tally", style: {padding: "6px 14px", font_size: "16px"}})
    this.button_el.addEventListener("click", () => { this.model.count += 1 })
    this.shadow_el.appendChild(this.button_el)
    this._update()
  }

  private _update(): void {
    this.button_el.textContent = `${this.model.label}: ${this.model.count}`
  }
}

export namespace Tally {
  export type Attrs = p.AttrsOf<Props>
  export type Props = Widget.Props & {
    count: p.Property<number>
    label: p.Property<string>
  }
}

export interface Tally extends Tally.Attrs {}

export class Tally extends Widget {
  declare properties: Tally.Props
  declare __view_type__: TallyView

  constructor(attrs?: Partial<Tally.Attrs>) {
    super(attrs)
  }

  static {
    this.prototype.default_view = TallyView
    this.define<Tally.Props>(({Int, Str}) => ({
      count: [ Int, 0 ],
      label: [ Str, "Tally" ],
    }))
  }
}
"""


class Tally(Widget):
    """A button that counts its clicks in the browser (``count``, synced to Python)."""

    __implementation__ = TypeScript(TALLY_TS)
    count = Int(default=0)
    label = String(default="Tally")


tally = Tally(label="Clicks", name="tally")
echo = Div(text="Python saw 0 clicks", name="echo")


def count_changed(attr, old, new):
    echo.text = f"Python saw {new} click{'s' if new != 1 else ''}"


tally.on_change("count", count_changed)
curdoc().add_root(column(tally, echo))
curdoc().title = "Custom model"
