"""Tests for docsyncd.client: the Twisted client against an in-memory docsyncd (iosim, a MemoryReactorClock).

The client's websocket is a real Autobahn client protocol; bytes move only when
the test pumps them, and time only when it advances the clock.  The blocking
face (which iterates the real reactor) is covered by its loop on a fake
reactor here and by the scripts in tests/e2e/test_client_*.py.
"""

from __future__ import annotations

import json

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div, Slider
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python import threadable
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from docsyncd import client, io as docsync_io
from docsyncd.protocol import SyncProtocol
from docsyncd.store import BadName

from unit_support import BokehClient, InMemoryServer, make_token, model_changes


@implementer(IStreamClientEndpoint)
class InMemoryEndpoint:
    """Connects client protocols to an InMemoryServer; ``refuse`` makes the next attempts fail."""

    def __init__(self, server: InMemoryServer):
        self.server = server
        self.pumps = []
        self.refuse = False
        self.attempts = 0

    def connect(self, factory):
        self.attempts += 1
        if self.refuse:
            return defer.fail(ConnectionRefusedError("refused by the test"))
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5006))
        self.pumps.append(self.server.connect(protocol))
        return defer.succeed(protocol)

    def flush(self):
        """Move bytes both ways until nothing moves."""
        while any([pump.flush() for pump in self.pumps]):
            pass


def slider_doc(value=1):
    doc = Document()
    doc.add_root(Slider(start=0, end=10, value=value, name="slider"))
    doc.add_root(Div(text="start", name="div"))
    return doc


class ClientTestCase(SynchronousTestCase):
    def setUp(self):
        self.addCleanup(self.assert_nothing_scheduled)
        self.server = InMemoryServer([]).start_for(self)  # no --app: the empty app at /
        self.manager = self.server.managers[""]
        self.endpoint = InMemoryEndpoint(self.server)

    def assert_nothing_scheduled(self):
        """Runs last: a LoopingCall or timer left behind by the client or the server is a leak.

        (txaio's batched timer buckets outlive the timers in them; they do nothing.)
        """
        left = [c for c in self.server.clock.getDelayedCalls() if "_BatchedTimer" not in repr(c)]
        self.assertEqual(left, [])

    def session(self, session_id=None, **options):
        session = client.Session(session_id, "http://localhost:5006/", reactor=self.server.clock,
                                 endpoint=self.endpoint, **options)
        self.addCleanup(self.close, session)
        return session

    def close(self, session):
        d = session.close()
        self.endpoint.flush()
        self.server.clock.advance(5)  # Autobahn's close handshake timers, if the peer never answered
        self.successResultOf(d)

    def result(self, d):
        """Pump until ``d`` has fired; its result."""
        self.endpoint.flush()
        return self.successResultOf(d)

    def browser(self, session_id):
        """A websocket on the same server session (at /ws), standing in for a browser tab."""
        factory = WebSocketClientFactory("ws://localhost:5006/ws", protocols=["bokeh", make_token(session_id)],
                                         reactor=self.server.clock)
        factory.protocol = BokehClient
        tab = factory.buildProtocol(None)
        pump = self.server.connect(tab)
        pump.flush()
        self.assertEqual(tab.msgtypes(), ["ACK"])
        return tab, pump


