"""etc/init.d/docsyncd, run as it is, with its settings file, pidfile and log in tmp."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys

import pytest

from e2e_support import EXAMPLES, REPO, TWISTD, daemon_env, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "etc" / "init.d" / "docsyncd"
DEFAULTS = REPO / "etc" / "default" / "docsyncd"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_script_is_an_lsb_init_script():
    """The init script is executable, parses as sh, and carries an LSB header for docsyncd."""
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run(["sh", "-n", str(SCRIPT)]).returncode == 0
    text = SCRIPT.read_text()
    header = re.search(r"### BEGIN INIT INFO\n(.*?)### END INIT INFO", text, re.S)
    assert header and re.search(r"^# Provides:\s+docsyncd$", header.group(1), re.M)
    assert "--pidfile" in text and "--logfile" in text


def test_shipped_defaults_file_sets_the_settings():
    """etc/default/docsyncd is valid sh and sets DOCSYNC_APPS, DOCSYNC_ARGS and DOCSYNC_USER."""
    out = subprocess.run(["sh", "-c", '. "$1"; printf "%s|%s|%s" "$DOCSYNC_APPS" "$DOCSYNC_ARGS" "$DOCSYNC_USER"',
                          "sh", str(DEFAULTS)], capture_output=True, text=True, check=True)
    apps, args, user = out.stdout.split("|")
    assert apps and args and user == "docsync"


@pytest.mark.timeout(90)
def test_start_status_restart_stop(tmp_path):
    """start brings the app up in the background, status reports it running, restart replaces it, stop stops it and status then says not running."""
    port = free_port()
    twistd = tmp_path / "twistd"  # `twistd` for this Python and this checkout
    twistd.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{TWISTD}" "$@"\n')
    twistd.chmod(0o755)
    defaults = tmp_path / "docsyncd.defaults"
    user = pwd.getpwuid(os.geteuid()).pw_name  # as root, the script passes --uid/--gid for it
    defaults.write_text(
        f'DOCSYNC_APPS="{EXAMPLES / "press_me.py"}"\n'
        f'DOCSYNC_ARGS="--port {port} --address 127.0.0.1"\n'
        f"DOCSYNC_USER={user}\n"
        f"TWISTD={twistd}\n"
    )
    pidfile, logfile = tmp_path / "docsyncd.pid", tmp_path / "docsyncd.log"
    env = daemon_env({"DOCSYNC_DEFAULTS": str(defaults), "PIDFILE": str(pidfile), "LOGFILE": str(logfile)})
    url = f"http://127.0.0.1:{port}/press_me"

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), action], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)

    def log() -> str:
        return logfile.read_text() if logfile.exists() else "(no log file)"

    pids: list[int] = []
    try:
        status = run("status")
        assert status.returncode == 3 and "not running" in status.stdout

        start = run("start")
        assert start.returncode == 0, start.stdout + start.stderr + log()
        pids.append(int(pidfile.read_text()))
        wait_until(lambda: http_ok(url), timeout=20, message=lambda: f"{url}; log:\n{log()}")

        status = run("status")
        assert status.returncode == 0 and f"running (pid {pids[0]})" in status.stdout

        again = run("start")
        assert again.returncode == 0 and "already running" in again.stdout
        assert int(pidfile.read_text()) == pids[0]

        restart = run("restart")
        assert restart.returncode == 0, restart.stdout + restart.stderr + log()
        pids.append(int(pidfile.read_text()))
        assert pids[1] != pids[0] and not _alive(pids[0])
        wait_until(lambda: http_ok(url), timeout=20, message=lambda: f"{url}; log:\n{log()}")

        stop = run("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not _alive(pids[1]) and not pidfile.exists()
        assert not http_ok(url)
        status = run("status")
        assert status.returncode == 3 and "not running" in status.stdout
        assert log().count("all sessions discarded and apps unloaded") == 2
        assert log().count("Server Shut Down.") == 2
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, 9)


def test_start_without_apps_is_refused(tmp_path):
    """With no DOCSYNC_APPS, start says what to set and exits 6 (LSB: not configured)."""
    defaults = tmp_path / "empty.defaults"
    defaults.write_text("DOCSYNC_APPS=\n")
    env = daemon_env({"DOCSYNC_DEFAULTS": str(defaults), "PIDFILE": str(tmp_path / "p.pid"),
                      "LOGFILE": str(tmp_path / "l.log")})
    out = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 6 and "DOCSYNC_APPS" in out.stderr
    assert not (tmp_path / "p.pid").exists()
