"""A Bokeh extension package that only the URL lookup of tests/test_extension_files.py imports."""

from bokeh.models import Div


class UnimportedExtensionDiv(Div):
    """Registers this package as an extension with Bokeh once imported."""
