"""Limits: each refusal has a clear answer and one log line.

| limit | option | answer |
| --- | --- | --- |
| request line length | ``--max-request-line`` | 414, connection closed |
| request header bytes / count | ``--max-header-size``, ``--max-headers`` | 431, connection closed |
| request body bytes | ``--max-body-size`` | 413, connection closed |
| time to send a whole request: line, headers, body (websocket handshakes too) | ``--handshake-timeout`` | 408, connection closed |
| live sessions, all apps | ``--max-sessions`` | 503 with Retry-After, before any document is built |
| new sessions per client address per second | ``--max-session-rate`` | 503 with Retry-After, before any document is built |
| bytes queued for a websocket client that stopped reading | ``--websocket-max-send-buffer`` | close 1008 "client too slow" |
| websocket message size | ``--websocket-max-message-size`` | close 1009 (Autobahn; ``protocol.SyncFactory``; a Bokeh message's frames together: ``wire.MessageAssembler``) |
| open connections, in total and per client address | ``--max-connections``, ``--max-connections-per-address`` | 503 with Retry-After, connection closed (``ConnectionCaps``) |

``LimitsChannelMixin`` goes on the HTTP channel (``guard.GuardedChannel``),
``SessionAdmission`` is asked by ``guard.GuardedRequest`` before a resource
that would create a session renders, and ``BackpressureMixin`` goes on the
websocket protocol (``protocol.SyncProtocol``).

Tests: tests/test_limits.py; against the real daemon in tests/e2e/test_deploy_security.py
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http

from . import logs

log = Logger(observer=logs.observer)

MIB = 1024 * 1024

CLOSE_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class RequestLimits:
    """Sizes and times for one HTTP request, as ``--max-*`` and ``--handshake-timeout`` set them.

    The defaults are Twisted's own (16 KiB for the request line and for the
    headers, 500 headers), a body of 10 MiB (docsyncd takes no uploads) and
    10 s to send the request's line and headers.
    """

    max_request_line: int = 16384
    max_header_size: int = 16384
    max_headers: int = 500
    max_body_size: int = 10 * MIB
    handshake_timeout: float = 10.0

    @classmethod
    def from_options(cls, options: Any) -> "RequestLimits":
        return cls(
            max_request_line=options["max-request-line"],
            max_header_size=options["max-header-size"],
            max_headers=options["max-headers"],
            max_body_size=options["max-body-size"],
            handshake_timeout=options["handshake-timeout"] / 1000.0,
        )


class LimitsChannelMixin:
    """For an ``HTTPChannel``: enforce ``RequestLimits`` with a status code instead of a silent drop.

    Twisted answers an over-long line by dropping the connection and too many
    headers with a bare 400; here each gets its own status, a reason in the
    body and a log line.  The handshake timer runs from the connection's
    start (and from the first byte of each later request) until the whole
    request (line, headers, body) is in, so a client that sends a request a
    byte at a time (or nothing at all) is disconnected after
    ``handshake_timeout`` seconds.  A websocket's opening handshake is such a
    request.
    """

    #: Set by the site (``guard.guard_site``); the defaults otherwise.
    request_limits = RequestLimits()

    _refused = False
    _header_timer = None
    _awaiting_headers = True
    _in_headers = False
    _header_bytes = 0
    _header_count = 0
    _body_bytes = 0

    def _limits(self) -> RequestLimits:
        site = getattr(self, "site", None)
        return getattr(site, "request_limits", None) or self.request_limits

    #: This connection's place in ``ConnectionCaps`` (None when refused or not counted).
    connection_slot: "ConnectionSlot | None" = None

    def connectionMade(self) -> None:
        limits = self._limits()
        # Twisted's own checks stay as a backstop, above ours.
        self.MAX_LENGTH = max(limits.max_request_line, limits.max_header_size) + 1
        self.totalHeadersSize = limits.max_request_line + limits.max_header_size + 4
        self.maxHeaders = limits.max_headers + 1
        super().connectionMade()
        caps = getattr(getattr(self, "site", None), "connection_caps", None)
        if caps is not None:
            peer = self.transport.getPeer()
            self.connection_slot, refusal = caps.take(getattr(peer, "host", None) or "unix")
            if refusal is not None:
                reason, option = refusal
                self._refuse(http.SERVICE_UNAVAILABLE, reason, option, headers=b"Retry-After: 5\r\n")
                return
        self._start_header_timer()

    # -- the handshake timer ---------------------------------------------------

    def _start_header_timer(self) -> None:
        timeout = self._limits().handshake_timeout
        if timeout and self._header_timer is None:
            self._header_timer = self.callLater(timeout, self._header_timeout)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            if self._header_timer.active():
                self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        self._refuse(http.REQUEST_TIMEOUT, f"no complete request within {self._limits().handshake_timeout:g} s",
                     "--handshake-timeout")

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers and self._header_timer is None and not self._handlingRequest:
            self._start_header_timer()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        limits = self._limits()
        if not self._in_headers:
            if len(line) > limits.max_request_line:
                return self._refuse(http.REQUEST_URI_TOO_LONG,
                                    f"request line longer than {limits.max_request_line} bytes", "--max-request-line")
            if line:  # an empty line before the request line is tolerated, as by Twisted
                self._in_headers = True
                self._header_bytes = self._header_count = 0
        elif line:
            self._header_bytes += len(line)
            self._header_count += 1
            if self._header_bytes > limits.max_header_size:
                return self._refuse(431, f"request headers larger than {limits.max_header_size} bytes",
                                    "--max-header-size")
            if self._header_count > limits.max_headers:
                return self._refuse(431, f"more than {limits.max_headers} request headers", "--max-headers")
        return super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        limits = self._limits()
        if not self._in_headers:
            self._refuse(http.REQUEST_URI_TOO_LONG, f"request line longer than {limits.max_request_line} bytes",
                         "--max-request-line")
        else:
            self._refuse(431, f"request headers larger than {limits.max_header_size} bytes", "--max-header-size")

    def headerReceived(self, line: bytes) -> bool:
        ok = super().headerReceived(line)
        limit = self._limits().max_body_size
        if ok and self.length is not None and self.length > limit:
            self._refuse(http.REQUEST_ENTITY_TOO_LARGE, f"request body of {self.length} bytes is larger than {limit}",
                         "--max-body-size")
            return False
        return ok

    def allHeadersReceived(self) -> None:
        self._in_headers = False
        self._body_bytes = 0
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._stop_header_timer()
        self._awaiting_headers = False
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._handlingRequest and self._transferDecoder is not None:  # a body, chunked or not
            self._body_bytes += len(data)
            limit = self._limits().max_body_size
            if self._body_bytes > limit + 64 * 1024:  # room for chunk framing
                return self._refuse(http.REQUEST_ENTITY_TOO_LARGE, f"request body larger than {limit} bytes",
                                    "--max-body-size")
        super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        self._awaiting_headers = True

    def connectionLost(self, reason: Any) -> None:
        self._stop_header_timer()
        if self.connection_slot is not None:  # not handed over to a websocket (protocol.SyncResource)
            self.connection_slot.release()
        super().connectionLost(reason)

    # -- the answer ----------------------------------------------------------------

    def _refuse(self, code: int, reason: str, option: str, headers: bytes = b"") -> None:
        """Answer ``code`` with ``reason``, log one line, and close the connection."""
        if self._refused:
            return
        self._refused = True
        self._stop_header_timer()
        peer = self.transport.getPeer() if self.transport is not None else None
        log.warn("refused request from {peer}: {reason} ({option}); answered {code}",
                 peer=getattr(peer, "host", None) or str(peer), reason=reason, option=option, code=code)
        body = f"{code} {_phrase(code)}: {reason}\n".encode("utf-8")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"%sConnection: close\r\n\r\n%s" % (code, _phrase(code).encode("latin-1"), len(body), headers, body)
        )
        self.loseConnection()
        if self.abortTimeout is not None:  # a client that reads nothing does not keep the socket
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)


_PHRASES = {408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large"}


def _phrase(code: int) -> str:
    return _PHRASES.get(code) or http.RESPONSES.get(code, b"Error").decode("latin-1")


# -- connections -------------------------------------------------------------------


def default_max_connections(reserve: int = 64) -> int:
    """``--max-connections`` when not given: the open-file limit less ``reserve`` for files,
    the store and logs, so the server always has a descriptor left to answer 503 (0: no limit known)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 0
    return max(16, soft - reserve)