class PushPullTests(ClientTestCase):
    def test_push_makes_server_document(self):
        """push sends the client's document; the server session holds the same models and values."""
        session = self.session()
        doc = slider_doc(4)
        self.assertIsNone(self.result(session.push(doc)))
        self.assertIs(session.document, doc)
        server_doc = self.manager.get(session.id).document
        self.assertEqual(server_doc.get_model_by_name("slider").value, 4)
        self.assertEqual(server_doc.get_model_by_name("slider").id, doc.get_model_by_name("slider").id)

    def test_push_without_chosen_id_is_not_published(self):
        """A session id the client generated is not a name: the push publishes nothing."""
        session = self.session()
        self.result(session.push(slider_doc()))
        self.assertEqual(self.manager.store.list(), [])
        self.assertFalse(self.manager.get(session.id).published)

    def test_push_with_id_publishes_before_ok(self):
        """A push under a chosen name is stored before the server sends the OK that fires the Deferred."""
        order = []
        store_save = self.manager.store.save

        def save(app, name, doc_json, **options):
            order.append("saved")
            store_save(app, name, doc_json, **options)

        self.manager.store.save = save
        real_reply = SyncProtocol._reply
        self.patch(SyncProtocol, "_reply", lambda proto, msgtype, *a: (order.append(msgtype), real_reply(proto, msgtype, *a)))
        session = self.session("line")
        self.result(session.push(slider_doc(6)))
        self.assertEqual(order, ["saved", "OK"])
        stored = json.loads(self.manager.store.load("", "line"))
        self.assertIn(6, [r["attributes"].get("value") for r in stored["roots"]])

    def test_push_opt_out_of_publishing(self):
        """publish=False pushes under a chosen id without storing the document."""
        session = self.session("scratch")
        self.result(session.push(slider_doc(), publish=False))
        self.assertEqual(self.manager.store.list(), [])

    def test_bad_name_refused_before_connecting(self):
        """Publishing under a name that is not one fails at once with a sentence saying what a name is."""
        session = self.session("not a name!")
        failure = self.failureResultOf(session.push(slider_doc()))
        failure.trap(BadName)
        self.assertIn("1 to 64 letters, digits", str(failure.value))
        self.assertEqual(self.endpoint.attempts, 0)

    def test_pull(self):
        """pull gets the server's document and keeps it: a second pull updates the same Document object."""
        pusher = self.session("shared")
        self.result(pusher.push(slider_doc(3)))
        puller = self.session("shared")
        doc = self.result(puller.pull())
        self.assertIs(puller.document, doc)
        self.assertEqual(doc.get_model_by_name("slider").value, 3)
        self.assertIs(self.result(puller.pull()), doc)

    def test_server_info_and_roundtrip(self):
        """request_server_info answers with the server's versions; force_roundtrip fires after the reply."""
        session = self.session()
        info = self.result(session.request_server_info())
        self.assertIn("bokeh", info["version_info"])
        self.assertIsNone(self.result(session.force_roundtrip()))

    def test_server_error_fails_the_request(self):
        """An ERROR reply fails the request's Deferred with ServerError carrying the server's text."""
        session = self.session()
        self.result(session.connect())
        message = client.wire.PROTOCOL.create("PUSH-DOC", Document())
        message.content.pop("doc")
        failure = self.failureResultOf(self.result_of_request(session, message))
        failure.trap(client.ServerError)
        self.assertIn("No doc in PUSH-DOC", str(failure.value))
        from bokeh.protocol.exceptions import ProtocolError

        self.assertEqual(self.flushLoggedErrors(ProtocolError), [])  # a warning line, not a traceback: protocol.py

    def result_of_request(self, session, message):
        d = session._request(message)
        self.endpoint.flush()
        return d

    def test_async_context_manager_closes(self):
        """``async with Session(...)`` closes the session when the block ends."""
        session = self.session()

        async def use():
            async with session as s:
                await s.push(slider_doc())
            return session.connected

        d = defer.ensureDeferred(use())
        self.endpoint.flush()
        self.assertFalse(self.successResultOf(d))
        self.assertEqual(len(self.manager.get(session.id).connections), 0)


