from bokeh.models import Div


class Shout(Div):
    """A Div whose view (shout.ts, beside this file) shows its text in capitals with an exclamation mark."""

    __implementation__ = "shout.ts"
