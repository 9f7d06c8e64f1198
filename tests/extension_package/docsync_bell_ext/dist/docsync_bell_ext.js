/* built from bell_button.ts by build_bell_ext.py */
(function(root, factory) {
    factory(root["Bokeh"]);
})(this, function(Bokeh) {
  let define;
  return (function outer(modules, entry) {
  if (Bokeh != null) {
    return Bokeh.register_plugin(modules, entry);
  } else {
    throw new Error("Cannot find Bokeh. You have to load it prior to loading plugins.");
  }
})
({
  "custom/main": function(require, module, exports) {
    const models = {
      "BellButton": require("custom/bell_button").BellButton
    };
    require("base").register_models(models);
    module.exports = models;
  },
  "custom/bell_button": function(require, module, exports) {
"use strict";
var _a;
Object.defineProperty(exports, "__esModule", { value: true });
exports.BellButton = exports.BellButtonView = void 0;
const button_1 = require("models/widgets/button");
class BellButtonView extends button_1.ButtonView {
    render() {
        super.render();
        this.button_el.prepend("🔔 ");
    }
}
exports.BellButtonView = BellButtonView;
BellButtonView.__name__ = "BellButtonView";
class BellButton extends button_1.Button {
}
exports.BellButton = BellButton;
_a = BellButton;
BellButton.__name__ = "BellButton";
BellButton.__module__ = "docsync_bell_ext.models";
(() => {
    _a.prototype.default_view = BellButtonView;
})();
//# sourceMappingURL=bell_button.js.map
}
}, "custom/main");
;
});