class ConnectionSlot:
    """One open connection counted by ``ConnectionCaps``; ``release`` once, when it closes."""

    def __init__(self, caps: "ConnectionCaps", address: str):
        self._caps = caps
        self.address = address
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._caps._release(self.address)


class ConnectionCaps:
    """Open connections in total (``--max-connections``) and per client address
    (``--max-connections-per-address``), counted from accept to close, websockets included.

    Past either, the connection is answered 503 with Retry-After and closed
    (``LimitsChannelMixin``), before any request is read: a crowd of slow
    connections cannot take every file descriptor and lock out new visitors.
    The address is the TCP peer's: behind a proxy every connection comes from
    the proxy, so leave the per-address cap off there (its default).
    """

    def __init__(self, max_total: int = 0, max_per_address: int = 0):
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def take(self, address: str) -> tuple[ConnectionSlot | None, tuple[str, str] | None]:
        """(slot, None) when a connection from ``address`` may stay open, else (None, (reason, option))."""
        if self.max_total and self.open >= self.max_total:
            return None, (f"{self.open} open connections, the most this server holds", "--max-connections")
        held = self._by_address.get(address, 0)
        if self.max_per_address and held >= self.max_per_address:
            return None, (f"{address} has {held} open connections", "--max-connections-per-address")
        self.open += 1
        self._by_address[address] = held + 1
        return ConnectionSlot(self, address), None

    def _release(self, address: str) -> None:
        self.open -= 1
        held = self._by_address.get(address, 1) - 1
        if held:
            self._by_address[address] = held
        else:
            self._by_address.pop(address, None)