class SyncTests(ClientTestCase):
    def test_client_change_reaches_server_and_browsers(self):
        """A change to the client's document is sent as PATCH-DOC and reaches every browser on the session."""
        session = self.session()
        doc = slider_doc()
        self.result(session.push(doc))
        tab, pump = self.browser(session.id)
        doc.get_model_by_name("slider").value = 8
        self.endpoint.flush()
        pump.flush()
        self.assertEqual(self.manager.get(session.id).document.get_model_by_name("slider").value, 8)
        self.assertIn(("value", 8), model_changes(tab.messages))

    def test_browser_change_runs_client_on_change_without_echo(self):
        """A browser's change is applied to the client's document, runs its on_change callbacks, and is not sent back."""
        session = self.session()
        doc = slider_doc()
        self.result(session.push(doc))
        seen = []
        doc.get_model_by_name("slider").on_change("value", lambda attr, old, new: seen.append(new))
        server_session = self.manager.get(session.id)
        patches = []
        real_patch = server_session.patch
        server_session.patch = lambda origin, message: (patches.append(origin), real_patch(origin, message))[1]

        tab, pump = self.browser(session.id)
        mirror = Document.from_json(server_session.document.to_json(deferred=False))
        events = []
        mirror.on_change(events.append)
        mirror.get_model_by_name("slider").value = 9
        tab.send("PATCH-DOC", events)
        pump.flush()
        self.endpoint.flush()

        self.assertEqual(seen, [9])
        self.assertEqual(doc.get_model_by_name("slider").value, 9)
        self.assertEqual(len(patches), 1, "only the browser's patch reached the server: the client sent no echo")

    def test_client_callback_change_from_browser_event_reaches_browser(self):
        """A client on_change callback that changes another model sends that change to the browsers."""
        session = self.session()
        doc = slider_doc()
        self.result(session.push(doc))
        doc.get_model_by_name("slider").on_change(
            "value", lambda attr, old, new: setattr(doc.get_model_by_name("div"), "text", f"client saw {new}"))
        tab, pump = self.browser(session.id)
        server_doc = self.manager.get(session.id).document
        self.successResultOf(self.manager.get(session.id).with_document_locked(
            lambda: setattr(server_doc.get_model_by_name("slider"), "value", 2)))
        for _ in range(3):
            self.endpoint.flush()
            pump.flush()
        self.assertIn(("text", "client saw 2"), model_changes(tab.messages))

    def test_partial_column_updates_keep_the_other_columns(self):
        """``data["y"] = ...`` on either side updates y and keeps x on the other side (Bokeh's Python alone drops it)."""
        session = self.session()
        doc = Document()
        doc.add_root(ColumnDataSource(data={"x": [1, 2, 3], "y": [4, 5, 6]}, name="source"))
        self.result(session.push(doc))
        server_session = self.manager.get(session.id)
        server_source = server_session.document.get_model_by_name("source")

        doc.get_model_by_name("source").data["y"] = [7, 8, 9]  # client to server
        self.endpoint.flush()
        self.assertEqual(dict(server_source.data), {"x": [1, 2, 3], "y": [7, 8, 9]})

        self.successResultOf(server_session.with_document_locked(
            lambda: server_source.data.__setitem__("y", [0, 0, 0])))  # server to client
        self.endpoint.flush()
        self.assertEqual(dict(doc.get_model_by_name("source").data), {"x": [1, 2, 3], "y": [0, 0, 0]})

    def test_periodic_callback_runs_on_clock_and_stops_on_close(self):
        """A periodic callback added to the client's document runs on the reactor clock; closing stops it."""
        session = client.Session(None, "http://localhost:5006/", reactor=self.server.clock, endpoint=self.endpoint)
        doc = slider_doc(0)
        slider = doc.get_model_by_name("slider")
        self.result(session.push(doc))

        def tick():
            slider.value = slider.value + 1

        doc.add_periodic_callback(tick, 100)
        for _ in range(3):
            self.server.clock.advance(0.1)
        self.endpoint.flush()
        self.assertEqual(slider.value, 3)
        self.assertEqual(self.manager.get(session.id).document.get_model_by_name("slider").value, 3)

        d = session.close()
        self.endpoint.flush()
        self.successResultOf(d)
        self.assertEqual(len(session._callbacks), 0, "a LoopingCall left running after close")
        self.server.clock.advance(1)
        self.assertEqual(slider.value, 3)


class ConnectionTests(ClientTestCase):
    def drop(self, session):
        """The network drops the connection without a closing handshake, and what was in flight."""
        transport = session._connection.transport
        transport.stream = []  # iosim's unsent bytes
        transport.loseConnection()  # iosim tells the server's end too
        self.endpoint.flush()

    def test_refused_connection_fails_push(self):
        """A server that is not there fails push with the connection error."""
        self.endpoint.refuse = True
        session = self.session()
        self.failureResultOf(session.push(slider_doc())).trap(ConnectionRefusedError)
        self.assertIn("refused", session.error)

    def test_lost_connection_reported(self):
        """A lost connection fails the waiting request with ConnectionLost, fires when_closed and says why."""
        session = self.session()
        self.result(session.push(slider_doc()))
        closed = session.when_closed()
        waiting = session._request(client.wire.PROTOCOL.create("SERVER-INFO-REQ"))
        self.drop(session)
        self.failureResultOf(waiting).trap(client.ConnectionLost)
        self.assertIsNone(self.successResultOf(closed))
        self.assertFalse(session.connected)
        self.assertTrue(session.error)

    def test_reconnects_with_backoff_and_pushes_again(self):
        """With reconnect, a lost connection is retried after the policy's delay and the document pushed again."""
        delays = []

        def policy(attempt):
            delays.append(attempt)
            return 2.0 * attempt

        session = self.session("live", reconnect=policy)
        doc = slider_doc(5)
        self.result(session.push(doc))
        closed = session.when_closed()
        # The server forgets everything (a restart without a store).
        self.manager.store.delete("", "live")
        self.drop(session)
        self.successResultOf(self.manager.discard_all())
        self.assertIsNone(self.manager.get("live"))

        self.endpoint.refuse = True
        self.server.clock.advance(2.0)  # first retry: refused
        self.endpoint.refuse = False
        self.server.clock.advance(4.0)  # second retry, after a longer wait: connects
        self.endpoint.flush()
        self.assertEqual(delays, [1, 2])
        self.assertTrue(session.connected)
        self.assertNoResult(closed)
        live = self.manager.get("live")
        self.assertEqual(live.document.get_model_by_name("slider").value, 5)
        self.assertTrue(live.published)

        doc.get_model_by_name("slider").value = 6  # and changes flow again
        self.endpoint.flush()
        self.assertEqual(live.document.get_model_by_name("slider").value, 6)

    def test_close_stops_reconnecting(self):
        """close() ends a reconnecting session: no further attempts are made."""
        session = self.session(reconnect=lambda attempt: 1.0)
        self.result(session.push(slider_doc()))
        self.drop(session)
        attempts = self.endpoint.attempts
        self.successResultOf(session.close())
        self.server.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, attempts)


