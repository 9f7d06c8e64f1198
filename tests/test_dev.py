"""``--dev``: the file watcher on a task.Clock, the reload of a SessionManager,
the dev-events stream and the dev page (docsyncd/dev.py, SessionManager.replace_app)."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.test.requesthelper import DummyRequest

from docsyncd import tap
from docsyncd.apps import load_app
from docsyncd.contexts import RequestContext
from docsyncd.dev import (POLL_INTERVAL, AppWatcher, DevAppResource, DevEvents, _insert_before_body_end,
                          watched_files)
from docsyncd.sessions import SessionManager


def write_app(directory, text: str = "version one", extra: str = "") -> None:
    """A directory app whose document holds one Div with ``text``."""
    directory.mkdir(exist_ok=True)
    source = textwrap.dedent(f"""\
        from bokeh.models import Div
        from bokeh.plotting import curdoc
        {extra}
        curdoc().add_root(Div(text={text!r}, name="banner"))
    """)
    path = directory / "main.py"
    old = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(source)
    if old is not None:  # a coarse file-system clock must still see a change
        os.utime(path, ns=(old + 10**9, old + 10**9))


def new_session_text(manager: SessionManager, session_id: str) -> str:
    """The banner text of a new session's document."""
    d = manager.get_or_create(session_id, "token", RequestContext())
    results = []
    d.addBoth(results.append)
    assert results and not hasattr(results[0], "getTraceback"), results
    return results[0].document.get_model_by_name("banner").text


@pytest.fixture
def app_dir(tmp_path):
    directory = tmp_path / "devapp"
    write_app(directory)
    return directory


def start_watcher(path):
    """A started AppWatcher on a Clock over a SessionManager of the app at ``path``, and the reloads it made."""
    clock = Clock()
    manager = SessionManager(load_app(str(path)), clock, clock)
    watcher = AppWatcher(manager, [], clock)
    reloads: list[int] = []
    watcher.subscribe(reloads.append)
    watcher.startService()
    return manager, watcher, clock, reloads


@pytest.fixture
def watched(app_dir):
    """``start_watcher`` for the app directory; stopped afterwards."""
    manager, watcher, clock, reloads = start_watcher(app_dir)
    yield manager, watcher, clock, reloads
    if watcher.running:
        watcher.stopService()
    assert clock.getDelayedCalls() == [], "the watcher left delayed calls behind"


def test_watched_files_of_a_directory_app(tmp_path):
    """A directory app's .py, .html, .css and .yaml files are watched; hidden
    directories, __pycache__ and other files are not."""
    app = tmp_path / "app"
    for name in ["main.py", "theme.yaml", "templates/index.html", "static/style.css", "static/data.csv",
                 "__pycache__/main.cpython-311.py", ".git/hook.py", "README.md"]:
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text("x")
    found = {os.path.relpath(f, app) for f in watched_files(str(app))}
    assert found == {"main.py", "theme.yaml", os.path.join("templates", "index.html"),
                     os.path.join("static", "style.css")}


def test_watched_files_of_a_module_app(tmp_path):
    """A module app is watched as that one file."""
    path = tmp_path / "solo.py"
    path.write_text("x = 1\n")
    assert watched_files(str(path)) == [str(path)]


def test_no_reload_without_a_change(watched):
    """Polling files that did not change reloads nothing."""
    manager, watcher, clock, reloads = watched
    application = manager.application
    clock.advance(POLL_INTERVAL * 4)
    assert reloads == [] and watcher.generation == 0
    assert manager.application is application


def test_a_change_reloads_the_app_for_new_sessions(watched, app_dir):
    """After main.py changes, the next poll swaps the new code in: new sessions
    show the new text and listeners hear of generation 1."""
    manager, watcher, clock, reloads = watched
    assert new_session_text(manager, "before") == "version one"
    write_app(app_dir, "version two")
    clock.advance(POLL_INTERVAL)
    assert reloads == [1] and watcher.error is None
    assert new_session_text(manager, "after") == "version two"


def test_reload_discards_the_old_sessions(watched, app_dir):
    """Reloading discards the sessions the old code built, as a restart would."""
    manager, watcher, clock, reloads = watched
    new_session_text(manager, "old")
    old = manager.get("old")
    write_app(app_dir, "version two")
    clock.advance(POLL_INTERVAL)
    assert manager.get("old") is None and old.destroyed


