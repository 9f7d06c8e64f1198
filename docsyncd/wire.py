"""Bokeh protocol messages to and from websocket frames.

A Bokeh message travels as several frames: header, metadata and content JSON
as text frames, then for each binary buffer a ``{"id": ...}`` text frame and a
binary frame.  ``encode`` turns a message into that frame list once, so a
patch fanned out to many connections is serialised a single time.
``MessageAssembler`` drives Bokeh's ``Receiver`` frame by frame.

What a server sends most is a small PATCH-DOC per document change (a row
streamed, a value set), so its cost per message counts (benchmarks
fanout_separate, py-spy): Bokeh's ``patch_doc.create`` lists every synced
model of the document and makes each a reference before it encodes one
event, and its JSON goes through ``json.JSONEncoder`` objects made per
fragment; together more than the document change itself.  ``PROTOCOL``
builds PATCH-DOC messages with a serializer that asks the document about a
model only when the event refers to it (``SyncedReferences``), and ``encode``
writes the fragments with orjson: the same JSON values (non-ASCII text is
sent as UTF-8 instead of ``\\u`` escapes, which every JSON reader, BokehJS
and ``bokeh.client`` included, reads the same).  A fragment orjson refuses
(an integer beyond 64 bits, a numpy scalar) is written by Bokeh's encoder,
as before.

Tests: tests/test_wire.py
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass
from typing import Any

import orjson
from bokeh.core.json_encoder import serialize_json
from bokeh.core.serialization import Buffer, Serializer
from bokeh.model import Model
from bokeh.protocol import Protocol
from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.protocol.messages.patch_doc import patch_doc
from bokeh.protocol.receiver import Receiver


class SyncedReferences(Serializer):
    """Bokeh's ``Serializer`` whose references are the document's synced models, found when asked for.

    ``patch_doc.create`` hands its serializer every synced model
    (``doc.models.synced_references``: a set, then a dict of ``model.ref``),
    an O(models) walk for each change.  Here a model encountered while
    encoding is looked up in the document's model manager instead: known
    there and not new since the last sync (``_new_models``), it is sent as
    a reference, as by Bokeh; otherwise it is serialised whole and becomes
    a reference of this message (``add_ref``), as by Bokeh.
    """

    def __init__(self, models: Any) -> None:
        super().__init__()
        self._models = models

    def get_ref(self, obj: Any) -> Any:
        ref = self._references.get(id(obj))
        if ref is None and isinstance(obj, Model) and self._synced(obj):
            ref = self._references[id(obj)] = obj.ref
        return ref

    def has_ref(self, obj: Any) -> bool:
        return self.get_ref(obj) is not None

    def _synced(self, model: Model) -> bool:
        models = self._models
        return model.id in models and models[model.id] is model and model not in models._new_models


class WireProtocol(Protocol):
    """Bokeh's ``Protocol``; PATCH-DOC messages are made as ``patch_doc.create`` makes them, with
    ``SyncedReferences`` for its serializer (the same message, without listing the document first)."""

    def create(self, msgtype: str, *args: Any, **kwargs: Any) -> Any:
        if msgtype == "PATCH-DOC" and len(args) == 1:
            message = patch_message(args[0], **kwargs)
            if message is not None:
                return message
        return super().create(msgtype, *args, **kwargs)


def patch_message(events: list[Any], **metadata: Any) -> Any | None:
    """The PATCH-DOC of ``events`` (``patch_doc.create``'s message and its effect on the document), or None
    where Bokeh's own ``create`` must answer: no events, events of several documents (it raises), or a
    Bokeh whose model manager keeps no ``_new_models``."""
    documents = {event.document for event in events}
    if len(documents) != 1:
        return None
    [document] = documents
    models = getattr(document, "models", None)
    if not isinstance(getattr(models, "_new_models", None), set):
        return None
    serializer = SyncedReferences(models)
    content = {"events": serializer.encode(events)}
    models.flush_synced(lambda model: not serializer.has_ref(model))
    header = {"msgid": f"m{next(_PATCH_IDS)}", "msgtype": patch_doc.msgtype}
    message = patch_doc(header, metadata, content)
    message.add_buffers(*serializer.buffers)
    return message


#: PATCH-DOC message ids. Bokeh's ``create_header`` takes one from ``make_id``, which reads Bokeh's settings
#: (environment, config) on every call: a tenth of a streamed row's CPU.  A message id only has to differ from
#: the other messages' on its connection, where a reply names it in ``reqid`` (the server's OK to a client's
#: PATCH-DOC): one counter per process does, and its ``m`` keeps it apart from Bokeh's ``p`` ids.
_PATCH_IDS = itertools.count(1)


PROTOCOL = WireProtocol()

#: The most binary buffers one message may announce (Bokeh sends one per array it carries).
MAX_BUFFERS = 1024


class MessageTooBig(ProtocolError):
    """A message larger than the limit, or announcing more buffers than ``MAX_BUFFERS``: close 1009."""


#: What a malformed frame sequence raises while being assembled (JSON nested too deep: RecursionError).
WIRE_ERRORS = (MessageError, ProtocolError, ValidationError, ValueError, TypeError, KeyError, RecursionError)


@dataclass(frozen=True)
class Frame:
    payload: bytes
    is_binary: bool


class EncodedMessage(list):
    """The frames of one message, in order, with its type and size for counting."""

    msgtype: str
    nbytes: int
    #: deflated text frames by (index, deflate parameters), filled by compression.deflated
    deflated: dict[tuple[int, tuple[int, int, int]], bytes]
    #: the websocket octets of every frame and their payloads' length, by deflate parameters (None: not
    #: deflated), filled by protocol.SyncProtocol: a message fanned out is framed once
    octets: dict[tuple[int, int, int] | None, tuple[bytes, int]]


OPCODE_TEXT, OPCODE_BINARY = 1, 2


def frame_header(opcode: int, length: int, rsv: int = 0) -> bytes:
    """The header of a final, unmasked websocket frame (RFC 6455 5.2): what a server puts before a payload.

    Autobahn's ``sendFrame`` writes the same header, and the frame, one
    frame at a time; a Bokeh message is three or more frames, so
    ``SyncProtocol.send_frames`` frames it here and writes it at once.
    """
    first = 0x80 | rsv << 4 | opcode
    if length <= 125:
        return bytes((first, length))
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def _buffer_ref(value: Any) -> Any:
    """orjson's ``default``: a deferred buffer is written as its reference, as Bokeh's ``PayloadEncoder`` does."""
    if isinstance(value, Buffer):
        return value.ref
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any, bokeh_json: Any) -> bytes:
    """``value`` as UTF-8 JSON, by orjson; by ``bokeh_json()`` (Bokeh's own text) where orjson refuses it."""
    try:
        return orjson.dumps(value, default=_buffer_ref)
    except TypeError:  # orjson.JSONEncodeError: int beyond 64 bits, non-str keys, numpy scalars
        return bokeh_json().encode("utf-8")


def encode(message: Any) -> EncodedMessage:
    """The frames that carry ``message``, in order.

    A fragment already in JSON (a message assembled from frames) is sent as it came.
    """
    frames = EncodedMessage([
        Frame(_fragment(message, "_header_json", message.header, lambda: message.header_json), False),
        Frame(_fragment(message, "_metadata_json", message.metadata, lambda: message.metadata_json), False),
        Frame(_fragment(message, "_content_json", message.content, lambda: serialize_json(message.content)), False),
    ])
    for buffer in message.buffers:
        frames.append(Frame(orjson.dumps(buffer.ref), False))
        frames.append(Frame(buffer.to_bytes(), True))
    frames.msgtype = message.msgtype
    frames.nbytes = sum(len(f.payload) for f in frames)
    frames.deflated = {}
    frames.octets = {}
    return frames


def _fragment(message: Any, cached: str, value: Any, bokeh_json: Any) -> bytes:
    text = getattr(message, cached, None)
    return text.encode("utf-8") if text else to_json(value, bokeh_json)


def complete_column_data(message: Any, document: Any) -> None:
    """Give an incoming PATCH-DOC's partial ``ColumnDataChanged`` events their other columns.

    ``source.data["y"] = ...`` in Python sends only the changed columns (with
    ``cols``).  BokehJS merges them into the source's data, but Bokeh's Python
    side replaces the whole ``data`` with them, dropping every other column.
    Adding the document's current values of the other columns makes a Python
    peer apply the event as BokehJS does.  Changes ``message`` in place.
    """
    from bokeh.core.serialization import Serializer

    content = message.content if isinstance(message.content, dict) else {}
    for event in content.get("events") or []:
        if not isinstance(event, dict) or event.get("kind") != "ColumnDataChanged" or event.get("cols") is None:
            continue
        ref = event.get("model")
        model = document.get_model_by_id(ref.get("id")) if isinstance(ref, dict) else None
        current = getattr(model, str(event.get("attr")), None) if model is not None else None
        data = event.get("data")
        if not isinstance(current, dict) or not isinstance(data, dict) or data.get("type") != "map":
            continue
        present = {entry[0] for entry in data.get("entries", [])}
        missing = {k: v for k, v in current.items() if k not in present}
        if missing:
            data["entries"] = list(data.get("entries", [])) + list(Serializer(deferred=False).encode(missing)["entries"])


def check_header(header_json: str) -> dict[str, Any]:
    """A message's header, parsed, or ``ValidationError`` saying what is wrong with it.

    Bokeh's Receiver takes any JSON: a header without ``msgid`` fails later,
    where the reply needs it, and a ``num_buffers`` that is not a number
    leaves the message incomplete forever.  Checked here on the first frame.
    """
    header = json.loads(header_json)
    if not isinstance(header, dict):
        raise ValidationError("the message header is not a JSON object")
    for key in ("msgid", "msgtype"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise ValidationError(f"the message header has no {key} string")
    buffers = header.get("num_buffers", 0)
    if isinstance(buffers, bool) or not isinstance(buffers, int) or buffers < 0:
        raise ValidationError(f"num_buffers must be a whole number, not {buffers!r}")
    if buffers > MAX_BUFFERS:
        raise MessageTooBig(f"a message announcing {buffers} buffers; the most is {MAX_BUFFERS}")
    return header


class MessageAssembler:
    """Collects frames until they make a complete Bokeh message.

    ``feed`` returns the message once its last frame arrived, else ``None``,
    and raises one of ``WIRE_ERRORS`` for frames that cannot form a message:
    ``MessageTooBig`` once the frames of one message add up to more than
    ``max_size`` bytes (the websocket's own limit is per frame) or its header
    announces more than ``MAX_BUFFERS`` buffers.  ``Receiver.consume`` is
    declared ``async`` but never awaits, so driving the coroutine one step
    runs it to completion.
    """

    def __init__(self, max_size: int | None = None) -> None:
        self._receiver = Receiver(PROTOCOL)
        self._max_size = max_size
        self._size = 0

    def feed(self, payload: bytes, is_binary: bool) -> Any | None:
        fragment: str | bytes = payload if is_binary else payload.decode("utf-8")
        if self._receiver._current_consumer == self._receiver._HEADER:
            self._size = 0
            if isinstance(fragment, str):
                check_header(fragment)
        self._size += len(payload)
        if self._max_size and self._size > self._max_size:
            raise MessageTooBig(f"a message of more than {self._max_size} bytes (--websocket-max-message-size)")
        step = self._receiver.consume(fragment)
        try:
            step.send(None)
        except StopIteration as done:
            message = done.value
        else:  # pragma: no cover - Receiver would have to start awaiting
            step.close()
            raise ProtocolError("Bokeh's Receiver unexpectedly suspended")
        return message
