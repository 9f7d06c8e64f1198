"""A Unix socket listener: `--listen unix:PATH:mode=660`.

HTTP and the websocket are spoken over the socket file directly (no TCP),
as a local reverse proxy would (nginx: `proxy_pass http://unix:PATH:`).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import stat
import struct

import pytest

from e2e_support import EXAMPLES, TWISTD_CMD

pytestmark = pytest.mark.e2e


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket; the Host header stays "localhost"."""

    def __init__(self, path: str, timeout: float = 5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_get(path: str, url: str) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _ready(path: str) -> bool:
    try:
        return unix_get(path, "/press_me/metadata")[0] == 200
    except OSError:
        return False


# -- a minimal websocket client (RFC 6455), enough for Bokeh's text frames ---

def _send_text(sock: socket.socket, text: str) -> None:
    data = text.encode("utf-8")
    mask = os.urandom(4)
    header = bytes([0x81])  # FIN, text
    if len(data) < 126:
        header += bytes([0x80 | len(data)])
    elif len(data) < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", len(data))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _recv_exact(sock: socket.socket, n: int, buffer: bytearray) -> bytes:
    while len(buffer) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("websocket closed by the server")
        buffer += chunk
    out = bytes(buffer[:n])
    del buffer[:n]
    return out


def _recv_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    first, second = _recv_exact(sock, 2, buffer)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", _recv_exact(sock, 2, buffer))[0]
    elif length == 127:
        length = struct.unpack("!Q", _recv_exact(sock, 8, buffer))[0]
    return first & 0x0F, _recv_exact(sock, length, buffer)


def _recv_message(sock: socket.socket, buffer: bytearray) -> dict:
    """One Bokeh message: header, metadata and content text frames (pings skipped)."""
    parts = []
    while len(parts) < 3:
        opcode, payload = _recv_frame(sock, buffer)
        if opcode == 0x1:
            parts.append(json.loads(payload))
        elif opcode == 0x8:
            raise ConnectionError(f"websocket closed: {payload!r}")
    header, _metadata, content = parts
    return {"msgtype": header["msgtype"], "content": content}


@pytest.fixture
def unix_server(spawn, tmp_path):
    path = str(tmp_path / "docsync.sock")
    cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--listen", f"unix:{path}:mode=660",
           "--app", str(EXAMPLES / "press_me.py")]
    return spawn(cmd, lambda: _ready(path)), path


def test_unix_socket_has_the_mode_and_serves_the_page(unix_server):
    """The socket file is a socket with mode 660 (with Twisted's lock beside it), and GET over it answers the app page and BokehJS."""
    daemon, path = unix_server
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert os.path.lexists(path + ".lock"), "Twisted's lock (a symlink) beside the socket"
    status, body = unix_get(path, "/press_me")
    assert status == 200
    assert b"<title>Press Me</title>" in body and b"/static/js/bokeh.min.js" in body
    status, _ = unix_get(path, "/static/js/bokeh.min.js")
    assert status == 200


def test_websocket_over_the_unix_socket(unix_server):
    """With the page's token, a websocket over the Unix socket is accepted, ACKs, and pulls the app's document."""
    daemon, path = unix_server
    status, body = unix_get(path, "/press_me")
    assert status == 200
    token = re.search(rb'"token"\s*:\s*"([^"]+)"', body).group(1).decode()

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((
            "GET /press_me/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: bokeh, {token}\r\n\r\n"
        ).encode())
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed during the handshake: {bytes(buffer)!r}"
            buffer += chunk
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        buffer = bytearray(rest)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert re.search(rb"(?im)^sec-websocket-protocol:\s*bokeh\s*$", head), head

        assert _recv_message(sock, buffer)["msgtype"] == "ACK"
        for part in ({"msgid": "1", "msgtype": "PULL-DOC-REQ"}, {}, {}):
            _send_text(sock, json.dumps(part))
        reply = _recv_message(sock, buffer)
        assert reply["msgtype"] == "PULL-DOC-REPLY"
        assert "press_me_button" in json.dumps(reply["content"])


def test_socket_file_removed_on_sigterm(unix_server):
    """After SIGTERM docsyncd exits 0 and its socket file is gone."""
    daemon, path = unix_server
    assert daemon.stop() == 0
    assert not os.path.exists(path)
