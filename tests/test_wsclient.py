"""Tests for benchmarks/wsclient.py's permessage-deflate: it reads what the server accepted and inflates as told."""

import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks` lives at the repo root

from benchmarks.wsclient import Inflater  # noqa: E402


def deflate(payload: bytes, window_bits: int = 15, compressor=None) -> bytes:
    compressor = compressor or zlib.compressobj(1, zlib.DEFLATED, -window_bits)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_declined():
    """No answer, or an answer without permessage-deflate, means nothing to inflate."""
    assert Inflater.from_response(None) is None
    assert Inflater.from_response("x-webkit-deflate-frame") is None


def test_no_context_takeover():
    """docsyncd's answer: each message is a fresh deflate stream, inflated on its own."""
    inflater = Inflater.from_response("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    assert inflater.fresh_per_message and inflater.window_bits == 15
    for text in (b'{"msgtype": "PULL-DOC-REPLY"}' * 50, b'{"msgtype": "PATCH-DOC"}' * 50):
        assert inflater.inflate(deflate(text)) == text


def test_context_takeover_and_window():
    """Without server_no_context_takeover, messages continue one stream; server_max_window_bits sets its window."""
    inflater = Inflater.from_response("permessage-deflate; server_max_window_bits=10")
    assert not inflater.fresh_per_message and inflater.window_bits == 10
    stream = zlib.compressobj(1, zlib.DEFLATED, -10)
    first, second = b"abcdefgh" * 100, b"abcdefgh" * 100 + b"!"
    assert inflater.inflate(deflate(first, compressor=stream)) == first
    assert inflater.inflate(deflate(second, compressor=stream)) == second
