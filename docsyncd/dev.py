"""``--dev``: reload an app when its files change, and the pages that show it.

``AppWatcher`` polls the modification times of an app's ``.py``, ``.html``,
``.css`` and ``.yaml`` files, and of every module imported from outside the
Python installation (``user_modules``: a ``helper.py`` beside a single-file
app, a package of the project; as bokeh serve's ``--dev`` reloads on any
loaded module), on an injected clock.  When one changes it drops those
modules from ``sys.modules``, loads the app again and swaps it into the app's
``SessionManager`` (the old version's sessions are discarded; new sessions
run the new code, their imports executed afresh), then tells every open page
to reload.  A module imported for the first time is watched from then on
(the log says so); its appearing is no change.

Polling rather than a watching library (watchdog): the files are few (an
app's and its own modules'), a look at them every 0.5 s costs well under a
millisecond, it needs no thread, and tests drive it with a ``task.Clock``.

Pages learn of a reload through a server-sent event stream,
``/<app>/dev-events``: ``DevAppResource`` (the app page in dev mode) adds a
small script to the page, and to its error pages, that listens there and calls
``location.reload()``.  The script names the reload generation its page was
built at, so a reload that happens before the stream opens is not missed.

When the new code does not load (a syntax error), the page answers 500 with
the traceback and the log gets the same; the server carries on, and the next
change to the files reloads again.

Nothing here is imported unless ``--dev`` is given.

Tests: tests/test_dev.py, tests/e2e/test_dev_reload.py
"""

from __future__ import annotations

import json
import os
import sys
from html import escape
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import Resource

from . import apps, logs
from .apps import AppLoadError, LoadedApp, load_app
from .sessions import SessionManager
from .web import AppResource

log = Logger(observer=logs.observer)

WATCHED_SUFFIXES = (".py", ".html", ".css", ".yaml")
POLL_INTERVAL = 0.5  # seconds between looks at the files' modification times

Snapshot = dict[str, tuple[int, int]]


def watched_files(path: str) -> list[str]:
    """The files ``--dev`` watches: a module app itself, or a directory app's
    ``.py``, ``.html``, ``.css`` and ``.yaml`` files (hidden directories and
    ``__pycache__`` skipped)."""
    if not os.path.isdir(path):
        return [path]
    found = []
    for directory, subdirs, files in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__pycache__")
        found.extend(os.path.join(directory, name) for name in sorted(files) if name.endswith(WATCHED_SUFFIXES))
    return found


def user_modules() -> dict[str, str]:
    """Modules imported from outside the Python installation (its standard library and site-packages), by
    name, with their source file: what the apps imported of their own.  docsyncd's modules, and whatever the
    process had imported before it loaded an app (``apps.PROCESS_MODULES``), are not the apps'."""
    found = {}
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if not filename or name in apps.PROCESS_MODULES:
            continue
        path = os.path.realpath(filename)
        if apps.is_users_file(path):
            found[name] = path
    return found


def snapshot(files: list[str]) -> Snapshot:
    """Modification time and size of each file that exists."""
    result = {}
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            continue
        result[name] = (st.st_mtime_ns, st.st_size)
    return result


