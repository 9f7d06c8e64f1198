"""Access control and limits against the real daemon: each refusal with its answer and its log line.

- ``--auth-module`` with a login page written by the test (a twisted.web
  Resource that sets a signed cookie), in Chromium: redirect, login, the app
  and its websocket, logout; a websocket without the cookie gets 403.
- ``--allow-host``, ``--session-ids external-signed``, ``--max-session-rate``,
  ``--max-sessions``, the request line / header / body limits and
  ``--handshake-timeout`` with raw sockets.
- ``--websocket-max-send-buffer``: a websocket client that stops reading while
  the app streams is closed ("client too slow") and the daemon's memory stays
  bounded.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id

from e2e_support import EXAMPLES, TWISTD_CMD, daemon_env, wait_until, websocket_upgrade

pytestmark = pytest.mark.e2e

COOKIE_SECRET = "e2e-cookie-secret"

AUTH_MODULE = (EXAMPLES / "auth_cookie.py").read_text()

#: An app that streams ~200 KB patches to every connection, 20 times a second.
STREAMING_APP = """
from bokeh.io import curdoc
from bokeh.models import Div

div = Div(name="div", text="")
count = [0]

def tick():
    count[0] += 1
    div.text = str(count[0] % 10) * 200_000

curdoc().add_root(div)
curdoc().add_periodic_callback(tick, 50)
"""


def http_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def get(port: int, path: str, host: str | None = None, headers: str = "") -> bytes:
    host = host or f"localhost:{port}"
    return http_exchange(port, f"GET {path} HTTP/1.0\r\nHost: {host}\r\n{headers}\r\n".encode())


def status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


def upgrade(port: int, path: str, token: str, headers: str = "") -> bytes:
    sock, head = websocket_upgrade(port, path, [f"bokeh, {token}"], headers)
    sock.close()
    return head


def test_login_flow_in_chromium(serve, page, tmp_path):
    """Without the cookie the app redirects to the module's login page; after logging in the app and its websocket work; logout ends it."""
    auth = tmp_path / "auth.py"
    auth.write_text(AUTH_MODULE)
    server = serve("press_me.py", ["--auth-module", str(auth), "--cookie-secret", COOKIE_SECRET])

    page.page.goto(server.url)
    assert page.page.url == f"{server.base_url}/login?next=%2Fpress_me"
    page.page.fill("input[name=username]", "alice")
    page.page.fill("input[name=password]", "sesame")
    page.page.click("button[type=submit]")
    page.page.wait_for_url(server.url)
    page.wait_for_document()
    page.get_by_role("button", name="Press Me").click()
    page.wait_for(lambda: page.length("press_me_source") == 1, message="a press reaching Python and back")

    # The cookie the login page set is signed and HttpOnly.
    (cookie,) = [c for c in page.page.context.cookies() if c["name"] == "user"]
    assert cookie["httpOnly"] and cookie["value"].startswith("2|")

    # A websocket without the cookie is refused before the upgrade, with a log line.
    answer = upgrade(server.port, "/press_me/ws", generate_jwt_token(generate_session_id()))
    assert status(answer) == 403
    wait_until(lambda: "websocket without a logged-in user; answered 403" in server.log_text(), timeout=5,
               message="the log line for the refused websocket")
    # A forged cookie is no user.
    forged = get(server.port, "/press_me", headers="Cookie: user=2|1:0|10:1700000000|4:user|8:YWxpY2U=|00\r\n")
    assert status(forged) == 302

    page.page.goto(f"{server.base_url}/logout")
    page.page.goto(server.url)
    assert page.page.url.startswith(f"{server.base_url}/login")


def test_tornado_login_handler_refused_at_start(tmp_path):
    """An auth module with a Tornado LoginHandler stops twistd docsync with one line saying why."""
    auth = tmp_path / "auth.py"
    auth.write_text("from tornado.web import RequestHandler\n"
                    "def get_user(handler): return handler.get_cookie('user')\n"
                    "login_url = '/login'\n"
                    "class LoginHandler(RequestHandler):\n    pass\n")
    result = subprocess.run([*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--port", "0", "--app",
                             str(EXAMPLES / "press_me.py"), "--auth-module", str(auth)],
                            capture_output=True, text=True, timeout=60, env=daemon_env())
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "LoginHandler is a Tornado RequestHandler, which cannot run under twisted.web" in output, output
    assert "Traceback" not in output, output


