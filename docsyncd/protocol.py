"""The websocket at ``/<app>/ws``: handshake checks, then Bokeh messages in order.

Autobahn discards what ``onMessage`` returns, so each connection feeds its
frames through its own ``DeferredLock``: a message is handled only after the
previous one finished, even when handling waits for the document lock.
Messages that arrive before the session is ready (a client that does not wait
for ACK) queue on the same lock instead of failing.  permessage-deflate, when
the client offers it: docsyncd/compression.py.

Tests: tests/test_protocol.py; compression in tests/test_compression.py
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectionDeny
from bokeh.util.token import get_session_id
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import apps, logs, wire
from .compression import MIN_SIZE, Compression, Deflate, deflated
from .contexts import RequestContext
from .limits import BackpressureMixin
from .metrics import REGISTRY
from .proxy import NO_FORWARDING
from .routing import target_arguments
from .publishing import Credential, PublishRefused, credential_of_request
from .security import OriginPolicy, TokenPolicy
from .sessions import SessionManager

log = Logger(observer=logs.observer)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_GOING_AWAY = 1001

#: What a message that cannot be applied raises (bad references, wrong values, a refused publish):
#: the client's mistake, answered with ERROR and one warning line.
REFUSED_MESSAGE_ERRORS = (PublishRefused,) + wire.WIRE_ERRORS + (AttributeError, RuntimeError)


def raised_in_users_code(failure: Failure) -> bool:
    """Whether the error passed through the app's own code (a callback run by the message): then it is the
    app's fault and is logged with its traceback, as bokeh serve logs it, whatever its type."""
    return any(apps.is_users_file(filename) for _, filename, *_ in failure.frames)


def peer_ip(peer: str) -> str:
    """The address in Autobahn's peer string (``tcp4:1.2.3.4:5678``, ``tcp6:::1:5678``)."""
    kind, _, rest = peer.partition(":")
    return rest.rpartition(":")[0] if kind.startswith("tcp") else rest


def _payload(frames: wire.EncodedMessage, index: int, parameters: tuple[int, int, int] | None) -> tuple[bytes, int]:
    """Frame ``index``'s payload and RSV bits: deflated (RSV1) when it is text of at least ``MIN_SIZE`` bytes
    and the connection deflates with ``parameters``."""
    frame = frames[index]
    if parameters is not None and not frame.is_binary and len(frame.payload) >= MIN_SIZE:
        return deflated(frames, index, parameters), 4
    return frame.payload, 0


def _framed(frames: wire.EncodedMessage, parameters: tuple[int, int, int] | None) -> tuple[bytes, int]:
    """The websocket octets of all of ``frames`` and the length of their payloads."""
    parts, payload_octets = [], 0
    for index, frame in enumerate(frames):
        payload, rsv = _payload(frames, index, parameters)
        parts += (wire.frame_header(wire.OPCODE_BINARY if frame.is_binary else wire.OPCODE_TEXT, len(payload), rsv),
                  payload)
        payload_octets += len(payload)
    return b"".join(parts), payload_octets


