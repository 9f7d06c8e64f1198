"""Panel apps served as ``panel serve`` serves them.

``panel serve`` is bokeh serve with two Panel pieces, and a Panel app needs
both; ``bokeh serve app.py`` has neither, so there ``pn.state.onload``
callbacks never run, notifications break the whole page (Notyf is not
loaded) and every widget asks Panel's CDN for its stylesheet:

- the application is ``panel.io.application.Application``, a subclass of
  Bokeh's whose hooks run Panel's session-created callbacks
  (``pn.state.on_session_created``, session info), set each document's URL
  prefix and template, fire ``pn.state.onload`` on BokehJS's
  ``document_ready`` event and clean Panel's state up when a session ends;
- the page is ``panel.io.server.server_html_page_for_session``: Panel's
  bundle (with its ReactiveHTML components' scripts, such as Notyf), its
  stylesheets served locally from ``/static/extensions/panel/`` and its
  loading spinner.

docsyncd cannot know an app uses Panel before running it (it may import
Panel from a helper module), so ``SessionManager`` looks at each document it
builds: the first whose roots are Panel models makes the app a Panel app
(``panel_application``): its session is built again under Panel's
Application, and so is every later one; ``--num-threads`` becomes Panel's
``nthreads``, as under ``panel serve --num-threads``.  A Panel document's page needs the
document, so under ``--lazy-documents`` such pages are eager
(``sessions.sets_page_template``).

Tests: tests/test_lazy.py (Panel's templates and pages); tests/e2e/test_panel.py
"""

from __future__ import annotations

import sys
from typing import Any

from bokeh.application import Application
from bokeh.document import Document
from bokeh.resources import Resources


def is_panel_document(doc: Document) -> bool:
    """Whether a root of ``doc`` is one of Panel's models (``.servable()``, templates, ``server_doc``)."""
    if "panel" not in sys.modules:
        return False
    return any(type(root).__module__.startswith("panel.") for root in doc.roots)


def is_panel_application(application: Application) -> bool:
    return "panel" in sys.modules and isinstance(application, _panel_application_class())


def _panel_application_class() -> type[Application]:
    from panel.io.application import Application as PanelApplication

    return PanelApplication


def panel_application(application: Application, num_threads: int = 0) -> Application:
    """``application``'s handlers (and metadata) in Panel's Application, as ``panel serve`` builds it.

    ``num_threads`` (``--num-threads``) is also Panel's: ``panel serve --num-threads N``
    sets ``pn.config.nthreads``, and Panel then runs the callbacks of its
    widgets (``pn.bind``, ``param.watch``, ``on_click``) in a pool of its own
    instead of as coroutines on the event loop.  0 leaves Panel's setting as
    it is; an app that sets ``pn.config.nthreads`` itself has the last word.
    """
    from panel.io.document import extra_socket_handlers

    if num_threads:
        from panel import config

        config.nthreads = num_threads

    extra_socket_handlers[SessionWriter] = SessionWriter.write
    return _panel_application_class()(*application.handlers, metadata=application.metadata)


class SessionWriter:
    """What Panel takes for a session's connections when it writes held events itself.

    Panel's ``unlocked()`` (periodic callbacks, ``pn.io.unlocked``, much of its
    own code) holds the document's events, then writes them to Bokeh's
    ``ServerSession._subscribed_connections`` directly, through a handler per
    socket type (``panel.io.document.extra_socket_handlers``).  docsyncd hands
    it one ``SessionWriter`` per session (``ServerSession._subscribed_connections``),
    which gives the events to the session's own fan-out: each reaches every
    connection once, without echoing a client's own change.
    """

    def __init__(self, session: Any):
        self.session = session
        self._socket = self  # Panel picks the handler by type(conn._socket)
        from .wire import PROTOCOL

        self.protocol = PROTOCOL

    @staticmethod
    def write(writer: SessionWriter, events: list[Any] | None = None, msg: Any = None) -> list[Any]:
        """Send ``events`` (or a ready PATCH-DOC ``msg``) to the session's connections; no futures to wait for."""
        if events is not None:
            for event in events:
                writer.session._document_patched(event)
        if msg is not None:
            writer.session.send_message(msg)
        return []


def panel_page(session: Any, resources: Resources) -> str:
    """The HTML page ``panel serve`` renders for ``session`` (its ``document`` and ``token``)."""
    from panel.io.resources import Resources as PanelResources
    from panel.io.server import server_html_page_for_session

    doc = session.document
    return server_html_page_for_session(session, resources=PanelResources.from_bokeh(resources), title=doc.title,
                                        token=session.token, template=doc.template,
                                        template_variables=doc.template_variables)
