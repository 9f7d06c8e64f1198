import {Div, DivView} from "models/widgets/div"

export class ShoutView extends DivView {
  declare model: Shout

  override render(): void {
    super.render()
    this.markup_el.textContent = `${this.model.text.toUpperCase()}!`
  }
}

export class Shout extends Div {
  declare __view_type__: ShoutView

  static {
    this.prototype.default_view = ShoutView
  }
}
