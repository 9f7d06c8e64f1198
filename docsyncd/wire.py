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

#: What a malformed frame sequence raises while being assembled.
WIRE_ERRORS = (MessageError, ProtocolError, ValidationError, ValueError, TypeError, KeyError)


@dataclass(frozen=True)
class Frame:
    payload: bytes
    is_binary: bool


def encode(message: Any) -> list[Frame]:
    """The frames that carry ``message``, in order."""
    frames = [
        Frame(message.header_json.encode("utf-8"), False),
        Frame(message.metadata_json.encode("utf-8"), False),
        Frame(message.content_json.encode("utf-8"), False),
    ]
    for buffer in message.buffers:
        frames.append(Frame(json.dumps(buffer.ref).encode("utf-8"), False))
        frames.append(Frame(buffer.to_bytes(), True))
    return frames


class MessageAssembler:
    """Collects frames until they make a complete Bokeh message.

    ``feed`` returns the message once its last frame arrived, else ``None``,
    and raises one of ``WIRE_ERRORS`` for frames that cannot form a message.
    ``Receiver.consume`` is declared ``async`` but never awaits, so driving
    the coroutine one step runs it to completion.
    """

    def __init__(self) -> None:
        self._receiver = Receiver(PROTOCOL)

    def feed(self, payload: bytes, is_binary: bool) -> Any | None:
        fragment: str | bytes = payload if is_binary else payload.decode("utf-8")
        step = self._receiver.consume(fragment)
        try:
            step.send(None)
        except StopIteration as done:
            message = done.value
        else:  # pragma: no cover - Receiver would have to start awaiting
            step.close()
            raise ProtocolError("Bokeh's Receiver unexpectedly suspended")
        return message
