"""A Bokeh extension package for the tests, with a model written in TypeScript and built ahead of time.

``bell_button.ts`` is the source; ``dist/docsync_bell_ext.js`` is what Bokeh's
compiler made of it (``python tests/extension_package/build_bell_ext.py``), as
``bokeh build`` leaves an extension's ``dist/``: a server only serves it, at
``/static/extensions/docsync_bell_ext/docsync_bell_ext.js``, and runs no node.
"""

from .models import BellButton

__all__ = ["BellButton"]
