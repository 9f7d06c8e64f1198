"""Tests for docsyncd.wire: Bokeh messages to websocket frames and back."""

from __future__ import annotations

import json

import numpy as np
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent
from bokeh.models import ColumnDataSource
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import wire


def doc_with_array():
    doc = Document()
    doc.add_root(ColumnDataSource(data={"x": np.arange(8, dtype="float64")}, name="source"))
    return doc


class EncodeTests(SynchronousTestCase):
    def test_three_text_frames(self):
        """A message without buffers is three text frames: header, metadata and content JSON."""
        frames = wire.encode(wire.PROTOCOL.create("ACK"))
        self.assertEqual(len(frames), 3)
        self.assertFalse(any(f.is_binary for f in frames))
        header, metadata, content = (json.loads(f.payload) for f in frames)
        self.assertEqual(header["msgtype"], "ACK")
        self.assertEqual((metadata, content), ({}, {}))

    def test_buffers(self):
        """Each binary buffer follows its ``{"id": ...}`` text frame as a binary frame."""
        doc = doc_with_array()
        source = doc.get_model_by_name("source")
        # A PATCH-DOC carries arrays as buffers in every Bokeh from 3.4 (3.4's PULL-DOC-REPLY inlines them).
        message = wire.PROTOCOL.create("PATCH-DOC", [ColumnDataChangedEvent(doc, source, "data", cols=["x"])])
        frames = wire.encode(message)
        self.assertEqual(json.loads(frames[0].payload)["num_buffers"], 1)
        self.assertEqual(len(frames), 5)
        ref, data = frames[3], frames[4]
        self.assertFalse(ref.is_binary)
        self.assertEqual(set(json.loads(ref.payload)), {"id"})
        self.assertTrue(data.is_binary)
        self.assertEqual(data.payload, np.arange(8, dtype="float64").tobytes())


class AssemblerTests(SynchronousTestCase):
    def test_round_trip(self):
        """Frames fed one by one give nothing until the last, then the message, buffers included."""
        message = wire.PROTOCOL.create("PULL-DOC-REPLY", "req1", doc_with_array())
        frames = wire.encode(message)
        assembler = wire.MessageAssembler()
        results = [assembler.feed(f.payload, f.is_binary) for f in frames]
        self.assertEqual(results[:-1], [None] * (len(frames) - 1))
        received = results[-1]
        self.assertEqual(received.msgtype, "PULL-DOC-REPLY")
        self.assertEqual(received.header["reqid"], "req1")
        copy = Document()
        received.push_to_document(copy)
        self.assertEqual(list(copy.get_model_by_name("source").data["x"]), list(range(8)))

    def test_consecutive_messages(self):
        """One assembler reads message after message from the same stream of frames."""
        assembler = wire.MessageAssembler()
        got = []
        for msgtype in ("PULL-DOC-REQ", "SERVER-INFO-REQ"):
            for frame in wire.encode(wire.PROTOCOL.create(msgtype)):
                message = assembler.feed(frame.payload, frame.is_binary)
                if message is not None:
                    got.append(message.msgtype)
        self.assertEqual(got, ["PULL-DOC-REQ", "SERVER-INFO-REQ"])

    def test_broken_json(self):
        """A header that is not JSON raises one of the wire errors at once, on its own frame."""
        with self.assertRaises(wire.WIRE_ERRORS):
            wire.MessageAssembler().feed(b"{not json", False)

    def test_header_not_an_object(self):
        """A header that is JSON but not an object raises one of the wire errors."""
        for header in (b"null", b"[]", b"5", b'{"msgtype": "ACK"}', b'{"msgid": 5, "msgtype": "ACK"}',
                       b'{"msgid": "1", "msgtype": "ACK", "num_buffers": "1"}',
                       b'{"msgid": "1", "msgtype": "ACK", "num_buffers": -1}'):
            with self.assertRaises(wire.WIRE_ERRORS):
                wire.MessageAssembler().feed(header, False)

    def test_binary_where_text_expected(self):
        """A binary frame where a header is expected raises one of the wire errors."""
        with self.assertRaises(wire.WIRE_ERRORS):
            wire.MessageAssembler().feed(b"\x00\x01", True)

    def test_unknown_msgtype(self):
        """A message type Bokeh does not know raises one of the wire errors once assembled."""
        assembler = wire.MessageAssembler()
        assembler.feed(b'{"msgid": "1", "msgtype": "NO-SUCH-THING"}', False)
        assembler.feed(b"{}", False)
        with self.assertRaises(wire.WIRE_ERRORS):
            assembler.feed(b"{}", False)


class CompleteColumnDataTests(SynchronousTestCase):
    def test_partial_column_data_keeps_other_columns(self):
        """A PATCH-DOC carrying only column y (``data["y"] = ...``) applied in Python keeps column x and its values."""
        sender = Document()
        sender.add_root(ColumnDataSource(data={"x": np.arange(3.0), "y": [1, 2, 3], "z": ["a", "b", "c"]}, name="s"))
        receiver = Document.from_json(sender.to_json(deferred=False))
        events = []
        sender.on_change(events.append)
        sender.get_model_by_name("s").data["y"] = [7, 8, 9]
        assembler = wire.MessageAssembler()
        (message,) = [m for f in wire.encode(wire.PROTOCOL.create("PATCH-DOC", events))
                      if (m := assembler.feed(f.payload, f.is_binary)) is not None]
        self.assertEqual(message.content["events"][0]["cols"], ["y"])

        wire.complete_column_data(message, receiver)
        message.apply_to_document(receiver)
        data = receiver.get_model_by_name("s").data
        self.assertEqual(sorted(data), ["x", "y", "z"])
        self.assertEqual(list(data["x"]), [0.0, 1.0, 2.0])
        self.assertEqual(list(data["y"]), [7, 8, 9])
        self.assertEqual(list(data["z"]), ["a", "b", "c"])
