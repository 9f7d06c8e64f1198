"""One worker process of ``--workers``: ``python -m docsyncd.worker ... -- <docsync options>``.

Started by the parent (docsyncd/workers.py), never by hand.  A worker builds
the same Site and apps service as a single-process daemon
(``server.build_site``), listens on nothing, and serves the connections the
parent hands it over its Unix socket (descriptor ``--control-fd``): each
arrives as a file descriptor (SCM_RIGHTS) followed by a message with the
bytes the parent already read, which the worker replays into the new HTTP
channel.

It mints only session ids it owns (``routing.owner(id, count) == index``),
so a page it serves brings its websocket back to it, and it answers a
request naming another worker's session (one that arrived on a kept-alive
connection first routed for something else) with a redirect to the same URL
on a new connection (``RoutedRequestMixin``).

Its log events go to stdout as JSON, one per line, for the parent to re-emit
(``BatchedJSONLog``: in batches, so that the parent wakes up seldom).
It stops on SIGTERM (exit 0, after its sessions' destroyed hooks ran), when
the parent's end of the socket closes (the parent is gone), and ignores
SIGINT, which Ctrl-C sends to the whole process group: the parent stops it.

Tests: tests/test_workers.py; tests/e2e/test_worker_processes.py
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import struct
import sys
import threading
from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel, Logger, eventAsJSON
from twisted.protocols.basic import Int32StringReceiver
from twisted.python import threadable
from zope.interface import implementer

from . import logs, reactors, routing
from .metrics import REGISTRY
from .workers import CONNECTION_HEADER, METRICS_INTERVAL, MSG_ACK, MSG_CONNECTION, MSG_METRICS, MSG_READY

log = Logger(observer=logs.observer)

#: Status a worker exits with when its options or apps cannot be served (the parent logs its stderr).
EXIT_CONFIG = 2


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m docsyncd.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-index", type=int, required=True)
    parser.add_argument("--worker-count", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--reactor", choices=[reactors.DEFAULT, reactors.ASYNCIO], default=reactors.DEFAULT)
    at = argv.index("--") if "--" in argv else len(argv)
    args, rest = parser.parse_args(argv[:at]), argv[at + 1:]
    if not 0 <= args.worker_index < args.worker_count:
        parser.error("--worker-index must be below --worker-count")
    return args, rest


def main(argv: list[str] | None = None) -> int:
    args, docsync_argv = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.reactor == reactors.ASYNCIO:
        reactors.install_asyncio_reactor()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner
    from twisted.python import usage

    from . import tap
    from .sessions import collect_as_a_server

    log_out = BatchedJSONLog(sys.stdout, reactor)
    globalLogBeginner.beginLoggingTo([log_out])
    reactor.addSystemEventTrigger("after", "shutdown", log_out.flush)
    options = tap.Options()
    try:
        options.parseOptions(docsync_argv)
    except usage.UsageError as e:
        print(f"docsync worker: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    try:
        top = make_worker_service(options, args.worker_index, args.worker_count, args.control_fd, reactor)
    except SystemExit as e:
        print(str(e.code), file=sys.stderr, flush=True)
        return EXIT_CONFIG
    reactor.callWhenRunning(top.startService)
    reactor.callWhenRunning(collect_as_a_server)  # after the apps' on_server_loaded: sessions.py
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.callWhenRunning(tap.exit_zero_on_sigterm, reactor)
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)
    reactor.run()
    log_out.flush()
    return 0


def make_worker_service(options: Any, index: int, count: int, control_fd: int, reactor: Any) -> Any:
    """The worker's service tree: the apps, and the socket to the parent that brings connections."""
    from .apps import AppLoadError, load_app
    from .guard import GuardError
    from .server import build_site
    from .store import StoreError

    logs.set_level(options["log-level"])
    options["owns-session-id"] = lambda session_id: routing.owner(session_id, count) == index
    try:
        apps = [load_app(path, options["app-argv"]) for path in options["apps"]]
        site, apps_service = build_site(apps, options, reactor)
    except (AppLoadError, StoreError, GuardError) as e:
        raise SystemExit(f"docsync: {e}")
    site.requestFactory = routed_request_class(site.requestFactory)
    site.worker_route = (index, count)
    top = service.MultiService()
    apps_service.setServiceParent(top)
    ControlService(control_fd, site, index, reactor).setServiceParent(top)  # after the apps: ready means serving
    return top


# -- the log --------------------------------------------------------------------------------


class BatchedJSONLog:
    """Log events as JSON lines on ``out`` (the pipe the parent reads), written in batches.

    Every write wakes the parent, which then takes a core from the workers
    for a moment; writing what accumulated every ``delay`` seconds instead of
    every event keeps those wake-ups few.  Warnings and worse, events from
    other threads, and the end of the process are written at once.
    """

    URGENT = frozenset([LogLevel.warn, LogLevel.error, LogLevel.critical])

    def __init__(self, out: Any, reactor: Any, delay: float = 0.05, limit: int = 64 * 1024):
        self.out = out
        self.reactor = reactor
        self.delay = delay
        self.limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._call: Any = None
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        line = eventAsJSON(event) + "\n"
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
        if event.get("log_level") in self.URGENT or self._size > self.limit or not threadable.isInIOThread():
            self.flush()
        elif self._call is None:
            self._call = self.reactor.callLater(self.delay, self.flush)

    def flush(self) -> None:
        if threadable.isInIOThread() and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        with self._lock:
            text, self._lines, self._size = "".join(self._lines), [], 0
            if text:
                try:
                    self.out.write(text)
                    self.out.flush()
                except (BrokenPipeError, ValueError):  # the parent is gone (the worker stops too)
                    pass