class AppWatcher(Service):
    """Reloads one app into its ``SessionManager`` when the app's files change.

    ``generation`` counts reloads (failed ones too); ``error`` is
    ``(message, traceback)`` while the files on disk do not load, else None.
    """

    def __init__(self, manager: SessionManager, argv: list[str], clock: IReactorTime,
                 interval: float = POLL_INTERVAL, load: Callable[[str, list[str]], LoadedApp] = load_app):
        self.manager = manager
        self.argv = list(argv)
        self.interval = interval
        self.generation = 0
        self.error: tuple[str, str] | None = None
        self._load = load
        self._listeners: list[Callable[[int], None]] = []
        self._snapshot: Snapshot = {}
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock

    @property
    def path(self) -> str:
        return self.manager.app.path

    def startService(self) -> None:
        super().startService()
        self._snapshot = snapshot(self._files())
        log.info("--dev: watching {count} file(s) of app {app} and of the modules it imports from outside the "
                 "Python installation", count=len(self._snapshot), app=self.manager.app.name)
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def subscribe(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(generation)`` after each reload; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _app_files(self) -> list[str]:
        """``watched_files`` of the app, with symbolic links resolved as ``user_modules`` resolves them."""
        return [os.path.realpath(f) for f in watched_files(self.path)]

    def _files(self) -> list[str]:
        """The app's files, then the files of the modules it imported (``user_modules``)."""
        files = self._app_files()
        return files + sorted(set(user_modules().values()) - set(files))

    def check(self) -> defer.Deferred | None:
        """Reload if a watched file changed since the last look (the LoopingCall's body).

        A file changed when it was there before and differs or is gone, or is
        an app file that appeared; a module's file that appears because the
        app imported it for the first time is only watched from now on.
        """
        app_files = set(self._app_files())
        current = snapshot(self._files())
        changed = sorted(name for name in set(current) | set(self._snapshot)
                         if current.get(name) != self._snapshot.get(name)
                         and (name in self._snapshot or name in app_files))
        for name in sorted(set(current) - set(self._snapshot) - set(changed)):
            log.info("--dev: app {app} imported {file}; watching it too", app=self.manager.app.name, file=name)
        self._snapshot = current
        if not changed:
            return None
        log.info("--dev: {files} changed; reloading app {app}",
                 files=", ".join(os.path.relpath(f, os.path.dirname(os.path.realpath(self.path))) for f in changed),
                 app=self.manager.app.name)
        d = defer.Deferred.fromCoroutine(self.reload())
        return d.addErrback(lambda f: log.failure("--dev: error while reloading app {app}", f,
                                                  app=self.manager.app.name))

    async def reload(self) -> None:
        """Load the app from disk again and swap it in; then tell the open pages."""
        self._forget_app_modules()
        try:
            app = self._load(self.path, self.argv)
        except AppLoadError as e:
            self.error = (str(e), e.detail.rstrip())
            log.error("--dev: app {app} did not load; its pages show this until the files change:\n{message}\n{detail}",
                      app=self.manager.app.name, message=self.error[0], detail=self.error[1])
        else:
            await self.manager.replace_app(app)
            self.error = None
            log.info("--dev: app {app} reloaded", app=app.name)
        self.generation += 1
        for listener in list(self._listeners):
            listener(self.generation)

    def _forget_app_modules(self) -> None:
        """Drop the app's own modules (``user_modules``, the app directory's too) from ``sys.modules``, so that
        the new version imports them afresh; sessions of the old version keep what they hold."""
        ours = {f for f in self._app_files() if f.endswith(".py")}
        ours.update(user_modules().values())
        for name, module in list(sys.modules.items()):
            filename = getattr(module, "__file__", None)
            if filename and os.path.realpath(filename) in ours:
                del sys.modules[name]


class DevEvents(Resource):
    """``/<app>/dev-events``: a server-sent event stream that says ``reload`` once.

    ``?generation=N`` is the reload generation the page was built at; when the
    app has been reloaded since, the answer comes at once.
    """

    isLeaf = True

    def __init__(self, watcher: AppWatcher):
        super().__init__()
        self.watcher = watcher

    def render_GET(self, request: server.Request) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")  # nginx: pass events on at once
        try:
            since = int(request.args.get(b"generation", [b""])[0])
        except ValueError:
            since = self.watcher.generation
        if since < self.watcher.generation:
            return b"retry: 1000\ndata: reload\n\n"
        request.write(b"retry: 1000\n\n")  # sends the headers, so the browser sees the stream open

        def reload(generation: int) -> None:
            request.write(b"data: reload\n\n")
            request.finish()

        unsubscribe = self.watcher.subscribe(reload)
        request.notifyFinish().addBoth(lambda _: unsubscribe())
        return server.NOT_DONE_YET


RELOAD_SCRIPT = """<script>
(function () {
  // docsync --dev: reload this page when the app's files change.
  var events = new EventSource(%s);
  events.onmessage = function (event) {
    if (event.data === "reload") { events.close(); location.reload(); }
  };
})();
</script>
"""


class DevAppResource(AppResource):
    """The app page in dev mode: a reload script in every page, the load error while there is one."""

    def __init__(self, watcher: AppWatcher, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.watcher = watcher
        self.putChild(b"dev-events", DevEvents(watcher))

    def reload_script(self) -> bytes:
        url = f"{self.url}/dev-events?generation={self.watcher.generation}"
        return (RELOAD_SCRIPT % json.dumps(url)).encode("utf-8")

    def render_GET(self, request: server.Request) -> Any:
        script = self.reload_script()
        if self.watcher.error is not None:
            message, detail = self.watcher.error
            request.setResponseCode(http.INTERNAL_SERVER_ERROR)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            title = "500 Error loading the app"
            return (
                f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
                f"<body><h1>{title}</h1><p>{escape(message)}</p><pre>{escape(detail)}</pre>"
            ).encode("utf-8") + script + b"</body></html>"
        _insert_before_body_end(request, script)
        return super().render_GET(request)


def _insert_before_body_end(request: server.Request, snippet: bytes) -> None:
    """Have ``request`` put ``snippet`` before ``</body>`` of the page it writes
    (or at its end), whether the page is the app or an error page."""
    write, finish = request.write, request.finish
    pending = [snippet]

    def write_with_snippet(data: bytes) -> None:
        if pending and b"</body>" in data:
            head, tag, tail = data.rpartition(b"</body>")
            data = head + pending.pop() + tag + tail
        write(data)

    def finish_with_snippet() -> None:
        if pending and not request.finished and not getattr(request, "_disconnected", False):
            write(pending.pop())
        finish()

    request.write = write_with_snippet  # type: ignore[method-assign]
    request.finish = finish_with_snippet  # type: ignore[method-assign]
