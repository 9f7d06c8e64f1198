"""The ``twistd docsync`` plugin.

Only a declaration: twistd and trial import every plugin module, so nothing
heavy (Bokeh, Autobahn, a reactor) may be imported here.
"""

from twisted.application.service import ServiceMaker

docsync = ServiceMaker(
    "docsync",
    "docsyncd.tap",
    "Serve Bokeh applications, synced with the browser over websockets",
    "docsync",
)
