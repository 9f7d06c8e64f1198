"""Start, probe and stop the two servers under test as subprocesses.

Both servers run one process with the same interpreter and the same Bokeh, on
a fresh free port, with output to a log file. What the benchmarks trust is read
from the kernel for that process: CPU (utime + stime of all threads, as in
``/proc/<pid>/stat``) and resident memory (VmRSS from ``/proc/<pid>/status``)
— not wall-clock rates, which move ±50% on a shared machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import bokeh310
from .loadgen import AppAddress

REPO_ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = Path(__file__).resolve().parent / "apps"
KINDS = ("docsyncd", "bokeh")
#: Further ways to start each server, for scenarios that compare them (``Scenario.variants``, the
#: capacity benchmark): the base kind and the extra command-line arguments, after the base kind's own.
VARIANTS = {
    "docsyncd-w2": ("docsyncd", ["--workers", "2"]),
    "docsyncd-t0": ("docsyncd", ["--num-threads", "0"]),
    "bokeh-np2": ("bokeh", ["--num-procs", "2"]),
    "bokeh310": ("bokeh", []),
}
#: Variants that run on another interpreter than the benchmarks' own: a function returning its path
#: (called when the server starts; bokeh310.interpreter builds its venv on first use).
INTERPRETERS = {"bokeh310": bokeh310.interpreter}
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(Exception):
    """The server did not come up (or died); the message ends with its log tail."""


def _process_cpu_clock(pid: int) -> int:
    """The clockid of ``clock_getcpuclockid(pid)``: CPUCLOCK_SCHED of the whole process (Linux ABI)."""
    return (~pid << 3) | 2


def free_port() -> int:
    """A port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def docsyncd_missing() -> str | None:
    """Why docsyncd cannot be benchmarked yet, or None once its twistd plugin can load."""
    sys.path.insert(0, str(REPO_ROOT))
    try:
        if importlib.util.find_spec("docsyncd.tap") is None:
            return "docsyncd.tap does not exist yet"
    except ImportError as exc:
        return f"docsyncd is not importable: {exc}"
    finally:
        sys.path.remove(str(REPO_ROOT))
    return None


def base_kind(kind: str) -> str:
    """``docsyncd`` or ``bokeh``, for a kind or a variant."""
    return VARIANTS[kind][0] if kind in VARIANTS else kind


def command(kind: str, app: Path, port: int, reactor: str | None = None) -> list[str]:
    """The command line each server is started with (see benchmarks/README.md).

    ``reactor`` is docsyncd's (twist's ``--reactor NAME``); None runs docsyncd's
    default, the asyncio reactor.  bokeh serve always runs on Tornado's asyncio loop.
    """
    if kind in VARIANTS:
        base, extra = VARIANTS[kind]
        cmd = command(base, app, port, reactor)
        if kind in INTERPRETERS:
            cmd[0] = INTERPRETERS[kind]()
        return cmd[:-1] + extra + cmd[-1:] if base == "bokeh" else cmd + extra
    if kind == "docsyncd":
        # `python -m twisted` is `twist` (always foreground; it rejects twistd's -n),
        # and logs JSON unless told otherwise when its output is not a terminal
        chosen = ["--reactor", reactor] if reactor else []
        return [sys.executable, "-m", "twisted", "--log-format=text", *chosen, "docsync",
                "--port", str(port), "--address", HOST, "--app", str(app)]
    if kind == "bokeh":
        return [sys.executable, "-m", "bokeh", "serve", "--port", str(port), "--address", HOST, str(app)]
    raise ValueError(f"unknown server kind {kind!r}")


@dataclass
class ServerProcess:
    """A started server: where it serves the app, and its process for /proc readings."""

    kind: str
    app: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    #: where apps that count their documents (apps/session_count.py) append a line per build
    builds_path: Path | None = None

    @property
    def bokeh_tuning(self) -> bool:
        """Whether the server runs docsyncd's leaner Bokeh internals (docsyncd's default, docsyncd/bokeh_tuning.py)."""
        return base_kind(self.kind) == "docsyncd"

    @property
    def address(self) -> AppAddress:
        """Where the app is served: /<script stem>, as ``bokeh serve app.py`` does."""
        return AppAddress(HOST, self.port, "/" + self.app.stem)

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all threads, living and exited), in seconds.

        /proc/PID/stat reports this sum in 10 ms clock ticks, too coarse for a
        0.3 ms round trip; the kernel keeps the same sum in nanoseconds behind
        the process's CPU-time clock, which Linux lets any process read. Use
        that, and /proc/PID/stat where the clock is unavailable.
        """
        try:
            return time.clock_gettime(_process_cpu_clock(self.proc.pid))
        except OSError:
            return self.stat_cpu_seconds()

    def pids(self) -> list[int]:
        """The server process and every live descendant (workers, forked bokeh processes)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                continue
        return found

    def tree_cpu_seconds(self) -> float:
        """``cpu_seconds`` summed over ``pids()``: the whole server, however many processes it runs."""
        total = 0.0
        for pid in self.pids():
            try:
                total += time.clock_gettime(_process_cpu_clock(pid))
            except OSError:
                pass  # exited meanwhile
        return total

    def builds(self) -> list[str]:
        """Session ids, one per document the app built so far (apps/session_count.py)."""
        try:
            text = self.builds_path.read_text() if self.builds_path else ""
        except FileNotFoundError:
            return []
        return [line.split()[1] for line in text.splitlines() if len(line.split()) == 2]

    def stat_cpu_seconds(self) -> float:
        """utime + stime from /proc/PID/stat (fields 14 and 15 of proc(5))."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        rss = _rss_bytes(self.proc.pid)
        if rss is None:
            raise ServerFailed(f"{self.kind}: no VmRSS for pid {self.proc.pid}")
        return rss

    def tree_rss_bytes(self) -> int:
        """``rss_bytes`` summed over ``pids()`` (processes that exited meanwhile count 0)."""
        return sum(_rss_bytes(pid) or 0 for pid in self.pids())

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerFailed(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> None:
        """Poll until an HTTP request gets any answer (a 404 path, so no session is created)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    sock.sendall(f"GET /__benchmark_ready__ HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
                    if sock.recv(16).startswith(b"HTTP/"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"{self.kind} not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; only ever the process we started and its descendants.

        docsyncd --workers stops its workers itself; bokeh serve --num-procs
        leaves its forked processes running when the first one exits, so every
        descendant still alive afterwards gets the same treatment, by pid.
        """
        descendants = self.pids()[1:] if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid in descendants if _alive(pid)]
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout / 3
            while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
                time.sleep(0.05)


def _rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` from /proc/PID/status, or None if it is gone (or a zombie, which has none)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), None)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@contextlib.contextmanager
def running_server(kind: str, app: str | Path, log_dir: Path, ready_timeout: float = 60.0,
                   reactor: str | None = None) -> Iterator[ServerProcess]:
    """A fresh server of ``kind`` serving ``app`` (a file in benchmarks/apps or a path), stopped on exit;
    docsyncd on ``reactor`` (see ``command``)."""
    app_path = Path(app) if Path(app).is_absolute() else APPS_DIR / app
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = log_dir / f"{kind}-{app_path.stem}-{port}.log"
    builds_path = log_dir / f"{kind}-{app_path.stem}-{port}.builds"
    env = dict(os.environ, DOCSYNC_BENCH_BUILDS=str(builds_path))
    if base_kind(kind) == "docsyncd":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(kind, app_path, port, reactor), cwd=REPO_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(kind, app_path, port, proc, log_path, builds_path)
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()
