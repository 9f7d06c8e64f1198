"""Helpers shared by the e2e tests: polling, the server process, the Bokeh page.

Importable from test modules (``from e2e_support import wait_until``); the
fixtures that use these live in conftest.py.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

START_TIMEOUT = 20.0  # seconds for a server to answer GET /<app>
STOP_TIMEOUT = 15.0  # seconds for a server to exit after SIGTERM
PAGE_TIMEOUT_MS = 10_000  # Playwright's default wait for a page condition

# twistd's entry point (twisted.scripts.twistd has no __main__ guard).
TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


# --------------------------------------------------------------------------
# polling
# --------------------------------------------------------------------------

def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str | Callable[[], str] = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout}s waiting for {text}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# the server process
# --------------------------------------------------------------------------

class ServerProcess:
    """A running docsyncd or bokeh serve, with its log captured to a file."""

    def __init__(self, kind: str, app_path: Path, port: int, proc: subprocess.Popen,
                 log_path: Path, log_file, prefix: str = ""):
        self.kind = kind
        self.app_path = app_path
        self.app_name = app_path.stem if app_path.is_file() else app_path.name
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file
        # localhost, not 127.0.0.1: both servers' default websocket origin
        # allowlist is localhost:<port>.
        self.base_url = f"http://localhost:{port}"
        self.prefix = prefix  # --prefix, as both servers take it
        self.url = f"{self.base_url}{prefix}/{self.app_name}"
        self.returncode: int | None = None

    def app_url(self, query: str = "") -> str:
        return f"{self.url}?{query}" if query else self.url

    def log_text(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the server and wait for it; returns the exit code."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log_file.close()
                pytest.fail(f"{self.kind} did not exit within {timeout}s of SIGTERM; log:\n{self.log_tail()}")
            self._log_file.close()
        return self.returncode

    def __repr__(self):
        return f"<ServerProcess {self.kind} {self.url} pid={self.proc.pid}>"


def server_command(kind: str, app_path: Path, port: int, extra_args: list[str], run_dir: Path,
                   twistd_args: list[str] = ()) -> list[str]:
    if kind == "docsync":
        # twistd, as users run it (`twistd -n docsync ...`). Not `python -m
        # twisted`: that is the newer `twist` runner, which has no -n/--pidfile.
        # A pidfile per server, so several can run at once from the repo root.
        # E2E_DOCSYNC_ARGS: options every docsyncd of the run gets, e.g. "--num-threads 0" to run the suite
        # with callbacks on the reactor thread.
        return [sys.executable, "-c", TWISTD, "-n", "--pidfile", str(run_dir / "twistd.pid"), *twistd_args,
                "docsync", "--port", str(port), "--address", "127.0.0.1",
                "--app", str(app_path), *shlex.split(os.environ.get("E2E_DOCSYNC_ARGS", "")), *extra_args]
    if kind == "bokeh":
        return [sys.executable, "-m", "bokeh", "serve", "--port", str(port), "--address", "127.0.0.1",
                *extra_args, str(app_path)]
    raise ValueError(f"unknown server kind {kind!r}")


def start_server(kind: str, app: str | Path, log_dir: Path, extra_args: list[str] = (),
                 env: dict[str, str] | None = None, timeout: float = START_TIMEOUT,
                 twistd_args: list[str] = ()) -> ServerProcess:
    """Start a server for one app and wait until GET /<app> answers 200.

    ``twistd_args`` go before the ``docsync`` subcommand (``-r epoll``).
    """
    app_path = Path(app)
    if not app_path.is_absolute():
        app_path = EXAMPLES / app_path
    app_path = app_path.resolve()
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    name = app_path.stem if app_path.is_file() else app_path.name
    log_path = log_dir / f"server-{kind}-{name}-{port}.log"

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})

    extra_args = list(extra_args)
    prefix = extra_args[extra_args.index("--prefix") + 1].rstrip("/") if "--prefix" in extra_args else ""
    cmd = server_command(kind, app_path, port, extra_args, log_dir, list(twistd_args))
    log_file = open(log_path, "w+", encoding="utf-8")
    log_file.write("$ " + " ".join(cmd) + "\n")
    log_file.flush()
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    server = ServerProcess(kind, app_path, port, proc, log_path, log_file, prefix)
    _ALL_SERVERS.append(server)

    deadline = time.monotonic() + timeout
    last_error = "no connection yet"
    while True:
        if proc.poll() is not None:
            log_file.close()
            pytest.fail(f"{kind} exited with code {proc.returncode} before serving {server.url}; "
                        f"log:\n{server.log_tail()}")
        if _port_open(port):
            try:
                # up to the deadline: a page may take long (bokeh serve compiles custom models per page)
                with urllib.request.urlopen(server.url, timeout=max(2.0, deadline - time.monotonic())) as resp:
                    if resp.status == 200:
                        return server
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                last_error = repr(e)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log_file.close()
            pytest.fail(f"{kind} did not serve {server.url} within {timeout}s ({last_error}); "
                        f"log:\n{server.log_tail()}")
        time.sleep(0.1)


_ALL_SERVERS: list[ServerProcess] = []


def wait_for_workers(server: ServerProcess, count: int = 2, timeout: float = 30) -> None:
    """Wait until a ``--workers`` daemon's log says that ``count`` workers serve."""
    wait_until(lambda: server.log_text().count(") is serving") >= count, timeout=timeout,
               message=f"{count} workers serving")


