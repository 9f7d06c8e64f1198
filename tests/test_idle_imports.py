"""What a daemon with one app and no sessions has loaded: nothing that only some feature or some app needs.

A server's memory before its first visitor is mostly the modules it imported
(benchmarks' idle_memory, "RSS before the sessions").  These tests start the
real daemon the way twistd does, in a fresh interpreter, let it listen, and
look at ``sys.modules`` and the running threads: each name below is a module
that a plain daemon has no use for until a feature asks for it.

Tests for the lazy imports in docsyncd/store.py (SQLite) and docsyncd/tap.py (workers.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unit_support import SLIDER_APP, write_app

REPO = Path(__file__).resolve().parents[1]

# Parses a command line as twistd does, builds and starts the plugin's service on
# the reactor it installed, and once the listener is up prints what is loaded.
IDLE_DAEMON = """
import json, sys, threading
from twisted.scripts.twistd import ServerOptions
config = ServerOptions()
config.parseOptions(sys.argv[1:])
top = config.loadedPlugins[config.subCommand].makeService(config.subOptions)
from twisted.internet import reactor
top.privilegedStartService()
top.startService()

def report():
    print("IDLE", json.dumps({"modules": sorted(sys.modules), "threads": [t.name for t in threading.enumerate()]}))
    reactor.stop()

reactor.callLater(0.1, report)
reactor.run()
"""


def idle_daemon(*argv: str) -> dict:
    """``sys.modules`` and thread names of a started daemon that had no visitor, for ``twistd -n docsync ARGV``."""
    done = subprocess.run([sys.executable, "-c", IDLE_DAEMON, "-n", "docsync", "--address", "127.0.0.1",
                           "--port", "0", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [report] = [line for line in done.stdout.splitlines() if line.startswith("IDLE ")]  # among the daemon's log lines
    return json.loads(report[len("IDLE "):])


def loaded(modules: list[str], name: str) -> list[str]:
    """``name`` and its submodules among ``modules``."""
    return [m for m in modules if m == name or m.startswith(name + ".")]


@pytest.fixture(scope="module")
def idle(tmp_path_factory) -> dict:
    app = write_app(tmp_path_factory.mktemp("idle"), "sliders", SLIDER_APP)
    return idle_daemon("--app", app)


@pytest.mark.parametrize("module, needed_by", [
    ("sqlite3", "the store, on the first publish (the default store file is created then)"),
    ("docsyncd.workers", "--workers"),
    ("docsyncd.dev", "--dev"),
    ("docsyncd.client", "bokeh.client-style clients, never the daemon"),
    ("tornado", "bokeh serve; docsyncd serves with twisted.web"),
    ("bokeh.server", "bokeh serve; docsyncd uses Bokeh's document and protocol layers only"),
    ("panel", "Panel apps, when their document is built"),
    ("pandas", "apps that import it"),
    ("hypothesis", "the tests"),
])
def test_a_daemon_without_sessions_does_not_import(idle, module, needed_by):
    """A daemon serving one plain app, before any visitor, has not imported what only a feature or an app needs."""
    assert loaded(idle["modules"], module) == [], f"{module} is only needed by {needed_by}"


def test_a_daemon_without_sessions_runs_no_threads(idle):
    """No thread pool is started before a session needs one: the idle daemon runs its main thread only."""
    assert idle["threads"] == ["MainThread"]


def test_a_daemon_with_a_store_path_opens_sqlite(tmp_path):
    """--store PATH is opened at start-up (a bad path stops the daemon), so SQLite is loaded then, as before."""
    app = write_app(tmp_path, "sliders", SLIDER_APP)
    idle = idle_daemon("--app", app, "--store", str(tmp_path / "published.sqlite"))
    assert "sqlite3" in idle["modules"]
    assert (tmp_path / "published.sqlite").exists()
