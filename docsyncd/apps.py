"""Finding and loading Bokeh applications.

An app is a ``.py`` module or a directory with ``main.py`` (plus optional
``server_lifecycle.py`` / ``app_hooks.py``, ``theme.yaml``, ``templates/`` and
``static/``), loaded with Bokeh's own handlers so it behaves as under
``bokeh serve``.  Loading compiles the code; a syntax error is reported as one
sentence naming the file and line instead of a traceback.

Tests: tests/test_apps.py
"""

from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler


class AppLoadError(Exception):
    """An app that cannot be served; the message is meant for the user as it is.

    ``detail`` is the loader's traceback when there is one (``--dev`` shows it
    in the page when a reload fails).
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


@dataclass
class LoadedApp:
    """An application and the URL path it is served at."""

    name: str
    path: str
    application: Application

    @property
    def static_path(self) -> str | None:
        return self.application.static_path

    @property
    def label(self) -> str:
        return app_label(self.name)


def app_label(name: str) -> str:
    """How log lines name an app: ``app NAME``, or ``the app at /`` for the empty one served without --app."""
    return f"app {name}" if name else "the app at /"


def app_name(path: str) -> str:
    """The URL name of an app: its file name without ``.py``, or its directory name."""
    base = os.path.basename(os.path.normpath(path))
    return base[:-3] if base.endswith(".py") else base


_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def describe_handler_error(handler: Any) -> str:
    """One line from a failed Bokeh handler: the innermost file and line, and the exception."""
    detail = (handler.error_detail or "").strip()
    error = detail.splitlines()[-1] if detail else (handler.error or "unknown error").strip()
    places = _LINE.findall(detail)
    if places:
        filename, line = places[-1]
        return f"{filename}, line {line}: {error}"
    return error


#: The modules the process had imported before it loaded its first app (docsyncd's, Twisted's, a test
#: runner's): whatever else is imported later from outside the Python installation is the apps' (dev.py).
PROCESS_MODULES: frozenset[str] = frozenset()


def load_app(path: str, argv: list[str] | None = None) -> LoadedApp:
    """Load the app at ``path``; raise ``AppLoadError`` with a one-line reason."""
    from bokeh.application.handlers import DirectoryHandler, ScriptHandler

    global PROCESS_MODULES
    if not PROCESS_MODULES:
        PROCESS_MODULES = frozenset(sys.modules)

    path = os.path.abspath(os.path.expanduser(path))
    argv = list(argv or [])
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "main.py")):
            raise AppLoadError(f"{path} is a directory without main.py, so it is not a Bokeh app")
        handler = DirectoryHandler(filename=path, argv=argv)
    elif not os.path.exists(path):
        raise AppLoadError(f"no such app: {path}")
    elif path.endswith(".py"):
        handler = ScriptHandler(filename=path, argv=argv)
    else:
        raise AppLoadError(f"{path} is not a Python module (.py) or an app directory")
    if handler.failed:
        raise AppLoadError(f"cannot load app {path}: {describe_handler_error(handler)}",
                           detail=handler.error_detail or "")
    # The lifecycle handler runs the document's on_session_destroyed callbacks,
    # as bokeh serve adds it.
    application = Application(handler, DocumentLifecycleHandler())
    return LoadedApp(app_name(path), path, application)


def empty_app() -> LoadedApp:
    """The app served at ``/`` when no app is given, as by ``bokeh serve`` without files:
    every session starts with an empty document, which a client pushes or a store restores."""
    return LoadedApp("", "", Application(DocumentLifecycleHandler()))


def session_hook(handler: Any, hook: str) -> Any:
    """The app's own ``on_session_created``/``on_session_destroyed`` behind ``handler``.

    docsyncd calls it on the reactor thread, like every other callback.  Going
    through the handler's method instead would not: Bokeh 3.10's
    ``LifecycleHandler.on_session_created`` runs the hook in a worker thread
    (``asyncio.to_thread``), which also needs a running asyncio loop.  A
    ``DirectoryHandler`` keeps its ``server_lifecycle.py`` hooks in a
    ``LifecycleHandler`` of its own; any other handler's method is returned as
    it is (it may return a coroutine, which ``call_user`` awaits).
    """
    lifecycle = getattr(handler, "_lifecycle_handler", handler)
    own = getattr(lifecycle, f"_{hook}", None)
    if isinstance(lifecycle, LifecycleHandler) and callable(own):
        return own
    return getattr(handler, hook)


def document_build_errors(application: Application) -> list[str]:
    """One line per handler that failed while building the last document."""
    return [describe_handler_error(h) for h in application.handlers if h.failed]


def load_apps(paths: list[str], argv: list[str]) -> list[LoadedApp]:
    """Every app a daemon is asked to serve, or ``SystemExit`` with the one line that says why not."""
    try:
        apps = [load_app(path, argv) for path in paths]
    except AppLoadError as e:
        raise SystemExit(f"docsync: {e}")
    names = [app.name for app in apps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"docsync: two apps would be served at /{duplicates[0]}; rename one of them")
    return apps


def _installation_directories() -> tuple[str, ...]:
    paths = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() + [site.getusersitepackages()])
    return tuple(os.path.realpath(p) + os.sep for p in paths if p)


_INSTALLATION = _installation_directories()
_DOCSYNCD = os.path.dirname(os.path.realpath(__file__)) + os.sep


def is_users_file(path: str) -> bool:
    """Whether a source file is the user's own: outside the Python installation (its standard library and
    site-packages) and outside docsyncd.  ``--dev`` watches these (dev.py); an error raised in one is the
    app's, not the client's (protocol.py)."""
    path = os.path.realpath(path)
    return not path.startswith(_INSTALLATION) and not path.startswith(_DOCSYNCD)
