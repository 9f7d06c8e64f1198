"""/metrics, /health and the stats log line (docsyncd/metrics.py)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import tap
from docsyncd.apps import LoadedApp
from docsyncd.metrics import REGISTRY, Histogram, Registry, StatsLogService
from unit_support import SLIDER_APP, InMemoryServer, make_token, write_app


class RegistryTests(SynchronousTestCase):
    def test_counters_render_as_prometheus_text(self):
        """Counters with labels render with HELP and TYPE lines and escaped label values."""
        registry = Registry()
        registry.count("docsync_messages_received_total", msgtype="PATCH-DOC")
        registry.count("docsync_messages_received_total", 2, msgtype="PATCH-DOC")
        registry.count("docsync_bytes_sent_total", 1500)
        registry.count("docsync_sessions_created_total", app='we"ird')
        text = registry.render()
        self.assertIn("# TYPE docsync_messages_received_total counter", text)
        self.assertIn('docsync_messages_received_total{msgtype="PATCH-DOC"} 3', text)
        self.assertIn("docsync_bytes_sent_total 1500", text)
        self.assertIn('docsync_sessions_created_total{app="we\\"ird"} 1', text)

    def test_histogram_buckets_are_cumulative(self):
        """A build time histogram counts each observation in its bucket and every larger one."""
        histogram = Histogram((0.1, 1.0))
        for seconds in (0.05, 0.5, 5.0):
            histogram.observe(seconds)
        self.assertEqual(list(histogram.cumulative()), [("0.1", 1), ("1.0", 2), ("+Inf", 3)])
        self.assertEqual(histogram.count, 3)
        self.assertAlmostEqual(histogram.total, 5.55)


class EndpointTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.server = InMemoryServer([write_app(self.tmp_path, "sliders", SLIDER_APP)]).start_for(self)

    def test_metrics_count_sessions_messages_and_builds(self):
        """Opening a session and pulling its document shows up in /metrics: sessions, connections, messages, bytes, build time."""
        before = REGISTRY.value("docsync_messages_received_total", msgtype="PULL-DOC-REQ")
        client, pump = self.server.session_websocket("sliders", make_token())
        client.send("PULL-DOC-REQ")
        pump.flush()
        self.assertIn("PULL-DOC-REPLY", client.msgtypes())
        self.assertEqual(REGISTRY.value("docsync_messages_received_total", msgtype="PULL-DOC-REQ"), before + 1)
        text = self.server.get("/metrics").text
        self.assertIn('docsync_sessions_live{app="sliders"} 1', text)
        self.assertIn('docsync_connections_live{app="sliders"} 1', text)
        self.assertIn('docsync_messages_sent_total{msgtype="PULL-DOC-REPLY"}', text)
        self.assertIn("docsync_bytes_sent_total", text)
        self.assertIn('docsync_document_build_seconds_count{app="sliders"}', text)

    def test_health(self):
        """/health answers 200 with each app's live session count."""
        response = self.server.get("/health")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.text, "ok sliders=0\n")


class StatsLogTests(SynchronousTestCase):
    def test_one_line_per_app_every_interval(self):
        """The stats service logs sessions and connections per app on its clock, and leaves no timer when stopped."""

        class Manager:
            app = LoadedApp("sliders", "sliders.py", None)

            sessions: list = []

        clock = Clock()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        stats = StatsLogService(15.0, [Manager()], clock)
        stats.startService()
        clock.advance(15)
        clock.advance(15)
        lines = [e for e in events if e.get("log_format", "").startswith("stats:")]
        self.assertEqual(len(lines), 3)  # at start, then every 15 s
        self.assertEqual((lines[0]["app"], lines[0]["sessions"], lines[0]["connections"]), ("sliders", 0, 0))
        self.assertEqual(formatEvent(lines[0]), "stats: app sliders: 0 sessions, 0 connections")
        stats.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])


class OptionTests(SynchronousTestCase):
    def test_log_format_json_sets_twistds_logger(self):
        """--log-format json makes twistd log JSON lines through docsyncd.logs.json_observer."""
        from twisted.scripts.twistd import ServerOptions

        from docsyncd import reactors

        self.patch(reactors, "install_asyncio_reactor", lambda: None)  # this test process keeps its reactor
        config = ServerOptions()
        config.parseOptions(["-n", "docsync", "--app", "x.py", "--log-format", "json"])
        from docsyncd.logs import json_observer

        self.assertIs(config["logger"], json_observer)

    def test_bad_stats_and_format(self):
        """A negative stats interval or an unknown log format is refused."""
        from twisted.python.usage import UsageError

        for argv in (["--stats-log-frequency", "-1"], ["--log-format", "xml"]):
            with self.assertRaises(UsageError):
                tap.Options().parseOptions(["--app", "x.py", *argv])
