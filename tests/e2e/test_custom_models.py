"""Custom models in Chromium: TypeScript ``__implementation__`` in a single-file app and in a directory app's
models/, a prebuilt model from an installed extension package, and a model whose TypeScript does not compile.

The first page of a custom model waits for node to compile it (seconds on a busy machine; bokeh serve does
that for every page), hence the longer navigation timeout.
"""

from __future__ import annotations

import html
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from e2e_support import EXAMPLES, REPO, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

APPS = Path(__file__).parent / "apps"
SINGLE_FILE = EXAMPLES / "custom_model.py"
DIRECTORY = APPS / "custom_model_dir"
EXTENSION_APP = APPS / "bell_ext_app.py"
BROKEN = APPS / "custom_model_broken.py"
EXTENSION_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "extension_package")])}
COMPILE_TIMEOUT_MS = 90_000


@pytest.fixture
def serve_compiled(compared_serve):
    """``compared_serve`` with time for bokeh serve, which compiles the app's custom models for every page
    (its readiness probe too)."""

    def _serve(app, **kwargs):
        return compared_serve(app, timeout=COMPILE_TIMEOUT_MS / 1000, **kwargs)

    _serve.variant = compared_serve.variant
    return _serve


def open_compiled(page, url: str) -> None:
    """Open a page whose custom models may still need compiling."""
    page.set_default_navigation_timeout(COMPILE_TIMEOUT_MS)
    page.open(url, timeout_ms=COMPILE_TIMEOUT_MS)


def tally_clicks(page, clicks: int) -> None:
    """Click examples/custom_model.py's Tally ``clicks`` more times; Python echoes each count."""
    start = page.get("tally", "count")
    for n in range(start + 1, start + clicks + 1):
        page.get_by_role("button", name=f"Clicks: {n - 1}").click()
        page.wait_for_prop("echo", "text", f"Python saw {n} click{'s' if n != 1 else ''}")


def test_single_file_custom_model(serve_compiled, new_page):
    """A TypeScript model defined in the app's file renders, its browser-side count reaches Python's callback,
    and a second session gets it too; docsyncd compiled it once for both."""
    server = serve_compiled(SINGLE_FILE)
    first = new_page()
    open_compiled(first, server.url)
    assert first.get("tally", "type") == "Tally"
    tally_clicks(first, 2)

    second = new_page()
    open_compiled(second, server.url)
    tally_clicks(second, 1)
    if serve_compiled.variant == "docsync":
        assert server.log_text().count("custom model Tally compiled") == 1, server.log_tail()


def test_directory_app_with_models_folder(serve_compiled, page):
    """A directory app importing its model from models/shout.py, whose implementation is models/shout.ts,
    renders the model's own view, and a Python callback's change reaches it."""
    server = serve_compiled(DIRECTORY)
    open_compiled(page, server.url)
    page.get_by_text("QUIET!").wait_for()
    page.get_by_role("button", name="Say hello").click()
    page.wait_for_prop("shout", "text", "hello 1")
    page.get_by_text("HELLO 1!").wait_for()


def test_model_from_installed_extension_package(serve_compiled, page):
    """A model of an installed extension package comes with its prebuilt script from /static/extensions/,
    renders its own view, and its clicks reach Python."""
    server = serve_compiled(EXTENSION_APP, env=EXTENSION_ENV)
    scripts = []
    page.on("response", lambda response: scripts.append((response.url, response.status)))
    page.open(server.url)
    assert any("/static/extensions/docsync_bell_ext/docsync_bell_ext.js" in url and status == 200
               for url, status in scripts), scripts
    assert page.get("bell", "type") == "docsync_bell_ext.models.BellButton"
    page.get_by_role("button", name="🔔 Ring").click()
    page.wait_for_prop("rung", "text", "rung from Python")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=COMPILE_TIMEOUT_MS / 1000) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.docsync_only(reason="bokeh serve exits when a custom model does not compile")
def test_model_that_does_not_compile_breaks_nothing_else(serve, new_page):
    """A model whose TypeScript has a type error: its app's page answers 500 naming the model and the
    compiler's first message, the log says the same, and the other app and its open session carry on."""
    server = serve(SINGLE_FILE, extra_args=["--app", str(BROKEN)])
    good = new_page()
    open_compiled(good, server.url)
    tally_clicks(good, 1)

    status, body = get(f"{server.base_url}/custom_model_broken")
    assert status == 500, body
    message = (f"custom model Broken ({BROKEN}) did not compile: ")
    assert message in html.unescape(body), body
    assert "error TS2322: Type 'string' is not assignable to type 'number'." in html.unescape(body), body
    wait_until(lambda: message in server.log_text(), message="the error in the log")
    assert "TS2322" in server.log_text().split(message, 1)[1].splitlines()[0]

    tally_clicks(good, 1)  # the open session carries on
    again = new_page()
    open_compiled(again, server.url)  # and new pages of the other app still work
    tally_clicks(again, 1)
