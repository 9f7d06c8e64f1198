"""Tests for docsyncd.server: the Site's HTTP channel and the wiring from options to resources and factories."""

from __future__ import annotations

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import apps, tap
from docsyncd.server import NoDelayHTTPChannel, build_site

from unit_support import SLIDER_APP, write_app


class NoDelayTransport(StringTransport):
    def __init__(self, error=None):
        super().__init__()
        self.no_delay = None
        self.error = error

    def setTcpNoDelay(self, enabled):
        if self.error:
            raise self.error
        self.no_delay = enabled


class ChannelTests(SynchronousTestCase):
    def test_no_delay(self):
        """Every accepted connection gets TCP_NODELAY, so small websocket messages are not held back."""
        transport = NoDelayTransport()
        NoDelayHTTPChannel().makeConnection(transport)
        self.assertIs(transport.no_delay, True)

    def test_not_tcp(self):
        """A transport that cannot take TCP_NODELAY (a unix socket) is served all the same."""
        NoDelayHTTPChannel().makeConnection(StringTransport())
        NoDelayHTTPChannel().makeConnection(NoDelayTransport(OSError("not a TCP socket")))


class BuildSiteTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.patch(txaio.config, "loop", self.reactor)

    def build(self, *argv):
        paths = [write_app(self.tmp_path, name, SLIDER_APP) for name in ("alpha", "beta")]
        options = tap.Options()
        options.parseOptions([a for p in paths for a in ("--app", p)] + list(argv))
        return build_site([apps.load_app(p) for p in paths], options, self.reactor)

    def test_plain_http11_channel(self):
        """The Site speaks plain HTTP/1.1 (no h2 negotiation, which would break websockets over TLS)."""
        site, _ = self.build()
        self.assertIsInstance(site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)), NoDelayHTTPChannel)

    def test_one_factory_per_app(self):
        """Each app gets its own websocket factory and session manager, with the options' timings."""
        _, service = self.build("--keep-alive", "5000", "--check-unused-sessions", "2000",
                                "--unused-session-lifetime", "3000", "--websocket-max-message-size", "4096")
        self.assertEqual([f.manager.app.name for f in service.factories], ["alpha", "beta"])
        factory = service.factories[0]
        self.assertEqual(factory.autoPingInterval, 5.0)
        self.assertEqual(factory.maxMessagePayloadSize, 4096)
        self.assertEqual((service.check_interval, service.unused_lifetime), (2.0, 3.0))

    def test_keep_alive_off(self):
        """--keep-alive 0 turns websocket pings off."""
        _, service = self.build("--keep-alive", "0")
        self.assertEqual(service.factories[0].autoPingInterval, 0)

    def test_origins_and_tokens(self):
        """The origin allowlist and token policy from the options reach every app's websocket factory."""
        _, service = self.build("--allow-websocket-origin", "example.org")
        for factory in service.factories:
            self.assertEqual(factory.origins.allowlist, ["example.org"])
            self.assertFalse(factory.tokens.signed)

    def test_accepts_coroutine_callbacks(self):
        """Building the site lets Bokeh models take ``async def`` handlers."""
        from bokeh.util.callback_manager import EventCallbackManager, PropertyCallbackManager

        self.build()
        self.assertTrue(PropertyCallbackManager.on_change.__docsyncd_accepts_coroutines__)
        self.assertTrue(EventCallbackManager.on_event.__docsyncd_accepts_coroutines__)
