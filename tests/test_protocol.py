"""Tests for docsyncd.protocol: the websocket at /<app>/ws, driven in memory with a real Autobahn client."""

from __future__ import annotations

import pytest
from bokeh.document import Document
from bokeh.util.token import get_token_payload
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import wire
from docsyncd.protocol import peer_ip
from docsyncd.sessions import DocumentBuildError

from unit_support import (RECORDING_LIFECYCLE, SLIDER_APP, InMemoryServer, LogCapture, crafted_token, make_token,
                          model_changes,
                          upgrade_request, write_app, write_dir_app)

SECRET = "a-secret-key-that-is-long-enough-for-bokeh"


class ProtocolTestCase(SynchronousTestCase):
    server_args: list[str] = []

    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.server = self.start_server(
            write_app(self.tmp_path, "sliders", SLIDER_APP),
            write_dir_app(self.tmp_path, "gated", {"main.py": SLIDER_APP, "server_lifecycle.py": RECORDING_LIFECYCLE}),
        )

    def start_server(self, *paths, args=()):
        return InMemoryServer(list(paths), list(self.server_args) + list(args)).start_for(self)

    def open(self, app="sliders", token=None, **kwargs):
        token = token or make_token()
        client, pump = self.server.session_websocket(app, token, **kwargs)
        return client, pump, token

    def pull(self, client, pump):
        """Send PULL-DOC-REQ and return the client's copy of the document."""
        request = client.send("PULL-DOC-REQ")
        pump.flush()
        (reply,) = [m for m in client.messages if m.header.get("reqid") == request.header["msgid"]]
        self.assertEqual(reply.msgtype, "PULL-DOC-REPLY")
        doc = Document()
        reply.push_to_document(doc)
        return doc

    def send_patch(self, client, doc, name, attr, value):
        """Change a model in the client's copy and send the resulting PATCH-DOC; return the message sent."""
        events = []
        doc.on_change(events.append)
        setattr(doc.get_model_by_name(name), attr, value)
        doc.remove_on_change(events.append)
        message = wire.PROTOCOL.create("PATCH-DOC", events)
        client.send_message(message)
        return message


