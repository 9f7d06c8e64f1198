"""Hostile clients against the real daemon, a neighbour session syncing throughout: publishing needs the
owner's credential, and a published document's markup cannot run script in a viewer's browser."""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import time
import urllib.request
import zlib
from urllib.error import HTTPError

import pytest

from client_support import ClientProcess, client_env, docsync_only, run_client, start_docsync, stop_quietly
from bokeh.util.token import generate_jwt_token, generate_session_id
from e2e_support import http_ok, wait_until, websocket_upgrade
from test_fuzz import APP as FUZZ_APP, Beside, text_message

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures(docsync_only.__name__)]

OWNER_KEY = "owner-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"

NEIGHBOUR = """
from bokeh.document import Document
from bokeh.models import Div
from docsyncd.client import ClientSession

doc = Document()
div = Div(text="0", name="div")
doc.add_root(div)
session = ClientSession("neighbour")
session.push(doc, publish=False)
print("pushed", flush=True)
doc.add_periodic_callback(lambda: setattr(div, "text", str(int(div.text) + 1)), 100)
session.loop_until_closed()
"""

PUBLISH = """
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import Div, Slider
from docsyncd.client import ServerError, push_session

doc = Document()
doc.add_root(column(Div(text='<b>hello</b><img src="/nowhere" onerror="window.pwned = 1">', name="div"),
                    Slider(start=0, end=10, value=1, name="slider")))
try:
    push_session(doc, session_id="line").close()
    print("published")
except ServerError as e:
    print("refused:", e)
"""


def delete(base_url, name, key=None, **headers):
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{base_url}/published/{name}", method="DELETE", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except HTTPError as e:
        return e.code


@pytest.mark.timeout(90)
def test_only_the_owner_publishes_and_markup_cannot_run_script(tmp_path, new_page):
    """With --no-local-publishing: no key is refused, the owner's key publishes, another key cannot replace or
    delete, a viewer's browser renders the markup without running its script and moves the slider; the
    neighbour session keeps syncing throughout."""
    keys = tmp_path / "keys"
    keys.write_text(f"owner {OWNER_KEY}\nother {OTHER_KEY}\n")
    server = start_docsync(tmp_path, "--store", str(tmp_path / "store.sqlite"), "--no-local-publishing",
                           "--publish-keys", str(keys))
    (tmp_path / "neighbour.py").write_text(NEIGHBOUR)
    neighbour = ClientProcess(tmp_path / "neighbour.py", tmp_path / "neighbour.log", client_env(server.port))
    try:
        neighbour.wait_for_output("pushed")
        watcher = new_page()
        watcher.open(f"{server.base_url}/?bokeh-session-id=neighbour")
        start = int(watcher.wait_for_prop("div", "text", lambda t: int(t) > 2))

        assert "refused: PublishRefused: publishing needs a credential" in run_client(
            PUBLISH, tmp_path, client_env(server.port))
        assert run_client(PUBLISH, tmp_path, client_env(server.port, DOCSYNC_PUBLISH_KEY=OWNER_KEY)) == "published\n"
        replaced = run_client(PUBLISH.replace("value=1", "value=9"), tmp_path,
                              client_env(server.port, DOCSYNC_PUBLISH_KEY=OTHER_KEY))
        assert "only its owner can replace" in replaced
        assert delete(server.base_url, "line", OTHER_KEY) == 403
        assert delete(server.base_url, "line", OWNER_KEY, Origin=server.base_url) == 403

        viewer = new_page()
        viewer.open(f"{server.base_url}/?bokeh-session-id=line")
        assert viewer.get("div", "text").startswith("<b>hello</b>")
        viewer.wait_for_timeout(500)  # the broken image's error event has fired by now
        assert viewer.evaluate("window.pwned") is None, "the document's markup ran script on docsyncd's origin"
        viewer.set("slider", "value", 4)
        viewer.screenshot(path="/tmp/hostile-shots/published.png")
        stored = lambda: json.loads(urllib.request.urlopen(f"{server.base_url}/published/line", timeout=5).read())
        wait_until(lambda: '"value": 4' in json.dumps(stored()) or '"value":4' in json.dumps(stored()),
                   message="the viewer's slider value in the store")

        assert delete(server.base_url, "line", OWNER_KEY) == 200
        watcher.wait_for_prop("div", "text", lambda t: int(t) > start + 10)
        assert neighbour.proc.poll() is None, neighbour.output()
    finally:
        neighbour.kill()
        stop_quietly(server)


# -- limits that could be walked around, against the real daemon, an honest session syncing beside --------


def handshake(port: int, protocol_lines: list[str]) -> tuple[socket.socket, bytes]:
    return websocket_upgrade(port, "/slider_div/ws", protocol_lines, host=f"127.0.0.1:{port}")


