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


# -- PATCH-DOC messages and their JSON, against Bokeh's own ---------------------------------------------


def synced_plot_doc():
    """A document with a plot and a source, synced as after a PULL-DOC-REPLY (no model is new)."""
    from bokeh.plotting import figure

    doc = Document()
    source = ColumnDataSource(data={"x": [1.0, 2.0], "y": [3.0, 4.0], "when": [0, 0], "label": ["a", "b"]},
                              name="source")
    plot = figure(name="plot")
    plot.scatter("x", "y", source=source)
    doc.add_root(plot)
    doc.to_json()  # flushes the new models, as the server's PULL-DOC-REPLY does
    return doc


def captured(doc, change):
    """The events ``change(doc)`` raises."""
    events = []
    doc.on_change(events.append)
    change(doc)
    doc.remove_on_change(events.append)
    return events


def normalised(message):
    """What a client reads from ``message``: header without msgid, metadata, content and buffers, with the buffer
    ids (fresh ids, different per call) renamed in order."""
    names = {buffer.id: f"buffer{i}" for i, buffer in enumerate(message.buffers)}
    content = message.content_json
    for old, new in names.items():
        content = content.replace(json.dumps(old), json.dumps(new))
    header = {k: v for k, v in message.header.items() if k != "msgid"}
    return header, message.metadata, json.loads(content), [buffer.to_bytes() for buffer in message.buffers]


def tricky_changes():
    """Document changes whose PATCH-DOC is easy to get wrong: new models among synced ones, buffers, NaN, infinities,
    datetimes, non-ASCII text."""
    import datetime

    from bokeh.models import Div, Title

    def stream(doc):
        doc.get_model_by_name("source").stream({"x": [5.0], "y": [float("nan")], "when": [datetime.datetime(2026, 1, 2)],
                                                "label": ["é ü 漢字 \u2028"]}, rollover=10)

    def patch(doc):
        doc.get_model_by_name("source").patch({"y": [(0, float("inf")), (1, -float("inf"))]})

    def numpy_columns(doc):
        doc.get_model_by_name("source").data = {"x": np.arange(4.0), "y": np.array([np.nan, 1, 2, np.inf]),
                                                "when": np.array(["2026-01-01"] * 4, dtype="datetime64[ms]"),
                                                "label": np.array(["a", "b", "c", "d"])}

    def new_model(doc):  # a new Title, serialised whole; the plot it hangs on stays a reference
        doc.get_model_by_name("plot").title = Title(text="naïve ☃")

    def new_root_referring_to_synced(doc):
        div = Div(text="<b>ö</b>", tags=[doc.get_model_by_name("source")])
        doc.add_root(div)

    def several_events(doc):
        doc.get_model_by_name("source").stream({"x": [1.0], "y": [2.0], "when": [3], "label": ["x"]})
        doc.get_model_by_name("plot").width = 123

    return [stream, patch, numpy_columns, new_model, new_root_referring_to_synced, several_events]


class PatchMessageTests(SynchronousTestCase):
    def test_same_message_and_effect_as_bokeh(self):
        """``PROTOCOL`` makes the PATCH-DOC Bokeh's ``patch_doc.create`` makes (content, buffers, header fields),
        and leaves the same models new afterwards, for each tricky change."""
        from bokeh.protocol.messages.patch_doc import patch_doc

        for change in tricky_changes():
            doc = synced_plot_doc()
            events = captured(doc, change)
            new_before = set(doc.models._new_models)
            theirs = patch_doc.create(events)
            new_after_theirs = set(doc.models._new_models)
            doc.models._new_models = set(new_before)
            ours = wire.PROTOCOL.create("PATCH-DOC", events)
            self.assertEqual(normalised(ours), normalised(theirs), change.__name__)
            self.assertEqual(doc.models._new_models, new_after_theirs, change.__name__)

    def test_does_not_list_the_documents_models(self):
        """A PATCH-DOC does not walk every model of the document (``synced_references``), only what its events
        refer to: the cost of a change does not grow with the document."""
        from bokeh.document.models import DocumentModelManager

        doc = synced_plot_doc()
        events = captured(doc, tricky_changes()[0])

        def listed(_self):
            raise AssertionError("synced_references was called")

        original = DocumentModelManager.synced_references
        DocumentModelManager.synced_references = property(listed)
        try:
            message = wire.PROTOCOL.create("PATCH-DOC", events)
        finally:
            DocumentModelManager.synced_references = original
        self.assertEqual(message.msgtype, "PATCH-DOC")

    def test_message_ids_differ(self):
        """Each PATCH-DOC has a message id of its own."""
        doc = synced_plot_doc()
        events = captured(doc, tricky_changes()[0])
        ids = {wire.PROTOCOL.create("PATCH-DOC", events).header["msgid"] for _ in range(3)}
        self.assertEqual(len(ids), 3)

    def test_bokehs_errors_stay(self):
        """No events, or events of two documents, raise Bokeh's ValueError as before."""
        with self.assertRaises(ValueError):
            wire.PROTOCOL.create("PATCH-DOC", [])
        first, second = synced_plot_doc(), synced_plot_doc()
        events = captured(first, tricky_changes()[0]) + captured(second, tricky_changes()[0])
        with self.assertRaises(ValueError):
            wire.PROTOCOL.create("PATCH-DOC", events)