# -- requests on a handed-over connection -------------------------------------------------


def routed_request_class(base: type) -> type:
    """``base`` (the site's request class) with ``RoutedRequestMixin`` in front."""
    return type(f"Routed{base.__name__}", (RoutedRequestMixin, base), {})


class RoutedRequestMixin:
    """Sends a request for another worker's session back through the parent (see the module docstring)."""

    def process(self) -> None:
        route = getattr(self.channel.site, "worker_route", None)
        try:
            session_id = routing.request_session(self) if route is not None else None
        except routing.BadArgument:
            session_id = None  # the page answers 400 itself
        if session_id is None or routing.owner(session_id, route[1]) == route[0]:
            return super().process()
        self.site = self.channel.site
        upgrade = b"websocket" in (self.getHeader(b"upgrade") or b"").lower()
        code = 421 if upgrade or self.method not in (b"GET", b"HEAD") else 307
        log.info("{method} {uri} names a session of worker {owner}, on a connection routed here: answered {code}, "
                 "to come back on a new connection", method=self.method.decode("latin-1"),
                 uri=self.uri.decode("latin-1"), owner=routing.owner(session_id, route[1]), code=code)
        self.setResponseCode(code)
        if code == 307:
            self.setHeader(b"location", self.uri)
        self.setHeader(b"connection", b"close")
        self.setHeader(b"content-length", b"0")
        self.channel.persistent = False
        self.finish()


# -- the socket to the parent ---------------------------------------------------------------


class _Adopting(Factory):
    """The site, remembering the protocol it built for the connection being adopted."""

    def __init__(self, site: Any):
        self.site = site
        self.built: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        self.built = self.site.buildProtocol(addr)
        return self.built


@implementer(IFileDescriptorReceiver)
class WorkerControl(Int32StringReceiver):
    """The worker's end of its Unix socket: connections in, acknowledgements out."""

    MAX_LENGTH = routing.MAX_HEAD + 1024

    def __init__(self, control: ControlService):
        self.control = control
        self.descriptors: collections.deque[int] = collections.deque()

    def connectionMade(self) -> None:
        self.sendString(MSG_READY)
        self.control.connected(self)

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.descriptors.append(descriptor)

    def stringReceived(self, message: bytes) -> None:
        if message[:1] != MSG_CONNECTION:
            log.warn("unknown message {kind!r} from the parent", kind=message[:1])
            return
        serial, family = CONNECTION_HEADER.unpack_from(message, 1)
        data = message[1 + CONNECTION_HEADER.size:]
        if not self.descriptors:
            log.error("connection {serial} came without its descriptor", serial=serial)
            return
        descriptor = self.descriptors.popleft()
        adopting = _Adopting(self.control.site)
        try:
            self.control.reactor.adoptStreamConnection(descriptor, family, adopting)
        except OSError as e:  # the client left meanwhile (ENOTCONN from getpeername)
            log.debug("connection {serial} closed before it was adopted: {e}", serial=serial, e=e)
        finally:
            os.close(descriptor)  # adoptStreamConnection works on its own duplicate
            self.sendString(MSG_ACK + struct.pack(">Q", serial))
        if adopting.built is not None and data:
            adopting.built.dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        for descriptor in self.descriptors:
            os.close(descriptor)
        self.descriptors.clear()
        self.control.parent_gone()


class ControlService(service.Service):
    """Adopts the Unix socket to the parent when started; stops the worker when the parent goes away."""

    def __init__(self, control_fd: int, site: Any, index: int, reactor: Any):
        self.name = f"control-{index}"
        self.control_fd = control_fd
        self.site = site
        self.index = index
        self.reactor = reactor
        self.stopping = False

    def connected(self, protocol: WorkerControl) -> None:
        """Send the parent this worker's metrics now and every METRICS_INTERVAL s (it answers /metrics)."""
        self._metrics = LoopingCall(lambda: protocol.sendString(MSG_METRICS + json.dumps(REGISTRY.snapshot()).encode()))
        self._metrics.clock = self.reactor
        self._metrics.start(METRICS_INTERVAL)

    def startService(self) -> None:
        super().startService()
        self._metrics: LoopingCall | None = None
        self.site.noisy = False  # no "Starting factory <...>" line per worker
        self.site.doStart()
        factory = Factory.forProtocol(lambda: WorkerControl(self))
        factory.noisy = False
        self.reactor.adoptStreamConnection(self.control_fd, socket.AF_UNIX, factory)
        os.close(self.control_fd)

    def stopService(self) -> None:
        super().stopService()
        if self._metrics is not None and self._metrics.running:
            self._metrics.stop()
        self.stopping = True
        self.site.doStop()

    def parent_gone(self) -> None:
        if not self.stopping:
            log.warn("the parent process closed its socket; worker {index} stops", index=self.index)
            self.stopping = True
            self.reactor.stop()


if __name__ == "__main__":
    sys.exit(main())
