"""Helpers shared by the unit tests: small apps on disk, fake connections, an in-memory server.

Everything here runs without sockets or sleeps: time is a ``MemoryReactorClock``
and bytes move between a real Autobahn client protocol and the server's
``Site`` through ``twisted.test.iosim``.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from bokeh.document import Document
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id
from twisted.internet import _producer_helpers
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.test import iosim

from docsyncd import apps, tap, wire
from docsyncd.server import build_site

#: A one-file app: a slider whose Python callback writes its value into a Div.
SLIDER_APP = """
from bokeh.io import curdoc
from bokeh.models import Div, Slider

slider = Slider(start=0, end=10, value=1, name="slider")
div = Div(text="start", name="div")

def changed(attr, old, new):
    div.text = f"value {new}"

slider.on_change("value", changed)
doc = curdoc()
doc.add_root(slider)
doc.add_root(div)
arguments = doc.session_context.request.arguments
div.tags = sorted(arguments)
"""

#: A server_lifecycle.py that records its hooks on the server context, and whose
#: on_session_created waits for ``server_context.gate`` when the test sets one.
RECORDING_LIFECYCLE = """
def on_server_loaded(server_context):
    server_context.events = ["server loaded"]

def on_server_unloaded(server_context):
    server_context.events.append("server unloaded")

def on_session_created(session_context):
    session_context.server_context.events.append(f"created {session_context.id}")
    return getattr(session_context.server_context, "gate", None)

def on_session_destroyed(session_context):
    session_context.server_context.events.append(f"destroyed {session_context.id}")
"""

def write_app(directory: Path, name: str, source: str) -> str:
    """Write a one-file app ``<name>.py`` and return its path."""
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


def write_dir_app(directory: Path, name: str, files: dict[str, str]) -> str:
    """Write a directory app (``{"main.py": ..., "static/x.css": ...}``) and return its path."""
    root = directory / name
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return str(root)


def make_token(session_id: str | None = None, expiration: int = 300, secret_key: bytes | None = None,
               **payload: Any) -> str:
    """A session token, as a page or ``bokeh.client`` would make it; signed when given a key."""
    signed = secret_key is not None
    session_id = session_id or generate_session_id(secret_key=secret_key, signed=signed)
    return generate_jwt_token(session_id, secret_key=secret_key, signed=signed, expiration=expiration,
                              extra_payload=payload)


def crafted_token(payload: dict[str, Any], inflated: bytes | None = None) -> str:
    """An unsigned token with exactly ``payload`` (and ``inflated`` zlib-compressed in Bokeh's place for it)."""
    import base64
    import zlib

    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")  # noqa: E731
    if inflated is not None:
        payload = {**payload, "__bk__zlib_": encode(zlib.compress(inflated, 9))}
    return encode(json.dumps(payload).encode("utf-8"))


def decode(frames: list[wire.Frame]) -> list[Any]:
    """The Bokeh messages carried by ``frames``."""
    assembler = wire.MessageAssembler()
    messages = [assembler.feed(f.payload, f.is_binary) for f in frames]
    return [m for m in messages if m is not None]


def client_patch(server_doc: Document, change) -> Any:
    """The PATCH-DOC a client holding a copy of ``server_doc`` sends after ``change(copy)``.

    The message goes through the wire format, so the server sees it as it would
    arrive from a browser.
    """
    mirror = Document.from_json(server_doc.to_json())
    events: list[Any] = []
    mirror.on_change(events.append)
    change(mirror)
    (message,) = decode(wire.encode(wire.PROTOCOL.create("PATCH-DOC", events)))
    return message


class FakeConnection:
    """A session subscriber that records the frames sent to it."""

    def __init__(self, name: str = "connection"):
        self.name = name
        self.sent: list[list[wire.Frame]] = []

    def send_frames(self, frames: list[wire.Frame]) -> None:
        self.sent.append(frames)

    @property
    def messages(self) -> list[Any]:
        return [m for frames in self.sent for m in decode(frames)]

    def __repr__(self) -> str:
        return f"<FakeConnection {self.name}>"


class ThreadRecordingReactor:
    """Stands in for the reactor's ``callFromThread``: records calls for the test to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple, dict]] = []

    def callFromThread(self, f, *args, **kwargs) -> None:
        self.calls.append((f, args, kwargs))

    def run_handed_over(self) -> None:
        calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


def run_in_joined_thread(f, threads_used: list[int] | None = None, then=lambda: None):
    """Stands in for the callback pool (threads.CallbackThreads): runs ``f`` in a thread of its own, waits for
    it, calls ``then`` (a ThreadRecordingReactor's ``run_handed_over``: the reactor runs what the thread handed
    over before it sees the result) and returns a Deferred of ``f``'s result; the thread's id goes into
    ``threads_used``."""
    from twisted.internet import defer
    from twisted.python.failure import Failure

    box = {}

    def work():
        if threads_used is not None:
            threads_used.append(threading.get_ident())
        try:
            box["result"] = f()
        except BaseException:
            box["failure"] = Failure()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    then()
    return defer.fail(box["failure"]) if "failure" in box else defer.succeed(box["result"])


def model_changes(messages: list[Any]) -> list[tuple[str, Any]]:
    """(attr, new) for every ModelChanged event in a list of PATCH-DOC messages."""
    return [
        (event["attr"], event["new"])
        for m in messages
        if m.msgtype == "PATCH-DOC"
        for event in m.content["events"]
        if event["kind"] == "ModelChanged"
    ]


# -- an in-memory server ------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def token(self) -> str:
        """The session token a page or autoload.js embeds."""
        match = re.search(r'\\?"token\\?":\s*\\?"([A-Za-z0-9_\-.]+)', self.text)
        assert match, "no session token in the response"
        return match.group(1)


def _drain(pump: iosim.IOPump) -> None:
    """Pump until nothing moves, including what pull producers (static files) write when resumed."""
    while pump.flush():
        pass


class RawClient(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class BokehClient(WebSocketClientProtocol):
    """A websocket client that assembles Bokeh messages and remembers how it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self.messages: list[Any] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = False
        self._assembler = wire.MessageAssembler()

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        message = self._assembler.feed(payload, is_binary)
        if message is not None:
            self.messages.append(message)

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.closed = True
        self.close_code = code
        self.close_reason = reason

    def send(self, msgtype: str, *args: Any, **kwargs: Any) -> Any:
        """Send a Bokeh message; return it (its ``msgid`` is the reply's ``reqid``)."""
        message = wire.PROTOCOL.create(msgtype, *args, **kwargs)
        self.send_message(message)
        return message

    def send_message(self, message: Any) -> None:
        for frame in wire.encode(message):
            self.sendMessage(frame.payload, frame.is_binary)

    def msgtypes(self) -> list[str]:
        return [m.msgtype for m in self.messages]


class LogCapture:
    """Collects the text of docsyncd's log events while a test runs."""

    def __init__(self, test):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self):
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def matching(self, text):
        return [line for line in self.lines() if text in line]


