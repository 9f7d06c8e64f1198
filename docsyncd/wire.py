"""Bokeh protocol messages to and from websocket frames.

A Bokeh message travels as several frames: header, metadata and content JSON
as text frames, then for each binary buffer a ``{"id": ...}`` text frame and a
binary frame.  ``encode`` turns a message into that frame list once, so a
patch fanned out to many connections is serialised a single time.
``MessageAssembler`` drives Bokeh's ``Receiver`` frame by frame.

Tests: tests/test_wire.py
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bokeh.protocol import Protocol
from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.protocol.receiver import Receiver

PROTOCOL = Protocol()

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


def encode(message: Any) -> EncodedMessage:
    """The frames that carry ``message``, in order."""
    frames = EncodedMessage([
        Frame(message.header_json.encode("utf-8"), False),
        Frame(message.metadata_json.encode("utf-8"), False),
        Frame(message.content_json.encode("utf-8"), False),
    ])
    for buffer in message.buffers:
        frames.append(Frame(json.dumps(buffer.ref).encode("utf-8"), False))
        frames.append(Frame(buffer.to_bytes(), True))
    frames.msgtype = message.msgtype
    frames.nbytes = sum(len(f.payload) for f in frames)
    frames.deflated = {}
    return frames


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
