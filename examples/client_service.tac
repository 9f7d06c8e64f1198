"""docsyncd.client's Deferred face: a Twisted service that holds a session.

A twistd application (not a plain script): the reactor runs, so the session's
calls return Deferreds, awaited here.  Start a server, then this service::

    twistd -n docsync --store published.sqlite
    twistd -n --pidfile= -y examples/client_service.tac

It publishes a clock as "clock" (open http://localhost:5006/?bokeh-session-id=clock),
ticks it every second from a periodic callback on the client's document, and
reconnects (pushing the clock again) if the server restarts.  SIGTERM closes
the session and stops.
"""

import time

from bokeh.document import Document
from bokeh.models import Div
from twisted.application.service import Application, Service
from twisted.internet import defer
from twisted.logger import Logger

import docsyncd.client


class ClockService(Service):
    log = Logger()

    def __init__(self, name, url="default"):
        self.doc_name = name
        self.url = url
        self.session = None

    def startService(self):
        super().startService()
        self._starting = defer.ensureDeferred(self._publish())
        self._starting.addErrback(lambda f: self.log.failure("could not publish {name}", f, name=self.doc_name))

    async def _publish(self):
        doc = Document()
        div = Div(text="starting", name="clock", styles={"font-size": "48px"})
        doc.add_root(div)

        def tick():
            div.text = time.strftime("%H:%M:%S")

        doc.add_periodic_callback(tick, 1000)
        self.session = await docsyncd.client.push(doc, session_id=self.doc_name, url=self.url, reconnect=True)
        self.log.info("published at {url}", url=self.session.page_url)

    def stopService(self):
        super().stopService()
        return self.session.close() if self.session is not None else None


application = Application("docsync-clock")
ClockService("clock").setServiceParent(application)
