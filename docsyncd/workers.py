"""``--workers N``: one parent process routing connections to N worker processes.

The parent (``twistd docsync --workers N ...``) owns the listeners and serves
no HTTP itself.  It loads the apps once, to fail at start-up on a broken one,
then starts N workers with ``reactor.spawnProcess`` (never a bare fork):
``python -m docsyncd.worker`` with the same docsync options (docsyncd/worker.py),
each connected to the parent by a Unix socket pair.

Routing.  For every accepted connection the parent reads the first request's
head (at most ``routing.MAX_HEAD`` bytes, within ``HEAD_TIMEOUT`` seconds) and
picks a worker:

- a request that names a session (websocket token, ``?bokeh-session-id=``,
  ``Bokeh-Session-Id``, ``?bokeh-token=``) goes to ``routing.owner(id, N)``,
  the worker that owns that session: the first websocket, a second tab, a
  reconnect and ``bokeh.client`` all land there, so the document is built
  once, in one process;
- any other request (a page without a session, static files, metadata) goes
  to the next ready worker in turn; a page GET there mints a session id that
  the worker itself owns (``SessionSettings.owns``), so the page's websocket
  comes back to it.

The parent then hands the connection's file descriptor, and the bytes it
already read, to that worker over its Unix socket (SCM_RIGHTS, Twisted's
``IUNIXTransport.sendFileDescriptor``); the worker adopts it
(``adoptStreamConnection``) and replays the bytes into its HTTP channel.  The
parent keeps its own copy of the descriptor until the worker acknowledges,
then closes it without shutting the socket down.

Routing is per connection.  Later requests on a kept-alive connection stay
with its worker: static files and pages without a session may be served by
any worker; a request on it that names a session owned by another worker is
answered ``307`` to the same URL (``421`` for a websocket or another method)
with ``Connection: close``, and the client's retry on a new connection is
routed to the right worker (worker.py, ``RoutedRequest``).

Supervision.  A worker that exits without being asked is started again
after a short backoff (``RESTART_DELAYS``); connections for it wait, up to
``QUEUE_TIMEOUT`` seconds, and connections it had been sent but had not
taken yet go to its successor.  New sessions meanwhile go to the other
workers, whose sessions carry on.  SIGTERM stops the listeners, sends SIGTERM
to every worker and waits for them to exit (their sessions' destroyed hooks
and ``on_server_unloaded`` run), then the parent exits 0.

Worker logs: each worker writes Twisted's JSON log events to its stdout; the
parent re-emits them into its own log with the system ``worker N``, so one
log (text or ``--log-format json``) holds every process's lines.

Tests: tests/test_workers.py (in memory); tests/e2e/test_worker_processes.py (real processes)
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import socket
import struct
import sys
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import LogLevel, Logger, eventFromJSON
from twisted.protocols.basic import Int32StringReceiver
from twisted.python import usage

from . import logs, reactors, routing
from .listeners import add_listeners
from .metrics import Registry

log = Logger(observer=logs.observer)

#: Seconds a connection may take to send its first request head.
HEAD_TIMEOUT = 30.0
#: Seconds a connection waits for its worker to (re)start before it is answered 503.
QUEUE_TIMEOUT = 30.0
#: Seconds before restarting a worker that exited, by how many times in a row it exited soon after starting.
RESTART_DELAYS = (0.2, 1.0, 2.0, 5.0, 10.0)
#: A worker that ran this long resets its restart backoff.
STABLE_AFTER = 30.0
#: Seconds a worker has to exit after SIGTERM before it gets SIGKILL (discarding a session runs a full
#: garbage collection in Bokeh's Document.destroy, so thousands of sessions take a while).
STOP_TIMEOUT = 60.0

# Messages on a worker's Unix socket: one type byte, then the body.
MSG_CONNECTION = b"C"  # parent -> worker: struct CONNECTION_HEADER, then the bytes already read; fd attached
MSG_ACK = b"A"  # worker -> parent: struct ">Q" serial: the connection is the worker's now
MSG_READY = b"R"  # worker -> parent: apps loaded, serving
MSG_METRICS = b"M"  # worker -> parent: JSON of its metrics.Registry snapshot, every METRICS_INTERVAL s
METRICS_INTERVAL = 1.0
CONNECTION_HEADER = struct.Struct(">QB")  # serial, address family

_TLS_ENDPOINTS = ("ssl", "tls", "le", "lets")


def worker_count(value: int | None) -> int:
    """The number of workers ``--workers VALUE`` asks for (0: one per core)."""
    return value or os.cpu_count() or 1


def check_worker_options(options: usage.Options) -> None:
    """Refuse option combinations --workers cannot serve; called by ``tap.Options.postOptions`` when --workers is given."""
    if options["workers"] < 0:
        raise usage.UsageError("--workers must be 0 (one per core) or a positive number of processes")
    if options.get("dev"):
        raise usage.UsageError("--dev reloads apps inside one process; run it without --workers")
    for endpoint in options["listen"]:
        if endpoint.split(":", 1)[0].lower() in _TLS_ENDPOINTS:
            raise usage.UsageError(
                f"--workers routes each connection by its HTTP request, which it cannot read inside TLS "
                f"(--listen {endpoint}): terminate TLS in nginx (etc/nginx/docsyncd-hash.conf) or run without --workers")


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- one connection in the parent ---------------------------------------------------


def _http_error(transport: Any, code: int, reason: str, detail: str, retry_after: int | None = None) -> None:
    """Answer a connection the parent will not hand over, and close it."""
    _http_answer(transport, code, reason, f"{code} {reason}: {detail}\n", retry_after=retry_after)


def _http_answer(transport: Any, code: int, reason: str, text: str, content_type: str = "text/plain; charset=utf-8",
                 retry_after: int | None = None) -> None:
    """Answer a connection from the parent itself, and close it."""
    body = text.encode("utf-8")
    head = [f"HTTP/1.1 {code} {reason}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Connection: close"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    transport.loseConnection()


class Handoff:
    """An accepted connection on its way to a worker: its transport, the bytes read, the session it names."""

    def __init__(self, serial: int, transport: Any, data: bytes, session_id: str | None, target: str):
        self.serial = serial
        self.transport = transport
        self.data = data
        self.session_id = session_id
        self.target = target  # the request target, for log lines
        self.expiry: Any = None  # IDelayedCall while queued
        self.done = False

    @property
    def family(self) -> int:
        return int(self.transport.socket.family)

    def fileno(self) -> int:
        return self.transport.fileno()

    def release(self) -> None:
        """Close the parent's copy of the socket, leaving the connection to the worker.

        A plain close: ``shutdown()`` would end the connection for the worker
        too (it acts on the socket, not on this process's descriptor).
        ``_shouldShutdown`` is Twisted's switch for exactly this (it is what
        an adopted listening port uses).
        """
        self._finish()
        self.transport._shouldShutdown = False
        self.transport.loseConnection()

    def refuse(self, code: int, reason: str, detail: str, retry_after: int | None = None) -> None:
        """Answer the client from the parent (no worker will), and close the connection."""
        self._finish()
        _http_error(self.transport, code, reason, detail, retry_after)

    def _finish(self) -> None:
        self.done = True
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        self.expiry = None


class HeadReader(protocol.Protocol):
    """The parent's side of an accepted connection: read the first request head, then hand the connection over."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.buffer = b""
        self.timeout: Any = None
        self.handed = False

    def connectionMade(self) -> None:
        if ISSLTransport.providedBy(self.transport) or getattr(self.transport, "socket", None) is None:
            log.error("--workers cannot route a connection on this listener (TLS or not a socket); closing it")
            self.transport.abortConnection()
            return
        self.timeout = self.pool.clock.callLater(HEAD_TIMEOUT, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.handed:
            return
        self.buffer += data
        try:
            head = routing.parse_head(self.buffer)
            if head is None:
                return
            session_id = routing.session_named(head.target, head.headers)
        except (routing.BadHead, routing.BadArgument) as e:
            too_large = isinstance(e, routing.BadHead) and len(self.buffer) > routing.MAX_HEAD
            self._refuse(431 if too_large else 400, "Request Header Fields Too Large" if too_large else "Bad Request",
                         str(e))
            return
        except Exception:  # a bug here must not drop the connection without an answer
            log.failure("could not read the request head from {peer}", peer=self._peer())
            self._refuse(500, "Internal Server Error", "the server could not route this request")
            return
        self._stop_timer()
        self.handed = True
        if self.pool.answer_operations(head.target, self.transport):
            return
        self.transport.stopReading()
        self.pool.dispatch(Handoff(self.pool.next_serial(), self.transport, self.buffer, session_id, head.target))
        self.buffer = b""

    def _refuse(self, code: int, reason: str, detail: str) -> None:
        self._stop_timer()
        self.handed = True
        log.warn("refused a connection from {peer}: {detail}; answered {code}", peer=self._peer(), detail=detail,
                 code=code)
        _http_error(self.transport, code, reason, detail)

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"

    def _timed_out(self) -> None:
        self.timeout = None
        if not self.handed:
            self.handed = True
            log.info("closed a connection from {peer} that sent no request head within {s:g} s",
                     peer=self._peer(), s=HEAD_TIMEOUT)
            _http_error(self.transport, 408, "Request Timeout", "no request head")

    def _stop_timer(self) -> None:
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_timer()


class RoutingFactory(protocol.Factory):
    """What the parent's listeners accept with: a ``HeadReader`` per connection."""

    noisy = False

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    def buildProtocol(self, addr: Any) -> HeadReader:
        return HeadReader(self.pool)


# -- one worker, seen from the parent --------------------------------------------------


class ParentControl(Int32StringReceiver):
    """The parent's end of a worker's Unix socket: connections out, acknowledgements and readiness in."""

    MAX_LENGTH = 4 * 1024 * 1024  # a metrics snapshot may outgrow a request head

    def __init__(self, worker: Worker):
        self.worker = worker

    def send_connection(self, handoff: Handoff) -> None:
        self.transport.sendFileDescriptor(handoff.fileno())
        self.sendString(MSG_CONNECTION + CONNECTION_HEADER.pack(handoff.serial, handoff.family) + handoff.data)

    def stringReceived(self, message: bytes) -> None:
        kind, body = message[:1], message[1:]
        if kind == MSG_ACK:
            (serial,) = struct.unpack(">Q", body)
            self.worker.acknowledged(serial)
        elif kind == MSG_READY:
            self.worker.became_ready(self)
        elif kind == MSG_METRICS:
            self.worker.metrics = json.loads(body)
        else:
            log.warn("worker {index} sent an unknown message {kind!r}", index=self.worker.index, kind=kind)

    def connectionLost(self, reason: Any = None) -> None:
        self.worker.control_lost(self)


class _ControlFactory(protocol.Factory):
    noisy = False

    def __init__(self, worker: Worker):
        self.worker = worker

    def buildProtocol(self, addr: Any) -> ParentControl:
        return ParentControl(self.worker)


class WorkerProcessProtocol(protocol.ProcessProtocol):
    """A worker process: its log events (stdout, JSON) and stderr lines go to the parent's log; its exit to the pool."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            if line.strip():
                self._line(fd, line)

    def _line(self, fd: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if fd == 1:
            try:
                event = eventFromJSON(text)
            except ValueError:
                event = None
            if isinstance(event, dict) and "log_level" in event:
                level = event.get("log_level")
                level_name = level.name if isinstance(level, LogLevel) else "info"
                event["log_system"] = f"worker {self.worker.index}: {event.get('log_namespace', '-')}#{level_name}"
                event["docsync_worker"] = self.worker.index
                logs.observer(event)
                return
        log.info("{text}", text=text, log_system=f"worker {self.worker.index}: {'stdout' if fd == 1 else 'stderr'}")

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._partial.items():
            if rest.strip():
                self._line(fd, rest)
        self._partial = {1: b"", 2: b""}
        self.worker.exited(reason)


class Worker:
    """One worker slot: its process (restarted as needed), its socket, the connections on their way to it."""

    def __init__(self, pool: WorkerPool, index: int):
        self.pool = pool
        self.index = index
        self.process: Any = None
        self.pid: int | None = None
        self.control: ParentControl | None = None
        self.ready = False
        self.started_at = 0.0
        self.quick_exits = 0
        self.pending: collections.deque[Handoff] = collections.deque()
        self.unacked: dict[int, Handoff] = {}
        self.restart_call: Any = None
        self.stopping = False
        self._exit_waiters: list[defer.Deferred] = []
        #: The worker's latest metrics snapshot (metrics.Registry.snapshot), None before its first.
        self.metrics: dict[str, Any] | None = None

    # -- the process -----------------------------------------------------------------

    def start(self) -> None:
        self.restart_call = None
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = self.pool.spawn(WorkerProcessProtocol(self), self.index, child_end.fileno())
        except OSError as e:  # out of processes or memory: try again later, as after an exit
            parent_end.close()
            self.quick_exits += 1
            delay = RESTART_DELAYS[min(self.quick_exits - 1, len(RESTART_DELAYS) - 1)]
            log.error("could not start worker {index} ({error}); trying again in {delay:g} s",
                      index=self.index, error=e, delay=delay)
            self.restart_call = self.pool.clock.callLater(delay, self.start)
            return
        finally:
            child_end.close()
        self.pid = getattr(self.process, "pid", None)
        try:
            self.process.closeStdin()  # a worker reads nothing from the parent but its socket
        except (AttributeError, OSError):
            pass
        self.started_at = self.pool.clock.seconds()
        parent_end.setblocking(False)
        try:
            self.pool.connect_control(parent_end.fileno(), _ControlFactory(self))
        finally:
            parent_end.close()  # adoptStreamConnection took its own descriptor
        log.info("worker {index} started (pid {pid})", index=self.index, pid=self.pid)

    def became_ready(self, control: ParentControl) -> None:
        self.control = control
        self.ready = True
        log.info("worker {index} (pid {pid}) is serving", index=self.index, pid=self.pid)
        self.flush()
        self.pool.worker_ready(self)

    def control_lost(self, control: ParentControl) -> None:
        if self.control is control or self.control is None:
            self.control = None
            self.ready = False

    def exited(self, reason: Any) -> None:
        self.ready = False
        self.process = None
        if self.metrics is not None:  # its counts stay in the totals; its gauges end with it
            self.pool.retired.add(self.metrics, with_gauges=False)
            self.metrics = None
        if self.control is not None:
            self.control.transport.loseConnection()
            self.control = None
        # Connections sent but not taken: the dead worker's successor gets them, in order.
        for serial in sorted(self.unacked, reverse=True):
            handoff = self.unacked.pop(serial)
            if self.stopping:
                handoff.refuse(503, "Service Unavailable", "the server is shutting down")
            else:
                self._queue(handoff, front=True)
        waiters, self._exit_waiters = self._exit_waiters, []
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        if self.stopping:
            log.info("worker {index} (pid {pid}) exited ({how})", index=self.index, pid=self.pid,
                     how=f"signal {sig}" if sig else f"code {code}")
        else:
            lived = self.pool.clock.seconds() - self.started_at
            self.quick_exits = 0 if lived >= STABLE_AFTER else self.quick_exits + 1
            delay = RESTART_DELAYS[min(max(self.quick_exits - 1, 0), len(RESTART_DELAYS) - 1)]
            log.error("worker {index} (pid {pid}) exited unexpectedly ({how}) after {lived:.1f} s; "
                      "restarting it in {delay:g} s, its sessions are lost, the other workers' carry on",
                      index=self.index, pid=self.pid, how=f"killed by signal {sig}" if sig else f"exit code {code}",
                      lived=lived, delay=delay)
            self.restart_call = self.pool.clock.callLater(delay, self.start)
            self.pool.reroute_sessionless(self)
        for d in waiters:
            d.callback(None)

    def stop(self) -> defer.Deferred:
        """SIGTERM the worker and wait for it to exit (SIGKILL after ``STOP_TIMEOUT``)."""
        self.stopping = True
        if self.restart_call is not None and self.restart_call.active():
            self.restart_call.cancel()
        self.restart_call = None
        for handoff in list(self.pending):
            handoff.refuse(503, "Service Unavailable", "the server is shutting down")
        self.pending.clear()
        if self.process is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._exit_waiters.append(d)
        try:
            self.process.signalProcess("TERM")
        except error.ProcessExitedAlready:
            pass
        killer = self.pool.clock.callLater(STOP_TIMEOUT, self._kill)

        def cancel_killer(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result

        return d.addBoth(cancel_killer)

    def _kill(self) -> None:
        log.error("worker {index} (pid {pid}) did not exit within {s:g} s of SIGTERM; killing it",
                  index=self.index, pid=self.pid, s=STOP_TIMEOUT)
        if self.process is not None:
            try:
                self.process.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    # -- connections -------------------------------------------------------------------

    def take(self, handoff: Handoff) -> None:
        """Send ``handoff`` to this worker now, or queue it until the worker is ready."""
        if self.ready and self.control is not None and not self.pending:
            self._send(handoff)
        else:
            self._queue(handoff)

    def _queue(self, handoff: Handoff, front: bool = False) -> None:
        if handoff.expiry is None:
            handoff.expiry = self.pool.clock.callLater(QUEUE_TIMEOUT, self._expire, handoff)
        if front:
            self.pending.appendleft(handoff)
        else:
            self.pending.append(handoff)

    def flush(self) -> None:
        while self.pending and self.ready and self.control is not None:
            self._send(self.pending.popleft())

    def _send(self, handoff: Handoff) -> None:
        if handoff.expiry is not None and handoff.expiry.active():
            handoff.expiry.cancel()
        handoff.expiry = None
        self.unacked[handoff.serial] = handoff
        self.control.send_connection(handoff)

    def acknowledged(self, serial: int) -> None:
        handoff = self.unacked.pop(serial, None)
        if handoff is not None:
            handoff.release()

    def _expire(self, handoff: Handoff) -> None:
        """A queued connection waited ``QUEUE_TIMEOUT``: wherever it waits now, answer it 503."""
        handoff.expiry = None
        for worker in self.pool.workers:
            if handoff in worker.pending:
                worker.pending.remove(handoff)
                log.warn("no worker {index} to serve {target} for {s:g} s; answered 503", index=worker.index,
                         target=handoff.target, s=QUEUE_TIMEOUT)
                handoff.refuse(503, "Service Unavailable", "the worker for this session is restarting", retry_after=1)
                return


class WorkerPool(service.Service):
    """The workers and the routing of connections to them (see the module docstring)."""

    name = "workers"

    def __init__(self, count: int, worker_argv: Callable[[int, int], list[str]], reactor: Any,
                 env: dict[str, str] | None = None, cwd: str | None = None, clock: Any = None, prefix: str = ""):
        self.count = count
        self.worker_argv = worker_argv
        self.reactor = reactor
        self.clock = clock or reactor
        self.env = env if env is not None else dict(os.environ)
        self.cwd = cwd or os.getcwd()
        self.workers = [Worker(self, i) for i in range(count)]
        #: What workers that exited had counted, so totals do not drop when one restarts.
        self.retired = Registry()
        self.prefix = prefix
        self._turn = itertools.cycle(range(count))
        self._serials = itertools.count(1)

    def next_serial(self) -> int:
        return next(self._serials)

    def spawn(self, process_protocol: protocol.ProcessProtocol, index: int, control_fd: int) -> Any:
        """Start worker ``index``'s process with ``control_fd`` as its descriptor 3."""
        argv = self.worker_argv(index, 3)
        return self.reactor.spawnProcess(
            process_protocol, argv[0], argv, env=self.env, path=self.cwd,
            childFDs={0: "w", 1: "r", 2: "r", 3: control_fd},
        )

    def connect_control(self, fd: int, factory: protocol.Factory) -> None:
        """Adopt the parent's end (``fd``) of a worker's Unix socket, speaking ``factory``'s protocol."""
        self.reactor.adoptStreamConnection(fd, socket.AF_UNIX, factory)

    # -- service ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        log.info("starting {n} worker processes", n=self.count)
        for worker in self.workers:
            worker.start()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        log.info("stopping {n} workers", n=self.count)
        d = defer.gatherResults([w.stop() for w in self.workers], consumeErrors=True)
        return d.addCallback(lambda _: log.info("all workers exited"))

    # -- operations: /metrics and /health across the workers ----------------------------

    def metrics(self) -> Registry:
        """Every worker's latest counts summed, with those of workers that exited."""
        total = Registry()
        total.add(self.retired.snapshot(), with_gauges=False)
        for worker in self.workers:
            if worker.metrics is not None:
                total.add(worker.metrics)
        return total

    def answer_operations(self, target: str, transport: Any) -> bool:
        """Answer ``/metrics`` and ``/health`` here, for all workers; False for any other path."""
        path = urlsplit(target).path
        if path == f"{self.prefix}/metrics":
            _http_answer(transport, 200, "OK", self.metrics().render(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == f"{self.prefix}/health":
            ready = sum(w.ready for w in self.workers)
            text = f"{'ok' if ready == self.count else 'degraded'} workers={ready}/{self.count}\n"
            _http_answer(transport, 200 if ready == self.count else 503,
                         "OK" if ready == self.count else "Service Unavailable", text)
        else:
            return False
        return True

    # -- routing ------------------------------------------------------------------------

    def choose(self, session_id: str | None) -> Worker:
        """The worker for a request naming ``session_id`` (its owner), or the next ready one in turn."""
        if session_id is not None:
            return self.workers[routing.owner(session_id, self.count)]
        for _ in range(self.count):
            worker = self.workers[next(self._turn)]
            if worker.ready:
                return worker
        return self.workers[next(self._turn)]  # none ready yet: queue with the next one

    def dispatch(self, handoff: Handoff) -> None:
        if not self.running:
            handoff.refuse(503, "Service Unavailable", "the server is shutting down")
            return
        self.choose(handoff.session_id).take(handoff)

    def worker_ready(self, worker: Worker) -> None:
        """A worker came (back): connections without a session that wait elsewhere may go to it."""
        for other in self.workers:
            if other is not worker and not other.ready:
                self.reroute_sessionless(other)

    def reroute_sessionless(self, worker: Worker) -> None:
        """Move the connections naming no session that wait for ``worker`` to ready workers."""
        if not any(w.ready for w in self.workers if w is not worker):
            return
        keep: collections.deque[Handoff] = collections.deque()
        moving = []
        for handoff in worker.pending:
            (keep if handoff.session_id is not None else moving).append(handoff)
        worker.pending = keep
        for handoff in moving:
            self.choose(None).take(handoff)


# -- the parent's service tree ------------------------------------------------------------


def make_supervisor_service(options: usage.Options, reactor: Any) -> service.MultiService:
    """The parent process of ``--workers``: listeners that route, and the workers (see the module docstring)."""
    from .apps import load_apps

    logs.set_level(options["log-level"])
    load_apps(options["apps"], options["app-argv"])  # a broken app stops the parent before any worker starts

    count = worker_count(options["workers"])
    argv = list(options["argv"])
    reactor_name = reactors.reactor_name(reactor)

    def worker_argv(index: int, control_fd: int) -> list[str]:
        return [sys.executable, "-m", "docsyncd.worker", "--worker-index", str(index), "--worker-count", str(count),
                "--control-fd", str(control_fd), "--reactor", reactor_name, "--", *argv]

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    top = service.MultiService()
    pool = WorkerPool(count, worker_argv, reactor, env=env, cwd=os.getcwd(), prefix=options["prefix"])
    pool.setServiceParent(top)  # first: stopped last, after the listeners
    factory = RoutingFactory(pool)
    add_listeners(top, options["listen"], factory, reactor)
    return top
