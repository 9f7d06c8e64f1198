"""Hostile input against a live daemon, with an honest session beside it.

Hypothesis sends malformed handshakes, frames, message headers, JSON and
buffers to a running docsyncd.  After every example the session opened at the
start must still complete a slider round trip, and at the end every session
the fuzzing created must have been discarded: no crash, no leak, no stall.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import threading
from pathlib import Path

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.loadgen import AppAddress, SyncedDocument, round_trip, visit
from e2e_support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docsync_only(reason="fuzzes docsyncd's own handshake rules")]

APP = Path(__file__).parents[2] / "benchmarks" / "apps" / "slider_div.py"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MSGTYPES = st.sampled_from(["PULL-DOC-REQ", "PATCH-DOC", "PUSH-DOC", "SERVER-INFO-REQ", "ACK", "OK", "ERROR", "NOPE"])


class Beside:
    """The honest session: one websocket that keeps doing slider round trips.

    Its asyncio loop runs on a thread of its own: Playwright's sync API keeps
    a loop running on the main thread once a browser test has run.
    """

    def __init__(self, port: int):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn, reply = self.run(visit(AppAddress("127.0.0.1", port, "/slider_div")))
        self.synced = SyncedDocument(reply)
        self.value = 0

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, 10), self.loop).result()

    def round_trip(self) -> None:
        self.value += 1
        slider, div = self.synced.model("slider"), self.synced.model("div")
        assert self.run(round_trip(self.conn, self.synced, slider, div, self.value)) is not None

    def close(self) -> None:
        self.run(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def daemon(module_serve):
    return module_serve(APP, extra_args=["--unused-session-lifetime", "300", "--check-unused-sessions", "200"])


@pytest.fixture(scope="module")
def beside(daemon):
    honest = Beside(daemon.port)
    honest.round_trip()
    yield honest
    honest.close()


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame, as RFC 6455 requires of clients."""
    head = bytes([(0x80 if fin else 0) | (opcode & 0x0F)])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_websocket(port: int) -> socket.socket:
    """A raw websocket on a session of its own, after a valid handshake."""
    token = generate_jwt_token(generate_session_id())
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /slider_div/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: bokeh, {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock


def send_and_leave(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        while sock.recv(65536):
            pass  # read until the server closes: it must answer or close, not hang
    except OSError:
        pass
    finally:
        sock.close()


def text_message(header: dict, metadata, content) -> list[bytes]:
    return [frame(1, json.dumps(part).encode()) for part in (header, metadata, content)]


@pytest.mark.timeout(240)
@FUZZ
@given(data=st.binary(max_size=600))
def test_garbage_before_the_handshake(daemon, beside, data):
    """Arbitrary bytes in place of an HTTP request neither crash the daemon nor disturb the session beside."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    send_and_leave(sock, data)
    beside.round_trip()


@pytest.mark.timeout(240)
@FUZZ
@given(frames=st.lists(st.tuples(st.integers(0, 15), st.binary(max_size=300), st.booleans()), min_size=1, max_size=6))
def test_malformed_frames(daemon, beside, frames):
    """Frames with any opcode, payload and FIN bit after a valid handshake are refused cleanly."""
    sock = open_websocket(daemon.port)
    send_and_leave(sock, b"".join(frame(op, payload, fin) for op, payload, fin in frames))
    beside.round_trip()


@pytest.mark.timeout(240)
@FUZZ
@given(
    msgtype=MSGTYPES,
    header_extra=st.dictionaries(st.sampled_from(["reqid", "num_buffers", "msgid", "x"]), JSON, max_size=3),
    metadata=JSON,
    content=JSON,
    buffers=st.lists(st.tuples(JSON, st.binary(max_size=64)), max_size=3),
    as_text=st.booleans(),
)
def test_malformed_messages(daemon, beside, msgtype, header_extra, metadata, content, buffers, as_text):
    """Bokeh messages with wrong types, broken JSON shapes and bogus buffers get an ERROR or a close, nothing worse."""
    header = {"msgid": "fuzz", "msgtype": msgtype, **header_extra}
    data = b"".join(text_message(header, metadata, content))
    for buffer_header, payload in buffers:
        data += frame(1, json.dumps(buffer_header).encode()) + frame(1 if as_text else 2, payload)
    send_and_leave(open_websocket(daemon.port), data)
    beside.round_trip()


@pytest.mark.timeout(120)
def test_fuzzing_leaks_no_session(daemon, beside):
    """Every session the fuzzing opened is discarded once its connection is gone; only the honest one stays."""
    beside.round_trip()

    def live_sessions() -> int:
        log = daemon.log_text()
        return len(re.findall(r"session \S+ created", log)) - len(re.findall(r"session \S+ of app \S+ discarded", log))

    wait_until(lambda: live_sessions() == 1, timeout=30, message="only the honest session left")
    assert daemon.proc.poll() is None
