"""Speak Bokeh's session protocol the way a browser does, without a browser.

A visit is: GET the app page, take the session token out of the page's
``render_items``, open ``<app>/ws`` with ``Sec-WebSocket-Protocol: bokeh,
<token>``, wait for ACK, then PULL-DOC-REQ → PULL-DOC-REPLY. Messages are real
Bokeh messages: built with ``bokeh.protocol.Protocol().create`` and assembled
from frames by ``bokeh.protocol.receiver.Receiver``, so both servers see and
send exactly what BokehJS and ``bokeh.client`` would.

Everything here is plain ``asyncio``; timing and byte counts are per
connection, and the scenarios in ``benchmarks.scenarios`` combine them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bokeh.document import Document
from bokeh.document.events import DocumentChangedEvent
from bokeh.protocol import Protocol
from bokeh.protocol.message import Message
from bokeh.protocol.receiver import Receiver

from .wsclient import Traffic, WebSocket, http_get

PROTOCOL = Protocol()

#: BokehJS reads the token from ``render_items`` in the page's inline script.
TOKEN_RE = re.compile(r'"token"\s*:\s*"([^"]+)"')

#: Seconds to wait for any single server reply before calling the server stuck.
REPLY_TIMEOUT = 60.0


class ServerProtocolError(Exception):
    """The server answered with something a browser would not accept."""


@dataclass(frozen=True)
class AppAddress:
    """Where an app is served: ``http://host:port/path``."""

    host: str
    port: int
    path: str  # e.g. "/slider_div"


def frames_of(message: Message[Any]) -> list[str | bytes]:
    """The websocket messages that carry one Bokeh message, in order (as ``Message.send`` writes them)."""
    frames: list[str | bytes] = [message.header_json, message.metadata_json, message.content_json]
    for buffer in message.buffers:
        frames.append(json.dumps(buffer.ref))
        frames.append(buffer.to_bytes())
    return frames


class BokehConnection:
    """One websocket to one session, with Bokeh message framing on top."""

    def __init__(self, ws: WebSocket, token: str, page_bytes: int) -> None:
        self.ws = ws
        self.token = token
        #: raw bytes of the HTTP response for the app page that issued the token
        self.page_bytes = page_bytes
        self._receiver = Receiver(PROTOCOL)

    @classmethod
    async def open(cls, address: AppAddress, session_id: str | None = None,
                   arguments: dict[str, str] | None = None) -> BokehConnection:
        """GET the page (optionally naming the session, with query ``arguments`` for the app), connect the
        websocket, wait for ACK."""
        params = {**({"bokeh-session-id": session_id} if session_id else {}), **(arguments or {})}
        query = "?" + urlencode(params) if params else ""
        page = await asyncio.wait_for(http_get(address.host, address.port, address.path + query), REPLY_TIMEOUT)
        if page.status != 200:
            raise ServerProtocolError(f"GET {address.path}{query}: HTTP {page.status}")
        found = TOKEN_RE.search(page.body.decode("utf-8", "replace"))
        if not found:
            raise ServerProtocolError(f"GET {address.path}{query}: no session token in the page")
        token = found.group(1)
        ws = await asyncio.wait_for(
            WebSocket.connect(address.host, address.port, address.path + "/ws", ["bokeh", token]), REPLY_TIMEOUT
        )
        conn = cls(ws, token, page.wire_bytes)
        try:
            ack = await conn.recv()
            if ack.msgtype != "ACK":
                raise ServerProtocolError(f"expected ACK first, got {ack.msgtype}")
        except BaseException:
            await conn.close()
            raise
        return conn

    @property
    def traffic(self) -> Traffic:
        return self.ws.traffic

    def send(self, message: Message[Any]) -> None:
        self.ws.send_frames(frames_of(message))

    async def recv(self, timeout: float | None = REPLY_TIMEOUT) -> Message[Any]:
        """The next complete Bokeh message from the server."""
        if timeout is None:
            return await self._next_message()
        return await asyncio.wait_for(self._next_message(), timeout)

    async def _next_message(self) -> Message[Any]:
        while True:
            message = await self._receiver.consume(await self.ws.recv())
            if message is not None:
                return message

    async def pull_doc(self) -> Message[Any]:
        """PULL-DOC-REQ, then wait for its PULL-DOC-REPLY (messages in between are dropped)."""
        request = PROTOCOL.create("PULL-DOC-REQ")
        self.send(request)
        while True:
            reply = await self.recv()
            if reply.header.get("reqid") != request.header["msgid"]:
                continue
            if reply.msgtype != "PULL-DOC-REPLY":
                raise ServerProtocolError(f"PULL-DOC-REQ answered with {reply.msgtype}: {reply.content}")
            return reply

    async def close(self) -> None:
        await self.ws.close()