# -- sessions --------------------------------------------------------------------


class TokenBucket:
    """``rate`` events per second on average, in bursts of at most ``max(1, rate)``."""

    def __init__(self, rate: float, now: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when an event may happen now (and counts it), else the seconds until one may."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class Refusal:
    """An HTTP answer in place of the resource: status, reason, extra headers."""

    code: int
    reason: str
    headers: dict[bytes, bytes]
    log_reason: str = ""


class SessionAdmission:
    """Whether a request may create a new session: ``--max-sessions`` and ``--max-session-rate``.

    Asked before the resource that would build the document renders, so a
    refused request costs no document.  ``live`` counts the sessions that
    exist or are being built, over every app.
    """

    MAX_TRACKED = 10000  # client addresses remembered; idle ones are forgotten first

    def __init__(self, clock: IReactorTime, live: Callable[[], int], max_sessions: int = 0,
                 max_rate: float = 0, retry_after_full: float = 15.0):
        self.clock = clock
        self.live = live
        self.max_sessions = max_sessions
        self.max_rate = max_rate
        self.retry_after_full = retry_after_full
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def active(self) -> bool:
        return bool(self.max_sessions or self.max_rate)

    def admit(self, address: str) -> Refusal | None:
        """None if ``address`` may create a session now (counted), else the 503 to answer."""
        if self.max_sessions:
            live = self.live()
            if live >= self.max_sessions:
                return self._refusal(self.retry_after_full, f"{live} live sessions, the most this server holds "
                                                            f"(--max-sessions {self.max_sessions})")
        if self.max_rate:
            now = self.clock.seconds()
            bucket = self._buckets.get(address)
            if bucket is None:
                self._forget_idle(now)
                bucket = self._buckets[address] = TokenBucket(self.max_rate, now)
            wait = bucket.take(now)
            if wait:
                return self._refusal(wait, f"{address} opens sessions faster than {self.max_rate:g} per second "
                                           f"(--max-session-rate)")
        return None

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) < self.MAX_TRACKED:
            return
        for address, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[address]
        while len(self._buckets) >= self.MAX_TRACKED:  # all busy: forget the oldest
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def _refusal(retry_after: float, reason: str) -> Refusal:
        seconds = max(1, math.ceil(retry_after))
        return Refusal(503, "The server is busy; try again later.", {b"retry-after": str(seconds).encode()},
                       log_reason=reason)


def live_sessions(managers: Iterable[Any]) -> int:
    """Sessions that exist or are being built, over ``managers``."""
    return sum(len(m.sessions) + getattr(m, "building", 0) for m in managers)


# -- slow websocket clients --------------------------------------------------------