@atexit.register
def _kill_leftover_servers():
    """Safety net: no server outlives the test run, whatever happened to its fixture."""
    for server in _ALL_SERVERS:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# daemons started from a whole command line (tests/e2e/test_deploy_*.py)
# --------------------------------------------------------------------------

# `twistd` for this Python and this checkout: prefix to twistd's own arguments.
TWISTD_CMD = [sys.executable, "-c", TWISTD]


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment servers get: this checkout on PYTHONPATH, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def websocket_upgrade(port: int, path: str, protocol_lines: list[str], headers: str = "",
                      host: str | None = None) -> tuple[socket.socket, bytes]:
    """A websocket upgrade written by hand, with these Sec-WebSocket-Protocol header lines (and extra
    ``headers`` lines); the open socket and everything read up to the answer's end of head (frames that
    arrived with a 101 included)."""
    import base64

    key = base64.b64encode(os.urandom(16)).decode()
    protocols = "".join(f"Sec-WebSocket-Protocol: {p}\r\n" for p in protocol_lines)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or f'localhost:{port}'}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"{protocols}{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def http_ok(url: str, timeout: float = 2.0, **kwargs: Any) -> bool:
    """Whether GET ``url`` answers 200 right now (no connection yet: False)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, **kwargs) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_process(cmd: list[str], log_path: Path, ready: Callable[[], Any], *, app: str | Path = "press_me.py",
                  port: int | None = None, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = (),
                  timeout: float = START_TIMEOUT, cwd: Path = REPO) -> ServerProcess:
    """Run a server from a whole command line and wait until ``ready()`` is truthy.

    Output goes to ``log_path``.  ``app`` and ``port`` only label the
    returned ``ServerProcess`` (its ``stop()`` sends SIGTERM and waits).
    """
    app_path = Path(app)
    if not app_path.is_absolute():
        app_path = EXAMPLES / app_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w+", encoding="utf-8")
    log_file.write("$ " + " ".join(map(str, cmd)) + "\n")
    log_file.flush()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=daemon_env(env), stdout=log_file,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=pass_fds)
    server = ServerProcess("docsync", app_path, port, proc, log_path, log_file)
    _ALL_SERVERS.append(server)
    shown = " ".join(str(c) for c in cmd if c != TWISTD)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            log_file.close()
            pytest.fail(f"{shown} exited with code {proc.returncode} before it was ready; "
                        f"log:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log_file.close()
            pytest.fail(f"{shown} was not ready within {timeout}s; log:\n{server.log_tail()}")
        time.sleep(0.1)
    return server


def press_me_clicks(page: "BokehPage", clicks: int = 2) -> list[str]:
    """Click examples/press_me.py's button ``clicks`` times, waiting for each entry Python appends."""
    button = page.get_by_role("button", name="Press Me")
    for n in range(1, clicks + 1):
        button.click()
        page.wait_for(lambda: page.length("press_me_source") == n, message=f"{n} text entries from Python")
    return page.column("press_me_source", "text")