def test_syntax_error_keeps_serving_and_fixing_recovers(watched, app_dir):
    """A syntax error on reload sets the error (message and traceback) and keeps
    the old app; fixing the file reloads again and clears it."""
    manager, watcher, clock, reloads = watched
    application = manager.application
    write_app(app_dir, "version two", extra="x = (")
    clock.advance(POLL_INTERVAL)
    assert reloads == [1]
    message, detail = watcher.error
    assert "SyntaxError" in message and "main.py" in message
    assert "Traceback" in detail and "SyntaxError" in detail
    assert manager.application is application

    write_app(app_dir, "version three")
    clock.advance(POLL_INTERVAL)
    assert reloads == [1, 2] and watcher.error is None
    assert new_session_text(manager, "fixed") == "version three"


def test_helper_modules_are_imported_afresh(watched, app_dir):
    """A helper module of a directory app that changes is imported again, not taken from sys.modules."""
    manager, watcher, clock, reloads = watched
    (app_dir / "devapp_helper_for_test.py").write_text("TEXT = 'helper one'\n")
    write_app(app_dir, "unused", extra="from devapp_helper_for_test import TEXT")
    (app_dir / "main.py").write_text((app_dir / "main.py").read_text().replace("'unused'", "TEXT"))
    clock.advance(POLL_INTERVAL)
    try:
        assert new_session_text(manager, "one") == "helper one"
        helper = app_dir / "devapp_helper_for_test.py"
        old = helper.stat().st_mtime_ns
        helper.write_text("TEXT = 'helper two'\n")
        os.utime(helper, ns=(old + 10**9, old + 10**9))
        clock.advance(POLL_INTERVAL)
        assert new_session_text(manager, "two") == "helper two"
    finally:
        sys.modules.pop("devapp_helper_for_test", None)


def test_replace_app_runs_server_hooks_in_order(tmp_path):
    """SessionManager.replace_app runs the old app's on_server_unloaded, then the new app's on_server_loaded."""
    calls = []
    sys.modules["replace_app_calls"] = type(sys)("replace_app_calls")
    sys.modules["replace_app_calls"].calls = calls
    try:
        for version in ("old", "new"):
            d = tmp_path / version / "app"
            d.mkdir(parents=True)
            (d / "main.py").write_text("from bokeh.plotting import curdoc\n")
            (d / "app_hooks.py").write_text(textwrap.dedent(f"""\
                from replace_app_calls import calls
                def on_server_loaded(ctx): calls.append("{version} loaded")
                def on_server_unloaded(ctx): calls.append("{version} unloaded")
            """))
        clock = Clock()
        manager = SessionManager(load_app(str(tmp_path / "old" / "app")), clock, clock)
        manager.server_loaded()
        new = load_app(str(tmp_path / "new" / "app"))
        done = []
        manager.replace_app(new).addBoth(done.append)
        assert done == [None]
        assert calls == ["old loaded", "old unloaded", "new loaded"]
        assert manager.app is new and manager.application is new.application
    finally:
        del sys.modules["replace_app_calls"]


def test_stop_service_leaves_no_delayed_calls(watched):
    """Stopping the watcher stops its polling."""
    manager, watcher, clock, reloads = watched
    watcher.stopService()
    assert clock.getDelayedCalls() == []


def _get(resource, args=None):
    request = DummyRequest([b""])
    request.method = b"GET"
    request.args = args or {}
    result = resource.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return request


def test_dev_events_answer_at_once_when_the_page_is_stale(watched):
    """A page built before the last reload is told to reload as soon as it listens."""
    manager, watcher, clock, reloads = watched
    watcher.generation = 3
    request = _get(DevEvents(watcher), {b"generation": [b"2"]})
    assert request.finished
    assert b"data: reload\n\n" in b"".join(request.written)
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"text/event-stream"]


def test_dev_events_wait_for_the_next_reload(watched, app_dir):
    """A current page's event stream stays open until the next reload, then says reload and ends."""
    manager, watcher, clock, reloads = watched
    request = _get(DevEvents(watcher), {b"generation": [b"0"]})
    assert not request.finished and b"reload" not in b"".join(request.written)
    write_app(app_dir, "version two")
    clock.advance(POLL_INTERVAL)
    assert request.finished and b"".join(request.written).endswith(b"data: reload\n\n")
    assert len(watcher._listeners) == 1, "the finished stream unsubscribed (the fixture's listener remains)"


def test_dev_events_unsubscribe_when_the_page_goes(watched):
    """A page that closes its event stream is forgotten."""
    manager, watcher, clock, reloads = watched
    request = _get(DevEvents(watcher), {b"generation": [b"0"]})
    assert len(watcher._listeners) == 2
    request.processingFailed(Failure(ConnectionDone("the page went away")))
    assert len(watcher._listeners) == 1


