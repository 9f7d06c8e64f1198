"""End-to-end fixtures: a real server process and a real Chromium.

The server under test is docsyncd by
default (twistd, run as ``python -c "...twistd import run; run()" -n docsync ...``).
The same tests run against the reference ``bokeh serve``::

    pytest tests/e2e                      # docsyncd
    pytest tests/e2e --e2e-server=bokeh   # bokeh serve (or E2E_SERVER=bokeh)

Every docsyncd the run starts also gets the options in ``E2E_DOCSYNC_ARGS``:
``E2E_DOCSYNC_ARGS="--num-threads 0" pytest tests/e2e`` runs the suite with
sync callbacks on the reactor thread instead of callback threads.

Tests marked ``docsync_only`` exercise behaviour bokeh serve lacks; against
bokeh serve they are strict xfails, so the docsyncd run is the one that counts.
Screenshots of every test's pages go to tests/e2e/artifacts/.
"""

from __future__ import annotations

import os
import re

import pytest

from e2e_support import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS, START_TIMEOUT, BokehPage, ServerProcess,
                         free_port, start_process, start_server, wait_for_workers, wait_until)

__all__ = ["free_port", "wait_until"]


def _server_option(config) -> str:
    return config.getoption("--e2e-server", default=None) or os.environ.get("E2E_SERVER", "docsync")


# --------------------------------------------------------------------------
# options and markers
# --------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption(
        "--e2e-server",
        choices=["docsync", "bokeh"],
        default=os.environ.get("E2E_SERVER", "docsync"),
        help="server the e2e tests start: docsync (default) or bokeh (bokeh serve)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test against a real server process and browser")
    config.addinivalue_line(
        "markers",
        "docsync_only(reason): behaviour only docsyncd has; a strict xfail against bokeh serve",
    )


