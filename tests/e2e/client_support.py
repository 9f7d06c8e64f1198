"""Helpers for the Python-client e2e tests (tests/e2e/test_client_*.py).

docsyncd runs without ``--app`` (the empty app at ``/``), client scripts run in
their own processes (each gets a plain, never-started reactor, as a user's
script does), and ``$BROWSER`` is a small script that records the URLs a
client asks to open, so Chromium can open them instead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from e2e_support import REPO, TWISTD_CMD, ServerProcess, daemon_env, free_port, http_ok, start_process, wait_until


@pytest.fixture
def docsync_only(server_kind):
    """These tests start the servers they need themselves: nothing to compare under --e2e-server=bokeh."""
    if server_kind != "docsync":
        pytest.skip("the Python client and published documents are tested against docsyncd only")


def docsync_command(port: int, run_dir: Path, *args: str) -> list[str]:
    """``twistd -n docsync`` without an app, on 127.0.0.1:port."""
    return [*TWISTD_CMD, "-n", "--pidfile", str(run_dir / f"twistd-{port}.pid"), "docsync",
            "--port", str(port), "--address", "127.0.0.1", *args]


def start_docsync(run_dir: Path, *args: str, port: int | None = None, name: str = "docsync") -> ServerProcess:
    """Start docsyncd without an app and wait until /published.json answers.

    Not through the ``spawn`` fixture: tests kill some of these with SIGKILL;
    ``stop_quietly`` (or e2e_support's atexit net) ends the rest.
    """
    port = port or free_port()
    server = start_process(docsync_command(port, run_dir, *args), run_dir / f"{name}-{port}.log",
                           lambda: http_ok(f"http://127.0.0.1:{port}/published.json"), port=port)
    server.base_url = f"http://localhost:{port}"
    return server


def stop_quietly(server: ServerProcess) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def client_env(port: int, browser_log: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a client process: url="default" means this server; $BROWSER records URLs."""
    env = {"BOKEH_DEFAULT_SERVER_PORT": str(port), **extra}
    if browser_log is not None:
        recorder = browser_log.with_suffix(".sh")
        recorder.write_text(f'#!/bin/sh\necho "$1" >> {browser_log}\n')
        recorder.chmod(0o755)
        env["BROWSER"] = f"{recorder} %s"
    return daemon_env(env)


def run_client(code: str, run_dir: Path, env: dict[str, str], timeout: float = 30) -> str:
    """Run a client script to its end; its stdout.  A non-zero exit fails the test with its output."""
    script = run_dir / f"client-{abs(hash(code))}.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"client script exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def last_json(output: str) -> Any:
    """The last line of a script's output, parsed as JSON."""
    return json.loads(output.strip().splitlines()[-1])


class ClientProcess:
    """A long-running client script (an example), its output in a file."""

    def __init__(self, script: Path, log_path: Path, env: dict[str, str], args: tuple[str, ...] = ()):
        self.log_path = log_path
        self._log = open(log_path, "w+", encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and text not in self.output():
                pytest.fail(f"client exited with {self.proc.returncode} before printing {text!r}:\n{self.output()}")
            return text in self.output()

        wait_until(seen, timeout=timeout, message=lambda: f"{text!r} in the client's output:\n{self.output()}")

    def interrupt(self, timeout: float = 10.0) -> int:
        """Ctrl-C, as a user stops loop_until_closed(); the exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def opened_url(browser_log: Path, timeout: float = 20.0) -> str:
    """The URL a client asked $BROWSER to open."""
    return wait_until(lambda: browser_log.exists() and browser_log.read_text().split()[-1:],
                      timeout=timeout, message=f"a URL in {browser_log}")[0]
