"""docsyncd: Bokeh applications served by a Twisted daemon, synced with BokehJS over websockets."""

__version__ = "0.1.0"