def pytest_collection_modifyitems(config, items):
    if _server_option(config) != "bokeh":
        return
    for item in items:
        if item.path.name.startswith("test_deploy_"):
            # Deployment tests always run docsyncd (twistd, nginx, systemd...): nothing to compare.
            item.add_marker(pytest.mark.skip(reason="deployment of docsyncd; not a bokeh serve comparison"))
            continue
        marker = item.get_closest_marker("docsync_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "docsyncd only")
            item.add_marker(pytest.mark.xfail(reason=f"bokeh serve: {reason}", strict=True))


@pytest.fixture(scope="session")
def server_kind(pytestconfig) -> str:
    """Which server the e2e tests run against: "docsync" or "bokeh"."""
    return _server_option(pytestconfig)


def _stop_all_and_check(servers):
    """SIGTERM every server (all of them, even if one misbehaves), then require exit code 0."""
    problems = []
    for server in servers:
        try:
            code = server.stop()
        except BaseException as e:  # pytest.fail on a hung server; keep stopping the rest
            problems.append(str(e))
            continue
        if code != 0:
            problems.append(f"{server.kind} ({server.app_name}) exited with {code} after SIGTERM; "
                            f"log:\n{server.log_tail()}")
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def serve(server_kind, tmp_path):
    """Factory: ``serve("press_me.py", extra_args=[...], env={...})`` starts a server.

    Every server it started is stopped with SIGTERM at teardown, and must exit 0
    (a test may also call ``server.stop()`` itself and check what followed).
    """
    started: list[ServerProcess] = []

    def _serve(app, extra_args=(), env=None, kind=None, twistd_args=()):
        server = start_server(kind or server_kind, app, tmp_path, extra_args, env, twistd_args=twistd_args)
        started.append(server)
        return server

    yield _serve
    _stop_all_and_check(started)


@pytest.fixture
def spawn(tmp_path):
    """Factory: ``spawn(cmd, ready, ...)`` runs a server from a whole command line.

    Arguments as ``e2e_support.start_process`` (the log goes to the test's
    tmp_path unless ``log_path`` is given).  At teardown every process it
    started gets SIGTERM and must exit 0, as with ``serve``.
    """
    started: list[ServerProcess] = []

    def _spawn(cmd, ready, log_path=None, **kwargs):
        log_path = log_path or tmp_path / f"process-{len(started)}.log"
        server = start_process(cmd, log_path, ready, **kwargs)
        started.append(server)
        return server

    yield _spawn
    _stop_all_and_check(started)


@pytest.fixture(scope="module")
def module_serve(server_kind, tmp_path_factory):
    """Like ``serve``, but the servers live for the whole test module; one per app+args."""
    started: dict[tuple, ServerProcess] = {}

    def _serve(app, extra_args=(), env=None, kind=None):
        key = (kind or server_kind, str(app), tuple(extra_args), tuple(sorted((env or {}).items())))
        if key not in started:
            log_dir = tmp_path_factory.mktemp("server")
            started[key] = start_server(key[0], app, log_dir, extra_args, env)
        return started[key]

    yield _serve
    _stop_all_and_check(list(started.values()))


#: The servers a comparison test runs on, by name: (kind, arguments): docsyncd in one process, docsyncd
#: with two workers (one document per session, lazy pages), and the reference, bokeh serve.
COMPARED_SERVERS = {
    "docsync": ("docsync", []),
    "docsync-workers": ("docsync", ["--workers", "2"]),
    "bokeh": ("bokeh", []),
}


@pytest.fixture(scope="module", params=list(COMPARED_SERVERS))
def compared_serve(request, tmp_path_factory):
    """Factory, once per server of ``COMPARED_SERVERS``: ``compared_serve(app, extra_args, env)`` starts the
    app on that server (the same app and arguments again: the same server, for the whole module).

    ``compared_serve.variant`` names the server; each server it started is stopped, and must exit 0, at
    the end of the module.  A test using it runs on every server, so both servers must agree.
    """
    kind, server_args = COMPARED_SERVERS[request.param]
    started: dict[tuple, ServerProcess] = {}

    def _serve(app, extra_args=(), env=None, twistd_args=(), timeout=START_TIMEOUT):
        key = (str(app), tuple(extra_args), tuple(sorted((env or {}).items())), tuple(twistd_args))
        if key not in started:
            server = start_server(kind, app, tmp_path_factory.mktemp("server"), [*server_args, *extra_args], env,
                                  twistd_args=twistd_args if kind == "docsync" else (), timeout=timeout)
            started[key] = server
            if "--workers" in server_args:
                wait_for_workers(server)
        return started[key]

    _serve.variant = request.param
    yield _serve
    _stop_all_and_check(list(started.values()))


# --------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for the whole run."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    pw.stop()


def _artifact_name(nodeid_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid_name).strip("_")


@pytest.fixture
def context(browser):
    """A fresh browser context (cookies, storage) per test."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    ctx.set_default_timeout(PAGE_TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def new_page(context, request):
    """Factory for more tabs in the test's context, each a ``BokehPage``.

    At teardown every tab's final state is saved to
    ``tests/e2e/artifacts/<test name>[-tabN].png``.
    """
    pages: list[BokehPage] = []

    def _new_page() -> BokehPage:
        bp = BokehPage(context.new_page())
        pages.append(bp)
        return bp

    yield _new_page

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = _artifact_name(request.node.name)
    for n, bp in enumerate(pages):
        if bp.page.is_closed():
            continue
        suffix = "" if n == 0 else f"-tab{n + 1}"
        try:
            bp.page.screenshot(path=str(ARTIFACTS / f"{base}{suffix}.png"), full_page=True)
        except Exception as e:  # a screenshot must never mask the test's own result
            print(f"screenshot of {base}{suffix} failed: {e}")


@pytest.fixture
def page(new_page) -> BokehPage:
    """The test's first tab, as a ``BokehPage``."""
    return new_page()
