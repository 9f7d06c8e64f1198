import {Button, ButtonView} from "models/widgets/button"

export class BellButtonView extends ButtonView {
  declare model: BellButton

  override render(): void {
    super.render()
    this.button_el.prepend("🔔 ")
  }
}

export class BellButton extends Button {
  declare __view_type__: BellButtonView

  static override __module__ = "docsync_bell_ext.models"

  static {
    this.prototype.default_view = BellButtonView
  }
}