class BackpressureMixin:
    """For an Autobahn protocol: hand bytes to the transport as fast as the client reads them, and close a
    client that stopped reading before its backlog grows without bound.

    Every byte the protocol sends (frames, pings, the close frame) passes
    ``sendData``, in order, into a queue of its own; the queue feeds the
    transport at most ``CHUNK`` bytes at a time, and only while the transport
    is not paused.  The protocol is the transport's streaming producer:
    Twisted pauses it once the transport holds more than its buffer size and
    resumes it when that drained, so each resume is proof that the client
    read, and the queue knows exactly how much still waits.  Writing big
    frames in chunks keeps that proof coming while a large document goes out.

    ``admit_message`` is asked before the first frame of each message: when
    more than ``factory.max_send_buffer`` bytes (``--websocket-max-send-buffer``;
    0: no limit) are still queued and the client has read nothing for
    ``factory.send_timeout`` seconds (``--websocket-send-timeout``), the
    message is not sent and the connection closes with 1008 ("client too
    slow") and one log line.  A message is thus sent
    whole or not at all, and a client that reads, however large the
    document or burst, is never cut off: it is what the client does not
    read, not what the server wrote in one turn, that counts.  The close
    frame cannot reach a client that reads nothing, so Autobahn's close
    handshake timeout then aborts the connection, which frees the queue.
    """

    #: Bytes handed to the transport at once (its own buffer then pauses the protocol).
    CHUNK = 256 * 1024

    too_slow = False
    _drain_waiters: list | None = None

    def connectionMade(self) -> None:
        self._outgoing: collections.deque[bytes] = collections.deque()
        self._outgoing_offset = 0  # bytes of _outgoing[0] already written
        self.queued_bytes = 0
        self._transport_paused = False
        self._last_read = self._now()
        super().connectionMade()
        # twisted.web's HTTPChannel registered itself before the upgrade; the websocket takes over.
        try:
            self.transport.unregisterProducer()
        except (AttributeError, RuntimeError):  # none registered
            pass
        try:
            self.transport.registerProducer(self, True)
        except (AttributeError, RuntimeError):  # a transport that takes no producer
            pass

    def _now(self) -> float:
        return self.factory.clock.seconds()

    # -- IPushProducer: the transport tells when its buffer is full and when it drained

    def pauseProducing(self) -> None:
        self._transport_paused = True

    def resumeProducing(self) -> None:
        self._transport_paused = False
        self._last_read = self._now()
        self._feed()

    def stopProducing(self) -> None:
        self._transport_paused = True
        self._forget_queue()

    def connectionLost(self, reason: Any) -> None:
        self._forget_queue()
        super().connectionLost(reason)

    @property
    def drained(self) -> bool:
        """Whether nothing waits in the connection's own queue: the client made room for all it was sent, but
        what sits in the transport's buffer (bounded by Twisted: it pauses the protocol when that is full)."""
        return not self._outgoing

    def when_drained(self) -> defer.Deferred:
        """Fires once ``drained`` (at once if it is), or when the connection goes: nobody waits for it then."""
        if self.drained or self.state == self.STATE_CLOSED:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        return waiter

    def _fire_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)

    # -- output ---------------------------------------------------------------

    def admit_message(self) -> bool:
        """Whether the next message may go out; False when the client is too slow (then the connection closes)."""
        limit = self.factory.max_send_buffer
        if not limit or self.queued_bytes <= limit or self._now() - self._last_read < self.factory.send_timeout:
            return True
        self._client_too_slow(limit)
        return False

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or (not self._outgoing and not self._transport_paused and len(data) <= self.CHUNK):
            super().sendData(data, sync, chopsize)  # nothing waits: straight to the transport (sync, chopsize: tests)
            return
        if not self._outgoing:
            self._last_read = self._now()  # the wait for the client starts now
        self._outgoing.append(data)
        self.queued_bytes += len(data)
        self._feed()

    def _feed(self) -> None:
        """Write queued bytes to the transport, a chunk at a time, until it pauses the protocol or all is written."""
        while self._outgoing and not self._transport_paused:
            data = self._outgoing[0]
            start = self._outgoing_offset
            piece = data if start == 0 and len(data) <= self.CHUNK else data[start:start + self.CHUNK]
            if start + len(piece) >= len(data):
                self._outgoing.popleft()
                self._outgoing_offset = 0
            else:
                self._outgoing_offset = start + len(piece)
            self.queued_bytes -= len(piece)
            super().sendData(piece)  # may pause the protocol at once
        if self.drained:
            self._fire_drain_waiters()

    def _forget_queue(self) -> None:
        self._outgoing.clear()
        self._outgoing_offset = 0
        self.queued_bytes = 0
        self._fire_drain_waiters()  # the connection is going: nobody waits for it to drain

    def _client_too_slow(self, limit: int) -> None:
        self.too_slow = True
        log.warn("closing websocket from {peer}: client too slow, {queued} bytes waiting for it (more than "
                 "--websocket-max-send-buffer {limit}) and nothing read for {s:g} s", peer=self.peer,
                 queued=self.queued_bytes, limit=limit, s=self._now() - self._last_read)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=CLOSE_POLICY_VIOLATION, reasonUtf8=b"client too slow")
        else:
            self.dropConnection(abort=True)