class HandshakeTests(ProtocolTestCase):
    def test_comma_separated_protocols(self):
        """A client listing ``bokeh,<token>`` (Tornado's and Autobahn's style) is accepted with ``bokeh`` and ACKed."""
        client, pump, token = self.open()
        self.assertTrue(client.opened)
        self.assertEqual(client.websocket_protocol_in_use, "bokeh")
        self.assertEqual(client.msgtypes(), ["ACK"])
        self.assertIsNotNone(self.server.session_of("sliders", token))

    def test_comma_space_separated_protocols(self):
        """A browser's ``bokeh, <token>`` header is accepted too: 101, ``bokeh`` selected, then ACK."""
        token = make_token()
        answer = self.server.raw(upgrade_request("/sliders/ws", f"bokeh, {token}"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer[:100])
        self.assertIn(b"\r\nSec-WebSocket-Protocol: bokeh\r\n", answer)
        self.assertIn(b'"msgtype":"ACK"', answer)
        self.assertIsNotNone(self.server.session_of("sliders", token))

    def test_websocket_creates_session_with_token_request(self):
        """A websocket opened with a fresh token and no page GET creates the session, with the token's request."""
        token = make_token(arguments={"ticker": [b"MSFT"]})
        client, pump, _ = self.open(token=token)
        session = self.server.session_of("sliders", token)
        self.assertEqual(session.document.session_context.request.arguments, {"ticker": [b"MSFT"]})
        self.assertEqual(session.document.session_context.request.remote_ip, "127.0.0.1")

    def test_websocket_url_arguments_read_as_pages_read_them(self):
        """A token without arguments (bokeh.client) lets the websocket URL's query stand in, read as bokeh serve
        reads it: percent-escapes of any byte, UTF-8 or not."""
        token = make_token()
        answer = self.server.raw(upgrade_request("/sliders/ws?label=caf%C3%A9&raw=%E9", f"bokeh, {token}"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer[:100])
        session = self.server.session_of("sliders", token)
        self.assertEqual(session.document.session_context.request.arguments,
                         {"label": [b"caf\xc3\xa9"], "raw": [b"\xe9"]})

    def test_two_connections_share_session(self):
        """Two websockets with one token join the same session."""
        token = make_token()
        self.open(token=token)
        self.open(token=token)
        session = self.server.session_of("sliders", token)
        self.assertEqual(len(session.connections), 2)
        self.assertEqual(len(self.server.managers["sliders"].sessions), 1)

    def test_foreign_origin_403(self):
        """A websocket from a foreign Origin gets HTTP 403 before the upgrade and creates no session."""
        token = make_token()
        answer = self.server.raw(upgrade_request("/sliders/ws", f"bokeh, {token}", origin="http://evil.example"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "), answer[:100])
        self.assertIsNone(self.server.session_of("sliders", token))

    def test_same_origin_and_no_origin_accepted(self):
        """Pages served by this server, and non-browser clients sending no Origin, may connect."""
        same, _, _ = self.open(origin="http://localhost:5006")
        self.assertTrue(same.opened)
        answer = self.server.raw(upgrade_request("/sliders/ws", f"bokeh, {make_token()}"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "))

    def assert_refused(self, protocols, reason_part):
        client, pump = self.server.websocket("sliders", protocols)
        self.assertEqual(client.close_code, 1008)
        self.assertIn(reason_part, client.close_reason)
        self.assertNotIn("ACK", client.msgtypes())
        self.assertEqual(self.server.managers["sliders"].sessions, [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_missing_token_1008(self):
        """A websocket offering ``bokeh`` without a token is closed with 1008 (policy violation)."""
        self.assert_refused(["bokeh"], "no session token")

    def test_garbage_token_1008(self):
        """A garbage token gets a 1008 close, not a traceback."""
        self.assert_refused(["bokeh", "not-a-token"], "malformed session token")

    def test_token_inflating_too_far_1008(self):
        """A token whose compressed payload inflates past 1 MiB is refused 1008 before it is inflated, no session."""
        import time

        bomb = b'{"headers": {"x": "' + b" " * (8 * 1024 * 1024) + b'"}}'
        token = crafted_token({"session_id": "bomb", "session_expiry": time.time() + 300}, bomb)
        self.assertLess(len(token), 20000)
        client, pump, _ = self.open(token=token)
        self.assertEqual(client.close_code, 1008)
        self.assertIn("inflates to more than", client.close_reason)
        self.assertIsNone(self.server.managers["sliders"].get("bomb"))

    def test_expired_token_1008(self):
        """An expired token gets a 1008 close that says it expired."""
        token = make_token(expiration=300)
        expiry = get_token_payload(token)["session_expiry"]
        self.server.clock.advance(expiry - self.server.clock.seconds())
        self.assert_refused(["bokeh", token], "expired")

    def test_no_bokeh_protocol(self):
        """A websocket that does not offer the ``bokeh`` subprotocol is not served a session."""
        client, pump = self.server.websocket("sliders", None)
        self.assertEqual(client.close_code, 1008)
        self.assertEqual(self.server.managers["sliders"].sessions, [])


class FailureTests(ProtocolTestCase):
    def setUp(self):
        pass

    def test_app_failure_closes_1011(self):
        """When the app raises while building the session, the websocket closes with 1011 and the error is logged."""
        self.server = self.start_server(write_app(self.tmp_path, "broken", "raise ValueError('no data')\n"))
        client, pump, token = self.open("broken")
        self.assertEqual(client.close_code, 1011)
        self.assertEqual(client.close_reason, "could not open session")
        self.assertEqual(len(self.flushLoggedErrors(DocumentBuildError)), 1)
        self.assertEqual(self.server.managers["broken"].sessions, [])

    def test_oversized_message_closes_1009(self):
        """A message larger than --websocket-max-message-size closes that connection with 1009."""
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                        args=["--websocket-max-message-size", "1000"])
        client, pump, token = self.open()
        client.sendMessage(b"x" * 2000)
        pump.flush()
        self.assertEqual(client.close_code, 1009)


    def test_size_limit_is_for_what_arrives(self):
        """--websocket-max-message-size limits what clients send, not the documents the server sends them."""
        server = self.start_server(write_app(self.tmp_path, "wordy", 'from bokeh.io import curdoc\n'
                                             'from bokeh.models import Div\n'
                                             'curdoc().add_root(Div(text="word " * 2000, name="div"))\n'),
                                   args=["--websocket-max-message-size", "2000"])
        client, pump = server.session_websocket("wordy")
        doc = self.pull(client, pump)
        self.assertEqual(doc.get_model_by_name("div").text, "word " * 2000)

    def test_invalid_utf8_closes_1007(self):
        """A text frame that is not UTF-8 closes that connection cleanly with 1007."""
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP))
        client, pump, token = self.open()
        client.sendMessage(b"\xff\xfe")
        pump.flush()
        self.assertEqual(client.close_code, 1007)


class SignedTokenTests(ProtocolTestCase):
    @pytest.fixture(autouse=True)
    def _secret_key(self, monkeypatch):
        monkeypatch.setenv("DOCSYNC_SECRET_KEY", SECRET)

    def setUp(self):
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--session-ids", "signed"])

    def test_bad_signature_1008(self):
        """With signed session ids, an unsigned token is closed with 1008 for its signature."""
        client, pump = self.server.websocket("sliders", ["bokeh", make_token()])
        self.assertEqual(client.close_code, 1008)
        self.assertIn("invalid signature", client.close_reason)

    def test_good_signature(self):
        """With signed session ids, a token signed with the server's key opens a session."""
        client, pump = self.server.websocket("sliders", ["bokeh", make_token(secret_key=SECRET.encode())])
        self.assertEqual(client.msgtypes(), ["ACK"])


class MessageTests(ProtocolTestCase):
    def test_pull_after_ack(self):
        """After ACK, PULL-DOC-REQ is answered with PULL-DOC-REPLY holding the session's document."""
        client, pump, token = self.open()
        doc = self.pull(client, pump)
        self.assertEqual(client.msgtypes(), ["ACK", "PULL-DOC-REPLY"])
        self.assertEqual(doc.get_model_by_name("slider").value, 1)

    def test_open_connection_sends_without_autobahn_debug_formatting(self):
        """Frames to an open connection arrive and are counted, without Autobahn formatting a debug line for each."""
        from autobahn.websocket import protocol as autobahn_protocol

        from docsyncd.protocol import SyncProtocol

        formatted = []
        original = autobahn_protocol.hltype

        def spy(obj):
            if isinstance(getattr(obj, "__self__", None), SyncProtocol):
                formatted.append(obj.__name__)
            return original(obj)

        self.patch(autobahn_protocol, "hltype", spy)
        client, pump, token = self.open()
        [connection] = self.server.session_of("sliders", token).connections
        formatted.clear()  # the handshake's answer takes Autobahn's path
        stats = connection.trafficStats
        wire_before, payload_before = stats.outgoingOctetsWireLevel, stats.outgoingOctetsAppLevel
        doc = self.pull(client, pump)
        self.assertEqual(doc.get_model_by_name("slider").value, 1)
        self.assertEqual(formatted, [])
        payload = stats.outgoingOctetsAppLevel - payload_before
        self.assertGreater(payload, 0)
        self.assertGreater(stats.outgoingOctetsWireLevel - wire_before, payload)  # frame headers on top

    def test_pull_before_ack(self):
        """A PULL-DOC-REQ sent before the ACK arrives is answered after the ACK, in order."""
        gate = self.server.managers["gated"].server_context.gate = defer.Deferred()
        client, pump, token = self.open("gated")
        self.assertTrue(client.opened)
        self.assertEqual(client.msgtypes(), [])
        first = client.send("PULL-DOC-REQ")
        second = client.send("SERVER-INFO-REQ")
        pump.flush()
        self.assertEqual(client.msgtypes(), [])
        gate.callback(None)
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "PULL-DOC-REPLY", "SERVER-INFO-REPLY"])
        self.assertEqual(client.messages[1].header["reqid"], first.header["msgid"])
        self.assertEqual(client.messages[2].header["reqid"], second.header["msgid"])

    def test_patch_doc(self):
        """A client's PATCH-DOC gets OK plus the callback's PATCH-DOC; the client's own change is not echoed."""
        client, pump, token = self.open()
        doc = self.pull(client, pump)
        sent = self.send_patch(client, doc, "slider", "value", 6)
        pump.flush()
        replies = {m.msgtype: m for m in client.messages[2:]}
        self.assertEqual(len(client.messages), 4)
        ok, patch = replies["OK"], replies["PATCH-DOC"]
        self.assertEqual(ok.header["reqid"], sent.header["msgid"])
        self.assertEqual(model_changes([patch]), [("text", "value 6")])
        session = self.server.session_of("sliders", token)
        self.assertEqual(session.document.get_model_by_name("slider").value, 6)

    def test_patch_reaches_other_connection(self):
        """Another connection to the same session receives both the client's change and the callback's."""
        token = make_token()
        sender, pump, _ = self.open(token=token)
        watcher, watcher_pump, _ = self.open(token=token)
        doc = self.pull(sender, pump)
        self.send_patch(sender, doc, "slider", "value", 9)
        pump.flush()
        watcher_pump.flush()
        self.assertEqual(sorted(model_changes(watcher.messages)), [("text", "value 9"), ("value", 9)])

    def test_message_written_at_once_and_framed_once(self):
        """A message's frames reach the transport in one write, and a patch fanned out to two connections is
        framed once: both write the same bytes object."""
        token = make_token()
        sender, pump, _ = self.open(token=token)
        watcher, watcher_pump, _ = self.open(token=token)
        connections = self.server.session_of("sliders", token).connections
        written = {connection: [] for connection in connections}
        for connection in connections:
            self.patch(connection.transport, "write", written[connection].append)
        self.server.session_of("sliders", token).document.get_model_by_name("div").text = "from python"
        first, second = written.values()
        self.assertEqual(len(first), 1)
        self.assertIs(first[0], second[0])

    def test_frame_log_sends_frame_by_frame(self):
        """With Autobahn's frame log on (``logFrames``, for debugging Autobahn) each frame goes through its
        ``sendFrame``, so it is logged, and the client gets the same messages, counted the same."""
        client, pump, token = self.open()
        [connection] = self.server.session_of("sliders", token).connections
        connection.logFrames = True
        logged = []
        self.patch(connection, "logTxFrame", lambda header, *args: logged.append(header.opcode))
        frames_before = connection.trafficStats.outgoingWebSocketFrames
        doc = self.pull(client, pump)
        self.assertEqual(doc.get_model_by_name("slider").value, 1)
        self.assertEqual(logged, [1, 1, 1])
        self.assertEqual(connection.trafficStats.outgoingWebSocketFrames - frames_before, 3)

    def test_server_info(self):
        """SERVER-INFO-REQ is answered with SERVER-INFO-REPLY carrying the Bokeh version."""
        client, pump, token = self.open()
        request = client.send("SERVER-INFO-REQ")
        pump.flush()
        reply = client.messages[-1]
        self.assertEqual(reply.msgtype, "SERVER-INFO-REPLY")
        self.assertEqual(reply.header["reqid"], request.header["msgid"])
        self.assertIn("bokeh", reply.content["version_info"])

    def test_message_type_not_for_servers(self):
        """A known message a client should not send (ACK) gets an ERROR reply and the connection stays open."""
        client, pump, token = self.open()
        sent = client.send("ACK")
        pump.flush()
        error = client.messages[-1]
        self.assertEqual(error.msgtype, "ERROR")
        self.assertEqual(error.header["reqid"], sent.header["msgid"])
        self.assertIn("ACK", error.content["text"])
        self.pull(client, pump)
        self.assertFalse(client.closed)

    def test_unappliable_patch(self):
        """A PATCH-DOC naming a model the document lacks gets an ERROR reply; the connection keeps working."""
        client, pump, token = self.open()
        doc = self.pull(client, pump)
        events = []
        doc.on_change(events.append)
        doc.get_model_by_name("slider").value = 3
        message = wire.PROTOCOL.create("PATCH-DOC", events)
        message.content["events"][0]["model"]["id"] = "no-such-model"
        client.send_message(message)
        pump.flush()
        self.assertEqual(client.messages[-1].msgtype, "ERROR")
        self.assertEqual(client.messages[-1].header["reqid"], message.header["msgid"])
        self.flushLoggedErrors()
        self.pull(client, pump)
        self.assertFalse(client.closed)

    def test_close_detaches(self):
        """When a client closes, its session forgets the connection and starts counting unused time."""
        client, pump, token = self.open()
        session = self.server.session_of("sliders", token)
        client.sendClose(1000)
        pump.flush()
        self.assertTrue(client.closed)
        self.assertEqual(session.connections, frozenset())
        self.server.clock.advance(5)
        self.assertEqual(session.milliseconds_since_last_unsubscribe, 5000)

    def test_close_while_session_builds(self):
        """A client that leaves before its session is ready is never attached to it."""
        gate = self.server.managers["gated"].server_context.gate = defer.Deferred()
        client, pump, token = self.open("gated")
        client.sendClose(1000)
        pump.flush()
        gate.callback(None)
        pump.flush()
        session = self.server.session_of("gated", token)
        self.assertEqual(session.connections, frozenset())

    def test_no_timers_left_after_close(self):
        """After a connection closes, Autobahn's handshake, close and ping timers are all gone."""
        self.server.clock.advance(100)  # let the reaper go quiet after it first runs
        client, pump, token = self.open()
        client.sendClose(1000)
        pump.flush()
        calls = [c for c in self.server.clock.getDelayedCalls() if "reap" not in repr(c)]
        self.assertEqual(calls, [])


class BadInputTests(ProtocolTestCase):
    def assert_protocol_error(self, send):
        """``send(client)`` breaks the protocol: 1002 close for that client, other sessions carry on."""
        bystander, bystander_pump, _ = self.open()
        client, pump, token = self.open()
        send(client)
        pump.flush()
        self.assertEqual(client.close_code, 1002)
        self.assertIn("protocol error", client.close_reason)
        self.assertEqual(self.server.session_of("sliders", token).connections, frozenset())
        doc = self.pull(bystander, bystander_pump)
        self.assertEqual(doc.get_model_by_name("slider").value, 1)
        self.assertFalse(bystander.closed)

    def test_unknown_msgtype(self):
        """A message type Bokeh does not know closes that connection with 1002."""

        def send(client):
            client.sendMessage(b'{"msgid": "1", "msgtype": "SELF-DESTRUCT"}')
            client.sendMessage(b"{}")
            client.sendMessage(b"{}")

        self.assert_protocol_error(send)

    def test_broken_json(self):
        """A header that is not JSON closes that connection with 1002."""

        def send(client):
            for payload in (b"{broken", b"{}", b"{}"):
                client.sendMessage(payload)

        self.assert_protocol_error(send)

    def test_binary_where_text_expected(self):
        """A binary frame where a text frame belongs closes that connection with 1002."""
        self.assert_protocol_error(lambda client: client.sendMessage(b"\x00\xff", isBinary=True))

    def assert_one_warning(self, send, code=1002, text="protocol error"):
        """``send(client)`` closes that client with ``code`` and logs one warning line, no traceback."""
        log = LogCapture(self)
        if code == 1002:
            self.assert_protocol_error(send)
        else:
            client, pump, _ = self.open()
            send(client)
            pump.flush()
            self.assertEqual(client.close_code, code)
        self.assertEqual(len(log.matching(text)), 1, log.lines())
        self.assertEqual([e for e in log.events if e.get("log_failure")], [])
        self.assertEqual([e for e in log.events if e.get("log_level").name in ("error", "critical")], [])

    def test_header_without_msgid(self):
        """A header without msgid closes 1002 with one warning line (not 1011 and a traceback)."""

        def send(client):
            for payload in (b'{"msgtype": "PULL-DOC-REQ"}', b"{}", b"{}"):
                client.sendMessage(payload)

        self.assert_one_warning(send)

    def test_json_nested_thousands_deep(self):
        """A header or content nested thousands deep closes 1002 with one warning line (no RecursionError traceback)."""
        deep = b"[" * 100000 + b"]" * 100000
        self.assert_one_warning(lambda client: client.sendMessage(deep))
        self.assert_one_warning(lambda client: [client.sendMessage(p) for p in (
            b'{"msgid": "1", "msgtype": "PATCH-DOC"}', b"{}", b'{"events": ' + deep + b"}")])

    def test_string_num_buffers(self):
        """A num_buffers that is not a whole number closes 1002 at the header instead of waiting forever."""
        self.assert_one_warning(lambda client: client.sendMessage(
            b'{"msgid": "1", "msgtype": "PULL-DOC-REQ", "num_buffers": "1"}'))

    def test_too_many_buffers_closes_1009(self):
        """A header announcing more than MAX_BUFFERS buffers closes 1009 at once."""
        self.assert_one_warning(lambda client: client.sendMessage(
            b'{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 1000000}'), code=1009, text="buffers")

    def test_message_total_size_closes_1009(self):
        """A message whose frames add up to more than --websocket-max-message-size closes 1009, frame sizes within it."""
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                        args=["--websocket-max-message-size", "5000"])

        def send(client):
            client.sendMessage(b'{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 10}')
            client.sendMessage(b"{}")
            client.sendMessage(b'{"events": []}')
            for n in range(10):
                client.sendMessage(b'{"id": "%d"}' % n)
                client.sendMessage(b"x" * 1000, isBinary=True)

        self.assert_one_warning(send, code=1009, text="more than 5000 bytes")


def test_peer_ip():
    """``peer_ip`` takes the address out of Autobahn's peer strings for IPv4, IPv6 and unix sockets."""
    assert peer_ip("tcp4:10.0.0.1:5678") == "10.0.0.1"
    assert peer_ip("tcp6:::1:5678") == "::1"
    assert peer_ip("unix:/run/docsync.sock") == "/run/docsync.sock"