@dataclass
class InMemoryServer:
    """The Site and AppsService that ``twistd docsync`` would build, on a MemoryReactorClock."""

    app_paths: list[str]
    args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(time.time())  # token expiry is wall-clock time
        # Autobahn's handshake, close and ping timers use txaio's global loop.
        self._previous_loop = txaio.config.loop
        txaio.config.loop = self.clock
        # twisted.web drives static files (pull producers) with the global
        # cooperator, which runs on the global reactor; drive it with the clock.
        self._previous_cooperate = _producer_helpers.cooperate
        _producer_helpers.cooperate = Cooperator(scheduler=lambda f: self.clock.callLater(0, f)).cooperate
        options = tap.Options()
        argv = [a for path in self.app_paths for a in ("--app", path)]
        # Published documents in memory unless a test names a store: never a file in the working directory.
        store = [] if "--store" in self.args else ["--store", "memory"]
        # No stats log timer unless a test asks for one: tests count the clock's delayed calls.
        stats = [] if "--stats-log-frequency" in self.args else ["--stats-log-frequency", "0"]
        options.parseOptions(argv + store + stats + self.args)
        self.options = options
        self.apps = [apps.load_app(p) for p in self.app_paths]
        self.site, self.service = build_site(self.apps, options, self.clock)
        self.managers = {m.app.name: m for m in self.service.managers}
        self._ports = iter(range(40000, 50000))

    def restore(self) -> None:
        txaio.config.loop = self._previous_loop
        _producer_helpers.cooperate = self._previous_cooperate

    def start_for(self, case: Any) -> InMemoryServer:
        """Start the service for the test ``case``, which stops it and restores the globals when it ends."""
        self.service.startService()
        case.addCleanup(self.restore)
        case.addCleanup(lambda: case.successResultOf(self.service.stopService()))
        return self

    def connect(self, client: Protocol) -> iosim.IOPump:
        port = next(self._ports)
        server_protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        server_io = iosim.FakeTransport(
            server_protocol, True,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5006), peerAddress=IPv4Address("TCP", "127.0.0.1", port),
        )
        client_io = iosim.FakeTransport(
            client, False,
            hostAddress=IPv4Address("TCP", "127.0.0.1", port), peerAddress=IPv4Address("TCP", "127.0.0.1", 5006),
        )
        return iosim.connect(server_protocol, server_io, client, client_io, clock=self.clock)

    def request(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
        """One HTTP/1.0 request through the Site; the connection closes after the answer."""
        client = RawClient()
        pump = self.connect(client)
        lines = [f"{method} {path} HTTP/1.0", "Host: localhost:5006"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        _drain(pump)
        head, _, body = client.data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        return Response(int(status_line.split()[1]), parsed, body)

    def get(self, path: str, **headers: str) -> Response:
        return self.request(path, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def raw(self, data: bytes) -> bytes:
        """Send raw bytes (e.g. an upgrade request) and return what the server answered."""
        client = RawClient()
        pump = self.connect(client)
        client.transport.write(data)
        _drain(pump)
        return client.data

    def websocket(self, app: str, protocols: list[str] | None, origin: str | None = None,
                  greet: bool = True, headers: dict[str, str] | None = None) -> tuple[BokehClient, iosim.IOPump]:
        """A BokehClient connected to ``/<app>/ws`` offering ``protocols`` (and sending ``headers``)."""
        path = f"/{app}/ws" if app else "/ws"  # "": the empty app at /
        factory = WebSocketClientFactory(
            f"ws://localhost:5006{path}", protocols=protocols, origin=origin, reactor=self.clock, headers=headers
        )
        factory.protocol = BokehClient
        client = factory.buildProtocol(None)
        pump = self.connect(client)
        if greet:
            pump.flush()
        return client, pump

    def session_websocket(self, app: str, token: str | None = None, **kwargs: Any) -> tuple[BokehClient, iosim.IOPump]:
        """A websocket offering ``bokeh`` and a token (a new one unless given)."""
        return self.websocket(app, ["bokeh", token or make_token()], **kwargs)

    def session_of(self, app: str, token: str) -> Any:
        return self.managers[app].get(get_session_id(token))


def upgrade_request(path: str, protocol_header: str | None, origin: str | None = None) -> bytes:
    """A websocket upgrade request written by hand, to control its exact header text."""
    lines = [
        f"GET {path} HTTP/1.1", "Host: localhost:5006", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
    ]
    if protocol_header is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol_header}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_json(response: Response) -> Any:
    return json.loads(response.body)
