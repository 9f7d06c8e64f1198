"""Tests for docsyncd.limits: request size limits, the handshake timeout, session admission, slow websocket clients."""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol
from bokeh.util.token import get_session_id
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.limits import BackpressureMixin, SessionAdmission, TokenBucket, live_sessions

from guard_support import ServerTestCase, connect_from, parse_response, raw_upgrade, send, websocket
from unit_support import SLIDER_APP, LogCapture, RawClient, _drain, make_token, write_app


class RequestLimitTests(ServerTestCase):
    def setUp(self):
        self.log = LogCapture(self)
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=[
            "--max-request-line", "200", "--max-header-size", "300", "--max-headers", "5", "--max-body-size", "100"])

    def raw(self, data: bytes):
        client = RawClient()
        pump = connect_from(self.server, client)
        client.transport.write(data)
        _drain(pump)
        return parse_response(client.data), client

    def test_long_request_line_414(self):
        """A request line longer than --max-request-line gets 414, a reason, a log line, and the connection closes."""
        response, client = self.raw(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(response.status, 414)
        self.assertIn(b"request line longer than 200 bytes", response.body)
        self.assertTrue(client.transport.disconnecting or client.transport.disconnected)
        self.assertEqual(len(self.log.matching("(--max-request-line); answered 414")), 1)

    def test_endless_request_line_414(self):
        """A request line that never ends (no newline) is refused as soon as it is too long."""
        response, _ = self.raw(b"GET /" + b"a" * 1000)
        self.assertEqual(response.status, 414)

    def test_header_bytes_431(self):
        """Request headers larger than --max-header-size get 431."""
        response, _ = self.raw(b"GET /sliders HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 400 + b"\r\n\r\n")
        self.assertEqual(response.status, 431)
        self.assertIn(b"larger than 300 bytes", response.body)
        self.assertEqual(len(self.log.matching("(--max-header-size); answered 431")), 1)

    def test_header_count_431(self):
        """More headers than --max-headers get 431."""
        headers = b"".join(b"X-%d: 1\r\n" % n for n in range(8))
        response, _ = self.raw(b"GET /sliders HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.assertEqual(response.status, 431)
        self.assertIn(b"more than 5 request headers", response.body)

    def test_body_413(self):
        """A body longer than --max-body-size gets 413 from its Content-Length, before it is read."""
        response, _ = self.raw(b"POST /sliders HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        self.assertEqual(response.status, 413)
        self.assertEqual(len(self.log.matching("(--max-body-size); answered 413")), 1)

    def test_chunked_body_413(self):
        """A chunked body that grows past --max-body-size is cut off with 413."""
        chunk = b"%x\r\n%s\r\n" % (30000, b"z" * 30000)
        response, _ = self.raw(b"POST /sliders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 4)
        self.assertEqual(response.status, 413)

    def test_within_limits(self):
        """Requests within every limit are served as usual."""
        self.assertEqual(send(self.server, "/sliders/metadata").status, 200)
        self.assertEqual(send(self.server, "/sliders/metadata", method="POST", body=b"x" * 50).status, 405)


class HandshakeTimeoutTests(ServerTestCase):
    def setUp(self):
        self.log = LogCapture(self)
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                        args=["--handshake-timeout", "2000"])

    def test_silent_connection_408(self):
        """A connection that sends nothing is answered 408 and closed after --handshake-timeout."""
        client = RawClient()
        pump = connect_from(self.server, client)
        self.server.clock.advance(1.9)
        _drain(pump)
        self.assertEqual(client.data, b"")
        self.server.clock.advance(0.2)
        _drain(pump)
        self.assertEqual(parse_response(client.data).status, 408)
        self.assertEqual(len(self.log.matching("(--handshake-timeout); answered 408")), 1)

    def test_slow_headers_408(self):
        """Headers sent a little at a time, never finished in time, get 408 (a slowloris client)."""
        client = RawClient()
        pump = connect_from(self.server, client)
        for part in [b"GET /sliders/ws HTTP/1.1\r\n", b"Host: localhost\r\n", b"Upgrade: websocket\r\n"]:
            client.transport.write(part)
            self.server.clock.advance(0.9)
            _drain(pump)
        self.assertEqual(parse_response(client.data).status, 408)

    def test_slow_body_408(self):
        """A body trickled in too slowly gets 408 as well (the timer runs until the whole request is in)."""
        client = RawClient()
        pump = connect_from(self.server, client)
        client.transport.write(b"POST /sliders/metadata HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        for _ in range(3):
            client.transport.write(b"x")
            _drain(pump)
            self.server.clock.advance(0.9)
        _drain(pump)
        self.assertEqual(parse_response(client.data).status, 408)

    def test_timer_stops_with_the_headers(self):
        """Once a request is in, the timer stops: a keep-alive connection may idle, and a websocket lives on."""
        client, pump = websocket(self.server, "sliders", make_token())
        self.assertTrue(client.opened)
        self.server.clock.advance(60)
        pump.flush()
        self.assertFalse(client.closed)

    def test_next_request_on_keep_alive(self):
        """On a kept-alive connection the timer restarts with the first byte of the next request."""
        client = RawClient()
        pump = connect_from(self.server, client)
        client.transport.write(b"GET /sliders/metadata HTTP/1.1\r\nHost: localhost:5006\r\n\r\n")
        _drain(pump)
        self.assertIn(b"200 OK", client.data)
        self.server.clock.advance(30)  # idle between requests: not this timer's business
        _drain(pump)
        client.transport.write(b"GET /sliders/metadata HTTP/1.1\r\n")
        _drain(pump)
        self.server.clock.advance(2.1)
        _drain(pump)
        self.assertIn(b"408 Request Timeout", client.data)

    def test_no_delayed_calls_left(self):
        """A connection that closes leaves no handshake timer behind."""
        send(self.server, "/sliders/metadata")
        self.assertEqual([c for c in self.server.clock.getDelayedCalls() if "_header_timeout" in repr(c.func)], [])


class AdmissionUnitTests(SynchronousTestCase):
    def test_token_bucket(self):
        """A bucket allows ``rate`` events per second in bursts of ``rate``, and says how long to wait."""
        bucket = TokenBucket(2, now=0)
        self.assertEqual([bucket.take(0), bucket.take(0)], [0, 0])
        self.assertAlmostEqual(bucket.take(0), 0.5)
        self.assertEqual(bucket.take(0.5), 0)

    def test_forgets_idle_addresses(self):
        """The rate limiter remembers a bounded number of client addresses."""
        clock = Clock()
        admission = SessionAdmission(clock, lambda: 0, max_rate=1)
        admission.MAX_TRACKED = 3
        for n in range(10):
            clock.advance(5)
            self.assertIsNone(admission.admit(f"10.0.0.{n}"))
        self.assertLessEqual(len(admission._buckets), 3)

    def test_live_sessions_counts_builds(self):
        """Sessions being built count as live."""

        class Manager:
            sessions = [1, 2]
            building = 3

        self.assertEqual(live_sessions([Manager(), Manager()]), 10)


class AdmissionTests(ServerTestCase):
    def setUp(self):
        self.log = LogCapture(self)

    def test_max_sessions(self):
        """Beyond --max-sessions a new session gets 503 with Retry-After and no document is built; joining a live one still works."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--max-sessions", "2"])
        first = send(server, "/sliders")
        self.assertEqual(send(server, "/sliders").status, 200)
        refused = send(server, "/sliders")
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.headers["retry-after"], "32")  # unused-session-lifetime + check interval
        self.assertEqual(len(server.managers["sliders"].sessions), 2)
        self.assertEqual(len(self.log.matching("(--max-sessions 2); answered 503")), 1)
        # A page or websocket for a live session is not a new session.
        session_id = get_session_id(first.token())
        self.assertEqual(send(server, f"/sliders?bokeh-session-id={session_id}").status, 200)
        client, _ = websocket(server, "sliders", first.token())
        self.assertTrue(client.opened)
        # A websocket that would create a session is refused before the upgrade.
        self.assertEqual(raw_upgrade(server, "sliders", make_token()).status, 503)
        self.assertEqual(len(server.managers["sliders"].sessions), 2)

    def test_split_protocol_header_is_admitted_as_autobahn_reads_it(self):
        """``bokeh`` and the token as two Sec-WebSocket-Protocol lines (which Autobahn joins) are still counted:
        past --max-sessions and --max-session-rate they get 503, not a session."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--max-sessions", "3", "--max-session-rate", "100"])
        statuses = [raw_upgrade(server, "sliders", make_token(), split_protocols=True).status for _ in range(6)]
        self.assertEqual(statuses, [101, 101, 101, 503, 503, 503])
        self.assertEqual(len(server.managers["sliders"].sessions), 3)
        server = self.start_server(write_app(self.tmp_path, "other", SLIDER_APP), args=["--max-session-rate", "1"])
        statuses = [raw_upgrade(server, "other", make_token(), split_protocols=True).status for _ in range(2)]
        self.assertEqual(statuses, [101, 503])

    def test_max_session_rate(self):
        """Beyond --max-session-rate new sessions per address get 503 with Retry-After; other addresses and later requests pass."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--max-session-rate", "2"])
        statuses = [send(server, "/sliders", ip="10.0.0.1").status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 503])
        refused = send(server, "/sliders", ip="10.0.0.1")
        self.assertEqual(refused.headers["retry-after"], "1")
        self.assertEqual(send(server, "/sliders", ip="10.0.0.2").status, 200)
        self.assertEqual(raw_upgrade(server, "sliders", make_token(), ip="10.0.0.1").status, 503)
        server.clock.advance(1)
        self.assertEqual(send(server, "/sliders", ip="10.0.0.1").status, 200)
        self.assertEqual(len(server.managers["sliders"].sessions), 4)
        self.assertIn("10.0.0.1 opens sessions faster than 2 per second (--max-session-rate)",
                      self.log.matching("answered 503")[0])

    def test_rate_counts_the_forwarded_address(self):
        """With --use-xheaders the rate limit counts the address the proxy names, not the proxy's."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--max-session-rate", "1", "--use-xheaders"])
        self.assertEqual(send(server, "/sliders", {"X-Real-IP": "198.51.100.1"}).status, 200)
        self.assertEqual(send(server, "/sliders", {"X-Real-IP": "198.51.100.2"}).status, 200)
        self.assertEqual(send(server, "/sliders", {"X-Real-IP": "198.51.100.1"}).status, 503)

    def test_unlimited_by_default(self):
        """Without the options there is no session cap or rate."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP))
        self.assertEqual({send(server, "/sliders").status for _ in range(20)}, {200})


SEND_TIMEOUT = 30.0  # --websocket-send-timeout's default, in seconds


class StubProtocol:
    """Stands in for Autobahn's protocol below the mixin: what reaches it goes to the transport."""

    STATE_OPEN = WebSocketProtocol.STATE_OPEN
    peer = "tcp4:127.0.0.1:1234"

    def __init__(self, limit):
        self.factory = type("Factory", (), {"max_send_buffer": limit, "send_timeout": SEND_TIMEOUT, "clock": Clock()})()
        self.state = self.STATE_OPEN
        self.closed_with = None

    def connectionMade(self):
        pass

    def connectionLost(self, reason):
        pass

    def sendData(self, data, sync=False, chopsize=None):
        self.transport.write(data)

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        self.closed_with = (code, reasonUtf8)
        self.state = WebSocketProtocol.STATE_CLOSING


class RecordingWebsocket(BackpressureMixin, StubProtocol):
    pass


class PausingTransport(StringTransport):
    """A transport that, like Twisted's, pauses its streaming producer once it holds more than ``size`` bytes and
    resumes it when the client read everything (``drain``)."""

    def __init__(self, size=1000):
        super().__init__()
        self.size = size
        self.buffered = 0

    def write(self, data):
        super().write(data)
        self.buffered += len(data)
        if self.buffered > self.size and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self):
        """The client read all the transport held: what it got, after which the producer resumes."""
        got, self.buffered = self.buffered, 0
        self.producer.resumeProducing()
        return got


def connected_websocket(limit, size=1000):
    ws = RecordingWebsocket(limit)
    ws.transport = PausingTransport(size)
    ws.connectionMade()
    return ws


def send_message(ws, *frames):
    """What SyncProtocol.send_frames does: admit the message, then send all its frames."""
    if ws.admit_message():
        for frame in frames:
            ws.sendData(frame)


class BackpressureTests(SynchronousTestCase):
    def setUp(self):
        self.patch(BackpressureMixin, "CHUNK", 400)

    def test_registers_as_producer(self):
        """After the upgrade the websocket replaces the HTTP channel as its transport's streaming producer."""
        transport = StringTransport()
        transport.registerProducer(object(), True)  # the HTTP channel
        ws = RecordingWebsocket(100)
        ws.transport = transport
        ws.connectionMade()
        self.assertIs(transport.producer, ws)
        self.assertTrue(transport.streaming)

    def test_a_reading_client_gets_any_size(self):
        """A message many times the limit, written in one turn, reaches a client that reads, whole, a chunk each
        time the transport drained; other messages follow it in order (issue 13, item 1)."""
        ws = connected_websocket(limit=100)
        big = bytes(range(256)) * 40  # 10240 bytes: 100 times the limit
        send_message(ws, b"head", big, b"tail")
        send_message(ws, b"next")  # a moment later: more than the limit waits, but the client reads
        self.assertIsNone(ws.closed_with)
        self.assertEqual(ws.transport.value(), b"head" + big[:1200])  # chunks until the transport held over 1000
        writes = [ws.transport.drain()]
        while ws.queued_bytes:
            ws.factory.clock.advance(SEND_TIMEOUT - 1)  # slow, but reading
            send_message(ws, b"more")
            writes.append(ws.transport.drain())
        self.assertIsNone(ws.closed_with)
        self.assertEqual(ws.transport.value(), b"head" + big + b"tail" + b"next" + b"more" * (len(writes) - 1))
        self.assertLessEqual(max(writes), 1000 + 400)  # the transport's size and one chunk, never the whole

    def test_a_client_that_does_not_read_is_closed_before_a_message(self):
        """Past the limit, a client that read nothing for --websocket-send-timeout gets no new message: the
        connection closes with 1008 before the message's first frame, with one log line; earlier messages stay
        whole."""
        log = LogCapture(self)
        ws = connected_websocket(limit=2000)
        for _ in range(3):
            send_message(ws, b"h" * 10, b"x" * 1000)
        self.assertEqual(ws.queued_bytes, 3030 - 1010)  # the transport took 1010 bytes before it paused
        ws.factory.clock.advance(SEND_TIMEOUT - 0.1)
        send_message(ws, b"h" * 10, b"x" * 1000)  # not yet: the client had not had its time
        self.assertIsNone(ws.closed_with)
        queued = ws.queued_bytes
        ws.factory.clock.advance(0.1)
        send_message(ws, b"NEW", b"y" * 10)
        self.assertEqual(ws.closed_with, (1008, b"client too slow"))
        self.assertEqual(ws.queued_bytes, queued, "nothing of the refused message was queued")
        self.assertTrue(ws.too_slow)
        self.assertEqual(len(log.matching("client too slow, 3030 bytes waiting for it (more than "
                                          "--websocket-max-send-buffer 2000) and nothing read for 30 s")), 1)

    def test_zero_means_no_limit(self):
        """--websocket-max-send-buffer 0: a client that reads nothing is never closed for it."""
        ws = connected_websocket(limit=0)
        for _ in range(50):
            send_message(ws, b"x" * 1000)
            ws.factory.clock.advance(SEND_TIMEOUT)
        self.assertIsNone(ws.closed_with)
        self.assertEqual(ws.queued_bytes, 50_000 - 1400)  # all but what the transport took before it paused

    def test_reading_again_restarts_the_wait(self):
        """A client that reads a chunk counts as reading: the wait for it starts again."""
        ws = connected_websocket(limit=100)
        send_message(ws, b"x" * 5000)
        ws.factory.clock.advance(SEND_TIMEOUT + 1)
        ws.transport.drain()
        send_message(ws, b"y")
        self.assertIsNone(ws.closed_with)

    def test_lost_connection_forgets_the_queue(self):
        """When the connection is lost, nothing stays queued for it."""
        ws = connected_websocket(limit=100)
        send_message(ws, b"x" * 5000)
        ws.connectionLost(None)
        self.assertEqual(ws.queued_bytes, 0)


class SlowClientTests(ServerTestCase):
    def test_slow_client_closed_1008(self):
        """In a running server, a websocket whose transport stays paused is closed with 1008 once the backlog passes the
        limit and it read nothing for --websocket-send-timeout; other sessions carry on."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--websocket-max-send-buffer", "5000", "--websocket-send-timeout", "2000"])
        log = LogCapture(self)
        token = make_token()
        client, pump = websocket(server, "sliders", token)
        other, other_pump = websocket(server, "sliders", make_token())
        session = server.session_of("sliders", token)
        connection = next(iter(session.connections))
        connection.pauseProducing()  # what a full TCP buffer makes the transport do
        div = session.document.get_model_by_name("div")
        for n in range(40):
            session.with_document_locked(setattr, div, "text", str(n) * 200)
        self.assertFalse(connection.too_slow, "the client has had no time to read yet")
        server.clock.advance(2)
        session.with_document_locked(setattr, div, "text", "one more")
        self.assertTrue(connection.too_slow)
        self.assertEqual(len(log.matching("client too slow")), 1)
        server.clock.advance(2)  # the close handshake times out: the connection is dropped
        pump.flush()
        self.assertTrue(client.closed)
        self.assertTrue(other.opened and not other.closed)


class PacingTests(ServerTestCase):
    """One client cannot make the server hold more than one socket read of queued work and one send buffer."""

    def setUp(self):
        self.server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP))
        token = make_token()
        self.client, self.pump = websocket(self.server, "sliders", token)
        self.session = self.server.session_of("sliders", token)
        (self.connection,) = self.session.connections
        self.reading = []
        transport = self.pump.serverIO
        transport.pauseProducing = lambda: self.reading.append("paused")
        transport.resumeProducing = lambda: self.reading.append("resumed")

    def patch(self, value):
        from bokeh.document import Document

        mirror = Document.from_json(self.session.document.to_json(deferred=False))
        events = []
        mirror.on_change(events.append)
        mirror.get_model_by_name("slider").value = value
        self.client.send("PATCH-DOC", events)

    def test_reading_stops_while_patches_wait_for_the_document(self):
        """While the document lock is held, the first queued PATCH-DOC pauses reading; all are applied in order after."""
        from twisted.internet import defer

        gate = defer.Deferred()
        self.session.with_document_locked(lambda: gate)
        for value in (2, 3, 4):
            self.patch(value)
        self.pump.flush()
        self.assertEqual(self.reading, ["paused"])
        self.assertEqual(self.client.msgtypes(), ["ACK"])
        gate.callback(None)
        self.pump.flush()
        self.assertEqual(self.reading, ["paused", "resumed"])
        self.assertEqual(self.client.msgtypes().count("OK"), 3)
        self.assertEqual(self.session.document.get_model_by_name("slider").value, 4)

    def test_no_next_message_until_the_client_reads_its_replies(self):
        """With the send buffer full (the client reads nothing), a second PULL-DOC-REQ waits and reading stops."""
        self.connection.pauseProducing()  # what the transport does when its buffer is full
        self.client.send("PULL-DOC-REQ")
        self.client.send("PULL-DOC-REQ")
        self.pump.flush()
        # The first reply waits in the connection's own queue (limits.BackpressureMixin), the second request unread.
        self.assertEqual(self.client.msgtypes(), ["ACK"])
        self.assertGreater(self.connection.queued_bytes, 0)
        self.assertEqual(self.reading, ["paused"])
        self.connection.resumeProducing()
        self.pump.flush()
        self.assertEqual(self.client.msgtypes(), ["ACK", "PULL-DOC-REPLY", "PULL-DOC-REPLY"])
        self.assertEqual(self.reading, ["paused", "resumed"])


class ConnectionCapTests(ServerTestCase):
    def setUp(self):
        self.log = LogCapture(self)

    def open_raw(self, server, ip="127.0.0.1"):
        client = RawClient()
        pump = connect_from(server, client, ip, port=next(self.ports))
        pump.flush()
        return client, pump

    ports = iter(range(41000, 42000))

    def test_total_cap_answers_503_and_frees_on_close(self):
        """Past --max-connections a new connection gets 503 with Retry-After and one log line; a closed one frees
        its place, websockets included."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP), args=["--max-connections", "2"])
        slow, slow_pump = self.open_raw(server)  # a slow client holding a connection, sending nothing
        ws, ws_pump = websocket(server, "sliders", make_token())
        self.assertTrue(ws.opened)
        refused, _ = self.open_raw(server)
        self.assertTrue(refused.data.startswith(b"HTTP/1.1 503 "), refused.data)
        self.assertIn(b"Retry-After: 5", refused.data)
        self.assertEqual(len(self.log.matching("(--max-connections); answered 503")), 1)
        ws.sendClose(1000)
        ws_pump.flush()
        self.assertEqual(server.site.connection_caps.open, 1)
        self.assertEqual(send(server, "/sliders").status, 200)
        slow.transport.loseConnection()
        slow_pump.flush()
        self.assertEqual(server.site.connection_caps.open, 0)

    def test_per_address_cap(self):
        """Past --max-connections-per-address one address gets 503; other addresses are still served."""
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP),
                                   args=["--max-connections-per-address", "2"])
        held = [self.open_raw(server, "10.0.0.1") for _ in range(2)]
        refused, _ = self.open_raw(server, "10.0.0.1")
        self.assertTrue(refused.data.startswith(b"HTTP/1.1 503 "))
        self.assertIn("10.0.0.1 has 2 open connections", self.log.matching("answered 503")[0])
        self.assertEqual(send(server, "/sliders", ip="10.0.0.2").status, 200)
        self.assertEqual(len(held), 2)

    def test_default_total_follows_the_open_file_limit(self):
        """By default the total cap is the open-file limit less a reserve, so a descriptor is left to answer 503."""
        import resource

        from docsyncd.limits import default_max_connections

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        server = self.start_server(write_app(self.tmp_path, "sliders", SLIDER_APP))
        self.assertEqual(server.site.connection_caps.max_total, default_max_connections())
        self.assertEqual(default_max_connections(), max(16, soft - 64))
