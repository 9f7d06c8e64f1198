"""A Bokeh extension package for the tests: ``bokeh.ext.json`` and a built ``dist/``, as ``bokeh build`` leaves them.

Its one model is BokehJS's Div under the extension's name; the script
registers it and counts its loads in ``window.docsync_fake_ext_loaded``.
"""

from .models import FakeExtensionDiv

__all__ = ["FakeExtensionDiv"]
