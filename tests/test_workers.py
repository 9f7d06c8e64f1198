"""docsyncd.workers and docsyncd.worker in memory: head reading, routing, hand-over, supervision, options.

Real processes and real descriptors are in tests/e2e/test_worker_processes.py; here a
``Clock`` drives time and fakes stand for the worker processes and sockets.
"""

from __future__ import annotations

import json
import os
import socket
import struct

import pytest
from hypothesis import given, settings, strategies as st
from bokeh.util.token import generate_jwt_token, get_session_id
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.python.failure import Failure

from docsyncd import routing, tap, workers
from docsyncd.worker import RoutedRequestMixin, WorkerControl, routed_request_class
from docsyncd.metrics import Registry
from docsyncd.workers import (CONNECTION_HEADER, MSG_ACK, MSG_CONNECTION, MSG_METRICS, MSG_READY, QUEUE_TIMEOUT, RESTART_DELAYS,
                              STOP_TIMEOUT, Handoff, HeadReader, WorkerPool)

from unit_support import SLIDER_APP, InMemoryServer, make_token, upgrade_request, write_app


# -- fakes ---------------------------------------------------------------------------------


class FakeSocket:
    family = socket.AF_INET


class ClientTransport(StringTransport):
    """An accepted TCP connection in the parent, as far as HeadReader and Handoff use it."""

    _fds = iter(range(1000, 100000))

    def __init__(self):
        super().__init__()
        self.socket = FakeSocket()
        self._fd = next(self._fds)
        self.reading = True
        self._shouldShutdown = True

    def fileno(self):
        return self._fd

    def stopReading(self):
        self.reading = False

    def startReading(self):
        self.reading = True


class ControlTransport(StringTransport):
    """The parent's end of a worker's Unix socket: records descriptors sent."""

    def __init__(self):
        super().__init__()
        self.descriptors = []

    def sendFileDescriptor(self, fd):
        self.descriptors.append(fd)


class FakeProcess:
    _pids = iter(range(4000, 100000))

    def __init__(self, process_protocol):
        self.process_protocol = process_protocol
        self.pid = next(self._pids)
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)

    def closeStdin(self):
        pass

    def exit(self, code=0, signal=None):
        reason = error.ProcessDone(0) if code == 0 and signal is None else error.ProcessTerminated(code, signal)
        self.process_protocol.processEnded(Failure(reason))


def decode_strings(data: bytes) -> list[bytes]:
    """Split Int32StringReceiver framing."""
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        out.append(data[4:4 + n])
        data = data[4 + n:]
    return out


class Pool:
    """A WorkerPool of ``count`` fake workers on a Clock."""

    def __init__(self, count=2):
        self.clock = Clock()
        self.processes = {i: [] for i in range(count)}
        self.controls = {i: [] for i in range(count)}
        self.pool = WorkerPool(count, lambda index, fd: ["python", "-m", "docsyncd.worker"], reactor=None,
                               clock=self.clock, env={}, cwd="/")
        self.pool.spawn = self._spawn
        self.pool.connect_control = self._connect
        self._starting = None

    def _spawn(self, process_protocol, index, fd):
        self._starting = index
        process = FakeProcess(process_protocol)
        self.processes[index].append(process)
        return process

    def _connect(self, fd, factory):
        control = factory.buildProtocol(None)
        control.makeConnection(ControlTransport())
        self.controls[self._starting].append(control)

    def start(self, ready=True):
        self.pool.startService()
        if ready:
            for i in self.controls:
                self.ready(i)

    def ready(self, index):
        control = self.controls[index][-1]
        control.dataReceived(struct.pack(">I", 1) + MSG_READY)

    def control(self, index):
        return self.controls[index][-1]

    def sent(self, index):
        """(serial, data) of every connection sent to worker ``index``'s current process."""
        control = self.control(index)
        out = []
        for message in decode_strings(control.transport.value()):
            assert message[:1] == MSG_CONNECTION
            serial, _family = CONNECTION_HEADER.unpack_from(message, 1)
            out.append((serial, message[1 + CONNECTION_HEADER.size:]))
        return out

    def ack(self, index, serial):
        self.control(index).dataReceived(struct.pack(">I", 9) + MSG_ACK + struct.pack(">Q", serial))

    def handoff(self, session_id=None, target="/app"):
        transport = ClientTransport()
        data = f"GET {target} HTTP/1.1\r\n\r\n".encode()
        handoff = Handoff(self.pool.next_serial(), transport, data, session_id, target)
        self.pool.dispatch(handoff)
        return handoff


