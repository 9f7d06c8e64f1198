from bokeh.models import Div


class FakeExtensionDiv(Div):
    """A Div whose class makes Bokeh bundle this package's dist/docsync_fake_ext.min.js."""
