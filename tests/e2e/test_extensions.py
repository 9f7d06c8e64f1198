"""Bokeh extensions in Chromium: an installed extension's script is served from /static/extensions/<name>/
under --prefix, by every --workers worker, with revalidation, and its model renders; bokeh serve agrees."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from e2e_support import REPO

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "apps" / "extension_app.py"
PACKAGES = REPO / "tests" / "extension_package"
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(PACKAGES)])}
SCRIPT = "/static/extensions/docsync_fake_ext/docsync_fake_ext.min.js"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """GET on a connection of its own (so --workers routes each to the next worker)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, b""


def test_extension_model_renders_under_a_prefix(compared_serve, page):
    """The page under --prefix loads the extension's script once from the prefix's /static/extensions/, the
    extension's model renders, and the script's answer revalidates to 304."""
    server = compared_serve(APP, ["--prefix", "/pre"], env=ENV)
    script_url = server.base_url + "/pre" + SCRIPT
    if compared_serve.variant == "docsync-workers":
        # Before any browser: every worker finds the installed extension by itself, also one that never ran
        # the app (bokeh serve knows an extension only once it rendered a page with it).
        assert [fetch(script_url)[0] for _ in range(4)] == [200] * 4
    page.open(server.url)
    assert page.get("fake", "type") == "docsync_fake_ext.models.FakeExtensionDiv"
    assert page.evaluate("() => window.docsync_fake_ext_loaded") == 1
    page.get_by_text("rendered by an extension's model").wait_for()
    status, headers, body = fetch(script_url)
    assert status == 200 and b"Bokeh.Models.register" in body
    assert fetch(script_url, {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(server.base_url + SCRIPT)[0] == 404  # only under the prefix