def owned_by(index, count=2, prefix="s"):
    """A session id that worker ``index`` owns."""
    n = 0
    while routing.owner(f"{prefix}{n}", count) != index:
        n += 1
    return f"{prefix}{n}"


# -- routing and hand-over ------------------------------------------------------------------


def test_requests_naming_a_session_go_to_its_owner():
    """A connection whose request names a session is sent to the owning worker, with its descriptor."""
    p = Pool()
    p.start()
    a, b = owned_by(0), owned_by(1)
    ha, hb, ha2 = p.handoff(a), p.handoff(b), p.handoff(a)
    assert [s for s, _ in p.sent(0)] == [ha.serial, ha2.serial]
    assert [s for s, _ in p.sent(1)] == [hb.serial]
    assert p.control(0).transport.descriptors == [ha.transport.fileno(), ha2.transport.fileno()]
    assert p.sent(0)[0][1] == ha.data


def test_requests_without_a_session_take_turns_among_ready_workers():
    """Connections naming no session alternate between ready workers, and skip a worker that is not ready."""
    p = Pool()
    p.start()
    for _ in range(4):
        p.handoff()
    assert len(p.sent(0)) == len(p.sent(1)) == 2
    p.controls[1][-1].connectionLost(None)  # worker 1's socket went away
    for _ in range(3):
        p.handoff()
    assert len(p.sent(0)) == 5


def test_parent_keeps_its_descriptor_until_the_worker_acknowledges():
    """The parent closes its copy only on the worker's acknowledgement, and then without shutdown()."""
    p = Pool()
    p.start()
    handoff = p.handoff(owned_by(0))
    assert not handoff.transport.disconnecting and handoff.transport._shouldShutdown
    p.ack(0, handoff.serial)
    assert handoff.transport.disconnecting and handoff.transport._shouldShutdown is False
    assert handoff.transport.value() == b"", "the parent must not answer a connection it handed over"


def test_connections_wait_for_a_worker_that_is_starting():
    """Connections for a worker that is not ready yet queue, and go to it in order once it is."""
    p = Pool()
    p.start(ready=False)
    sid = owned_by(1)
    first, second = p.handoff(sid), p.handoff(sid)
    assert p.control(1).transport.value() == b""
    p.ready(1)
    assert [s for s, _ in p.sent(1)] == [first.serial, second.serial]


def test_queued_connection_gets_503_after_the_queue_timeout():
    """A connection whose worker does not come within QUEUE_TIMEOUT is answered 503 and closed."""
    p = Pool()
    p.start(ready=False)
    handoff = p.handoff(owned_by(0))
    p.clock.advance(QUEUE_TIMEOUT - 1)
    assert handoff.transport.value() == b""
    p.clock.advance(1)
    assert handoff.transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in handoff.transport.value()
    assert handoff.transport.disconnecting
    p.ready(0)
    assert p.sent(0) == []


def test_dead_worker_is_restarted_and_gets_what_it_had_not_taken():
    """A worker that dies is restarted after a short delay; connections it had not acknowledged go to its successor."""
    p = Pool()
    p.start()
    sid = owned_by(0)
    taken, lost = p.handoff(sid), p.handoff(sid)
    p.ack(0, taken.serial)
    first = p.processes[0][-1]
    first.exit(signal=9)
    assert len(p.processes[0]) == 1, "restarted only after the delay"
    waiting = p.handoff(sid)
    p.clock.advance(RESTART_DELAYS[0])
    assert len(p.processes[0]) == 2 and p.processes[0][-1].pid != first.pid
    p.ready(0)
    assert [s for s, _ in p.sent(0)] == [lost.serial, waiting.serial]
    assert not taken.transport.value()


def test_sessionless_connections_of_a_dead_worker_go_to_the_others():
    """While a worker is down, connections that name no session are served by the other workers."""
    p = Pool()
    p.start()
    p.handoff()  # worker 0's turn
    p.processes[0][-1].exit(signal=9)
    before = len(p.sent(1))
    for _ in range(3):
        p.handoff()
    assert len(p.sent(1)) == before + 3


