"""A minimal HTTP/1.1 GET and websocket client on asyncio streams.

Why not a library: the benchmarks need the exact number of bytes that crossed
the socket (headers, frame headers and payloads) and as little client-side CPU
as possible, on a 2-core machine where the load generator shares the CPU with
the server it measures. Framing is RFC 6455 for a client: masked frames out,
unmasked frames in, ping answered with pong, fragmented messages reassembled.
Each outgoing Bokeh message is written with a single ``write`` so that the
client never triggers Nagle/delayed-ACK stalls of its own.

Like a browser, the client offers permessage-deflate (RFC 7692) exactly as
Chromium does, and inflates the messages a server sends compressed (RSV1) if
it accepted; what it sends stays uncompressed, which the RFC allows.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Largest frame the client accepts; the 100k-point document is ~2 MB.
MAX_FRAME = 256 * 1024 * 1024

#: The extension offer Chromium sends with every websocket.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

#: The octets a sender strips from the end of every compressed message (RFC 7692 7.2.1).
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class ConnectionClosed(Exception):
    """The peer closed the websocket (or the TCP connection)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"websocket closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The server refused the websocket upgrade."""


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    #: every byte read from the socket: status line, headers, framing, body
    wire_bytes: int


@dataclass
class Traffic:
    """Bytes that crossed one socket, both ways, and the websocket payloads."""

    raw_in: int = 0
    raw_out: int = 0
    #: message payloads received, after inflating the compressed ones
    payload_in: int = 0
    payload_out: int = 0
    frames_in: int = 0


