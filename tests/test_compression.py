"""Tests for docsyncd.compression: permessage-deflate on /<app>/ws, driven in memory by a raw client
that offers the extension exactly as Chromium does and reads RSV1 off the wire."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import bokeh
import pytest
from autobahn.websocket import compress_deflate
from bokeh.document import Document
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import compression, tap, wire

from unit_support import SLIDER_APP, InMemoryServer, RawClient, client_patch, make_token, upgrade_request, write_app

#: What Chromium sends, always.
CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"

#: A document whose PULL-DOC-REPLY has a large content frame and a binary buffer.
BIG_APP = """
import numpy as np
from bokeh.io import curdoc
from bokeh.models import ColumnDataSource, Div

curdoc().add_root(Div(text="lorem ipsum " * 400, name="div"))
curdoc().add_root(ColumnDataSource(data={"y": np.arange(1000, dtype="float64")}, name="source"))
"""

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8


def deflate(payload: bytes, level: int = 1) -> bytes:
    """``payload`` as one permessage-deflate message body, without context takeover."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(body: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")


class RawWebSocket:
    """A browser's side of one websocket, byte by byte: the upgrade, masked frames out, frames in with their RSV1."""

    def __init__(self, server: InMemoryServer, app: str, extensions: str | None = CHROMIUM_OFFER,
                 token: str | None = None):
        self.client = RawClient()
        self.pump = server.connect(self.client)
        request = upgrade_request(f"/{app}/ws", f"bokeh, {token or make_token()}")
        if extensions is not None:
            request = request[:-2] + f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n".encode("latin-1")
        self.client.transport.write(request)
        self.pump.flush()
        head, _, self._unread = self.client.data.partition(b"\r\n\r\n")
        self.response = head.decode("latin-1")
        self._seen = len(self.client.data)

    def send(self, payload: bytes, is_binary: bool = False, compress: bool = False) -> None:
        """One masked, final frame; deflated with RSV1 set when ``compress``."""
        if compress:
            payload = deflate(payload)
        first = 0x80 | (0x40 if compress else 0) | (OP_BINARY if is_binary else OP_TEXT)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, n)
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.client.transport.write(head + key + masked)
        self.pump.flush()

    def send_message(self, message, compress: bool = True) -> None:
        for frame in wire.encode(message):
            self.send(frame.payload, frame.is_binary, compress)

    def frames(self) -> list[tuple[bool, int, bytes]]:
        """(RSV1 set, opcode, payload as sent) of every frame received since the last call."""
        self._unread += self.client.data[self._seen:]
        self._seen = len(self.client.data)
        frames, data = [], self._unread
        while len(data) >= 2:
            n, at = data[1] & 0x7F, 2
            if n == 126:
                (n,), at = struct.unpack("!H", data[2:4]), 4
            elif n == 127:
                (n,), at = struct.unpack("!Q", data[2:10]), 10
            if len(data) < at + n:
                break
            frames.append((bool(data[0] & 0x40), data[0] & 0x0F, data[at:at + n]))
            data = data[at + n:]
        self._unread = data
        return frames

    def messages(self, frames: list[tuple[bool, int, bytes]]) -> list:
        """The Bokeh messages in ``frames``, inflating the compressed ones."""
        assembler = wire.MessageAssembler()
        messages = [assembler.feed(inflate(p) if rsv1 else p, op == OP_BINARY)
                    for rsv1, op, p in frames if op in (OP_TEXT, OP_BINARY)]
        return [m for m in messages if m is not None]


class CompressionTestCase(SynchronousTestCase):
    server_args: list[str] = []

    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.server = self.start_server()

    def start_server(self, *args):
        apps = [write_app(self.tmp_path, "big", BIG_APP), write_app(self.tmp_path, "sliders", SLIDER_APP)]
        return InMemoryServer(apps, list(self.server_args) + list(args)).start_for(self)

    def open(self, app="big", **kwargs) -> RawWebSocket:
        ws = RawWebSocket(self.server, app, **kwargs)
        self.assertTrue(ws.response.startswith("HTTP/1.1 101 "), ws.response)
        self.assertEqual([m.msgtype for m in ws.messages(ws.frames())], ["ACK"])
        return ws

    def pull(self, ws: RawWebSocket, compress: bool = True) -> list[tuple[bool, int, bytes]]:
        """Send PULL-DOC-REQ; return the reply's frames."""
        ws.send_message(wire.PROTOCOL.create("PULL-DOC-REQ"), compress)
        frames = ws.frames()
        self.assertEqual([m.msgtype for m in ws.messages(frames)], ["PULL-DOC-REPLY"])
        return frames