def test_restart_backoff_grows_and_resets_after_a_stable_run():
    """Workers that keep dying right after starting are restarted ever more slowly; a long run resets the delay."""
    p = Pool(count=1)
    p.start()
    delays = []
    for _ in range(len(RESTART_DELAYS) + 1):
        count = len(p.processes[0])
        p.processes[0][-1].exit(code=1)
        (restart,) = p.clock.getDelayedCalls()
        delays.append(restart.getTime() - p.clock.seconds())
        p.clock.advance(delays[-1])
        assert len(p.processes[0]) == count + 1
    assert delays == pytest.approx([*RESTART_DELAYS, RESTART_DELAYS[-1]])
    p.clock.advance(workers.STABLE_AFTER)
    p.processes[0][-1].exit(code=1)
    p.clock.advance(RESTART_DELAYS[0])
    assert len(p.processes[0]) == len(RESTART_DELAYS) + 3


def test_stop_terminates_workers_and_waits_for_them():
    """stopService sends SIGTERM to every worker, fires when all exited, and restarts none of them."""
    p = Pool()
    p.start()
    queued = p.handoff(owned_by(0))  # sent, not acknowledged
    d = p.pool.stopService()
    assert [proc.signals for proc in (p.processes[0][-1], p.processes[1][-1])] == [["TERM"], ["TERM"]]
    p.processes[0][-1].exit()
    assert not d.called
    p.processes[1][-1].exit()
    assert d.called
    p.clock.advance(60)
    assert len(p.processes[0]) == len(p.processes[1]) == 1
    assert queued.transport.value().startswith(b"HTTP/1.1 503 ")
    late = p.handoff()
    assert late.transport.value().startswith(b"HTTP/1.1 503 ")


def test_stop_kills_a_worker_that_does_not_exit():
    """A worker still running STOP_TIMEOUT seconds after SIGTERM gets SIGKILL."""
    p = Pool(count=1)
    p.start()
    d = p.pool.stopService()
    p.clock.advance(STOP_TIMEOUT)
    assert p.processes[0][-1].signals == ["TERM", "KILL"]
    p.processes[0][-1].exit(signal=9)
    assert d.called


# -- the parent reading request heads ---------------------------------------------------------


class Dispatched:
    def __init__(self):
        self.clock = Clock()
        self.handoffs = []
        self._serial = 0

    def next_serial(self):
        self._serial += 1
        return self._serial

    def dispatch(self, handoff):
        self.handoffs.append(handoff)

    def answer_operations(self, target, transport):
        return False  # /metrics and /health: tested on WorkerPool itself


def reader():
    pool = Dispatched()
    protocol = HeadReader(pool)
    transport = ClientTransport()
    protocol.makeConnection(transport)
    return pool, protocol, transport


def test_head_reader_hands_over_once_the_head_is_complete():
    """The connection is handed over, with every byte read so far, once the head is complete; reading stops."""
    pool, protocol, transport = reader()
    tok = make_token("ws-session")
    raw = upgrade_request("/app/ws", f"bokeh, {tok}")
    protocol.dataReceived(raw[:30])
    assert pool.handoffs == []
    protocol.dataReceived(raw[30:] + b"early")
    (handoff,) = pool.handoffs
    assert handoff.session_id == "ws-session" and handoff.data == raw + b"early"
    assert not transport.reading
    assert pool.clock.getDelayedCalls() == []


def test_head_reader_refuses_bad_and_huge_heads():
    """Bytes that are not HTTP get 400, a head over the limit 431; neither is handed over."""
    pool, protocol, transport = reader()
    protocol.dataReceived(b"\x16\x03\x01 hello\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 ") and transport.disconnecting
    pool, protocol, transport = reader()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nX: " + b"a" * routing.MAX_HEAD)
    assert transport.value().startswith(b"HTTP/1.1 431 ")
    assert pool.handoffs == []


def test_head_reader_times_out():
    """A connection that sends no complete head within HEAD_TIMEOUT gets 408 and is closed."""
    pool, protocol, transport = reader()
    protocol.dataReceived(b"GET / HTT")
    pool.clock.advance(workers.HEAD_TIMEOUT)
    assert transport.value().startswith(b"HTTP/1.1 408 ") and transport.disconnecting
    assert pool.handoffs == []


# -- the worker taking connections ------------------------------------------------------------


