from bokeh.models import Button


class BellButton(Button):
    """A Button whose view (bell_button.ts, built into dist/) rings: it puts a bell before its label."""
