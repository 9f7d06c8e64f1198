"""Tests for docsyncd.reactors: asyncio unless twistd's (or twist's) -r chose another reactor.

The runner cases run in a fresh interpreter: installing a reactor is once per process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.scripts.twistd import ServerOptions

from docsyncd import reactors, tap

from unit_support import SLIDER_APP, write_app

REPO = Path(__file__).resolve().parents[1]

# Parses a command line as twistd does, then asks the plugin for its service, as
# twistd's ApplicationRunner does before it imports the reactor; prints its class.
TWISTD = """
import sys
from twisted.scripts.twistd import ServerOptions
config = ServerOptions()
config.parseOptions(sys.argv[1:])
config.loadedPlugins[config.subCommand].makeService(config.subOptions)
from twisted.internet import reactor
print(type(reactor).__name__)
"""

# Parses a command line as `twist` (python -m twisted) does; it installs its
# default reactor at the end of parsing unless one is installed by then.
TWIST = """
import sys
from twisted.application.twist._options import TwistOptions
options = TwistOptions()
options.parseOptions(sys.argv[1:])
print(type(options["reactor"]).__name__)
"""


def reactor_class(script: str, *argv: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def app(tmp_path) -> str:
    return write_app(tmp_path, "sliders", SLIDER_APP)


def test_twistd_without_reactor_option_runs_on_asyncio(app):
    """`twistd -n docsync` with no -r runs on the asyncio reactor."""
    assert reactor_class(TWISTD, "-n", "docsync", "--app", app, "--port", "0") == "AsyncioSelectorReactor"


def test_twistd_reactor_option_still_wins(app):
    """`twistd -r poll -n docsync` keeps the reactor -r chose."""
    assert reactor_class(TWISTD, "-r", "poll", "-n", "docsync", "--app", app, "--port", "0") == "PollReactor"


def test_twist_without_reactor_option_runs_on_asyncio(app):
    """`twist docsync` (python -m twisted) with no --reactor runs on asyncio too; --reactor poll still wins."""
    assert reactor_class(TWIST, "docsync", "--app", app) == "AsyncioSelectorReactor"
    assert reactor_class(TWIST, "--reactor", "poll", "docsync", "--app", app) == "PollReactor"


def test_only_a_runners_subcommand_installs_a_reactor(monkeypatch, app):
    """Options parsed as twistd's subcommand install the asyncio reactor; parsed on their own (docsync serve,
    workers, tests) they install nothing."""
    calls = []
    monkeypatch.setattr(reactors, "install_asyncio_reactor", lambda: calls.append("installed"))
    tap.Options().parseOptions(["--app", app])
    assert calls == []
    ServerOptions().parseOptions(["-n", "docsync", "--app", app])
    assert calls == ["installed"]


def test_reactor_name_for_workers():
    """Worker processes are told `asyncio` for the asyncio reactor and `default` for any other."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.internet.testing import MemoryReactor

    assert reactors.reactor_name(AsyncioSelectorReactor.__new__(AsyncioSelectorReactor)) == reactors.ASYNCIO
    assert reactors.reactor_name(MemoryReactor()) == reactors.DEFAULT