def test_dev_page_shows_the_load_error_with_the_reload_script(watched, app_dir):
    """While the app does not load, its page answers 500 with the traceback in a
    <pre> and the script that reloads it."""
    manager, watcher, clock, reloads = watched
    write_app(app_dir, "version two", extra="x = (")
    clock.advance(POLL_INTERVAL)
    page = DevAppResource(watcher, manager, None, None, None, "/devapp", "")
    # the websocket child needs a factory; the error page does not touch it
    request = _get(page)
    body = b"".join(request.written).decode()
    assert request.responseCode == 500
    assert "<pre>Traceback" in body and "SyntaxError" in body
    assert 'new EventSource("/devapp/dev-events?generation=1")' in body


def test_snippet_goes_before_the_end_of_body():
    """The reload script lands before </body> of the page written, or at the end when there is none."""
    request = DummyRequest([b""])
    _insert_before_body_end(request, b"<script>S</script>")
    request.write(b"<html><body>page</body></html>")
    request.finish()
    assert b"".join(request.written) == b"<html><body>page<script>S</script></body></html>"

    request = DummyRequest([b""])
    _insert_before_body_end(request, b"<script>S</script>")
    request.write(b"no body tag")
    request.finish()
    assert b"".join(request.written) == b"no body tag<script>S</script>"


def test_twistd_docsync_dev_builds_a_watcher_and_dev_pages(app_dir):
    """`twistd docsync --dev` builds a watcher per app into the service tree and serves the dev page."""
    options = tap.Options()
    options.parseOptions(["--app", str(app_dir), "--dev", "--port", "0"])
    top = tap.make_service(options, MemoryReactorClock())

    def walk(svc):
        yield svc
        for child in getattr(svc, "services", []):
            yield from walk(child)

    watchers = [s for s in walk(top) if isinstance(s, AppWatcher)]
    assert len(watchers) == 1 and watchers[0].manager.app.name == "devapp"
    site = next(s for s in walk(top) if hasattr(s, "factory") and isinstance(s.factory, server.Site)).factory
    page = site.resource.children[b"devapp"]
    assert isinstance(page, DevAppResource) and b"dev-events" in page.children


def test_without_dev_there_is_no_watcher(app_dir):
    """Without --dev the app page is the plain one and nothing watches the files."""
    options = tap.Options()
    options.parseOptions(["--app", str(app_dir), "--port", "0"])
    top = tap.make_service(options, MemoryReactorClock())
    names = [type(s).__name__ for s in top.services]
    assert "MultiService" not in names and "AppWatcher" not in names
    site = top.services[1].factory
    assert type(site.resource.children[b"devapp"]).__name__ == "AppResource"


def test_modules_a_single_file_app_imports_are_watched_and_reloaded(tmp_path):
    """A helper.py beside a single-file app is watched once the app imported it (its first import is no change);
    editing it reloads the app, and the new sessions run the new helper (issue 13, item 6)."""
    helper = tmp_path / "dev_helper_for_test.py"
    helper.write_text("TEXT = 'helper one'\n")
    app = tmp_path / "single.py"
    app.write_text("from bokeh.models import Div\nfrom bokeh.plotting import curdoc\n"
                   "from dev_helper_for_test import TEXT\ncurdoc().add_root(Div(text=TEXT, name='banner'))\n")
    manager, watcher, clock, reloads = start_watcher(app)
    try:
        assert new_session_text(manager, "one") == "helper one"
        clock.advance(POLL_INTERVAL)
        assert reloads == [], "importing the helper is no change"
        assert str(helper.resolve()) in watcher._snapshot
        old = helper.stat().st_mtime_ns
        helper.write_text("TEXT = 'helper two'\n")
        os.utime(helper, ns=(old + 10**9, old + 10**9))
        clock.advance(POLL_INTERVAL)
        assert reloads == [1]
        assert "dev_helper_for_test" not in sys.modules, "the old helper was dropped"
        assert new_session_text(manager, "two") == "helper two"
    finally:
        watcher.stopService()
        sys.modules.pop("dev_helper_for_test", None)
    assert clock.getDelayedCalls() == []


def test_user_modules_are_the_apps_own(tmp_path):
    """Modules of the Python installation, of docsyncd and of the process before any app are not the app's."""
    from docsyncd.dev import user_modules

    write_app(tmp_path / "first")
    load_app(str(tmp_path / "first"))  # the process's modules are those before its first app
    modules = user_modules()
    assert not [name for name in modules if name.split(".")[0] in ("docsyncd", "twisted", "bokeh", "json", "pytest")]
    assert "test_dev" not in modules and "unit_support" not in modules