_WAIT_IDLE_JS = """() => window.Bokeh !== undefined && Bokeh.documents.length > 0
                         && Bokeh.documents[0].is_idle"""

# Helpers evaluated in the page; values are made JSON-friendly for Python.
_MODEL_JS = """
window.__e2e = window.__e2e || {
  model(name) {
    const m = Bokeh.documents[0].get_model_by_name(name);
    if (m == null) throw new Error(`no model named ${name}`);
    return m;
  },
  plain(v) {
    if (v == null) return v;
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (Array.isArray(v)) return v.map((x) => this.plain(x));
    if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, this.plain(x)]));
    if (typeof v === "object" && typeof v.type === "string" && v.id !== undefined)
      return {type: v.type, id: v.id, name: v.name};
    return v;
  },
};
"""


class BokehPage:
    """A Playwright page plus helpers for the Bokeh document inside it.

    Unknown attributes go to the Playwright page (``bp.get_by_role(...)``).
    """

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    def __getattr__(self, name):
        return getattr(self.page, name)

    def open(self, url: str, timeout_ms: int = PAGE_TIMEOUT_MS):
        """Load a Bokeh app page and wait until its document is synced and idle."""
        response = self.page.goto(url)
        assert response is not None and response.status == 200, f"GET {url}: {response and response.status}"
        self.wait_for_document(timeout_ms)
        return response

    def wait_for_document(self, timeout_ms: int = PAGE_TIMEOUT_MS):
        try:
            self.page.wait_for_function(_WAIT_IDLE_JS, timeout=timeout_ms)
        except Exception as e:
            raise AssertionError(f"Bokeh document never became idle: {e}\nbrowser console:\n"
                                 + "\n".join(self.console[-30:])) from None
        self.page.evaluate(_MODEL_JS)

    def js(self, body: str, arg: Any = None) -> Any:
        """Evaluate ``(arg) => { body }`` with ``doc`` and ``e2e`` helpers in scope."""
        return self.page.evaluate(
            f"(arg) => {{ const doc = Bokeh.documents[0]; const e2e = window.__e2e; {body} }}", arg)

    def model_exists(self, name: str) -> bool:
        return self.js("return doc.get_model_by_name(arg) != null;", name)

    def get(self, name: str, prop: str) -> Any:
        """Read a property of the model called ``name``."""
        return self.js("return e2e.plain(e2e.model(arg[0])[arg[1]]);", [name, prop])

    def set(self, name: str, prop: str, value: Any):
        """Set a property from JS; it syncs to Python as a user's edit would."""
        self.js("e2e.model(arg[0])[arg[1]] = arg[2];", [name, prop, value])

    def column(self, source_name: str, column: str) -> list:
        return self.js("return e2e.plain(e2e.model(arg[0]).get_column(arg[1]));", [source_name, column])

    def length(self, source_name: str) -> int:
        return self.js("return e2e.model(arg).get_length();", source_name)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = PAGE_TIMEOUT_MS / 1000,
                 message: str = "condition"):
        """Poll a Python predicate (usually reading page state) until truthy."""
        return wait_until(predicate, timeout=timeout, interval=0.05,
                          message=lambda: f"{message}\nbrowser console:\n" + "\n".join(self.console[-30:]))

    def wait_for_prop(self, name: str, prop: str, expected: Any, timeout: float = PAGE_TIMEOUT_MS / 1000):
        """Wait until ``model.prop == expected`` (or ``expected(value)`` is true)."""
        last = []

        def check():
            value = self.get(name, prop)
            last[:] = [value]
            return expected(value) if callable(expected) else value == expected

        self.wait_for(check, timeout, message=f"{name}.{prop} to match {expected!r} (last: {last!r})")
        return last[0]

    def record_events(self):
        """Start recording the kinds of document change events in ``window.__e2e_events``."""
        self.js("""
            if (window.__e2e_events === undefined) {
              window.__e2e_events = [];
              doc.on_change((ev) => window.__e2e_events.push(ev.kind ?? ev.constructor.name));
            }""")

    def recorded_events(self) -> list[str]:
        return self.page.evaluate("() => window.__e2e_events ?? []")


