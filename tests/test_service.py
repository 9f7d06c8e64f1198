"""Tests for docsyncd.service.AppsService: server hooks, the unused-session reaper and ordered shutdown."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from unit_support import RECORDING_LIFECYCLE, SLIDER_APP, InMemoryServer, make_token, write_dir_app


class AppsServiceTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        path = write_dir_app(self.tmp_path, "recorded", {"main.py": SLIDER_APP, "server_lifecycle.py": RECORDING_LIFECYCLE})
        self.server = InMemoryServer([path], ["--check-unused-sessions", "1000", "--unused-session-lifetime", "2500"])
        self.addCleanup(self.server.restore)
        self.service = self.server.service
        self.manager = self.server.managers["recorded"]
        self.clock = self.server.clock

    def stop(self):
        if self.service.running:
            self.successResultOf(self.service.stopService())

    def test_start_runs_server_loaded(self):
        """Starting the service runs each app's ``on_server_loaded`` and starts the reaper."""
        self.service.startService()
        self.addCleanup(self.stop)
        self.assertEqual(self.manager.server_context.events, ["server loaded"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_reaper_runs_on_clock(self):
        """The reaper checks every --check-unused-sessions ms and discards sessions unused for the lifetime."""
        self.service.startService()
        self.addCleanup(self.stop)
        client, pump = self.server.session_websocket("recorded")
        kept, kept_pump = self.server.session_websocket("recorded")
        client.sendClose(1000)
        pump.flush()
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(len(self.manager.sessions), 2)
        self.clock.advance(1)  # 3 s since the close: past the 2.5 s lifetime
        self.assertEqual(len(self.manager.sessions), 1)
        self.assertEqual(len(self.manager.sessions[0].connections), 1)
        self.assertEqual(sum(e.startswith("destroyed") for e in self.manager.server_context.events), 1)

    def test_reaper_failure_logged(self):
        """A failure while reaping is logged and the reaper keeps running."""
        self.service.startService()
        self.addCleanup(self.stop)
        calls = []

        def broken(lifetime):
            calls.append(lifetime)
            return defer.fail(OSError("disk full"))

        self.manager.discard_unused = broken
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(calls, [2.5, 2.5])
        errors = self.flushLoggedErrors(defer.FirstError)
        self.assertEqual([e.value.subFailure.type for e in errors], [OSError, OSError])

    def test_stop_order(self):
        """Stopping closes connections with 1001, discards every session (destroyed hooks), then unloads the app."""
        self.service.startService()
        token = make_token("open-session")
        client, pump = self.server.session_websocket("recorded", token)
        session = self.server.session_of("recorded", token)
        self.successResultOf(self.service.stopService())
        pump.flush()
        self.assertEqual(client.close_code, 1001)
        self.assertTrue(session.destroyed)
        self.assertEqual(self.manager.sessions, [])
        self.assertEqual(self.manager.server_context.events,
                         ["server loaded", "created open-session", "destroyed open-session", "server unloaded"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_waits_for_session_work(self):
        """Shutdown waits for work holding a session's lock before destroying it and unloading the app."""
        self.service.startService()
        client, pump = self.server.session_websocket("recorded")
        session = self.manager.sessions[0]
        gate = defer.Deferred()
        session.with_document_locked(lambda: gate)
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.assertNotIn("server unloaded", self.manager.server_context.events)
        gate.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.manager.server_context.events[-1], "server unloaded")

    def test_stop_cancels_callbacks_after_the_grace_period(self):
        """A coroutine callback that never finishes holds shutdown only for --shutdown-grace (5 s): then it is
        cancelled, the session destroyed (destroyed hook), the app unloaded, and one warning line says so."""
        from unit_support import LogCapture

        log = LogCapture(self)
        self.service.startService()
        token = make_token("stuck")
        client, pump = self.server.session_websocket("recorded", token)
        session = self.server.session_of("recorded", token)
        backend = defer.Deferred()  # a slow backend that never answers
        cancelled = []

        async def stuck():
            try:
                await backend
            except defer.CancelledError:
                cancelled.append(True)
                raise

        session.run_awaitable(stuck(), "a callback")
        later = []
        session.with_document_locked(lambda: later.append("ran"))  # queued behind it: skipped once cancelled
        stopped = self.service.stopService()
        self.clock.advance(4.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertEqual(cancelled, [True])
        self.assertEqual(later, [])
        self.assertTrue(session.destroyed)
        self.assertEqual(self.manager.server_context.events[-2:], ["destroyed stuck", "server unloaded"])
        self.assertEqual(len(log.matching("(--shutdown-grace); cancelling them")), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stop_stops_callbacks(self):
        """After stopping, no periodic callback of any session and no reaper call is left on the clock."""
        self.service.startService()
        client, pump = self.server.session_websocket("recorded")
        self.manager.sessions[0].document.add_periodic_callback(lambda: None, 100)
        self.successResultOf(self.service.stopService())
        pump.flush()  # the client answers the server's close
        self.assertEqual(self.clock.getDelayedCalls(), [])
