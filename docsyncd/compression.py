"""permessage-deflate (RFC 7692) on the server's websocket, cheap enough to leave on.

Browsers always offer it, and what docsyncd sends most of (a document's and
a patch's JSON) deflates to about a quarter.  What it must not cost:

- Memory per idle connection.  A zlib compressor takes ~256 KiB and a
  decompressor ~40 KiB, as much as a whole idle session.  The server accepts
  with ``server_no_context_takeover`` (it may always choose it) and requires
  ``client_no_context_takeover`` (it may require it), so no message depends
  on the one before: ``deflated`` makes a compressor per outgoing message,
  and ``Deflate`` a decompressor per incoming one, each dropped at the
  message's end.
- CPU per connection.  ``SyncProtocol.send_frames`` compresses only text
  frames of at least ``MIN_SIZE`` bytes: a small patch gains a few bytes for
  a compressor's cost, and binary frames (numpy buffers) of noisy floats
  shrink by about 5% at about 20 ms per MB.  Without context takeover a
  frame's deflated bytes depend only on the frame and the negotiated
  parameters, so ``deflated`` compresses a message fanned out to many
  connections once per set of parameters, as wire.encode serialises it once.
  The default level is 1: on Bokeh's JSON it comes within 10% of level 6's
  size.
- Trust in what arrives.  Autobahn inflates incoming messages against
  ``maxMessagePayloadSize`` (``--websocket-max-message-size``), so a deflate
  bomb is closed with 1009 before it is inflated past the limit.

Autobahn builds the extension object itself, from a module-level table, with
no per-factory class; ``Compression.adopt`` replaces it with a ``Deflate`` in
``onOpen``, before the connection's first frame is sent or read.

Tests: tests/test_compression.py
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from .wire import EncodedMessage

#: Text frames shorter than this are sent uncompressed.
MIN_SIZE = 1024


class Deflate(PerMessageDeflate):
    """Autobahn's permessage-deflate for a server, at ``level``, holding no zlib object between messages.

    Only valid without context takeover in both directions, which
    ``Compression.accept`` negotiates.  Outgoing frames are deflated by
    ``deflated`` (shared by the connections of a session), so only the
    inflating side of Autobahn's extension runs here.
    """

    def __init__(self, level: int, server_max_window_bits: int, client_max_window_bits: int, mem_level: int):
        super().__init__(True, True, True, server_max_window_bits, client_max_window_bits, mem_level)
        self.parameters = (level, server_max_window_bits, mem_level)

    def end_decompress_message(self) -> None:
        try:
            super().end_decompress_message()
        finally:
            self._decompressor = None


def deflated(frames: EncodedMessage, index: int, parameters: tuple[int, int, int]) -> bytes:
    """The payload of ``frames[index]`` as a permessage-deflate frame, computed once per message and parameters."""
    key = (index, parameters)
    payload = frames.deflated.get(key)
    if payload is None:
        level, window_bits, mem_level = parameters
        compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level)
        # RFC 7692 7.2.1: a sync flush, without its final 00 00 ff ff
        payload = frames.deflated[key] = (compressor.compress(frames[index].payload)
                                          + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return payload


@dataclass(frozen=True)
class Compression:
    """How a factory answers permessage-deflate offers (``--websocket-compression-level``)."""

    level: int = 1

    def accept(self, offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
        """Autobahn's ``perMessageCompressionAccept``: the first deflate offer, without context takeover.

        Autobahn announces ``server_no_context_takeover`` only when the client
        asked for it; a server may announce it anyway (RFC 7692 7.1.1.1), and
        then the client may drop its inflater between messages too.  So the
        offer is answered as if the client had asked.
        """
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer) and offer.accept_no_context_takeover:
                asked = PerMessageDeflateOffer(offer.accept_no_context_takeover, offer.accept_max_window_bits,
                                               request_no_context_takeover=True,
                                               request_max_window_bits=offer.request_max_window_bits)
                return PerMessageDeflateOfferAccept(asked, request_no_context_takeover=True)
        return None

    def adopt(self, protocol: Any) -> None:
        """Give a just-opened connection a ``Deflate`` in place of the extension Autobahn negotiated."""
        negotiated = protocol._perMessageCompress
        if not isinstance(negotiated, PerMessageDeflate):
            return
        ours = Deflate(self.level, negotiated.server_max_window_bits, negotiated.client_max_window_bits,
                       negotiated.mem_level)
        protocol._perMessageCompress = ours
        protocol.websocket_extensions_in_use = [ours if e is negotiated else e for e in protocol.websocket_extensions_in_use]
