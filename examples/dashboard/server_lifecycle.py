"""Lifecycle hooks for the dashboard app.

They keep counters on the shared server context (main.py shows them) and, when
the DASHBOARD_HOOK_LOG environment variable names a file, append one line per
call to it, e.g. ``session_created <session id>``, so tests can see them run.
"""

import logging
import os

log = logging.getLogger(__name__)


def _record(line):
    log.info("dashboard hook: %s", line)
    path = os.environ.get("DASHBOARD_HOOK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def on_server_loaded(server_context):
    """Once per server, before any session."""
    server_context.started = True
    server_context.sessions_created = 0
    server_context.sessions_destroyed = 0
    _record("server_loaded")


def on_server_unloaded(server_context):
    """Once, when the server shuts down."""
    _record("server_unloaded")


def on_session_created(session_context):
    """Per session, before main.py builds its document."""
    sc = session_context.server_context
    sc.sessions_created = getattr(sc, "sessions_created", 0) + 1
    _record(f"session_created {session_context.id}")


def on_session_destroyed(session_context):
    """Per session, when it is discarded (expired or server shutdown)."""
    sc = session_context.server_context
    sc.sessions_destroyed = getattr(sc, "sessions_destroyed", 0) + 1
    _record(f"session_destroyed {session_context.id}")