class NegotiationTests(CompressionTestCase):
    def test_chromium_offer_accepted_without_context_takeover(self):
        """Chromium's offer is accepted with no context takeover either way, so no zlib state outlives a message."""
        ws = self.open()
        self.assertIn("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover\r\n", ws.response + "\r\n")

    def test_client_window_request_honoured(self):
        """A client asking for a smaller server window (server_max_window_bits=10) gets it in the answer."""
        ws = self.open(extensions="permessage-deflate; server_max_window_bits=10; client_max_window_bits")
        self.assertIn("permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
                      "client_no_context_takeover", ws.response)
        (content,) = [p for rsv1, op, p in self.pull(ws) if rsv1]
        self.assertIn(b"lorem ipsum", zlib.decompressobj(-10).decompress(content + b"\x00\x00\xff\xff"))

    def test_no_offer_no_extension(self):
        """A client that offers nothing gets no Sec-WebSocket-Extensions and uncompressed frames."""
        ws = self.open(extensions=None)
        self.assertNotIn("Sec-WebSocket-Extensions", ws.response)
        self.assertFalse(any(rsv1 for rsv1, _, _ in self.pull(ws, compress=False)))


class OffTests(CompressionTestCase):
    server_args = ["--no-websocket-compression"]

    def test_no_websocket_compression(self):
        """With --no-websocket-compression, Chromium's offer is declined: no extension header, no RSV1 frames."""
        ws = self.open()
        self.assertNotIn("Sec-WebSocket-Extensions", ws.response)
        frames = self.pull(ws, compress=False)
        self.assertFalse(any(rsv1 for rsv1, _, _ in frames))


class SendTests(CompressionTestCase):
    def test_large_text_compressed_small_text_and_binary_not(self):
        """The reply's large content frame is deflated (RSV1); its small text frames and its binary buffer are not."""
        frames = self.pull(self.open())
        compressed = [(op, len(inflate(p)), len(p)) for rsv1, op, p in frames if rsv1]
        self.assertEqual(len(compressed), 1)
        ((op, inflated, sent),) = compressed
        self.assertEqual(op, OP_TEXT)
        self.assertGreater(inflated, 4800)
        self.assertLess(sent, inflated / 4)
        uncompressed = [(op, len(p)) for rsv1, op, p in frames if not rsv1]
        self.assertTrue(all(n < compression.MIN_SIZE for op, n in uncompressed if op == OP_TEXT))
        if bokeh.__version__.startswith("3.4."):  # Bokeh 3.4's PULL-DOC-REPLY inlines arrays (base64): no buffer
            self.assertEqual(sorted(op for op, _ in uncompressed), [OP_TEXT] * 2)
        else:
            self.assertEqual(sorted(op for op, _ in uncompressed), [OP_TEXT] * 3 + [OP_BINARY])
            self.assertIn((OP_BINARY, 8000), uncompressed)

    def test_reply_inflates_to_the_document(self):
        """Inflated, the frames make the same PULL-DOC-REPLY as without compression: every model and buffer."""
        ws = self.open()
        (reply,) = ws.messages(self.pull(ws))
        doc = Document()
        reply.push_to_document(doc)
        self.assertEqual(doc.get_model_by_name("div").text, "lorem ipsum " * 400)
        self.assertEqual(list(doc.get_model_by_name("source").data["y"][:3]), [0.0, 1.0, 2.0])

    def test_fanned_out_patch_deflated_once(self):
        """A large patch to two connections of one session is deflated once; both get the same bytes."""
        from bokeh.util.token import get_session_id

        token = make_token()
        first, second = self.open(token=token), self.open(token=token)
        session = self.server.managers["big"].get(get_session_id(token))
        compressors = []
        compressobj = zlib.compressobj
        self.patch(zlib, "compressobj", lambda *args: compressors.append(args) or compressobj(*args))
        self.successResultOf(session.with_document_locked(
            lambda: setattr(session.document.get_model_by_name("div"), "text", "dolor sit amet " * 400)))
        for ws in (first, second):
            ws.pump.flush()
        sent = [[p for rsv1, op, p in ws.frames() if rsv1] for ws in (first, second)]
        self.assertEqual(len(compressors), 1)
        self.assertEqual(len(sent[0]), 1)
        self.assertEqual(sent[0], sent[1])
        self.assertIn(b"dolor sit amet", inflate(sent[0][0]))

    def test_level_option(self):
        """--websocket-compression-level 9 sends exactly zlib's level-9 raw deflate of the frame."""
        self.server = self.start_server("--websocket-compression-level", "9")
        frames = self.pull(self.open())
        ((_, _, sent),) = [f for f in frames if f[0]]
        self.assertEqual(sent, deflate(inflate(sent), level=9))
        self.assertNotEqual(sent, deflate(inflate(sent), level=1))