class SyncFactory(WebSocketServerFactory):
    """Websocket factory of one app: its sessions and the policies its handshake applies."""

    #: --use-xheaders (proxy.py), --websocket-max-send-buffer and --websocket-send-timeout (limits.py), set by
    #: guard.guard_site.
    forwarding = NO_FORWARDING
    max_send_buffer = 64 * 1024 * 1024
    send_timeout = 30.0

    def __init__(self, manager: SessionManager, clock: Any, origins: OriginPolicy, tokens: TokenPolicy,
                 keep_alive: float = 37.0, max_message_size: int = 20 * 1024 * 1024, compression_level: int = 1):
        super().__init__()
        self.protocol = SyncProtocol
        self.manager = manager
        self.max_message_size = max_message_size
        self.clock = clock
        self.origins = origins
        self.tokens = tokens
        #: permessage-deflate offers are declined at level 0 (--no-websocket-compression).
        self.compression = Compression(compression_level) if compression_level else None
        self.setProtocolOptions(
            autoPingInterval=keep_alive or 0,
            autoPingTimeout=keep_alive or 0,
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            tcpNoDelay=True,
            # Close oversize (1009) and invalid UTF-8 (1007) input with its
            # code instead of dropping the TCP connection (1006).
            failByDrop=False,
        )
        if self.compression is not None:
            self.setProtocolOptions(perMessageCompressionAccept=self.compression.accept)
        #: The credential and connection slot of the request being upgraded right now (``SyncResource``).
        self.upgrading: Credential | None = None
        self.upgrading_slot: Any = None

    def buildProtocol(self, addr: Any) -> "SyncProtocol":
        protocol = super().buildProtocol(addr)
        protocol.credential = self.upgrading
        protocol.connection_slot = self.upgrading_slot
        return protocol


class SyncResource(WebSocketResource):
    """``/<app>/ws``: Autobahn's resource, telling the protocol who the upgraded request came from.

    Autobahn sees only the request's text; the logged-in user (``--auth-module``,
    guard.py) and the TCP peer that decide who may publish (publishing.py)
    are on the twisted.web request, handed over through ``SyncFactory.upgrading``.
    """

    def render(self, request: Any) -> Any:
        self._factory.upgrading = credential_of_request(request)
        # The connection's place under --max-connections goes with it to the websocket (limits.ConnectionCaps).
        self._factory.upgrading_slot = getattr(request.channel, "connection_slot", None)
        request.channel.connection_slot = None
        try:
            return super().render(request)
        finally:
            self._factory.upgrading = self._factory.upgrading_slot = None


class QuietFrameWriter(WebSocketServerProtocol):
    """Autobahn's server protocol, minus a debug line it formats for every frame it sends.

    ``WebSocketProtocol.sendData`` builds that line's arguments (type names
    coloured with click.style) before the logger sees whether debug is on:
    about 4% of the CPU of a session streaming rows (py-spy, benchmarks
    fanout_separate). On an open connection with nothing queued, the frame
    goes to the transport directly and is counted as Autobahn counts it;
    handshakes, sync or chopped sends, a queue and octet logging keep
    Autobahn's own path.
    """

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or self.state != self.STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)