class EncodedJsonTests(SynchronousTestCase):
    def assert_same_json(self, message):
        frames = wire.encode(message)
        texts = [message.header_json, message.metadata_json, message.content_json]
        texts += [json.dumps(buffer.ref) for buffer in message.buffers]
        ours = [json.loads(frame.payload) for frame in frames if not frame.is_binary]
        self.assertEqual(ours, [json.loads(text) for text in texts])
        self.assertEqual([f.payload for f in frames if f.is_binary], [b.to_bytes() for b in message.buffers])

    def test_same_json_values_as_bokeh(self):
        """Every text frame ``encode`` writes reads back as the JSON Bokeh's own encoders write, for tricky
        PATCH-DOCs, a whole document and replies with non-ASCII text."""
        for change in tricky_changes():
            doc = synced_plot_doc()
            self.assert_same_json(wire.PROTOCOL.create("PATCH-DOC", captured(doc, change)))
        self.assert_same_json(wire.PROTOCOL.create("PULL-DOC-REPLY", "req", synced_plot_doc()))
        self.assert_same_json(wire.PROTOCOL.create("ERROR", "req", "ValueError: ünïcode ☃ \u2028 \"quoted\""))
        self.assert_same_json(wire.PROTOCOL.create("SERVER-INFO-REPLY", "req"))

    def test_non_ascii_sent_as_utf8(self):
        """Non-ASCII text goes out as UTF-8 (valid in a text frame, and shorter than Bokeh's ``\\u`` escapes)."""
        frames = wire.encode(wire.PROTOCOL.create("ERROR", "req", "☃"))
        self.assertIn("☃".encode("utf-8"), frames[2].payload)

    def test_what_orjson_refuses_is_written_by_bokeh(self):
        """A value orjson does not write (an integer beyond 64 bits, a numpy scalar) is written by Bokeh's encoder."""
        message = wire.PROTOCOL.create("ERROR", "req", "text")
        message.content = {"big": 2**70, "scalar": np.float64(0.25)}
        frames = wire.encode(message)
        self.assertEqual(frames[2].payload, b'{"big":1180591620717411303424,"scalar":0.25}')

    def test_assembled_fragments_sent_as_they_came(self):
        """A message assembled from received frames is sent with its own JSON text, byte for byte."""
        header, metadata, content = b'{"msgid": "m1", "msgtype": "PULL-DOC-REQ"}', b'{ }', b'{"a":  1}'
        assembler = wire.MessageAssembler()
        for frame in (header, metadata):
            assembler.feed(frame, False)
        message = assembler.feed(content, False)
        self.assertEqual([f.payload for f in wire.encode(message)], [header, metadata, content])


class FrameHeaderTests(SynchronousTestCase):
    def test_same_header_as_autobahn(self):
        """``frame_header`` writes what Autobahn's ``sendFrame`` writes before a server's payload, at each length
        boundary (7-bit, 16-bit, 64-bit lengths), for text, binary and deflated (RSV1) frames."""
        from autobahn.twisted.websocket import WebSocketServerFactory

        factory = WebSocketServerFactory()
        sender = factory.buildProtocol(None)
        sender.maskServerFrames, sender.logFrames = False, False  # set by connectionMade from the factory's options
        sender.trafficStats = type("Stats", (), {"outgoingWebSocketFrames": 0})()
        sent = []
        sender.sendData = lambda data, sync=False, chopsize=None: sent.append(data)
        for length in (0, 1, 125, 126, 65535, 65536, 70000):
            for opcode, rsv in ((wire.OPCODE_TEXT, 0), (wire.OPCODE_BINARY, 0), (wire.OPCODE_TEXT, 4)):
                payload = b"x" * length
                sent.clear()
                sender.sendFrame(opcode=opcode, payload=payload, rsv=rsv)
                self.assertEqual(wire.frame_header(opcode, length, rsv) + payload, sent[0], (length, opcode, rsv))