class RecordingProtocol:
    def __init__(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data


class AdoptingReactor:
    def __init__(self):
        self.adopted = []

    def adoptStreamConnection(self, fd, family, factory):
        self.adopted.append((fd, family))
        factory.buildProtocol(None)


class ControlStub:
    def __init__(self):
        self.site = self
        self.reactor = AdoptingReactor()
        self.built = []
        self.gone = False

    def buildProtocol(self, addr):
        self.built.append(RecordingProtocol())
        return self.built[-1]

    def parent_gone(self):
        self.gone = True

    def connected(self, protocol):
        self.protocol = protocol  # the real service starts sending metrics here


def test_worker_adopts_each_descriptor_replays_its_bytes_and_acknowledges():
    """The worker pairs descriptors with messages in order, adopts each, replays the bytes read, and acknowledges."""
    stub = ControlStub()
    control = WorkerControl(stub)
    transport = StringTransport()
    control.makeConnection(transport)
    assert decode_strings(transport.value()) == [MSG_READY]
    fds = [os.dup(0), os.dup(0)]
    for fd in fds:
        control.fileDescriptorReceived(fd)
    for serial, data in [(7, b"GET /a HTTP/1.1\r\n\r\n"), (8, b"GET /b HTTP/1.1\r\n\r\n")]:
        body = MSG_CONNECTION + CONNECTION_HEADER.pack(serial, socket.AF_INET) + data
        control.dataReceived(struct.pack(">I", len(body)) + body)
    assert stub.reactor.adopted == [(fds[0], socket.AF_INET), (fds[1], socket.AF_INET)]
    assert [p.data for p in stub.built] == [b"GET /a HTTP/1.1\r\n\r\n", b"GET /b HTTP/1.1\r\n\r\n"]
    assert decode_strings(transport.value())[1:] == [MSG_ACK + struct.pack(">Q", 7), MSG_ACK + struct.pack(">Q", 8)]
    for fd in fds:  # the worker closed its received descriptors (adoption duplicates them)
        with pytest.raises(OSError):
            os.fstat(fd)
    control.connectionLost(None)
    assert stub.gone


# -- requests inside a worker -------------------------------------------------------------------


@pytest.fixture
def worker_server(tmp_path):
    """An in-memory server set up as worker 0 of 2: it mints its own ids and redirects others'."""
    server = InMemoryServer([write_app(tmp_path, "slider", SLIDER_APP)], ["--lazy-documents"])
    page = server.site.resource.children[b"slider"]
    page.session_settings.owns = lambda session_id: routing.owner(session_id, 2) == 0
    server.site.requestFactory = routed_request_class(server.site.requestFactory)
    server.site.worker_route = (0, 2)
    yield server
    server.restore()


def test_worker_mints_only_session_ids_it_owns(worker_server):
    """Every page without a session gets a session id that this worker owns, so its websocket comes back here."""
    for _ in range(12):
        response = worker_server.get("/slider")
        assert response.status == 200
        assert routing.owner(get_session_id(response.token()), 2) == 0


def test_worker_redirects_requests_for_another_workers_session(worker_server):
    """A page naming another worker's session is sent back (307, same URL, Connection: close); its own is served."""
    theirs, ours = owned_by(1, prefix="named"), owned_by(0, prefix="named")
    response = worker_server.get(f"/slider?bokeh-session-id={theirs}")
    assert response.status == 307
    assert response.headers["location"] == f"/slider?bokeh-session-id={theirs}"
    assert response.headers["connection"] == "close"
    assert worker_server.get(f"/slider?bokeh-session-id={ours}").status == 200


def test_worker_refuses_a_websocket_for_another_workers_session(worker_server):
    """A websocket upgrade naming another worker's session gets 421 and no session is built."""
    theirs = make_token(owned_by(1, prefix="ws"))
    answer = worker_server.raw(upgrade_request("/slider/ws", f"bokeh, {theirs}"))
    assert answer.startswith(b"HTTP/1.1 421 ")
    assert worker_server.managers["slider"].sessions == []
    ours = make_token(owned_by(0, prefix="ws"))
    client, pump = worker_server.session_websocket("slider", ours)
    assert client.opened


def test_routed_request_class_keeps_the_sites_request_class():
    """The routing check goes in front of the site's own request class (the guard's), not instead of it."""
    from docsyncd.guard import GuardedRequest

    routed = routed_request_class(GuardedRequest)
    assert issubclass(routed, RoutedRequestMixin) and issubclass(routed, GuardedRequest)


# -- options and the service tree --------------------------------------------------------------


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_worker_options():
    """--workers takes 0 (one per core) or more, not with --dev or a TLS listener; the argv is kept for the workers."""
    options = parse("--app", "a.py", "--workers", "2", "--args", "--x")
    assert options["workers"] == 2 and options["argv"] == ["--app", "a.py", "--workers", "2", "--args", "--x"]
    assert parse("--app", "a.py")["workers"] is None
    assert workers.worker_count(0) == (os.cpu_count() or 1) and workers.worker_count(3) == 3
    for argv, text in [(["--workers", "-1"], "--workers must be 0"),
                       (["--workers", "2", "--dev"], "--dev"),
                       (["--workers", "2", "--listen", "ssl:443:privateKey=k.pem"], "inside TLS")]:
        with pytest.raises(usage.UsageError, match=text):
            parse("--app", "a.py", *argv)


def test_make_service_with_workers_routes_and_supervises(tmp_path):
    """With --workers the tree is the worker pool plus listeners that route; the workers get the same options."""
    app = write_app(tmp_path, "slider", SLIDER_APP)
    options = parse("--app", app, "--workers", "2", "--port", "0", "--store", "memory")
    top = tap.make_service(options, MemoryReactorClock())
    pool = top.getServiceNamed("workers")
    assert isinstance(pool, WorkerPool) and pool.count == 2
    listeners = [s for s in top if isinstance(s, StreamServerEndpointService)]
    assert [type(s.factory).__name__ for s in listeners] == ["RoutingFactory"]
    argv = pool.worker_argv(1, 3)
    assert argv[1:3] == ["-m", "docsyncd.worker"]
    assert argv[argv.index("--worker-index") + 1] == "1" and argv[argv.index("--worker-count") + 1] == "2"
    assert argv[argv.index("--") + 1:] == options["argv"]


def test_make_service_with_workers_fails_on_a_broken_app(tmp_path):
    """A syntax error stops the parent at start-up, before any worker starts."""
    app = write_app(tmp_path, "broken", "def (:\n")
    with pytest.raises(SystemExit, match="broken.py"):
        tap.make_service(parse("--app", app, "--workers", "2"), MemoryReactorClock())


def test_tokens_of_one_session_route_alike():
    """Tokens route by the session id inside them, whatever else they carry and however the protocols are joined."""
    a = generate_jwt_token("abc", extra_payload={"headers": {"x": "1"}})
    b = generate_jwt_token("abc", expiration=5)
    assert routing.session_named("/ws", {"sec-websocket-protocol": f"bokeh, {a}"}) == \
        routing.session_named("/ws", {"sec-websocket-protocol": f"bokeh,{b}"}) == "abc"


def test_worker_that_cannot_be_spawned_is_tried_again():
    """When starting a worker process fails (out of processes), the pool logs it and tries again later."""
    p = Pool(count=1)
    attempts = []

    def failing_spawn(process_protocol, index, fd):
        attempts.append(index)
        if len(attempts) < 3:
            raise OSError(11, "Resource temporarily unavailable")
        return p._spawn(process_protocol, index, fd)

    p.pool.spawn = failing_spawn
    p.start(ready=False)
    assert p.processes[0] == []
    p.clock.advance(RESTART_DELAYS[0])
    p.clock.advance(RESTART_DELAYS[1])
    assert len(attempts) == 3 and len(p.processes[0]) == 1


def test_worker_log_is_written_in_batches():
    """Info events wait up to the batch delay and leave in one write; a warning flushes everything at once."""
    import io
    import json

    from twisted.logger import LogLevel

    from docsyncd.worker import BatchedJSONLog

    class Out(io.StringIO):
        writes = 0

        def write(self, text):
            Out.writes += 1
            return super().write(text)

    clock, out = Clock(), Out()
    observer = BatchedJSONLog(out, clock, delay=0.05)
    for n in range(3):
        observer({"log_level": LogLevel.info, "log_format": "line {n}", "n": n, "log_namespace": "t"})
    assert out.getvalue() == ""
    clock.advance(0.05)
    assert Out.writes == 1 and [json.loads(line)["n"] for line in out.getvalue().splitlines()] == [0, 1, 2]
    observer({"log_level": LogLevel.info, "log_format": "queued", "log_namespace": "t"})
    observer({"log_level": LogLevel.warn, "log_format": "urgent", "log_namespace": "t"})
    assert Out.writes == 2 and out.getvalue().splitlines()[-1].find("urgent") > 0
    assert clock.getDelayedCalls() == []


def send_metrics(p, index, registry):
    body = MSG_METRICS + json.dumps(registry.snapshot()).encode()
    p.control(index).dataReceived(struct.pack(">I", len(body)) + body)


def test_parent_answers_metrics_summed_over_workers_and_keeps_counts_of_dead_ones():
    """/metrics at the parent sums every worker's latest snapshot, and a worker that died still counts in the totals."""
    p = Pool()
    p.start()
    for index, sessions in ((0, 3), (1, 2)):
        registry = Registry()
        registry.count("docsync_sessions_created_total", sessions, app="app")
        registry.gauge("docsync_sessions_live", "Sessions alive now.", lambda n=sessions: {(("app", "app"),): n})
        send_metrics(p, index, registry)
    transport = ClientTransport()
    assert p.pool.answer_operations("/metrics", transport)
    text = transport.value().decode()
    assert text.startswith("HTTP/1.1 200 OK")
    assert 'docsync_sessions_created_total{app="app"} 5' in text
    assert 'docsync_sessions_live{app="app"} 5' in text

    p.processes[0][-1].exit(signal=9)
    text = p.pool.metrics().render()
    assert 'docsync_sessions_created_total{app="app"} 5' in text, "a restart must not make counters go back"
    assert 'docsync_sessions_live{app="app"} 2' in text, "the dead worker's sessions are gone"


def test_parent_health_says_how_many_workers_serve():
    """/health at the parent is 200 while every worker serves and 503 naming the count while one is down."""
    p = Pool()
    p.start()
    transport = ClientTransport()
    assert p.pool.answer_operations("/health?x=1", transport)
    assert transport.value().startswith(b"HTTP/1.1 200 OK") and b"ok workers=2/2" in transport.value()
    p.processes[1][-1].exit(signal=9)
    transport = ClientTransport()
    p.pool.answer_operations("/health", transport)
    assert transport.value().startswith(b"HTTP/1.1 503") and b"degraded workers=1/2" in transport.value()
    assert not p.pool.answer_operations("/app", ClientTransport())


def test_head_reader_routes_non_ascii_arguments():
    """A page with a non-ASCII query argument is handed over whole; a session argument that is not UTF-8 gets 400."""
    pool, protocol, transport = reader()
    protocol.dataReceived(b"GET /app?label=caf%C3%A9&bokeh-session-id=Z%C3%BCrich HTTP/1.1\r\nHost: x\r\n\r\n")
    (handoff,) = pool.handoffs
    assert handoff.session_id == "Zürich"
    pool, protocol, transport = reader()
    protocol.dataReceived(b"GET /app?bokeh-session-id=%FF HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 ") and b"not UTF-8" in transport.value()
    assert pool.handoffs == [] and pool.clock.getDelayedCalls() == []


def test_head_reader_answers_a_bug_with_500(monkeypatch):
    """Should reading the head fail unexpectedly, the client gets 500, not an empty reply."""
    monkeypatch.setattr(routing, "session_named", lambda *a: 1 / 0)
    pool, protocol, transport = reader()
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 500 ") and transport.disconnecting


_HEAD_PIECES = st.sampled_from([b"GET ", b"/app", b"?", b"bokeh-session-id=", b"bokeh-token=", b"%C3%A9", b"%FF", b"%",
                                b"\xe9", b" HTTP/1.1", b"\r\n", b"\n", b"Host: x", b"Cookie: a=\"b\"",
                                b"Sec-WebSocket-Protocol: bokeh, ", b"eyJzZXNzaW9uX2lkIjoiYSJ9", b"[[[[", b":", b" "])


@settings(max_examples=500, deadline=None)
@given(st.lists(_HEAD_PIECES, max_size=30).map(b"".join), st.integers(min_value=1, max_value=16))
def test_head_reader_never_drops_a_connection(data, chunk):
    """Whatever bytes arrive, in whatever pieces, the connection is handed over, answered with a status, or waits
    (and then times out with 408): never closed without an answer, never an exception."""
    pool, protocol, transport = reader()
    for at in range(0, len(data), chunk):
        protocol.dataReceived(data[at:at + chunk])
    if not pool.handoffs and not transport.value():
        pool.clock.advance(workers.HEAD_TIMEOUT)
    if pool.handoffs:
        assert transport.value() == b"" and not transport.disconnecting
    else:
        assert transport.value()[:9] == b"HTTP/1.1 " and transport.disconnecting
    assert pool.clock.getDelayedCalls() == []