@dataclass
class Inflater:
    """The receiving side of a permessage-deflate the server accepted."""

    window_bits: int = 15
    #: server_no_context_takeover: each message starts a fresh stream
    fresh_per_message: bool = False
    _stream: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_response(cls, header: str | None) -> Inflater | None:
        """The inflater a ``Sec-WebSocket-Extensions`` answer calls for; None if deflate was declined."""
        for extension in (header or "").split(","):
            name, *params = [part.strip() for part in extension.split(";")]
            if name != "permessage-deflate":
                continue
            inflater = cls()
            for param in params:
                key, _, value = param.partition("=")
                if key == "server_no_context_takeover":
                    inflater.fresh_per_message = True
                elif key == "server_max_window_bits":
                    inflater.window_bits = int(value.strip('"'))
            return inflater
        return None

    def inflate(self, body: bytes) -> bytes:
        if self._stream is None or self.fresh_per_message:
            self._stream = zlib.decompressobj(-self.window_bits)
        return self._stream.decompress(body + DEFLATE_TAIL)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], int]:
    """Read a status line and headers; return status, lower-cased headers, bytes read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers, len(head)


async def http_get(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> HttpResponse:
    """GET ``path`` on a fresh connection (``Connection: close``) and read the whole body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", "Accept: text/html"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, resp_headers, wire = await _read_head(reader)
        if resp_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                wire += len(size_line)
                size = int(size_line.split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                wire += len(chunk)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        elif "content-length" in resp_headers:
            body = await reader.readexactly(int(resp_headers["content-length"]))
            wire += len(body)
        else:
            body = await reader.read()
            wire += len(body)
        return HttpResponse(status, resp_headers, body, wire)
    finally:
        writer.close()


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (as one big-integer op: fast in CPython)."""
    n = len(payload)
    if n == 0:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    """Encode one final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


@dataclass
class WebSocket:
    """A connected client websocket: send whole messages, receive text or bytes."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    subprotocol: str | None
    #: set when the server accepted permessage-deflate
    inflater: Inflater | None = None
    traffic: Traffic = field(default_factory=Traffic)
    closed: bool = False

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, subprotocols: list[str], headers: dict[str, str] | None = None
    ) -> WebSocket:
        """Open a TCP connection and perform the upgrade handshake.

        ``subprotocols`` are joined with ", " as browsers do (Bokeh puts the
        session token in the second entry); permessage-deflate is offered as
        Chromium offers it.
        """
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_FRAME)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}",
            f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(request)
        try:
            status, resp_headers, wire = await _read_head(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            raise HandshakeError(f"connection dropped during websocket handshake: {exc!r}") from exc
        if status != 101:
            writer.close()
            raise HandshakeError(f"websocket upgrade refused: HTTP {status}")
        ws = cls(reader, writer, resp_headers.get("sec-websocket-protocol"),
                 Inflater.from_response(resp_headers.get("sec-websocket-extensions")))
        ws.traffic.raw_out += len(request)
        ws.traffic.raw_in += wire
        return ws

    def send_frames(self, messages: list[str | bytes]) -> None:
        """Queue several websocket messages (text for ``str``, binary for ``bytes``) in one write."""
        if self.closed:
            raise ConnectionClosed(None, "send on a closed websocket")
        out = []
        for message in messages:
            if isinstance(message, str):
                payload, opcode = message.encode("utf-8"), OP_TEXT
            else:
                payload, opcode = message, OP_BINARY
            self.traffic.payload_out += len(payload)
            out.append(_frame(opcode, payload))
        data = b"".join(out)
        self.traffic.raw_out += len(data)
        self.writer.write(data)

    async def _read_frame(self) -> tuple[bool, int, bytes, bool]:
        """(FIN, opcode, payload, RSV1) of the next frame."""
        b1, b2 = await self.reader.readexactly(2)
        n, header = b2 & 0x7F, 2
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            header += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            header += 8
        if b2 & 0x80:  # servers must not mask, but tolerate it
            key = await self.reader.readexactly(4)
            header += 4
            payload = _mask(await self.reader.readexactly(n), key)
        else:
            payload = await self.reader.readexactly(n) if n else b""
        self.traffic.raw_in += header + n
        return bool(b1 & 0x80), b1 & 0x0F, payload, bool(b1 & 0x40)

    async def recv(self) -> str | bytes:
        """Return the next data message; answer pings; raise ConnectionClosed at the end."""
        if self.closed:
            raise ConnectionClosed(None, "recv on a closed websocket")
        parts: list[bytes] = []
        opcode_of_message = None
        compressed = False
        while True:
            try:
                fin, opcode, payload, rsv1 = await self._read_frame()
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self.closed = True
                self.writer.close()
                raise ConnectionClosed(None, f"connection lost: {exc!r}") from exc
            if opcode == OP_PING:
                self.send_control(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                if not self.closed:
                    self.send_control(OP_CLOSE, payload[:2])
                    self.closed = True
                self.writer.close()
                raise ConnectionClosed(code, payload[2:].decode("utf-8", "replace"))
            if opcode != OP_CONT:
                opcode_of_message = opcode
                compressed = rsv1
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        if compressed:
            if self.inflater is None:  # a server must not compress what it did not negotiate
                self.closed = True
                self.writer.close()
                raise ConnectionClosed(1002, "compressed message without permessage-deflate")
            data = self.inflater.inflate(data)
        self.traffic.payload_in += len(data)
        self.traffic.frames_in += 1
        return data.decode("utf-8") if opcode_of_message == OP_TEXT else data

    def send_control(self, opcode: int, payload: bytes = b"") -> None:
        data = _frame(opcode, payload)
        self.traffic.raw_out += len(data)
        self.writer.write(data)

    async def close(self, code: int = 1000, timeout: float = 5.0) -> None:
        """Close handshake: send close, drain until the server's close or EOF, then drop TCP."""
        if self.closed:
            self.writer.close()
            return
        self.send_control(OP_CLOSE, struct.pack("!H", code))
        self.closed = True
        try:
            await asyncio.wait_for(self._drain_until_close(), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.writer.close()

    async def _drain_until_close(self) -> None:
        while (await self._read_frame())[1] != OP_CLOSE:
            pass