def test_refusals_with_their_answers_and_log_lines(serve):
    """Against one daemon: wrong Host 403, unsigned session id 403, a session flood 503 + Retry-After, oversized requests 414/431/413, a slow handshake 408."""
    secret = "an-e2e-secret-key-that-is-long-enough-for-bokeh"
    server = serve("press_me.py", [
        "--allow-host", "localhost:*", "--allow-host", "127.0.0.1:*",
        "--session-ids", "signed", "--max-session-rate", "3",
        "--max-request-line", "2000", "--max-header-size", "4000", "--max-body-size", "1000",
        "--handshake-timeout", "1500",
    ], env={"DOCSYNC_SECRET_KEY": secret})
    port = server.port
    time.sleep(1.1)  # the start-up check used a session: let the bucket refill

    assert status(get(port, "/press_me/metadata", host="evil.example")) == 403
    assert status(get(port, "/press_me?bokeh-session-id=made-up")) == 403
    time.sleep(1.1)  # that was a request for a new session too

    # A burst: the first requests get pages, then the rate limit answers 503. How many pass
    # depends on how fast this machine answers (the bucket refills 3 per second meanwhile).
    statuses, flood = [], b""
    while 503 not in statuses and len(statuses) < 40:
        flood = get(port, "/press_me")
        statuses.append(status(flood))
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    assert re.search(rb"\r\nRetry-After: \d+\r\n", flood), flood[:300]

    assert status(get(port, "/" + "a" * 3000)) == 414
    assert status(get(port, "/press_me", headers="X-Big: " + "b" * 5000 + "\r\n")) == 431
    assert status(http_exchange(port, f"POST /press_me HTTP/1.1\r\nHost: localhost:{port}\r\n"
                                      f"Content-Length: 100000\r\n\r\n".encode())) == 413

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /press_me/ws HTTP/1.1\r\n")  # ... and nothing more
        answer = sock.recv(4096)
    assert status(answer) == 408
    assert 1.0 < time.monotonic() - started < 8

    log = server.log_text()
    for line in ["Host 'evil.example' is not allowed (--allow-host", "invalid session id or token",
                 "opens sessions faster than 3 per second (--max-session-rate); answered 503",
                 "(--max-request-line); answered 414", "(--max-header-size); answered 431",
                 "(--max-body-size); answered 413", "(--handshake-timeout); answered 408"]:
        assert line in log, f"{line!r} not in the log:\n{server.log_tail()}"
    assert status(get(port, "/press_me/metadata")) == 200  # and it carries on


def test_max_sessions(serve):
    """With --max-sessions 2, a third session is refused with 503 and Retry-After before its document is built."""
    server = serve("press_me.py", ["--max-sessions", "2"])  # the start-up check made one
    assert status(get(server.port, "/press_me")) == 200
    answer = get(server.port, "/press_me")
    assert status(answer) == 503 and b"Retry-After: " in answer
    assert server.log_text().count("session ") and "(--max-sessions 2); answered 503" in server.log_text()
    assert len(re.findall(r"session \S+ created", server.log_text())) == 2


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_slow_client_closed(serve, tmp_path):
    """A websocket client that stops reading while the app streams is closed ('client too slow'), once, and memory stays bounded."""
    app = tmp_path / "streaming_div.py"
    app.write_text(STREAMING_APP)
    server = serve(app, ["--websocket-max-send-buffer", str(2 * 1024 * 1024), "--websocket-send-timeout", "2000",
                         "--unused-session-lifetime", "1000", "--check-unused-sessions", "500"])
    before = _rss_kib(server.proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    token = generate_jwt_token(generate_session_id())
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /streaming_div/ws HTTP/1.1\r\nHost: localhost:{server.port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Protocol: bokeh, {token}\r\n\r\n".encode())
    try:
        # Never read: the server's kernel buffer fills, then Twisted's, then the limit is reached.
        wait_until(lambda: "client too slow" in server.log_text(), timeout=60,
                   message=lambda: f"the slow client to be closed; log:\n{server.log_tail()}")
        peak = _rss_kib(server.proc.pid)
        wait_until(lambda: re.search(r"session \S+ of app streaming_div discarded", server.log_text()), timeout=20,
                   message="the slow client's session to be discarded")
    finally:
        sock.close()
    assert server.log_text().count("client too slow") == 1
    # 2 MiB may queue, plus 2 s of the app's 4 MB/s, the kernel's buffers and a few patches in flight; not all
    # the app makes.
    assert peak - before < 40 * 1024, (before, peak)
    assert status(get(server.port, "/streaming_div/metadata")) == 200


def test_oversized_websocket_message_closes_1009(serve):
    """A websocket message larger than --websocket-max-message-size is answered with close code 1009 and the daemon carries on."""
    server = serve("press_me.py", ["--websocket-max-message-size", "1000"])
    key = base64.b64encode(os.urandom(16)).decode()
    token = generate_jwt_token(generate_session_id())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /press_me/ws HTTP/1.1\r\nHost: localhost:{server.port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                     f"Sec-WebSocket-Protocol: bokeh, {token}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:  # a client waits for the 101 before it sends frames
            data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 101"), data
        payload, mask = b"x" * 2000, os.urandom(4)
        sock.sendall(bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask
                     + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while b"\x88" not in data.partition(b"\r\n\r\n")[2]:  # until the close frame (opcode 8) arrives
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    # After the 101 and the ACK's frames comes the close frame, whose code is 1009.
    frames = data.partition(b"\r\n\r\n")[2]
    at = frames.find(b"\x88")
    assert struct.unpack("!H", frames[at + 2:at + 4])[0] == 1009, frames[:200]
    autobahn_line = ('failing WebSocket connection (code=1009): '
                     '"received WebSocket message size 2000 exceeds payload limit of 1000 octets"')
    wait_until(lambda: autobahn_line in server.log_text(), timeout=5,
               message=lambda: f"Autobahn's log line for the 1009:\n{server.log_tail()}")
    assert status(get(server.port, "/press_me/metadata")) == 200
