"""A document holding a model of an installed Bokeh extension (tests/extension_package/docsync_fake_ext)."""

from bokeh.io import curdoc
from docsync_fake_ext import FakeExtensionDiv

curdoc().add_root(FakeExtensionDiv(name="fake", text="rendered by an extension's model"))
