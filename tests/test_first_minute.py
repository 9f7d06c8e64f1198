"""What a new user meets in the first minute of twistd docsync: one-line errors, Bokeh's messages once.

Each test runs the real ``twistd`` (or ``docsync serve``) as a subprocess, as
the user would; no browser.  The URL lines and ``--show`` are in test_cli.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from e2e.e2e_support import TWISTD_CMD, daemon_env, free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
PRESS_ME = REPO / "examples" / "press_me.py"


def twistd(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*TWISTD_CMD, *args], cwd=cwd, env=daemon_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, error", [
    (["--bogus"], "option --bogus not recognized"),
    (["--port", "x"], "invalid literal for int()"),
    (["--log-format", "xml"], "--log-format must be text or json"),
])
def test_bad_option_is_one_line_naming_help(tmp_path, args, error):
    """A bad option prints one line saying what is wrong and where --help is, not twistd's whole usage; exit 2."""
    result = twistd("-n", "docsync", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"twistd docsync: {result.stderr.split(': ', 1)[1].strip()}"]
    assert error in result.stderr and result.stderr.rstrip().endswith("(see twistd docsync --help)"), result.stderr


@pytest.fixture
def busy_port():
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        yield held.getsockname()[1]


def test_port_in_use_is_one_line(tmp_path, busy_port):
    """twistd -n docsync on a port another process holds: one line naming the port, no traceback, exit 1."""
    result = twistd("-n", "--pidfile=", "docsync", "--app", str(PRESS_ME), "--port", str(busy_port), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output, output
    problems = [line for line in output.splitlines() if "cannot listen" in line]
    assert len(problems) == 1 and problems[0].endswith(
        f"docsync: port {busy_port} is in use, cannot listen on tcp:{busy_port}; "
        "stop what holds it, or choose another --port"), output


def test_port_in_use_daemonized_reaches_the_shell(tmp_path, busy_port):
    """Daemonized, twistd returns 1 and tells the shell what happened (the line is in twistd's own message)."""
    result = twistd(f"--pidfile={tmp_path / 'd.pid'}", f"--logfile={tmp_path / 'd.log'}", "docsync",
                    "--port", str(busy_port), cwd=tmp_path)
    assert result.returncode == 1
    assert f"docsync: port {busy_port} is in use" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_docsync_serve_port_in_use_is_one_line(tmp_path, busy_port):
    result = subprocess.run([sys.executable, "-m", "docsyncd.cli", "serve", str(PRESS_ME), "--port", str(busy_port)],
                            cwd=tmp_path, env=daemon_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"docsync serve: port {busy_port} is in use, cannot listen on "
                                          f"tcp:{busy_port}; stop what holds it, or choose another --port"]


def test_app_error_logged_once_as_json(tmp_path):
    """An app raising while building a document: Bokeh's message is one JSON event, nothing raw on stderr."""
    app = tmp_path / "broken.py"
    app.write_text("from bokeh.plotting import curdoc\nraise ValueError('no data file')\n")
    port = free_port()
    out, err = tmp_path / "out.jsonl", tmp_path / "err.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--app", str(app), "--port", str(port),
                                 "--address", "127.0.0.1", "--log-format", "json"],
                                cwd=tmp_path, env=daemon_env(), stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL)
        try:
            def answered():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/broken", timeout=5)
                except urllib.error.HTTPError as e:
                    return e.code
                except OSError:
                    return None
            assert wait_until(answered, timeout=30, message="the page to answer") == 500
            wait_until(lambda: "failed to build a document" in out.read_text(), timeout=10)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert err.read_text() == ""
    events = [json.loads(line) for line in out.read_text().splitlines()]
    mentions = [e for e in events if "no data file" in json.dumps(e)]
    namespaces = [e["log_namespace"] for e in mentions]
    # Bokeh's record (with the traceback) once, and docsyncd's line naming the request that got 500.
    assert namespaces == ["bokeh.application.application", "docsyncd.web"], namespaces
    assert "Traceback" in mentions[0]["text"]