class SyncProtocol(BackpressureMixin, QuietFrameWriter):  # slow clients: limits.py
    """One browser tab or client connected to one session."""

    factory: SyncFactory

    def __init__(self) -> None:
        super().__init__()
        self._inbox = defer.DeferredLock()
        self._assembler: wire.MessageAssembler | None = None  # onOpen: it needs the factory's limit
        self._reading_paused = False
        self._token: str | None = None
        self._refusal: str | None = None
        self._request: RequestContext | None = None
        self.session = None
        #: Who the request came from (publishing.py), and the owner it names, or why it names none.
        self.credential: Credential | None = None
        self.owner: str | None = None
        self.owner_refusal = ""
        self.connection_slot: Any = None  # limits.ConnectionSlot, handed over by SyncResource

    # -- handshake --------------------------------------------------------

    def onConnect(self, request: Any) -> str | None:
        scheme, remote_ip = self.factory.forwarding.websocket(request.headers, self.factory.isSecure, peer_ip(request.peer))
        host = request.headers.get("host", "")
        refusal = self.factory.origins.refusal(request.headers.get("origin"), host, scheme)
        if refusal:
            log.warn("refused websocket from {peer}: {reason}", peer=request.peer, reason=refusal)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, refusal)
        protocols = request.protocols
        if len(protocols) == 2 and protocols[0] == "bokeh":
            self._token = protocols[1]
        self._refusal = self.factory.tokens.refusal(
            self._token, self.factory.clock.seconds(), is_live=lambda session_id: self.factory.manager.get(session_id) is not None
        )
        credential = self.credential or Credential(dict(request.headers), peer_ip(request.peer))
        try:
            self.owner = self.factory.manager.policy.owner(credential)
        except PublishRefused as e:
            self.owner_refusal = str(e)
        self._request_facts = dict(path=request.path, uri=request.path, host=host, remote_ip=remote_ip,
                                   protocol=scheme)
        # bokeh.client sends its request arguments on the websocket URL, not in the token; read as pages read them.
        self._url_arguments = target_arguments(self.http_request_uri)
        return "bokeh" if "bokeh" in protocols else None

    def onOpen(self) -> None:
        self._assembler = wire.MessageAssembler(self.factory.max_message_size)
        if self.factory.compression is not None:
            self.factory.compression.adopt(self)
        if self._refusal:
            log.warn("closing websocket from {peer}: {reason}", peer=self.peer, reason=self._refusal)
            self.close(CLOSE_POLICY_VIOLATION, self._refusal)
            return
        self._inbox.run(self._join_session).addErrback(self._fail, "could not open session")

    def _join_session(self) -> defer.Deferred:
        session_id = get_session_id(self._token)
        request = RequestContext.from_token(self._token, self._url_arguments, **self._request_facts)
        d = self.factory.manager.get_or_create(session_id, self._token, request)
        return d.addCallback(self._joined)

    def _joined(self, session: Any) -> None:
        if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return
        self.session = session
        session.attach(self)
        REGISTRY.count("docsync_connections_opened_total", app=self.factory.manager.app.name)
        self.send_frames(wire.encode(wire.PROTOCOL.create("ACK")))

    # -- messages ---------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._inbox.run(self._paced, payload, isBinary).addErrback(self._fail, "failed to handle a message")
        if self._inbox.waiting:
            self._pause_reading()

    async def _paced(self, payload: bytes, is_binary: bool) -> None:
        """Handle one frame; then, before the next, wait until the client has read what it was sent.

        While frames wait their turn the connection is not read (``_pause_reading``),
        so what one client makes the server hold is the frames of one socket read
        and the replies in one send buffer (``--websocket-max-send-buffer``), not
        every PATCH-DOC or PULL-DOC-REQ it manages to send, as bokeh serve stops
        reading too.
        """
        try:
            await defer.maybeDeferred(self._receive, payload, is_binary)
        finally:
            if not self.drained:  # it sent replies the client has not made room for
                await self.when_drained()
            if not self._inbox.waiting:
                self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pauseProducing()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _receive(self, payload: bytes, is_binary: bool) -> defer.Deferred | None:
        if self.session is None or self.state != self.STATE_OPEN:
            return None  # refused or closing: nothing to apply the message to
        try:
            message = self._assembler.feed(payload, is_binary)
        except wire.MessageTooBig as e:
            log.warn("closing websocket from {peer}: {error}", peer=self.peer, error=str(e))
            self.close(CLOSE_MESSAGE_TOO_BIG, str(e))
            return None
        except wire.WIRE_ERRORS as e:
            error = f"{type(e).__name__}: {str(e)[:200]}"
            log.warn("protocol error from {peer}: {error}", peer=self.peer, error=error)
            self.close(CLOSE_PROTOCOL_ERROR, f"protocol error: {error}")
            return None
        if message is None:
            return None
        return self._handle(message)

    def _handle(self, message: Any) -> defer.Deferred | None:
        msgtype = message.msgtype
        msgid = message.header["msgid"]
        REGISTRY.count("docsync_messages_received_total", msgtype=msgtype)
        if msgtype == "PULL-DOC-REQ":
            d = self.session.pull(message)
            d.addCallback(self.send_frames)
        elif msgtype == "PATCH-DOC":
            d = self.session.patch(self, message)
            d.addCallback(lambda _: self._reply("OK", msgid))
        elif msgtype == "PUSH-DOC":
            d = self.session.push(message, origin=self)  # publishes and saves before the OK: session.py
            d.addCallback(lambda _: self._reply("OK", msgid))
        elif msgtype == "SERVER-INFO-REQ":
            d = defer.succeed(self._reply("SERVER-INFO-REPLY", msgid))
        else:
            return self._reply("ERROR", msgid, f"docsyncd does not handle {msgtype} messages from clients")
        return d.addErrback(self._error_reply, message)

    def _reply(self, msgtype: str, reqid: str, *args: Any) -> None:
        self.send_frames(wire.encode(wire.PROTOCOL.create(msgtype, reqid, *args)))

    def _error_reply(self, failure: Any, message: Any) -> None:
        """An ERROR reply, and one warning line; a traceback only for what is not the message's fault."""
        error = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        sid = self.session.id if self.session is not None else "-"
        if failure.check(*REFUSED_MESSAGE_ERRORS) and not raised_in_users_code(failure):
            log.warn("could not apply {msgtype} from {peer} (session {sid}): {error}", msgtype=message.msgtype,
                     peer=self.peer, sid=sid, error=error)
        else:
            log.failure("could not apply {msgtype} from {peer} (session {sid})", failure, msgtype=message.msgtype,
                        peer=self.peer, sid=sid)
        self._reply("ERROR", message.header["msgid"], error)

    def _fail(self, failure: Any, what: str) -> None:
        log.failure("{what} ({peer}); closing", failure, what=what, peer=self.peer)
        self.close(CLOSE_INTERNAL_ERROR, what)

    # -- output -------------------------------------------------------------

    def send_frames(self, frames: wire.EncodedMessage) -> None:
        """Send a message's frames in one write: framed (and deflated) once per message and deflate parameters,
        so a patch fanned out to many connections costs each connection a write.

        sendData, not sendMessage: sendMessage holds what the server sends to the limit on
        what it receives (--websocket-max-message-size), as bokeh serve does not.
        """
        if self.state != self.STATE_OPEN or not self.admit_message():  # whole or not at all: limits.py
            return
        REGISTRY.count("docsync_messages_sent_total", msgtype=frames.msgtype)
        REGISTRY.count("docsync_bytes_sent_total", frames.nbytes)
        deflate = self._perMessageCompress if isinstance(self._perMessageCompress, Deflate) else None  # Compression.adopt
        parameters = deflate.parameters if deflate is not None else None
        stats = self.trafficStats
        if self.logFrames:  # Autobahn's frame log (off unless debugging Autobahn) wants each frame
            for index, frame in enumerate(frames):
                payload, rsv = _payload(frames, index, parameters)
                self.sendFrame(opcode=wire.OPCODE_BINARY if frame.is_binary else wire.OPCODE_TEXT, payload=payload,
                               rsv=rsv)
                stats.outgoingOctetsWebSocketLevel += len(payload)
        else:
            octets = frames.octets.get(parameters)
            if octets is None:
                octets = frames.octets[parameters] = _framed(frames, parameters)
            data, payload_octets = octets
            self.sendData(data)
            stats.outgoingWebSocketFrames += len(frames)  # as Autobahn's sendFrame counts them
            stats.outgoingOctetsWebSocketLevel += payload_octets
        stats.outgoingOctetsAppLevel += frames.nbytes

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with any RFC 6455 code.

        Autobahn's ``sendClose`` only takes the codes an application may use
        (1000, 3000-4999); a server needs 1001, 1002, 1008 and 1011 too.
        """
        if self.state == self.STATE_OPEN:
            self._resume_reading()  # to read the client's answering close frame
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))

    def go_away(self) -> None:
        """Close because the server is shutting down."""
        self.close(CLOSE_GOING_AWAY, "server shutting down")

    def connectionLost(self, reason: Any) -> None:
        if self.connection_slot is not None:
            self.connection_slot.release()
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.detach(self)
            self.session = None
