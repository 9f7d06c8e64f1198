"""twistd's daemon mode (no -n): fork, pidfile, log file, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from e2e_support import REPO, TWISTD_CMD, daemon_env, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture
def pidfiles():
    """Pidfiles of daemons a test starts; any daemon still alive at teardown is killed."""
    files: list[Path] = []
    yield files
    for path in files:
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_daemon_mode_forks_writes_pidfile_and_stops_on_sigterm(tmp_path, pidfiles):
    """twistd without -n returns after forking a daemon that serves the app, and SIGTERM to the pidfile's pid stops it, removes the pidfile and logs the shutdown."""
    port = free_port()
    pidfile, logfile = tmp_path / "d.pid", tmp_path / "d.log"
    pidfiles.append(pidfile)
    cmd = [*TWISTD_CMD, "--pidfile", str(pidfile), "--logfile", str(logfile),
           "docsync", "--port", str(port), "--address", "127.0.0.1", "--app", "examples/press_me.py"]
    parent = subprocess.run(cmd, cwd=REPO, env=daemon_env(), capture_output=True, text=True, timeout=60)
    assert parent.returncode == 0, parent.stdout + parent.stderr

    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20, message="the pidfile")
    pid = int(pidfile.read_text())
    assert alive(pid)
    assert os.getsid(pid) != os.getsid(0), "the daemon should run in a session of its own"

    url = f"http://127.0.0.1:{port}/press_me"
    wait_until(lambda: http_ok(url), timeout=20, message=lambda: f"{url}; log:\n{logfile.read_text()}")

    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid) and not pidfile.exists(), timeout=20,
               message=lambda: f"the daemon to exit and remove its pidfile; log:\n{logfile.read_text()}")
    log = logfile.read_text()
    # (not "Main loop terminated.": only Twisted's own reactors log that, not the asyncio one docsync runs on)
    for line in ("SIGTERM received", "of app press_me discarded", "all sessions discarded and apps unloaded",
                 "Server Shut Down."):
        assert line in log, f"{line!r} not in the log:\n{log}"
    assert "Traceback" not in log, log


@pytest.mark.timeout(60)
def test_daemon_that_cannot_listen_makes_twistd_fail(tmp_path, pidfiles):
    """When the daemon cannot listen (port taken), twistd exits non-zero saying why and leaves no pidfile."""
    pidfile, logfile = tmp_path / "d.pid", tmp_path / "d.log"
    pidfiles.append(pidfile)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [*TWISTD_CMD, "--pidfile", str(pidfile), "--logfile", str(logfile),
               "docsync", "--port", str(port), "--address", "127.0.0.1", "--app", "examples/press_me.py"]
        parent = subprocess.run(cmd, cwd=REPO, env=daemon_env(), capture_output=True, text=True, timeout=60)
    assert parent.returncode != 0
    assert f"docsync: port {port} is in use" in parent.stdout + parent.stderr  # what twistd passes on to the shell
    assert not pidfile.exists()