async def visit(address: AppAddress, session_id: str | None = None,
                arguments: dict[str, str] | None = None) -> tuple[BokehConnection, Message[Any]]:
    """A browser's first load: page, websocket, document. Returns the open connection and the reply."""
    conn = await BokehConnection.open(address, session_id, arguments)
    try:
        return conn, await conn.pull_doc()
    except BaseException:
        await conn.close()
        raise


class SyncedDocument:
    """A local replica of the session document that turns local edits into PATCH-DOCs.

    This is how ``bokeh.client`` does it: apply PULL-DOC-REPLY to a local
    ``Document``, set a property, capture the resulting change event and send it
    in a PATCH-DOC — the same ``ModelChanged`` event BokehJS sends for a drag.
    """

    def __init__(self, reply: Message[Any]) -> None:
        self.doc = Document()
        reply.push_to_document(self.doc)
        self.doc.models.flush_synced()  # the server has every pulled model: send references, as BokehJS does
        self._events: list[DocumentChangedEvent] = []
        self.doc.on_change(self._events.append)

    def model(self, name: str) -> Any:
        model = self.doc.select_one({"name": name})
        if model is None:
            raise ServerProtocolError(f"no model named {name!r} in the pulled document")
        return model

    def patch(self, model: Any, attr: str, value: Any) -> Message[Any]:
        """Set ``model.attr = value`` locally and return the PATCH-DOC that carries the change."""
        self._events.clear()
        setattr(model, attr, value)
        if not self._events:
            raise ValueError(f"setting {attr}={value!r} produced no change event")
        return PROTOCOL.create("PATCH-DOC", list(self._events))


def model_changes(message: Message[Any]) -> list[dict[str, Any]]:
    """The ``ModelChanged`` events of a PATCH-DOC, as JSON dicts."""
    if message.msgtype != "PATCH-DOC":
        return []
    return [ev for ev in message.content.get("events", []) if ev.get("kind") == "ModelChanged"]


async def round_trip(conn: BokehConnection, synced: SyncedDocument, slider: Any, div: Any, value: int) -> float:
    """Send a slider value, return seconds until the PATCH-DOC with the Div text Python set.

    Also waits for the server's OK for the patch, so the next round trip starts
    from a quiet connection; that wait is not part of the time returned.
    """
    expected = f"value={value}"
    patch = synced.patch(slider, "value", value)
    start = time.perf_counter()
    conn.send(patch)
    elapsed = None
    got_ok = False
    while elapsed is None or not got_ok:
        message = await conn.recv()
        if message.header.get("reqid") == patch.header["msgid"]:
            if message.msgtype != "OK":
                raise ServerProtocolError(f"PATCH-DOC answered with {message.msgtype}: {message.content}")
            got_ok = True
        for event in model_changes(message):
            if event["model"]["id"] == div.id and event["attr"] == "text" and event["new"] == expected:
                elapsed = time.perf_counter() - start
    return elapsed


def streamed_rows(message: Message[Any]) -> int:
    """Rows carried by the ``ColumnsStreamed`` events of a PATCH-DOC."""
    if message.msgtype != "PATCH-DOC":
        return 0
    rows = 0
    for event in message.content.get("events", []):
        if event.get("kind") != "ColumnsStreamed":
            continue
        data = event["data"]
        if isinstance(data, dict) and data.get("type") == "map":  # Bokeh's encoding for non-str keys
            columns = [value for _, value in data["entries"]]
        else:
            columns = list(data.values())
        if columns:
            column = columns[0]
            rows += column["shape"][0] if isinstance(column, dict) else len(column)
    return rows


class RowCounter:
    """Reads a connection until stopped, counting streamed rows as they arrive."""

    def __init__(self, conn: BokehConnection) -> None:
        self.conn = conn
        self.rows = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:  # a dropped connection ends the task with ConnectionClosed, raised by stop()
            message = await self.conn.recv(timeout=None)
            self.rows += streamed_rows(message)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def run_pool(count: int, concurrency: int, job) -> list[Any]:
    """Run ``await job(i)`` for i in range(count), at most ``concurrency`` at a time; results in order."""
    results: list[Any] = [None] * count
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            results[i] = await job(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return results