class ReceiveTests(CompressionTestCase):
    def test_compressed_pull_and_patch_handled(self):
        """Compressed PULL-DOC-REQ and PATCH-DOC (as Chromium sends them) are inflated and handled as before."""
        ws = self.open("sliders")
        self.pull(ws, compress=True)
        session = next(iter(self.server.managers["sliders"].sessions))
        patch = client_patch(session.document, lambda doc: setattr(doc.get_model_by_name("slider"), "value", 7))
        ws.send_message(patch, compress=True)
        replies = ws.messages(ws.frames())
        self.assertIn("OK", [m.msgtype for m in replies])
        self.assertEqual(session.document.get_model_by_name("slider").value, 7)
        self.assertEqual(session.document.get_model_by_name("div").text, "value 7")

    def test_deflate_bomb_closes_1009(self):
        """A small compressed message that inflates past --websocket-max-message-size closes with 1009, no traceback."""
        self.server = self.start_server("--websocket-max-message-size", "100000")
        ws = self.open()
        ws.send(b"{" + b" " * 20_000_000, compress=True)  # ~20 KB on the wire
        closes = [p for _, op, p in ws.frames() if op == OP_CLOSE]
        self.assertEqual([struct.unpack("!H", p[:2])[0] for p in closes], [1009])


class MemoryTests(CompressionTestCase):
    def test_idle_connection_keeps_no_zlib_object(self):
        """After a compressed message each way, an idle connection holds no compressor or decompressor.

        zlib's state is allocated through PyMem_RawMalloc, which tracemalloc
        traces: a live compressor shows ~256 KiB at the line that created it.
        """
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        ws = self.open()
        self.assertTrue(any(rsv1 for rsv1, _, _ in self.pull(ws, compress=True)))
        snapshot = tracemalloc.take_snapshot()
        kept = snapshot.filter_traces([tracemalloc.Filter(True, compression.__file__),
                                       tracemalloc.Filter(True, compress_deflate.__file__)])
        self.assertLess(sum(stat.size for stat in kept.statistics("filename")), 1024)
        live = zlib.compressobj(1, zlib.DEFLATED, -15, 8)  # what the check would have found
        seen = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, __file__)])
        self.assertGreater(sum(stat.size for stat in seen.statistics("filename")), 200 * 1024)
        del live


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["--app", "a.py", *argv])
        return options

    def test_defaults_and_off(self):
        """Compression is on at level 1 by default; --no-websocket-compression makes the level 0 (off)."""
        self.assertEqual(self.parse()["websocket-compression-level"], 1)
        self.assertEqual(self.parse("--websocket-compression-level", "6")["websocket-compression-level"], 6)
        self.assertEqual(self.parse("--no-websocket-compression")["websocket-compression-level"], 0)

    def test_bad_level(self):
        """A level outside 0-9 is refused in one sentence."""
        for level in ("10", "-1"):
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--websocket-compression-level", level)
            self.assertIn("--websocket-compression-level must be 0 (off) to 9", str(caught.exception))