def close_code(sock: socket.socket, head: bytes = b"") -> int | None:
    """The code of the close frame the server sends (server frames are not masked), or None if it just drops.

    ``head`` is what ``handshake`` read: frames may have arrived with the 101.
    """
    data = head.partition(b"\r\n\r\n")[2]
    sock.settimeout(5)
    try:
        while True:
            while len(data) >= 2:
                length = data[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(length, 0)
                if length >= 126:
                    if len(data) < start:
                        break
                    length = int.from_bytes(data[2:start], "big")
                if len(data) < start + length:
                    break
                if data[0] & 0x0F == 8:
                    return struct.unpack("!H", data[start:start + 2])[0]
                data = data[start + length:]
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    finally:
        sock.close()


@pytest.mark.timeout(90)
def test_limits_hold_against_hostile_clients(serve):
    """bokeh and the token as two Sec-WebSocket-Protocol lines are counted by --max-sessions like one line
    (503 past it, as Autobahn reads the header); the honest session beside keeps its round trips."""
    daemon = serve(FUZZ_APP, extra_args=["--max-sessions", "4"])
    beside = Beside(daemon.port)
    try:
        beside.round_trip()
        answers = []
        for _ in range(5):
            sock, head = handshake(daemon.port, ["bokeh", generate_jwt_token(generate_session_id())])
            answers.append(head[:12].decode())
            sock.close()
        accepted = answers.count("HTTP/1.1 101")  # the start-up check's page and the honest session hold two
        assert accepted >= 1 and answers == ["HTTP/1.1 101"] * accepted + ["HTTP/1.1 503"] * (5 - accepted), answers
        assert len(re.findall(r"session \S+ created", daemon.log_text())) == 4
        assert "(--max-sessions 4); answered 503" in daemon.log_text()
        beside.round_trip()
    finally:
        beside.close()


@pytest.mark.timeout(90)
def test_oversized_messages_and_tokens(serve):
    """A header announcing a million buffers closes 1009 at once; a 14 KB token inflating to 8 MiB closes 1008;
    past --max-connections a connection gets 503 while the honest session keeps syncing."""
    daemon = serve(FUZZ_APP, extra_args=["--max-connections", "8"])
    beside = Beside(daemon.port)
    try:
        sock, head = handshake(daemon.port, [f"bokeh, {generate_jwt_token(generate_session_id())}"])
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(text_message({"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 1_000_000}, {}, {})[0])
        assert close_code(sock, head) == 1009
        beside.round_trip()

        bomb = zlib.compress(b'{"headers": {"x": "' + b" " * (8 * 1024 * 1024) + b'"}}', 9)
        payload = {"session_id": generate_session_id(), "session_expiry": time.time() + 300,
                   "__bk__zlib_": base64.urlsafe_b64encode(bomb).rstrip(b"=").decode()}
        token = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        assert len(token) < 20000
        sock, head = handshake(daemon.port, [f"bokeh, {token}"])
        assert head.startswith(b"HTTP/1.1 101")
        assert close_code(sock, head) == 1008
        assert "inflates to more than" in daemon.log_text()
        beside.round_trip()

        idle = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5) for _ in range(10)]
        try:
            idle[-1].settimeout(5)
            assert idle[-1].recv(100).startswith(b"HTTP/1.1 503"), "the connection past --max-connections"
            assert "(--max-connections); answered 503" in daemon.log_text()
            beside.round_trip()  # its connection was open before the crowd
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: http_ok(f"http://127.0.0.1:{daemon.port}/slider_div"), message="served again")
        beside.round_trip()
    finally:
        beside.close()


STUCK_MAIN = """
from bokeh.io import curdoc
from bokeh.models import Div
from twisted.internet import defer

curdoc().add_root(Div(text="stuck", name="div"))

async def wait_for_a_backend_that_never_answers():
    await defer.Deferred()

curdoc().add_next_tick_callback(wait_for_a_backend_that_never_answers)
"""

STUCK_LIFECYCLE = """
def on_server_unloaded(server_context):
    print("on_server_unloaded ran", flush=True)
"""


@pytest.mark.timeout(60)
def test_sigterm_with_a_stuck_callback_exits_after_the_grace_period(serve, tmp_path):
    """SIGTERM while a coroutine callback holds a session's lock awaiting forever: after --shutdown-grace the
    callback is cancelled, the session destroyed, on_server_unloaded runs and the daemon exits 0."""
    app = tmp_path / "stuck"
    app.mkdir()
    (app / "main.py").write_text(STUCK_MAIN)
    (app / "server_lifecycle.py").write_text(STUCK_LIFECYCLE)
    daemon = serve(app, extra_args=["--shutdown-grace", "1000"])
    assert http_ok(f"http://127.0.0.1:{daemon.port}/stuck")  # another session, stuck too
    started = time.monotonic()
    assert daemon.stop(timeout=20) == 0
    assert time.monotonic() - started < 10
    log = daemon.log_text()
    assert "(--shutdown-grace); cancelling them" in log
    assert "on_server_unloaded ran" in log
