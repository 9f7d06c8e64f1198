"""Tests for docsyncd.tap: ``twistd docsync`` options and the service tree they describe."""

from __future__ import annotations

import errno
import os

import pytest
import txaio
from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import tap
from docsyncd.listeners import ListenFailed
from docsyncd.server import DocsyncSite
from docsyncd.service import AppsService

from unit_support import SLIDER_APP, write_app


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _env(self, monkeypatch):
        monkeypatch.delenv("DOCSYNC_SECRET_KEY", raising=False)
        monkeypatch.delenv("BOKEH_SECRET_KEY", raising=False)
        self.monkeypatch = monkeypatch

    def assert_usage_error(self, argv, *parts):
        with self.assertRaises(usage.UsageError) as caught:
            parse(*argv)
        for part in parts:
            self.assertIn(part, str(caught.exception))

    def test_defaults(self):
        """With only --app, docsync listens on tcp:5006 with bokeh serve's defaults (times in ms)."""
        options = parse("--app", "myapp.py")
        self.assertEqual(options["apps"], ["myapp.py"])
        self.assertEqual(options["listen"], ["tcp:5006"])
        self.assertEqual(options["prefix"], "")
        self.assertEqual(options["keep-alive"], 37000)
        self.assertEqual(options["check-unused-sessions"], 17000)
        self.assertEqual(options["unused-session-lifetime"], 15000)
        self.assertEqual(options["session-token-expiration"], 300)
        self.assertEqual(options["session-ids"], "unsigned")
        self.assertIsNone(options["secret-key"])
        self.assertEqual(options["allow-websocket-origin"], [])
        self.assertEqual(options["app-argv"], [])
        self.assertFalse(options["disable-index"])
        self.assertEqual(options["num-threads"], 4)  # Bokeh 3.10's pool size; README "Threads"

    def test_num_threads(self):
        """--num-threads 0 keeps callbacks on the reactor thread; a negative count is refused in one line."""
        self.assertEqual(parse("--app", "a.py", "--num-threads", "0")["num-threads"], 0)
        self.assert_usage_error(["--app", "a.py", "--num-threads", "-1"], "--num-threads must be 0")

    def test_port_and_address(self):
        """--port and --address become a tcp endpoint, with the address escaped for the endpoint syntax."""
        self.assertEqual(parse("--app", "a.py", "--port", "7000")["listen"], ["tcp:7000"])
        self.assertEqual(parse("--app", "a.py", "-p", "7000", "-a", "127.0.0.1")["listen"],
                         ["tcp:7000:interface=127.0.0.1"])
        self.assertEqual(parse("--app", "a.py", "--address", "::1")["listen"], [r"tcp:5006:interface=\:\:1"])

    def test_listen(self):
        """--listen takes endpoint strings, repeatable, and replaces the --port default."""
        options = parse("--app", "a.py", "--listen", "tcp:8000", "--listen", "unix:/run/docsync.sock")
        self.assertEqual(options["listen"], ["tcp:8000", "unix:/run/docsync.sock"])

    def test_repeatable(self):
        """--app and --allow-websocket-origin may be given several times."""
        options = parse("--app", "a.py", "--app", "b", "--allow-websocket-origin", "x.org",
                        "--allow-websocket-origin", "y.org:8080")
        self.assertEqual(options["apps"], ["a.py", "b"])
        self.assertEqual(options["allow-websocket-origin"], ["x.org", "y.org:8080"])

    def test_prefix_normalised(self):
        """--prefix gets one leading slash and no trailing slash; ``/`` means no prefix."""
        self.assertEqual(parse("--app", "a.py", "--prefix", "bokeh/")["prefix"], "/bokeh")
        self.assertEqual(parse("--app", "a.py", "--prefix", "/a/b/")["prefix"], "/a/b")
        self.assertEqual(parse("--app", "a.py", "--prefix", "/")["prefix"], "")

    def test_app_arguments(self):
        """Arguments after --args become the apps' sys.argv[1:]."""
        self.assertEqual(parse("--app", "a.py", "--args", "data.csv", "5")["app-argv"], ["data.csv", "5"])

    def test_app_arguments_that_look_like_options(self):
        """Arguments after --args that start with dashes are passed to the apps, as under bokeh serve."""
        self.assertEqual(parse("--app", "a.py", "--args", "--rows", "5")["app-argv"], ["--rows", "5"])

    def test_stray_argument(self):
        """A positional argument without --args is refused with a sentence about --app and --args."""
        self.assert_usage_error(["--app", "a.py", "b.py"], "unexpected argument 'b.py'", "--args")

    def test_no_app(self):
        """Without --app, parsing succeeds (the empty app is served at /), unless the command requires an app."""
        self.assertEqual(parse()["apps"], [])

        class RequiringOptions(tap.Options):
            require_app = True

        with self.assertRaises(usage.UsageError) as raised:
            RequiringOptions().parseOptions([])
        self.assertIn("give at least one app with --app PATH", str(raised.exception))

    def test_store(self):
        """--store takes 'memory' as it is and makes a file path absolute; without it the default is used later."""
        self.assertIsNone(parse()["store"])
        self.assertEqual(parse("--store", "memory")["store"], "memory")
        self.assertEqual(parse("--store", "docs.sqlite")["store"], os.path.abspath("docs.sqlite"))

    def test_bad_numbers(self):
        """Negative keep-alive and non-positive intervals, lifetimes and sizes are refused."""
        self.assert_usage_error(["--app", "a.py", "--keep-alive", "-1"], "--keep-alive")
        for name in ("check-unused-sessions", "unused-session-lifetime", "session-token-expiration",
                     "websocket-max-message-size"):
            self.assert_usage_error(["--app", "a.py", f"--{name}", "0"], f"--{name} must be a positive number")
        self.assertEqual(parse("--app", "a.py", "--keep-alive", "0")["keep-alive"], 0)
        self.assert_usage_error(["--app", "a.py", "--shutdown-grace", "-1"], "--shutdown-grace must be 0 (cancel at once)")
        self.assertEqual(parse("--app", "a.py", "--shutdown-grace", "0")["shutdown-grace"], 0)

    def test_not_a_number(self):
        """A non-numeric value for a numeric option is a usage error."""
        self.assert_usage_error(["--app", "a.py", "--port", "http"])

    def test_log_level(self):
        """--log-level accepts Bokeh's level names only."""
        self.assertEqual(parse("--app", "a.py", "--log-level", "debug")["log-level"], "debug")
        self.assert_usage_error(["--app", "a.py", "--log-level", "loud"], "--log-level must be one of")

    def test_session_ids(self):
        """--session-ids is unsigned, signed or external-signed; the signed kinds need a secret key in the environment."""
        self.assert_usage_error(["--app", "a.py", "--session-ids", "external"], "unsigned, signed or external-signed")
        self.assert_usage_error(["--app", "a.py", "--session-ids", "signed"], "DOCSYNC_SECRET_KEY")
        self.assert_usage_error(["--app", "a.py", "--session-ids", "external-signed"], "DOCSYNC_SECRET_KEY")
        self.monkeypatch.setenv("BOKEH_SECRET_KEY", "from-bokeh")
        self.assertEqual(parse("--app", "a.py", "--session-ids", "signed")["secret-key"], "from-bokeh")
        self.monkeypatch.setenv("DOCSYNC_SECRET_KEY", "from-docsync")
        self.assertEqual(parse("--app", "a.py", "--session-ids", "signed")["secret-key"], "from-docsync")

    def test_index_template_must_exist(self):
        """--index names a template file that must exist."""
        self.assert_usage_error(["--app", "a.py", "--index", "/no/such/index.html"], "no such file")


class MakeServiceTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.patch(txaio.config, "loop", self.reactor)
        self.app = write_app(self.tmp_path, "sliders", SLIDER_APP)

    def make(self, *argv, reactor=None):
        return tap.make_service(parse("--app", self.app, *argv), reactor or self.reactor)

    def test_listens_on_port(self):
        """The service listens on the --port, serving the docsync Site, once started."""
        top = self.make("--port", "5007")
        self.assertEqual(self.reactor.tcpServers, [])
        top.startService()
        ((port, factory, backlog, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface), (5007, ""))
        self.assertIsInstance(factory, DocsyncSite)
        self.successResultOf(top.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listens_on_every_endpoint(self):
        """Every --listen endpoint gets a listener with the same Site."""
        socket = str(self.tmp_path / "docsync.sock")
        top = self.make("--listen", "tcp:8000:interface=127.0.0.1", "--listen", f"unix:{socket}")
        top.startService()
        self.assertEqual([(p, i) for p, f, b, i in self.reactor.tcpServers], [(8000, "127.0.0.1")])
        self.assertEqual([a for a, *rest in self.reactor.unixServers], [socket])
        self.assertIs(self.reactor.tcpServers[0][1], self.reactor.unixServers[0][1])
        self.successResultOf(top.stopService())

    def test_service_tree(self):
        """The apps service comes first in the tree, so listeners stop before sessions are discarded."""
        top = self.make()
        children = list(top)
        self.assertIsInstance(top, service.MultiService)
        self.assertIsInstance(children[0], AppsService)
        self.assertEqual([type(c).__name__ for c in children[1:]], ["_Listener", "UrlAnnouncer"])
        self.assertEqual(children[0].check_interval, 17.0)
        self.assertEqual(children[0].unused_lifetime, 15.0)

    def test_address_in_use_fails_at_start(self):
        """A port that cannot be listened on makes start-up fail instead of being logged and ignored."""

        class Reactor(Clock, RaisingMemoryReactor):
            def __init__(self):
                Clock.__init__(self)
                RaisingMemoryReactor.__init__(self, listenException=CannotListenError("", 5006, OSError(errno.EADDRINUSE, "in use")))

        top = self.make(reactor=Reactor())
        with self.assertRaises(ListenFailed) as raised:
            top.startService()
        self.assertIsInstance(raised.exception, SystemExit)  # twistd -n: Python prints the line, no traceback
        self.assertIn("port 5006 is in use, cannot listen on tcp:", str(raised.exception.code))

    def test_syntax_error_app(self):
        """An app with a syntax error stops start-up with one line naming the file and line."""
        broken = write_app(self.tmp_path, "broken", "def f(:\n    pass\n")
        with self.assertRaises(SystemExit) as caught:
            tap.make_service(parse("--app", broken), self.reactor)
        message = str(caught.exception.code)
        self.assertTrue(message.startswith(f"docsync: cannot load app {broken}: {broken}, line 1"), message)
        self.assertIn("SyntaxError", message)
        self.assertEqual(self.reactor.tcpServers, [])

    def test_missing_app(self):
        """An app path that does not exist stops start-up naming the path."""
        missing = str(self.tmp_path / "missing.py")
        with self.assertRaises(SystemExit) as caught:
            tap.make_service(parse("--app", missing), self.reactor)
        self.assertEqual(caught.exception.code, f"docsync: no such app: {missing}")

    def test_bad_listen_endpoint(self):
        """An endpoint string Twisted cannot use stops start-up with one line naming it, not a traceback."""
        for endpoint, reason in (("bogus:1", "Unknown endpoint type"),
                                 ("ssl:5443:privateKey=/no/such/key.pem", "No such file")):
            with self.assertRaises(SystemExit) as caught:
                tap.make_service(parse("--app", self.app, "--listen", endpoint), self.reactor)
            message = str(caught.exception.code)
            self.assertTrue(message.startswith(f"docsync: --listen {endpoint}: "), message)
            self.assertIn(reason, message)

    def test_duplicate_names(self):
        """Two apps that would be served at the same URL stop start-up."""
        other_dir = self.tmp_path / "other"
        other_dir.mkdir()
        other = write_app(other_dir, "sliders", SLIDER_APP)
        with self.assertRaises(SystemExit) as caught:
            tap.make_service(parse("--app", self.app, "--app", other), self.reactor)
        self.assertIn("two apps would be served at /sliders", str(caught.exception.code))

    def test_plugin(self):
        """The twistd plugin declares ``docsync`` backed by this module, without importing it."""
        from twisted.plugins import docsync_plugin

        self.assertEqual(docsync_plugin.docsync.tapname, "docsync")
        self.assertEqual(docsync_plugin.docsync.module, "docsyncd.tap")
        self.assertIs(docsync_plugin.docsync.options, tap.Options)
