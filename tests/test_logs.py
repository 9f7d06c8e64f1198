"""Tests for docsyncd.logs: --log-level filtering and Bokeh's stdlib logging routed to Twisted's log."""

from __future__ import annotations

import logging

from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import logs


class LogLevelTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(logs.set_level, "info")
        self.log = Logger(namespace="docsyncd.test", observer=logs.observer)

    def texts(self, namespace="docsyncd.test"):
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == namespace]

    def test_filters_docsyncd_messages(self):
        """At --log-level warning, docsyncd's info messages are dropped and its warnings kept."""
        logs.set_level("warning")
        self.log.info("quiet {n}", n=1)
        self.log.warn("loud {n}", n=2)
        self.assertEqual(self.texts(), ["loud 2"])

    def test_debug(self):
        """At --log-level debug, docsyncd's debug messages pass."""
        logs.set_level("debug")
        self.log.debug("details")
        self.assertEqual(self.texts(), ["details"])

    def test_bokeh_records_become_twisted_events(self):
        """Bokeh's standard-library log records are re-emitted as Twisted events with their level and logger name."""
        logs.set_level("info")
        logging.getLogger("bokeh.document").warning("odd %s", "model")
        (event,) = [e for e in self.events if e.get("log_namespace") == "bokeh.document"]
        self.assertEqual(formatEvent(event), "odd model")
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_bokeh_traceback_kept(self):
        """A Bokeh record logged with an exception carries the traceback text."""
        logs.set_level("info")
        try:
            raise ValueError("in app code")
        except ValueError:
            logging.getLogger("bokeh.application").warning("app failed", exc_info=True)
        (event,) = [e for e in self.events if e.get("log_namespace") == "bokeh.application"]
        self.assertEqual(formatEvent(event), "app failed")
        self.assertIn("ValueError: in app code", event["log_failure"].getTraceback())
        self.flushLoggedErrors(ValueError)

    def test_values_cannot_forge_log_lines(self):
        """Control characters in logged values (ids, paths, headers) are escaped; the format and tracebacks are kept."""
        self.log.warn("refused {sid}:\n{reason}", sid="x\n2026-01-01 [-] session admin created\r", reason="a\x1b[31mb")
        (text,) = self.texts()
        self.assertEqual(text, "refused x\\x0a2026-01-01 [-] session admin created\\x0d:\na\\x1b[31mb")
        self.assertEqual(logs.escape("tab\tand\u2028"), "tab\\x09and\\u2028")

    def test_session_id_with_newline_logged_on_one_line(self):
        """A websocket whose token names a session id with a newline logs it escaped, on one line."""
        import time

        from unit_support import InMemoryServer, crafted_token

        server = InMemoryServer([]).start_for(self)
        token = crafted_token({"session_id": "evil\nFAKE critical line", "session_expiry": time.time() + 300})
        server.websocket("", ["bokeh", token])
        created = [t for t in self.texts("docsyncd.sessions") if "created" in t]
        self.assertEqual(len(created), 1)
        self.assertIn("evil\\x0aFAKE critical line", created[0])
        self.assertNotIn("\n", created[0])

    def test_bokeh_filtered(self):
        """The level applies to Bokeh too: at warning, Bokeh's info records are not emitted."""
        logs.set_level("warning")
        logging.getLogger("bokeh.server").info("chatty")
        self.assertEqual(self.texts("bokeh.server"), [])

    def test_trace_enables_bokeh_debug(self):
        """--log-level trace lets Bokeh's debug records through."""
        logs.set_level("trace")
        self.assertEqual(logging.getLogger("bokeh").level, logging.DEBUG)
        logging.getLogger("bokeh.protocol").debug("frame")
        self.assertEqual(self.texts("bokeh.protocol"), ["frame"])

    def test_handler_installed_once(self):
        """Setting the level again does not install a second handler (no duplicated messages)."""
        logs.set_level("info")
        logs.set_level("warning")
        bokeh = logging.getLogger("bokeh")
        self.assertEqual(sum(isinstance(h, logs._ToTwisted) for h in bokeh.handlers), 1)
        self.assertFalse(bokeh.propagate)

    def test_only_route_for_bokeh_records(self):
        """Bokeh's own stderr handler (added when bokeh is imported) is removed: each record is logged once."""
        from bokeh.util import logconfig

        bokeh = logging.getLogger("bokeh")
        # What `import bokeh` does when no handler is configured yet (pytest configures one, so redo it here).
        stray = logging.StreamHandler()
        bokeh.addHandler(stray)
        self.addCleanup(bokeh.removeHandler, stray)
        self.patch(logconfig, "default_handler", stray)
        logs.set_level("info")
        self.assertNotIn(stray, bokeh.handlers)
        self.assertEqual(sum(isinstance(h, logs._ToTwisted) for h in bokeh.handlers), 1)
