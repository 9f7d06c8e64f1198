"""Build docsync_bell_ext/dist/docsync_bell_ext.js from bell_button.ts with Bokeh's compiler (needs node).

    python tests/extension_package/build_bell_ext.py

The built file is committed: the tests serve an extension as installed, built.
"""

from pathlib import Path

from bokeh.models import Button
from bokeh.util.compiler import FromFile, bundle_models

PACKAGE = Path(__file__).resolve().parent / "docsync_bell_ext"


class BellButton(Button):
    """Only a carrier of the TypeScript for the compiler; the package's own class has no implementation."""

    __implementation__ = FromFile(str(PACKAGE / "bell_button.ts"))


if __name__ == "__main__":
    bundle = bundle_models([BellButton])
    (PACKAGE / "dist" / "docsync_bell_ext.js").write_text("/* built from bell_button.ts by build_bell_ext.py */\n" + bundle)