class FakeReactor:
    """Enough of a reactor for run_blocking: time moves when it is iterated."""

    running = False

    def __init__(self):
        self.clock = task.Clock()

    def timeout(self):
        calls = self.clock.getDelayedCalls()
        return min(c.getTime() for c in calls) - self.clock.seconds() if calls else None

    def iterate(self, delay):
        self.clock.advance(delay)


class BlockingTests(SynchronousTestCase):
    def test_run_blocking_iterates_until_result(self):
        """run_blocking iterates a stopped reactor until the Deferred fires, and returns its result."""
        fake = FakeReactor()
        self.assertEqual(client.run_blocking(fake, task.deferLater, fake.clock, 3.0, lambda: 42), 42)
        self.assertEqual(fake.clock.seconds(), 3.0)

    def test_run_blocking_raises_failure(self):
        """A failed Deferred is raised as its exception."""
        fake = FakeReactor()

        def fail():
            return task.deferLater(fake.clock, 1.0, lambda: 1 / 0)

        with self.assertRaises(ZeroDivisionError):
            client.run_blocking(fake, fail)

    def test_run_blocking_refused_on_reactor_thread(self):
        """On the running reactor's own thread a blocking call raises instead of deadlocking."""
        fake = FakeReactor()
        fake.running = True
        self.assertTrue(threadable.isInIOThread())
        with self.assertRaises(RuntimeError) as raised:
            client.run_blocking(fake, lambda: None)
        self.assertIn("Deferred API", str(raised.exception))


class ExportTests(SynchronousTestCase):
    def test_public_names(self):
        """docsyncd.client offers Bokeh's client names plus the Deferred API; docsyncd.io offers output_server and show."""
        self.assertEqual(sorted(client.__all__), [
            "ClientSession", "ConnectionLost", "DEFAULT_URL", "ServerError", "Session",
            "delete", "delete_published", "pull", "pull_session", "push", "push_session"])
        for name in client.__all__:
            self.assertTrue(hasattr(client, name), name)
        self.assertEqual(sorted(docsync_io.__all__), ["output_server", "push", "reset_output", "show"])


class UrlTests(SynchronousTestCase):
    def test_urls(self):
        """App URLs give websocket, page and published-document URLs as bokeh.client does."""
        self.assertEqual(client.websocket_url("http://h:1/"), "ws://h:1/ws")
        self.assertEqual(client.websocket_url("https://h/app", {"a": "1"}), "wss://h/app/ws?a=1")
        self.assertEqual(client.server_url("ws://h:1/app/ws"), "http://h:1/app")
        self.assertEqual(client.page_url("http://h:1/", "line"), "http://h:1/?bokeh-session-id=line")
        self.assertEqual(client.page_url("http://h:1/app", "a b"), "http://h:1/app?bokeh-session-id=a+b")
        self.assertEqual(client.published_url("http://h:1/", "line"), "http://h:1/published/line")
        self.assertEqual(client.published_url("http://h:1/app/", "x"), "http://h:1/app/published/x")

    def test_default_url_honours_bokeh_settings(self):
        """url="default" is Bokeh's default server, so BOKEH_DEFAULT_SERVER_PORT moves it as for bokeh.client."""
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BOKEH_DEFAULT_SERVER_PORT", "5123")
            self.assertEqual(client.server_url("default"), "http://localhost:5123/")

    def test_output_server_checks_name(self):
        """docsyncd.io.output_server refuses a bad name at once, with the rule in the message."""
        with self.assertRaises(ValueError) as raised:
            docsync_io.output_server("../etc/passwd")
        self.assertIn("cannot name a published document", str(raised.exception))
        docsync_io.reset_output()
        with self.assertRaises(RuntimeError):
            docsync_io.show()


@pytest.mark.parametrize("found, printed", [
    (True, "session page: http://localhost:5006/?bokeh-session-id=x\n"),
    (False, "session page: http://localhost:5006/?bokeh-session-id=x "
            "(no web browser found to open it; set $BROWSER to choose one)\n"),
])
def test_show_prints_the_session_page(monkeypatch, capsys, found, printed):
    """``show`` prints where the session is, and says so when there is no browser to open it."""
    import webbrowser

    monkeypatch.delenv("BROWSER", raising=False)
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0, autoraise=True: opened.append(url) or found)
    client.open_browser("http://localhost:5006/?bokeh-session-id=x")
    assert opened == ["http://localhost:5006/?bokeh-session-id=x"]
    assert capsys.readouterr().out == printed
