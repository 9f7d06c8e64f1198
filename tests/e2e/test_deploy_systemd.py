"""etc/systemd/docsyncd.{socket,service}: socket activation, done as systemd does it.

systemd binds the socket unit's ListenStream, then starts the service with
the listening socket as fd 3 and LISTEN_FDS=1, LISTEN_PID=<the service's own
pid>, LISTEN_FDNAMES=<socket unit name>.  The test does exactly that (a tiny
Python wrapper sets LISTEN_PID to its own pid, then execs), and runs the
arguments of the shipped unit's ExecStart line.
"""

from __future__ import annotations

import configparser
import shlex
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from e2e_support import EXAMPLES, REPO, TWISTD_CMD, http_ok, press_me_clicks

pytestmark = pytest.mark.e2e

UNITS = REPO / "etc" / "systemd"

# What systemd does between fork and exec: the socket becomes fd 3, and the
# LISTEN_* variables name it for this very process (pid kept across exec).
SYSTEMD_EXEC = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=sys.argv[2])
os.execv(sys.argv[3], sys.argv[3:])
"""


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string((UNITS / name).read_text(encoding="utf-8"))
    return unit


def exec_start_args() -> list[str]:
    """twistd's arguments from the shipped ExecStart, with --app pointed at examples/press_me.py."""
    argv = shlex.split(read_unit("docsyncd.service")["Service"]["ExecStart"])
    assert Path(argv[0]).name == "twistd", argv
    args = argv[1:]
    args[args.index("--app") + 1] = str(EXAMPLES / "press_me.py")
    return args


def test_units_describe_socket_activation():
    """The shipped units pair an IPv4 socket with a service that adopts it under the brief's settings."""
    service = read_unit("docsyncd.service")
    sock = read_unit("docsyncd.socket")
    args = shlex.split(service["Service"]["ExecStart"])[1:]
    assert args[:2] == ["-n", "--pidfile="]
    assert args[args.index("--listen") + 1] == "systemd:domain=INET:index=0"
    assert service["Service"]["User"] == "docsync"
    assert service["Service"]["Restart"] == "on-failure"
    assert service["Service"]["KillSignal"] == "SIGTERM"
    assert "docsyncd.socket" in service["Unit"]["Requires"]
    # domain=INET needs an IPv4 socket: ListenStream must name an IPv4 address.
    host, _, port = sock["Socket"]["ListenStream"].rpartition(":")
    socket.inet_pton(socket.AF_INET, host)
    assert port == "5006"
    assert sock["Socket"].get("Accept", "no") == "no"


@pytest.fixture
def listening_socket():
    """A listening socket on the socket unit's address (on a free port), as systemd would hold it."""
    host = read_unit("docsyncd.socket")["Socket"]["ListenStream"].rpartition(":")[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(128)
    yield sock
    sock.close()


def socket_activated(spawn, sock: socket.socket, tmp_path: Path, name: str):
    port = sock.getsockname()[1]
    cmd = [sys.executable, "-c", SYSTEMD_EXEC, str(sock.fileno()), "docsyncd.socket",
           *TWISTD_CMD, *exec_start_args()]
    # Ready when /press_me/metadata answers: that makes no session.
    return spawn(cmd, lambda: http_ok(f"http://127.0.0.1:{port}/press_me/metadata"), port=port,
                 pass_fds=(sock.fileno(),), log_path=tmp_path / f"{name}.log")


@pytest.mark.timeout(60)
def test_socket_activation_serves_the_app(spawn, listening_socket, tmp_path, page):
    """docsyncd started by the shipped ExecStart adopts the inherited socket and serves the app to Chromium."""
    daemon = socket_activated(spawn, listening_socket, tmp_path, "activated")
    port = listening_socket.getsockname()[1]

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/press_me", timeout=5) as resp:
        assert resp.status == 200 and b"Bokeh" in resp.read()

    page.open(f"http://localhost:{port}/press_me")
    assert press_me_clicks(page, 2) == ["0", "1"]

    assert daemon.stop() == 0
    assert "all sessions discarded and apps unloaded" in daemon.log_text()


@pytest.mark.timeout(60)
def test_socket_survives_service_restart(spawn, listening_socket, tmp_path):
    """While systemd holds the socket, a request made between two runs of the service waits and is answered by the next one."""
    port = listening_socket.getsockname()[1]
    first = socket_activated(spawn, listening_socket, tmp_path, "first")
    assert first.stop() == 0

    # No docsyncd runs now, yet the kernel accepts a connection on the socket
    # systemd holds, and the request waits in it.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(f"GET /press_me/metadata HTTP/1.1\r\nHost: localhost:{port}\r\n"
                       "Connection: close\r\n\r\n".encode())
        socket_activated(spawn, listening_socket, tmp_path, "second")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b'"url": "/press_me"' in reply
